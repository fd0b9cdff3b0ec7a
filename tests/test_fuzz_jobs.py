"""Bad input through the real jobs, not a recorder: random but well-typed configs near and beyond
their edges, and random user files, run as tiny jobs (8x8 digits, a few steps, tiny nets).
Every outcome is exit 0 with a complete run folder, or exit 2 with one error line and nothing
half-written; never a traceback. EXAMPLES cases per run of the suite, the same each time (derandomize),
so CI is repeatable; raise EXAMPLES and drop derandomize to search further (README: Kills, full disks and
bad input)."""

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attndiff.cli import main

EXAMPLES = 40
BASE = ["data.name=digits", "data.limit=24", "fid.n=0", "unet.channels=8", "unet.channel_mult=[1]",
        "unet.attn_levels=[]", "train.steps=2", "train.batch_size=4", "train.precision=fp32", "train.warmup_steps=1",
        "train.log_every=1", "train.checkpoint_every=1", "sample.steps=2", "sample.grid=2", "sample.batch_size=4",
        "sfbd.rounds=1", "sfbd.forward_steps=1", "sfbd.forward_warmup_steps=1", "sfbd.backward_steps=2",
        "sfbd.denoised_fid_n=0", "sfbd.backward_batch=8"]
COMMANDS = [["train"], ["sfbd", "run"], ["sfbd", "baseline", "--kind", "clean-only"],
            ["sfbd", "baseline", "--kind", "ambient"], ["sfbd", "baseline", "--kind", "oracle"]]
EDGES = {
    "data.limit": ["1", "2", "3", "17"],
    "data.resolution": ["0", "1", "5", "9"],
    "sfbd.clean_fraction": ["0.0", "1e-9", "0.01", "0.5", "0.99", "1.0"],
    "sfbd.rounds": ["0", "1"],
    "sfbd.chunk": ["1", "7", "1000"],
    "sfbd.sigma_zeta": ["1e-9", "0.3", "50.0"],
    "train.batch_size": ["1", "3", "64"],
    "fid.n": ["0", "2"],
    "data.split": ['"test"', '"all"', '"valid"'],
}


def user_files(root: Path, draw) -> str:
    """A random user file as a dataset name: npz of other dtypes, shapes and ranges, truncated, or text."""
    kind = draw(st.sampled_from(["npz", "truncated", "text", "folder"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shape = draw(st.sampled_from([(6, 8, 8), (6, 1, 8, 8), (6, 3, 8, 8), (6, 8, 8, 3), (6, 2, 8, 8), (6, 64),
                                  (0, 8, 8), (6, 1, 1, 1), (6, 1, 7, 5)]))
    dtype = draw(st.sampled_from([np.uint8, np.float32, np.float64, np.int64, np.bool_]))
    scale = draw(st.sampled_from([1.0, 255.0, 1e30, float("nan")]))
    with np.errstate(invalid="ignore"):  # NaN cast to integers: whatever it becomes is a test case
        images = (rng.standard_normal(shape) * scale).astype(dtype) if dtype != np.uint8 else \
            rng.integers(0, 255, shape).astype(np.uint8)
    path = root / "user.npz"
    np.savez(path, images=images)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:draw(st.integers(0, 200))])
    elif kind == "text":
        path.write_bytes(bytes(draw(st.lists(st.integers(0, 255), max_size=40))))
    elif kind == "folder":
        (root / "imgs").mkdir(exist_ok=True)
        (root / "imgs" / "a.png").write_bytes(bytes(draw(st.lists(st.integers(0, 255), max_size=40))))
        return f"folder:{root / 'imgs'}"
    return f"npz:{path}"


@st.composite
def jobs(draw, root: Path):
    command = draw(st.sampled_from(COMMANDS))
    overrides = [f"{k}={draw(st.sampled_from(v))}" for k, v in EDGES.items() if draw(st.booleans())]
    if draw(st.integers(0, 3)) == 0:
        overrides.append(f'data.name="{user_files(root, draw)}"')
    config = None
    if draw(st.integers(0, 5)) == 0:  # a config file of random bytes
        config = root / "config.toml"
        config.write_bytes(bytes(draw(st.lists(st.integers(0, 255), max_size=60))))
    return command, overrides, config


def run_folder_is_whole(out: Path) -> bool:
    return (out / "report.html").exists() and (out / "config.toml").exists()


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_real_jobs_end_in_a_whole_run_or_one_error_line(data, tmp_path_factory, capsys):
    root = tmp_path_factory.mktemp("fuzz")
    command, overrides, config = data.draw(jobs(root))
    out = root / "run"
    sets = [o for o in [*BASE, *overrides, f'out="{out}"'] if command[0] == "sfbd" or not o.startswith("sfbd.")]
    argv = [*command, *(["--config", str(config)] if config else []), *[a for o in sets for a in ("--set", o)]]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 0:
        folder = out if command[1:2] != ["baseline"] else out.with_name(f"{out.name}-{command[-1]}")
        assert run_folder_is_whole(folder), argv
    else:
        lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("attndiff:")]
        assert len(lines) == 1 and lines[0].startswith("attndiff: error: "), (argv, err)
    assert not list(root.rglob("*.tmp")), argv  # nothing half-written
