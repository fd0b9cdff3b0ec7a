"""benchmarks/spd_regime.py's run claims, which let processes of one sweep share it across sessions:
a live claimer keeps its run; a dead one's claim, or one whose pid now names another process
(another start time), is taken over. And what a worker takes in from the results file the
others write."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from spd_regime import claimed, merge, process_id, reported  # noqa: E402

LINUX = Path("/proc/self/stat").exists()


@pytest.fixture
def other():
    """Another live process."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def claim(tmp_path: Path, holder: str) -> bool:
    """Whether this process gets a run folder claimed by `holder` ('' = unclaimed)."""
    run = tmp_path / "run"
    if holder:
        (tmp_path / "run.claim").write_text(holder)
    with claimed(run, tmp_path / "sweep.lock") as mine:
        if mine:
            assert (tmp_path / "run.claim").read_text() == process_id(os.getpid())
    assert (tmp_path / "run.claim").exists() != mine  # dropped at the block's end, only if it was ours
    return mine


def test_unclaimed_and_own_claims_are_taken(tmp_path):
    assert claim(tmp_path, "")
    assert claim(tmp_path, process_id(os.getpid()))


def test_a_live_claimer_keeps_its_run(tmp_path, other):
    assert not claim(tmp_path, process_id(other.pid))
    assert not claim(tmp_path, str(other.pid))  # a claim without a start time: any process with the pid


def test_a_dead_claimer_loses_its_run(tmp_path, other):
    held = process_id(other.pid)
    other.kill()
    other.wait()
    assert process_id(other.pid) == ""
    assert claim(tmp_path, held)


@pytest.mark.skipif(not LINUX, reason="start times come from /proc")
def test_a_reused_pid_is_not_the_claimer(tmp_path, other):
    pid, start = process_id(other.pid).split(":")
    assert not claim(tmp_path, f"{pid}:{start}")
    assert claim(tmp_path, f"{pid}:{int(start) + 1}")  # the pid now names another process


def test_merge_adds_other_workers_runs_and_a_cost_table_measured_later():
    def run(method, seed):
        return {"method": method, "size": 600, "seed": seed, "equal_steps": {"test_fid": 20.0 + seed}}

    def cost(when, seconds):
        return {"cost": {"fa": {"denoiser_call_s": seconds}}, "cost_machine": {"measured": when} if when else {}}

    mine = {"runs": [run("fa", 0)], **cost("2026-12-07T10:00:00+00:00", 0.09)}
    merge(mine, {"runs": [run("fa", 0), run("fa", 1)], **cost("", 0.10)})  # a file written before times were kept
    assert [r["seed"] for r in mine["runs"]] == [0, 1] and mine["cost"]["fa"]["denoiser_call_s"] == 0.09
    merge(mine, {"runs": [], **cost("2026-12-07T09:00:00+00:00", 0.11)})  # measured earlier: kept out
    assert mine["cost"]["fa"]["denoiser_call_s"] == 0.09
    merge(mine, {"runs": [], **cost("2026-12-07T23:30:00+00:00", 0.07)})  # measured again since (--phase cost)
    assert mine["cost"]["fa"]["denoiser_call_s"] == 0.07 and len(mine["runs"]) == 2


def test_a_worker_with_fewer_methods_reports_every_method_with_runs():
    """A worker started with --methods none still writes the rows of the others' methods (--methods first)."""
    results = {"runs": [{"method": m, "size": 600, "seed": 0} for m in ("fa", "none", "regular")]}
    assert reported(argparse.Namespace(methods=["none"]), results) == ["none", "regular", "fa"]
    assert reported(argparse.Namespace(methods=["fa", "wt"]), results) == ["fa", "wt", "none", "regular"]
