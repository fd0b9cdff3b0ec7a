import json
from pathlib import Path

import pytest

from attndiff.cli import main

ROOT = Path(__file__).resolve().parents[2]

TINY = ["--set", "task.vocab=100", "--set", "task.sentences=200", "--set", "task.m=6", "--set", "train.epochs=40",
        "--set", "train.snapshot_every=10", "--set", "train.lr=0.5"]


def _finals(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["variant"]: r for r in records if r["tag"].endswith("-final")}


def test_synthetic_run_writes_dynamics_checkpoints_and_report(tmp_path):
    out = tmp_path / "run"
    args = ["attention", "run", *TINY, "--set", 'variants=["fc", "tl", "tc-kf"]', "--set", f'out="{out}"']
    assert main(args) == 0
    finals = _finals(out)
    assert set(finals) == {"Attn-FC", "Attn-TL", "Attn-TC-KF"}
    assert "sen_deviation_max" in finals["Attn-FC"] and "sen_deviation_max" not in finals["Attn-TC-KF"]
    for v in ("fc", "tl", "tc-kf"):
        assert (out / "dynamics" / f"{v}.npz").exists() and (out / "checkpoints" / f"{v}.safetensors").exists()
    html = (out / "report.html").read_text()
    assert "SEN relation" in html and "Attn-TL" in html and html.count("<img") >= 6
    before = (out / "metrics.jsonl").read_text()
    assert main(args) == 0  # finished variants are reused, not retrained
    assert (out / "metrics.jsonl").read_text() == before


def test_flags_run_one_named_variant(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["attention", "run", "--config", "none", *TINY, "--head", "tc", "--freeze", "embeddings",
                 "--train-query"]) == 2  # a missing config file is one clear error
    assert main(["attention", "run", *TINY, "--config", str(ROOT / "configs/attention/synthetic.toml"),
                 "--head", "tc", "--freeze", "embeddings", "--train-query"]) == 0
    assert set(_finals(tmp_path / "runs" / "attention-synthetic-tc-ef-qt")) == {"Attn-TC-EF-QT"}


def test_real_text_run_reports_purity_and_baseline(tmp_path):
    folder = tmp_path / "sst"
    folder.mkdir()
    lines = ["1 a truly great film", "0 a truly dull film", "1 great acting", "0 dull plot", "1 great fun"] * 8
    (folder / "train.txt").write_text("\n".join(lines))
    (folder / "test.txt").write_text("1 great\n0 dull\n")
    out = tmp_path / "text"
    assert main(["attention", "run", "--set", f'task.name="sst:{folder}"', "--set", 'variants=["fc"]',
                 "--set", "train.epochs=300", "--set", "train.lr=1.0", "--set", "top_words=3",
                 "--set", f'out="{out}"']) == 0
    html = (out / "report.html").read_text()
    assert "purity" in html and "Bag-of-words logistic regression" in html
    assert _finals(out)["Attn-FC"]["test_acc"] == 1.0  # "great" and "dull" carry the label


def test_bad_variant_and_diverging_lr_are_one_line_errors(tmp_path, capsys):
    assert main(["attention", "run", *TINY, "--set", 'variants=["fc-xx"]']) == 2
    assert "bad variant 'fc-xx'" in capsys.readouterr().err
    assert main(["attention", "run", *TINY, "--set", "train.lr=1e30", "--set", "model.embed_std=1.0",
                 "--set", 'variants=["tc"]', "--set", f'out="{tmp_path}"']) == 2
    assert "lower train.lr" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["synthetic", "ablations", "rt-polarity", "imdb"])
def test_shipped_configs_parse(name):
    from attndiff import config
    from attndiff.jobs.attention import AttentionJobConfig

    cfg = config.load(AttentionJobConfig, ROOT / "configs" / "attention" / f"{name}.toml")
    assert cfg.variants and cfg.train.epochs >= 1000 or name == "imdb"
