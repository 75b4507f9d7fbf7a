"""The JAX main's runs survive: kill -9 or SIGTERM + --resume end as an uninterrupted run, a
changed config is refused, an unreadable checkpoint falls back, a NaN state is never saved."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from algorithms.errors import NonFiniteError
from algorithms.offline import pogo_multi_jax
from algorithms.offline.config import parse_config
from algorithms.offline.run_io import EXIT_STOPPED
from tests.conftest import tiny_argv

pytestmark = pytest.mark.usefixtures("xla_cache")  # one persistent XLA cache (conftest)

ROOT = Path(__file__).resolve().parents[1]
RUN = Path("rebrac", "hopper", "medium-v2", "seed_0")  # a run's directory under output_dir
STEPS = 200  # the uninterrupted run's length; every stopped run is resumed to it (long enough
# that a signal sent under load still lands before it: the SIGKILL case waits for a 5-update window)
FIRST_CHECKPOINT = "checkpoint_0000000010.pt"  # a stopped run is stopped after this one


def _argv(dataset: Path, out: Path, *extra: str) -> list[str]:
    """A tiny ReBRAC chain of 2 actors: evaluated and checkpointed every 10 updates."""
    return tiny_argv(
        dataset, out, "rebrac", 2, *extra, "--quiet", max_timesteps=STEPS, hidden_dim=16
    )


def _logs(root: Path) -> tuple[str, str]:
    return (root / "logs" / "eval.csv").read_text(), (root / "logs" / "train.jsonl").read_text()


def _latest(root: Path) -> Path:
    return root / "checkpoints" / (root / "checkpoints" / "latest").read_text().strip()


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.stem.split("_")[1])


def _last_logged(root: Path) -> int:
    """The step of the last complete row of train.jsonl (0: none yet)."""
    path = root / "logs" / "train.jsonl"
    text = path.read_text() if path.exists() else ""
    return json.loads(text.splitlines()[-1])["step"] if text.endswith("\n") else 0


def _time_to_stop(root: Path, sig: signal.Signals) -> bool:
    """After the run's first checkpoint; for SIGKILL, once it has also logged an update past its
    latest checkpoint (a log step between two evaluations): rows a resumed run must drop."""
    latest = root / "checkpoints" / "latest"
    if not latest.exists() or latest.read_text().strip() < FIRST_CHECKPOINT:
        return False
    return sig != signal.SIGKILL or _last_logged(root) % 10 == 5


@pytest.fixture(scope="module")
def clean_run(synthetic_dataset, tmp_path_factory) -> pogo_multi_jax.Run:
    """The uninterrupted run the others must reproduce."""
    out = tmp_path_factory.mktemp("clean")
    run = pogo_multi_jax.setup(parse_config(_argv(synthetic_dataset, out)))
    pogo_multi_jax.train(run)
    return run


@pytest.fixture
def clean(clean_run) -> Path:
    """Its run directory."""
    return clean_run.root


def _assert_same_run(resumed: Path, clean: Path) -> None:
    """The same logs, row for row, and the same final carry, bit for bit."""
    assert _logs(resumed) == _logs(clean)
    a = torch.load(_latest(resumed), weights_only=False)
    b = torch.load(_latest(clean), weights_only=False)
    assert a["step"] == b["step"] == STEPS
    for part in pogo_multi_jax.CHECKPOINT_PARTS:
        assert a[part].keys() == b[part].keys(), part
        for name in a[part]:
            assert np.array_equal(a[part][name], b[part][name]), f"{part}.{name}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_or_stopped_run_resumes_as_an_uninterrupted_one(
    synthetic_dataset, tmp_path, clean, xla_cache, sig
):
    """A long run in a real process, stopped after its first checkpoint. SIGKILL loses the
    updates since its last checkpoint, whose logged rows a resume drops; SIGTERM first
    checkpoints the stretch it finished and exits 75. --resume (to the clean run's length) then
    ends where the clean run ends."""
    argv = _argv(synthetic_dataset, tmp_path)
    long_run = argv + ["--max_timesteps", "100000"]  # it cannot finish before the signal
    proc = subprocess.Popen(
        [sys.executable, "-m", "algorithms.offline.pogo_multi_jax", *long_run],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **xla_cache, "OMP_NUM_THREADS": "1"},
    )
    root = tmp_path / RUN
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None and not _time_to_stop(root, sig):
            time.sleep(0.01)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:  # a run that ignores the signal must not outlive the test
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode()
    stopped_at = _step_of(_latest(root))
    assert 10 <= stopped_at < STEPS, stderr  # really stopped mid-way
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, stderr
        assert _last_logged(root) > stopped_at  # rows to drop: the resume must cut the logs
        assert stopped_at % 10 == 0  # the last evaluation's checkpoint
    else:  # the checkpoint of the stretch it finished, named in one line
        assert proc.returncode == 75 == EXIT_STOPPED, stderr
        assert f"stopped: SIGTERM after update {stopped_at}: saved " in stderr
        assert stderr.rstrip().endswith("--resume continues")
        assert stopped_at % 5 == 0  # a stretch ends at every log_freq

    assert pogo_multi_jax.main(argv + ["--resume"]) == root
    _assert_same_run(root, clean)


def test_resume_refuses_a_changed_config_in_one_line(synthetic_dataset, tmp_path, clean):
    root = tmp_path / RUN
    shutil.copytree(clean, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    argv = _argv(synthetic_dataset, tmp_path, "--resume", "--batch_size", "16")
    with pytest.raises(SystemExit) as err:
        pogo_multi_jax.main(argv)
    message = str(err.value)
    assert message == (
        f"error: resume: batch_size is 16 but the run in {root} used 32; "
        "resume with the same config or use --overwrite"
    )
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_unreadable_latest_checkpoint_falls_back_to_the_previous(
    synthetic_dataset, tmp_path, clean, capsys
):
    """A truncated newest checkpoint is named and skipped; the run goes on from the one before
    and still ends as the clean run."""
    root = tmp_path / RUN
    shutil.copytree(clean, root)
    newest = _latest(root)
    newest.write_bytes(newest.read_bytes()[:100])
    run = pogo_multi_jax.setup(parse_config(_argv(synthetic_dataset, tmp_path, "--resume")))
    assert run.step == STEPS - 10
    assert f"checkpoint {newest} is unreadable" in capsys.readouterr().out
    pogo_multi_jax.train(run)
    _assert_same_run(root, clean)


def test_a_non_finite_state_is_never_checkpointed(clean_run):
    """The clean run's carry with NaN chain parameters: refused, naming them; nothing saved."""
    checkpoints = clean_run.root / "checkpoints"
    before = {p: p.read_bytes() for p in checkpoints.iterdir()}
    carry = clean_run.carry
    params = jax.tree_util.tree_map(lambda p: p.at[...].set(jnp.nan), carry["chain"]["params"])
    clean_run.carry = {**carry, "chain": {**carry["chain"], "params": params}}
    try:
        with pytest.raises(
            NonFiniteError, match=rf"step {STEPS}: non-finite values in chain\.params\."
        ):
            pogo_multi_jax.save_checkpoint(clean_run)
    finally:
        clean_run.carry = carry
    assert {p: p.read_bytes() for p in checkpoints.iterdir()} == before
