"""`attndiff spd train` and `spd denoise` end to end on a few c4-mnist images with a tiny UNet."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attndiff import config
from attndiff.cli import main
from attndiff.jobs.spd import SPDJobConfig
from attndiff.jobs.train import load_model, model_spec
from attndiff.symmetry import groups
from attndiff.symmetry.metrics import equivariance_error

TINY = ["--set", "unet.channels=8", "--set", "unet.channel_mult=[1, 2]", "--set", "unet.attn_levels=[1]",
        "--set", "data.limit=64", "--set", "train.steps=4", "--set", "train.batch_size=8",
        "--set", "train.precision=fp32", "--set", "fid.n=0", "--set", "sample.grid=4", "--set", "sample.steps=3",
        "--set", "symmetry_metrics.invariance=false"]


def _train(tmp_path, method, *extra):
    out = tmp_path / method
    assert main(["spd", "train", "--method", method, *TINY, "--set", f"out={out}", *extra]) == 0
    return out


@pytest.mark.parametrize("method", ["none", "augment", "wt", "regular", "fa", "reg"])
def test_every_method_trains_samples_and_reports(tmp_path, method):
    out = _train(tmp_path, method)
    records = [line for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any('"spd-eval"' in r for r in records) and any('"spd-symmetry"' in r for r in records)
    assert (out / "report.html").read_text().count("Symmetry") >= 1
    model = load_model(out, precision="fp32")
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    error = equivariance_error(model.denoiser, x, groups.get("C4"))
    if method in ("wt", "regular", "fa", "reg"):  # exact by construction (reg samples with frame averaging)
        assert error < 1e-5
    else:
        assert error > 1e-3
    # rerunning the finished run trains and evaluates nothing again
    before = (out / "metrics.jsonl").read_text()
    _train(tmp_path, method)
    assert (out / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "configs" / "spd").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_every_spd_config_parses_and_builds_its_model(path):
    cfg = config.load(SPDJobConfig, path)
    shape = (3 if "emoji" in cfg.data.name else 1, *(2 * [cfg.data.resolution or 28]))
    spec = model_spec(cfg, shape)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    assert spec.denoiser(spec.new_net())(x, torch.tensor([0.5, 2.0])).shape == x.shape


def test_toy_set_reports_orientation_shares(tmp_path):
    out = _train(tmp_path, "wt", "--config", "configs/spd/toy-upright.toml", "--set", "sample.grid=16")
    text = (out / "metrics.jsonl").read_text()
    assert '"shares": {"rot0":' in text
    assert "orientation shares" in (out / "report.html").read_text()


def _write_png(path, x):
    Image.fromarray(((x[0].numpy() + 1) * 127.5).round().astype(np.uint8)).save(path)


def _noisy_digit_pngs(tmp_path, model):
    """a.png: a noisy sample of the model; b.png: the same turned a quarter."""
    digit = torch.from_numpy(np.load(model / "samples" / "spd-samples.npz")["images"][:1]).float() / 127.5 - 1
    noisy = (digit + 0.4 * torch.randn(digit.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    _write_png(tmp_path / "a.png", noisy[0])
    _write_png(tmp_path / "b.png", torch.rot90(noisy[0], 1, (-2, -1)))


@pytest.mark.parametrize("method", ["wt", "regular"])
def test_denoise_cli_is_orientation_free(tmp_path, method):
    model = _train(tmp_path, method)
    _noisy_digit_pngs(tmp_path, model)
    args = ["spd", "denoise", "--model", str(model), "--sigma", "0.4", "--no-stochastic", "--steps", "10",
            "--precision", "fp32", "--out", str(tmp_path / "out")]
    assert main([*args, str(tmp_path / "a.png"), str(tmp_path / "b.png")]) == 0
    a = np.asarray(Image.open(tmp_path / "out" / "a-denoised.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "out" / "b-denoised.png"), dtype=np.int16)
    assert a.shape == (28, 28)
    assert np.abs(np.rot90(a) - b).max() <= 1  # uint8 rounding only
    assert (tmp_path / "out" / "comparison.png").exists()


def test_denoise_frame_averages_a_plain_model_over_the_requested_group(tmp_path):
    plain = _train(tmp_path, "none")
    _noisy_digit_pngs(tmp_path, plain)
    assert main(["spd", "denoise", "--model", str(plain), "--group", "C4", "--sigma", "0.4", "--no-stochastic",
                 "--steps", "5", "--precision", "fp32", "--out", str(tmp_path / "out2"), str(tmp_path / "a.png")]) == 0
    assert "group C4" in (tmp_path / "out2" / "denoise.txt").read_text()


def test_denoise_rejects_images_of_the_wrong_size(tmp_path, capsys):
    model = _train(tmp_path, "wt")
    Image.new("L", (32, 32)).save(tmp_path / "big.png")
    assert main(["spd", "denoise", "--model", str(model), "--sigma", "0.4", str(tmp_path / "big.png"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "the images are 32x32, the model works on 28x28" in capsys.readouterr().err
