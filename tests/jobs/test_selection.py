"""Model selection: a run's checkpoints in training order, scored once on held-out data."""

import pytest

from attndiff import UserError
from attndiff.jobs import selection
from attndiff.jobs.sfbd import load_split, read_denoised, run_sfbd
from attndiff.metrics import fid as fid_metric
from attndiff.run import Run
from tests.jobs.test_sfbd import tiny


def test_candidates_follow_sfbd_phases_in_training_order(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("round2-00000004", "pretrain-00000003", "round10-00000004", "pretrain-00000006", "round1-00000002",
                 "round1-00000004", "notes"):
        (folder / f"{name}.safetensors").touch()
    found = selection.candidates(tmp_path)
    assert [(c.phase, c.step) for c in found] == [("pretrain", 3), ("pretrain", 6), ("round1", 8), ("round1", 10),
                                                  ("round2", 14), ("round10", 18)]
    assert [c.step for c in selection.candidates(tmp_path, every=2, upto=14)] == [6, 8, 10, 14]


def test_checkpoints_are_scored_once_and_the_best_is_the_lowest(tmp_path):
    cfg = tiny(tmp_path / "run", "train.keep_checkpoints=100", "sfbd.keep_denoised=true")
    run_dir = run_sfbd(cfg)
    split = load_split(cfg)
    denoised = [read_denoised(run_dir, k, split, cfg.sfbd.chunk) for k in (1, 2)]  # both rounds' sets kept
    assert all(d.shape == split.noisy.shape for d in denoised) and not denoised[0].equal(denoised[1])
    refs = {"clean": split.clean.images, "denoised": denoised[1]}
    options = dict(dataset="digits", split="test", n=8, sample_steps=3, references=refs)
    records = selection.score_checkpoints(run_dir, every=4, **options)
    assert [(r["phase"], r["step"]) for r in records] == [("pretrain", 4), ("round1", 8), ("round2", 12)]
    for r in records:
        assert r["fid"] > 0 and r["fid_n"] == 8 and 0 <= r["copy_clean"] <= 1 and 0 <= r["copy_denoised"] <= 1
        assert (run_dir / "samples" / f"select-test-{r['checkpoint'][:-12]}.png").exists()
    assert selection.best(records)["fid"] == min(r["fid"] for r in records)
    again = selection.score_checkpoints(run_dir, every=4, **options)  # read back, not recomputed
    assert [{**r, "time": 0} for r in again] == [{**r, "time": 0} for r in records]
    assert len(Run(run_dir).find(selection.SELECT)) == 3
    # further FIDs of the same samples (an Inv-FID's orbit): asked for later, the checkpoint is scored again
    own = fid_metric.reference_features("digits", "test", 8, resolution=split.clean.shape[-1], progress=False)
    first = selection.candidates(run_dir, every=4)[0]
    more = selection.score_checkpoint(Run(run_dir), first, fid_against={"own": own}, **options)
    assert more["fid_own"] == pytest.approx(more["fid"]) and more["fid"] == pytest.approx(records[0]["fid"])
    try:
        selection.score_checkpoints(run_dir, every=1000, **options)
    except UserError as e:
        assert "no checkpoints to score" in str(e)
    else:
        raise AssertionError("an empty selection must be an error")
