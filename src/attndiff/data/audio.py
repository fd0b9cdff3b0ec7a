"""Audio datasets as fixed-length mono float waveforms with labels, groups and folds.

Built-in sets (nothing is downloaded):
- `spoken-digits`: the ten digits spoken by Debian's espeak-ng with many voice variants, English
  accents, speeds and pitches, generated once into the cache (`attndiff audio prepare`),
  deterministic for a seed. Train and test voices (variants) are disjoint.
- `accents`: fixed English sentences spoken with espeak-ng's English accents; the label is the
  accent. Voices and sentences are disjoint between train and test: a harder task.
- `sonic-pi`: the real recorded instrument and drum samples of Debian's sonic-pi-samples,
  labelled by their name prefix (bd_, sn_, guit_, ...); seeded stratified folds.
User data:
- `folder:PATH`: one sub-folder of WAV/FLAC/OGG files per class; seeded stratified folds.
- `esc50:PATH`: ESC-50 (PATH/meta/esc50.csv, PATH/audio/), its own 5 folds.
- `urbansound8k:PATH`: UrbanSound8K (PATH/metadata/UrbanSound8K.csv, PATH/audio/foldN/), its 10 folds.

Every clip is mixed down to mono (channel mean), resampled to `sample_rate` (polyphase,
scipy.signal.resample_poly) unless `resample = false`, and cut or zero-padded to `duration`
seconds (the centre is kept). Files are read with soundfile (no torchaudio: it does not install
beside this torch).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from attndiff import UserError, seeding
from attndiff.data.audio_io import read_audio, stratified_folds
from attndiff.fsutil import write_npz
from attndiff.paths import cache_dir

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".aiff", ".aif"}
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SENTENCES = (
    "the weather is quite pleasant today", "please bring the water bottle here", "she reads a book every night",
    "we will meet at the station at noon", "the garden looks lovely in the spring", "could you open the window",
    "my brother works in a small bakery", "they painted the fence bright yellow", "the train was late again",
    "he forgot his keys on the table", "a cup of tea would be lovely", "the river runs past the old mill",
    "our neighbours have a friendly dog", "turn left after the second bridge", "the museum opens at nine",
    "i would like a glass of orange juice", "the children played in the park", "this road leads to the harbour",
    "the film starts in ten minutes", "rain is expected later this evening",
)
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")


@dataclasses.dataclass
class AudioConfig:
    name: str = "spoken-digits"  # spoken-digits, accents, sonic-pi, folder:PATH, esc50:PATH, urbansound8k:PATH
    sample_rate: int = 16000
    duration: float = 1.0  # seconds per clip after crop/pad
    resample: bool = True  # false: a file at another rate is an error
    seed: int = 0  # generation (voices, noise) and fold assignment
    voices: int = 60  # generated sets: voice variants (train and test voices disjoint)
    test_fraction: float = 0.25  # generated sets: share of voices (and sentences) held out for testing
    snr_db: float = 0.0  # > 0: add seeded white background noise at this signal-to-noise ratio
    folds: int = 5  # sonic-pi and folder: seeded stratified folds

    def validate(self):
        if not 1000 <= self.sample_rate <= 192000:
            raise UserError(f"audio.sample_rate must be within 1000..192000 Hz, got {self.sample_rate}")
        if self.duration <= 0 or self.voices < 2 or not 0 < self.test_fraction < 1 or self.folds < 2 \
                or self.snr_db < 0:
            raise UserError("audio: need duration > 0, voices >= 2, 0 < test_fraction < 1, folds >= 2, snr_db >= 0")


@dataclasses.dataclass(frozen=True)
class AudioDataset:
    name: str
    waves: torch.Tensor  # (N, T) float32 mono
    labels: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]
    sample_rate: int
    folds: torch.Tensor  # (N,) int64, >= 1
    test_folds: tuple[int, ...]  # the folds evaluated in turn (each against all the others)

    def __post_init__(self):
        if self.waves.ndim != 2 or len(self.labels) != len(self.waves) or len(self.folds) != len(self.waves):
            raise UserError(f"audio dataset {self.name}: expected (N, T) waves with N labels and folds")
        if len(self.waves) == 0:
            raise UserError(f"audio dataset {self.name} is empty")

    def __len__(self) -> int:
        return len(self.waves)

    def part(self, split: str) -> AudioDataset:
        """'all', or 'train' / 'test' for a set with one fixed test fold."""
        if split == "all":
            return self
        if split not in ("train", "test") or len(self.test_folds) != 1:
            raise UserError(f"audio dataset {self.name} has {len(self.test_folds)} test folds: use split 'all' "
                            "(cross-validation over the folds)" if split in ("train", "test")
                            else f"unknown split {split!r} (all, train, test)")
        keep = (self.folds == self.test_folds[0]) == (split == "test")
        return dataclasses.replace(self, waves=self.waves[keep], labels=self.labels[keep], folds=self.folds[keep])

    def splits(self) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """(fold, train indices, test indices) for every test fold."""
        return [(f, (self.folds != f).nonzero().flatten(), (self.folds == f).nonzero().flatten())
                for f in self.test_folds]


def _read_all(paths: list[Path], cfg: AudioConfig) -> torch.Tensor:
    return torch.from_numpy(np.stack([read_audio(p, cfg.sample_rate, cfg.duration, resample=cfg.resample)
                                      for p in paths]))


def _class_folder(root: Path, cfg: AudioConfig) -> AudioDataset:
    if not root.is_dir():
        raise UserError(f"audio folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise UserError(f"{root} has no class sub-folders (expected one folder of audio files per class)")
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise UserError(f"class folder {root / c} has no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
        paths += files
        labels += [i] * len(files)
    y = np.array(labels)
    folds = stratified_folds(y, cfg.folds, cfg.seed)
    return AudioDataset(f"folder:{root}", _read_all(paths, cfg), torch.from_numpy(y), tuple(classes), cfg.sample_rate,
                        torch.from_numpy(folds), tuple(range(1, cfg.folds + 1)))


def _read_csv(path: Path, needed: set[str]) -> list[dict]:
    if not path.is_file():
        raise UserError(f"metadata file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not rows:
        raise UserError(f"{path} has no rows")
    missing = needed - set(rows[0])
    if missing:
        raise UserError(f"{path} lacks the column(s) {', '.join(sorted(missing))}")
    return rows


def _metadata_set(name: str, rows: list[dict], path_of, fold_key: str, label_key: str, class_key: str,
                  cfg: AudioConfig) -> AudioDataset:
    try:
        folds = np.array([int(r[fold_key]) for r in rows])
        labels = np.array([int(r[label_key]) for r in rows])
    except ValueError as e:
        raise UserError(f"{name}: bad fold or class id in the metadata: {e}") from None
    names = {int(r[label_key]): r[class_key] for r in rows}
    classes = tuple(names.get(i, str(i)) for i in range(labels.max() + 1))
    waves = _read_all([path_of(r) for r in rows], cfg)
    return AudioDataset(name, waves, torch.from_numpy(labels), classes, cfg.sample_rate, torch.from_numpy(folds),
                        tuple(sorted(set(folds.tolist()))))


def _esc50(root: Path, cfg: AudioConfig) -> AudioDataset:
    rows = _read_csv(root / "meta" / "esc50.csv", {"filename", "fold", "target", "category"})
    return _metadata_set(f"esc50:{root}", rows, lambda r: root / "audio" / r["filename"], "fold", "target",
                         "category", cfg)


def _urbansound(root: Path, cfg: AudioConfig) -> AudioDataset:
    rows = _read_csv(root / "metadata" / "UrbanSound8K.csv", {"slice_file_name", "fold", "classID", "class"})
    return _metadata_set(f"urbansound8k:{root}", rows,
                         lambda r: root / "audio" / f"fold{r['fold']}" / r["slice_file_name"], "fold", "classID",
                         "class", cfg)


def _sonic_pi(cfg: AudioConfig) -> AudioDataset:
    if not SONIC_PI_DIR.is_dir():
        raise UserError(f"{SONIC_PI_DIR} not found: install it with `apt-get install sonic-pi-samples`")
    files = sorted(p for p in SONIC_PI_DIR.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    prefixes = [p.stem.split("_")[0] for p in files]
    counts = {c: prefixes.count(c) for c in set(prefixes)}
    keep = [(p, c) for p, c in zip(files, prefixes) if counts[c] >= cfg.folds]  # every class in every fold
    classes = tuple(sorted({c for _, c in keep}))
    y = np.array([classes.index(c) for _, c in keep])
    folds = stratified_folds(y, cfg.folds, cfg.seed)
    return AudioDataset("sonic-pi", _read_all([p for p, _ in keep], cfg), torch.from_numpy(y), classes,
                        cfg.sample_rate, torch.from_numpy(folds), tuple(range(1, cfg.folds + 1)))


# --- speech synthesised with espeak-ng -------------------------------------------------------

def espeak_variants() -> list[str]:
    """The voice variants espeak-ng offers (m1, f2, Alex, ...), in a stable order."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise UserError("espeak-ng not found: install it with `apt-get install espeak-ng` (make setup does, as root)")
    out = subprocess.run([exe, "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = [line.split()[3].split("/")[-1] for line in out.splitlines()[1:] if len(line.split()) >= 4]
    return sorted(set(names))


def speak(text: str, voice: str, speed: int, pitch: int, path: Path) -> None:
    r = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                       capture_output=True, text=True)
    if r.returncode != 0 or not path.exists():
        raise UserError(f"espeak-ng failed for voice {voice!r}: {r.stderr.strip()[:200]}")


def _generated_key(kind: str, cfg: AudioConfig) -> str:
    fields = {k: getattr(cfg, k) for k in ("sample_rate", "duration", "seed", "voices", "test_fraction", "snr_db")}
    digest = hashlib.sha1(json.dumps([kind, fields, seeding.RULE], sort_keys=True).encode()).hexdigest()[:10]
    return f"{kind}-{digest}"


def generation_plan(kind: str, cfg: AudioConfig) -> list[dict]:
    """Every clip to synthesise: text, voice, speed, pitch, label and fold (1 train, 2 test)."""
    rng = np.random.default_rng(cfg.seed)
    variants = espeak_variants()
    chosen = [variants[i] for i in rng.permutation(len(variants))[:min(cfg.voices, len(variants))]]
    n_test = max(1, round(cfg.test_fraction * len(chosen)))
    test_variants = set(chosen[:n_test])
    plan = []
    if kind == "spoken-digits":
        for v in chosen:
            accent = ACCENTS[rng.integers(len(ACCENTS))]
            for label, word in enumerate(DIGITS):
                plan.append({"text": word, "voice": f"{accent}+{v}", "speed": int(rng.integers(120, 200)),
                             "pitch": int(rng.integers(20, 80)), "label": label,
                             "fold": 2 if v in test_variants else 1})
    else:  # accents: the label is the accent; test voices and test sentences are both unseen
        order = rng.permutation(len(SENTENCES))
        n_test_s = max(1, round(cfg.test_fraction * len(SENTENCES)))
        test_sentences = {SENTENCES[i] for i in order[:n_test_s]}
        for v in chosen:
            is_test = v in test_variants
            pool = [s for s in SENTENCES if (s in test_sentences) == is_test]
            for label, accent in enumerate(ACCENTS):
                for s in rng.choice(pool, size=2, replace=False):
                    plan.append({"text": str(s), "voice": f"{accent}+{v}", "speed": int(rng.integers(130, 190)),
                                 "pitch": int(rng.integers(30, 70)), "label": label, "fold": 2 if is_test else 1})
    return plan


def prepare(kind: str, cfg: AudioConfig, *, progress: bool = True) -> Path:
    """Synthesise a generated set into the cache once; returns its npz path."""
    from attndiff.progress import bar

    path = cache_dir() / "audio" / f"{_generated_key(kind, cfg)}.npz"
    if path.exists():
        return path
    plan = generation_plan(kind, cfg)
    rng = np.random.default_rng(seeding.derive(cfg.seed, "background-noise"))
    n = round(cfg.sample_rate * cfg.duration)
    waves = np.zeros((len(plan), n), np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        for i, item in enumerate(bar(plan, desc=f"espeak-ng {kind}", unit="clip", disable=not progress)):
            wav = Path(tmp) / "clip.wav"
            speak(item["text"], item["voice"], item["speed"], item["pitch"], wav)
            wave = read_audio(wav, cfg.sample_rate, cfg.duration)
            peak = np.abs(wave).max()
            wave = wave / peak * 0.9 if peak > 0 else wave
            if cfg.snr_db > 0:
                power = float(np.mean(wave**2)) or 1e-8
                wave = wave + rng.normal(0, math.sqrt(power / 10 ** (cfg.snr_db / 10)), n).astype(np.float32)
            waves[i] = wave
    write_npz(path, waves=(np.clip(waves, -1, 1) * 32767).astype(np.int16),
              labels=np.array([p["label"] for p in plan]), folds=np.array([p["fold"] for p in plan]),
              voices=np.array([p["voice"] for p in plan]))
    return path


def _generated(kind: str, cfg: AudioConfig) -> AudioDataset:
    path = prepare(kind, cfg)
    try:
        with np.load(path, allow_pickle=False) as z:
            waves, labels, folds = z["waves"], z["labels"], z["folds"]
    except (OSError, ValueError, KeyError) as e:
        path.unlink(missing_ok=True)
        raise UserError(f"the cached {kind} set {path} was damaged and has been removed; run again: {e}") from None
    classes = DIGITS if kind == "spoken-digits" else ACCENTS
    return AudioDataset(kind, torch.from_numpy(waves.astype(np.float32) / 32767), torch.from_numpy(labels),
                        classes, cfg.sample_rate, torch.from_numpy(folds), (2,))


GENERATED = ("spoken-digits", "accents")
USER_SOURCES = {"folder": _class_folder, "esc50": _esc50, "urbansound8k": _urbansound}


def load(name: str, split: str = "all", *, options: AudioConfig | None = None) -> AudioDataset:
    """Audio dataset `name` (spoken-digits, accents, sonic-pi, folder:PATH, esc50:PATH, urbansound8k:PATH).

    `options` (the [audio] config section; its own `name` is ignored) sets the sample rate, clip
    length, folds and the generated sets' voices. split "all" keeps every fold, which the jobs
    cross-validate over; "train" and "test" exist for sets with one fixed test fold (the
    generated ones).
    """
    cfg = dataclasses.replace(options or AudioConfig(), name=name)
    if name in GENERATED:
        return _generated(name, cfg).part(split)
    if name == "sonic-pi":
        return _sonic_pi(cfg).part(split)
    kind, sep, arg = name.partition(":")
    if sep and kind in USER_SOURCES:
        return USER_SOURCES[kind](Path(arg).expanduser(), cfg).part(split)
    known = ", ".join(list(GENERATED) + ["sonic-pi"] + [f"{k}:PATH" for k in USER_SOURCES])
    raise UserError(f"unknown audio dataset {name!r} (known: {known})")
