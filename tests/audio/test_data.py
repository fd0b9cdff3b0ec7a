"""Audio loaders on small trees the tests write, and the espeak-ng sets' determinism."""

import shutil

import numpy as np
import pytest
import soundfile
import torch

from attndiff import UserError
from attndiff.data.audio import AudioConfig, generation_plan, load
from attndiff.data.audio_io import read_audio, stratified_folds


def tone(freq, rate=8000, seconds=0.5, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.stack([wave] * channels, 1) if channels > 1 else wave


def test_read_audio_mixes_down_resamples_and_fits_length(tmp_path):
    soundfile.write(tmp_path / "a.wav", tone(440, rate=8000, seconds=0.5, channels=2), 8000)
    wave = read_audio(tmp_path / "a.wav", 16000, 1.0)
    assert wave.shape == (16000,) and wave.dtype == np.float32
    assert np.abs(wave[:7000]).max() > 0.25 and np.abs(wave[8100:]).max() == 0  # 0.5 s of tone, then padding
    spectrum = np.abs(np.fft.rfft(wave[:8000]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) <= 2  # still 440 Hz after resampling
    with pytest.raises(UserError, match="is at 8000 Hz, not 16000 Hz"):
        read_audio(tmp_path / "a.wav", 16000, 1.0, resample=False)


def test_class_folder_loader_and_its_errors(tmp_path):
    for c, f in (("low", 200), ("high", 2000)):
        (tmp_path / c).mkdir()
        for i in range(5):
            soundfile.write(tmp_path / c / f"{i}.flac", tone(f + 10 * i), 8000)
    data = load(f"folder:{tmp_path}", options=AudioConfig(sample_rate=8000, duration=0.5, folds=5))
    assert data.classes == ("high", "low") and len(data) == 10 and data.waves.shape == (10, 4000)
    assert sorted(data.test_folds) == [1, 2, 3, 4, 5]
    for _, train, test in data.splits():  # stratified: one clip of each class in each fold
        assert sorted(data.labels[test].tolist()) == [0, 1] and len(train) == 8
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="class folder .*empty has no audio files"):
        load(f"folder:{tmp_path}", options=AudioConfig(sample_rate=8000))
    shutil.rmtree(tmp_path / "empty")
    (tmp_path / "low" / "bad.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(UserError, match="cannot read audio file .*bad.wav"):
        load(f"folder:{tmp_path}", options=AudioConfig(sample_rate=8000))


def test_esc50_and_urbansound8k_loaders_use_their_folds(tmp_path):
    esc = tmp_path / "esc"
    (esc / "audio").mkdir(parents=True)
    (esc / "meta").mkdir()
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for i in range(6):
        soundfile.write(esc / "audio" / f"{i}.wav", tone(300 + 100 * i), 8000)
        rows.append(f"{i}.wav,{i % 3 + 1},{i % 2},{'dog' if i % 2 == 0 else 'rain'},False,{i},A")
    (esc / "meta" / "esc50.csv").write_text("\n".join(rows))
    data = load(f"esc50:{esc}", options=AudioConfig(sample_rate=8000, duration=0.5))
    assert data.classes == ("dog", "rain") and data.test_folds == (1, 2, 3)
    us = tmp_path / "us"
    rows = ["slice_file_name,fsID,start,end,salience,fold,classID,class"]
    for i in range(4):
        (us / "audio" / f"fold{i % 2 + 1}").mkdir(parents=True, exist_ok=True)
        soundfile.write(us / "audio" / f"fold{i % 2 + 1}" / f"{i}.wav", tone(500), 8000)
        rows.append(f"{i}.wav,1,0,1,1,{i % 2 + 1},{i // 2},{['siren', 'drill'][i // 2]}")
    (us / "metadata").mkdir()
    (us / "metadata" / "UrbanSound8K.csv").write_text("\n".join(rows))
    data = load(f"urbansound8k:{us}", options=AudioConfig(sample_rate=8000, duration=0.5))
    assert data.classes == ("siren", "drill") and data.test_folds == (1, 2)
    (us / "metadata" / "UrbanSound8K.csv").write_text("slice_file_name,fold\nx.wav,1\n")
    with pytest.raises(UserError, match="lacks the column"):
        load(f"urbansound8k:{us}", options=AudioConfig(sample_rate=8000))
    with pytest.raises(UserError, match="use split 'all'"):
        data.part("test")  # two test folds: cross-validation, not one split


def test_unknown_dataset_and_bad_values_are_clear():
    with pytest.raises(UserError, match="unknown audio dataset 'speech'"):
        load("speech")
    with pytest.raises(UserError, match="sample_rate"):
        AudioConfig(sample_rate=10).validate()


def test_stratified_folds_are_seeded_and_balanced():
    y = np.array([0] * 10 + [1] * 5)
    a, b = stratified_folds(y, 5, 0), stratified_folds(y, 5, 0)
    assert (a == b).all() and set(a) == {1, 2, 3, 4, 5}
    assert all(((a == f) & (y == 0)).sum() == 2 and ((a == f) & (y == 1)).sum() == 1 for f in range(1, 6))


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_generated_sets_are_deterministic_with_disjoint_voices(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNDIFF_CACHE", str(tmp_path))
    cfg = AudioConfig(voices=4, test_fraction=0.25, snr_db=20.0, seed=3)
    plan = generation_plan("spoken-digits", cfg)
    assert plan == generation_plan("spoken-digits", cfg) and len(plan) == 40
    train = {p["voice"].split("+")[1] for p in plan if p["fold"] == 1}
    test = {p["voice"].split("+")[1] for p in plan if p["fold"] == 2}
    assert len(test) == 1 and not train & test
    a = load("spoken-digits", options=cfg)
    (tmp_path / "audio").rename(tmp_path / "old")  # generate again from scratch
    b = load("spoken-digits", options=cfg)
    assert torch.equal(a.waves, b.waves) and a.waves.shape == (40, 16000) and a.test_folds == (2,)
    test_part = load("spoken-digits", "test", options=cfg)
    assert len(test_part) == 10 and (test_part.folds == 2).all()
    accents = generation_plan("accents", AudioConfig(voices=4))
    test_sentences = {p["text"] for p in accents if p["fold"] == 2}
    assert test_sentences and not test_sentences & {p["text"] for p in accents if p["fold"] == 1}
