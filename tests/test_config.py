from pathlib import Path

import pytest

from attndiff import UserError, config
from attndiff.jobs.train import TrainJobConfig

ROOT = Path(__file__).resolve().parent.parent


def test_round_trip_through_toml(tmp_path):
    cfg = config.load(TrainJobConfig, str(ROOT / "configs/train/mnist-cpu.toml"), ["train.steps=7", "data.name=digits"])
    assert cfg.train.steps == 7 and cfg.data.name == "digits" and cfg.unet.channel_mult == (1, 2, 2)
    path = tmp_path / "c.toml"
    path.write_text(config.dumps_toml(config.to_dict(cfg)))
    assert config.load(TrainJobConfig, path) == cfg


@pytest.mark.parametrize("override,message", [
    ("train.stepz=3", "unknown config key 'train.stepz'"),
    ("train.steps=abc", "train.steps' must be int"),
    ("train.steps=0", "train.steps must be positive"),
    ("train.precision=fp16", "must be one of"),
    ("unet.channel_mult=3", "must be a list"),
    ("nonsense", "KEY=VALUE"),
])
def test_bad_values_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        config.load(TrainJobConfig, None, [override])


def test_every_shipped_config_parses():

    for path in (ROOT / "configs/train").glob("*.toml"):
        config.load(TrainJobConfig, path)


def test_a_renamed_key_names_its_new_spelling():
    with pytest.raises(UserError, match="'sample.solver' was renamed: use sample.stochastic"):
        config.load(TrainJobConfig, None, ['sample.solver="sde"'])
    assert config.load(TrainJobConfig, None, ["sample.stochastic=true"]).sample.stochastic


def test_choices_come_from_the_registries():
    from attndiff.diffusion import model
    from attndiff.jobs.spd import SPDJobConfig

    with pytest.raises(UserError, match="unknown model method 'magic'.*none, augment, wt, regular, fa, reg"):
        config.load(SPDJobConfig, None, ["symmetry.method=magic"])
    assert {"none", "augment", "wt", "regular", "fa", "reg"} <= set(model.RECIPES)
