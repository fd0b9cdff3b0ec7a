import json
from pathlib import Path

import numpy as np
import soundfile

from attndiff.cli import main

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "audio" / "spoken-digits.toml")


def _tones(root):
    rng = np.random.default_rng(0)
    for c, f in (("a", 300), ("b", 900), ("c", 2500)):
        (root / c).mkdir(parents=True)
        for i in range(6):
            t = np.arange(4000) / 8000
            wave = 0.3 * np.sin(2 * np.pi * (f + 20 * i) * t) + 0.01 * rng.standard_normal(4000)
            soundfile.write(root / c / f"{i}.wav", wave, 8000)


def _args(tmp_path, *extra):
    return ["audio", "run", "--config", CONFIG, "--set", f'audio.name="folder:{tmp_path / "data"}"',
            "--set", "audio.sample_rate=8000",
            "--set", "audio.duration=0.5", "--set", "audio.folds=2", "--set", "train.epochs=3",
            "--set", "train.batch_size=8", "--set", "model.channels=[4, 8]", "--set", "features.n_fft=256",
            "--set", "features.win_length=200", "--set", "features.hop_length=80", "--set", "features.n_mels=16",
            "--seeds", "2", *extra]


def test_audio_run_over_seeds_and_folds_writes_scores_and_report(tmp_path):
    _tones(tmp_path / "data")
    out = tmp_path / "cab"
    assert main(_args(tmp_path, "--set", f'out="{out}"', "--set", "train.spec_augment=true")) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    results = [r for r in records if r.get("kind") == "result"]
    assert sorted((r["seed"], r["fold"]) for r in results) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    for r in results:
        assert 0 <= r["accuracy"] <= 1 and np.array(r["confusion"]).sum() == 9 and len(r["selection"]) == 3
        assert abs(sum(r["selection"][0]) - 1) < 1e-5
    assert len(list((out / "checkpoints").glob("*.safetensors"))) == 4
    html = (out / "report.html").read_text()
    assert "Confusion matrix" in html and "Which classifier is selected" in html and "±" in html
    before = (out / "metrics.jsonl").read_text()
    assert main(_args(tmp_path, "--set", f'out="{out}"', "--set", "train.spec_augment=true")) == 0
    assert (out / "metrics.jsonl").read_text() == before  # finished (seed, fold) pairs are kept


def test_baseline_models_and_errors(tmp_path, capsys, monkeypatch):
    _tones(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert main(_args(tmp_path, "--model", "mlp", "--seeds", "1")) == 0
    assert (tmp_path / "runs" / "spoken-digits-mlp" / "report.html").exists()
    assert "Which classifier" not in (tmp_path / "runs" / "spoken-digits-mlp" / "report.html").read_text()
    assert main(["audio", "prepare", "--config", CONFIG, "--set", 'audio.name="sonic-pi"']) == 2
    assert "nothing to prepare" in capsys.readouterr().err
    assert main(["audio", "run", "--config", CONFIG, "--set", f'audio.name="folder:{tmp_path / "missing"}"']) == 2
    assert "audio folder not found" in capsys.readouterr().err


def test_predict_reproduces_the_run_accuracy_on_its_own_test_fold(tmp_path, capsys):
    from attndiff.data.audio_io import stratified_folds

    _tones(tmp_path / "data")
    out = tmp_path / "cab"
    assert main(_args(tmp_path, "--set", f'out="{out}"', "--seeds", "1")) == 0
    files = sorted((tmp_path / "data").rglob("*.wav"))  # the folder loader's order: classes, then files
    labels = np.array(["abc".index(f.parent.name) for f in files])
    test = [f for f, fold in zip(files, stratified_folds(labels, 2, 0)) if fold == 1]
    capsys.readouterr()
    csv_path = tmp_path / "pred.csv"
    assert main(["audio", "predict", *map(str, test), "--model", str(out), "--seed", "0", "--fold", "1",
                 "--out", str(csv_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(test) and all("selector" in line for line in lines)
    predicted = [line.split("\t")[1] for line in lines]
    accuracy = np.mean([p == f.parent.name for p, f in zip(predicted, test)])
    record = next(json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()
                  if '"kind": "result"' in r and '"fold": 1' in r)
    assert accuracy == record["accuracy"]
    assert csv_path.read_text().splitlines()[0].startswith("file,class,probability,p_a,p_b,p_c,selector_0")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    assert main(["audio", "predict", str(tmp_path / "bad.wav"), "--model", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.wav" in err[0]
    assert main(["audio", "predict", str(test[0]), "--model", str(out), "--fold", "7"]) == 2
    assert "no model for fold 7" in capsys.readouterr().err
