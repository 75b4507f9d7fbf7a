"""Runs that survive: SIGKILL or SIGTERM + --resume, unreadable checkpoints, NaN guards, determinism."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from algorithms.errors import CheckpointError
from algorithms.offline import pogo_multi_main
from algorithms.offline.config import parse_config
from algorithms.offline.run_io import EXIT_STOPPED
from algorithms.offline.utils_pytorch import NonFiniteError, named_tensors
from tests.conftest import write_synthetic_d4rl

ROOT = Path(__file__).resolve().parents[1]


def _final_state(root: Path) -> dict:
    latest = (root / "checkpoints" / "latest").read_text().strip()
    return torch.load(root / "checkpoints" / latest, weights_only=False)


def _logs(root: Path) -> tuple[str, str]:
    return (
        (root / "logs" / "eval.csv").read_text(),
        (root / "logs" / "train.jsonl").read_text(),
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_or_stopped_run_resumes_as_an_uninterrupted_one(tiny_run_args, tmp_path, sig):
    """SIGKILL loses the updates since the last checkpoint; SIGTERM (a preempted job) first
    checkpoints the update it finished. Either way --resume ends where a clean run ends."""
    steps = 300
    argv = tiny_run_args("iql", 3, max_timesteps=steps, eval_freq=50, log_freq=10, n_episodes=1)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    killed_argv = argv + ["--output_dir", str(killed_dir)]

    proc = subprocess.Popen(
        [sys.executable, "-m", "algorithms.offline.pogo_multi_main", *killed_argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    latest = killed_dir / "iql" / "hopper" / "medium-v2" / "seed_0" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "checkpoint_0000000100.pt":
            break
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait()
    stderr = proc.stderr.read().decode()
    killed_at = int(latest.read_text().strip()[len("checkpoint_") : -len(".pt")])
    assert 100 <= killed_at < steps  # really stopped mid-way
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, stderr
    else:  # the checkpoint is of the update it stopped after, named in one line
        assert proc.returncode == 75 == EXIT_STOPPED, stderr  # the status the docs promise
        assert f"stopped: SIGTERM after update {killed_at}: saved " in stderr
        assert stderr.rstrip().endswith("--resume continues")

    resumed = pogo_multi_main.main(killed_argv + ["--resume"])
    clean = pogo_multi_main.main(argv + ["--output_dir", str(clean_dir)])

    a, b = _final_state(resumed), _final_state(clean)
    assert a["step"] == b["step"] == steps
    tensors_a = dict(named_tensors({"trainer": a["trainer"], "chain": a["chain"]}))
    tensors_b = dict(named_tensors({"trainer": b["trainer"], "chain": b["chain"]}))
    assert tensors_a.keys() == tensors_b.keys()
    for key in tensors_a:
        assert torch.equal(tensors_a[key], tensors_b[key]), key
    # no duplicated or lost rows: the logs equal the uninterrupted run's
    assert _logs(resumed) == _logs(clean)


# The main, with update 12 made long (LONG_UPDATE seconds) and announced in a file: a Ctrl-C
# sent during it arrives mid-update, as one does in a real run.
LONG_UPDATE = 6.0
SLOW_MAIN = f"""
import sys, time
from pathlib import Path
from algorithms.offline import iql, pogo_multi_main
train = iql.ImplicitQLearning.train
def slow(self, batch):
    if self.total_it == 11:
        Path(sys.argv[1]).write_text("update 12")
        time.sleep({LONG_UPDATE})
    return train(self, batch)
iql.ImplicitQLearning.train = slow
pogo_multi_main.main(sys.argv[2:])
"""


@pytest.mark.parametrize("presses", [1, 2])
def test_a_second_ctrl_c_stops_at_once_without_a_checkpoint(tiny_run_args, tmp_path, presses):
    """One Ctrl-C lets update 12 finish, checkpoints it and exits 75; a second one, 0.3 s later,
    ends the run at once (as Ctrl-C does: SIGINT's status) and writes no checkpoint."""
    argv = tiny_run_args("iql", 2, max_timesteps=1000, eval_freq=10, n_episodes=1)
    marker = tmp_path / "in_update_12"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_MAIN, str(marker), *argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert marker.exists(), proc.stderr.read().decode()
    checkpoints = tmp_path / "results" / "iql" / "hopper" / "medium-v2" / "seed_0" / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("*.pt")) == ["checkpoint_0000000010.pt"]
    proc.send_signal(signal.SIGINT)
    if presses == 2:
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
    pressed = time.time()
    proc.wait(timeout=120)
    took = time.time() - pressed
    stderr = proc.stderr.read().decode()
    names = sorted(p.name for p in checkpoints.glob("*.pt"))
    if presses == 1:  # the update ran to its end, then its checkpoint
        assert took > LONG_UPDATE - 1.5, stderr
        assert proc.returncode == 75, stderr
        assert names == ["checkpoint_0000000010.pt", "checkpoint_0000000012.pt"]
        assert "stopped: SIGINT after update 12: saved " in stderr
    else:  # at once: not the rest of the long update, and nothing saved
        assert took < LONG_UPDATE / 2, stderr
        assert proc.returncode in (-signal.SIGINT, 128 + signal.SIGINT), stderr
        assert names == ["checkpoint_0000000010.pt"]
        assert (checkpoints / "latest").read_text() == "checkpoint_0000000010.pt\n"
        assert "stopped:" not in stderr
        assert stderr.strip().splitlines()[-1] == (  # one line, no traceback
            "interrupted: the update in progress is not saved; --resume continues from the "
            "last checkpoint"
        )
        assert "Traceback" not in stderr


def test_a_gpu_checkpoint_resumes_on_the_cpu(tiny_run_args, tmp_path):
    """A CUDA generator's state (16 bytes) does not load into a CPU generator: the sampler goes
    on from a stream seeded by it, the same one on every resume."""
    finals = []
    for copy in ("a", "b"):
        argv = tiny_run_args("td3_bc", 3, max_timesteps=20, output_dir=tmp_path / copy)
        root = pogo_multi_main.main(argv)
        path = root / "checkpoints" / (root / "checkpoints" / "latest").read_text().strip()
        state = torch.load(path, weights_only=False)
        state["buffer"] = {"generator": torch.arange(16, dtype=torch.uint8), "device": "cuda"}
        state["chain"]["stream"]["cuda"] = torch.arange(16, dtype=torch.uint8)
        torch.save(state, path)
        pogo_multi_main.main(argv + ["--max_timesteps", "30", "--resume"])
        finals.append((root / "logs" / "eval.csv").read_text())
    assert finals[0] == finals[1] and "\n30,2," in finals[0]


def test_a_moved_run_resumes_from_its_new_directory(tiny_run_args, tmp_path):
    old = pogo_multi_main.main(tiny_run_args("iql", 2, output_dir=tmp_path / "old"))
    new = tmp_path / "new" / old.relative_to(tmp_path / "old")
    new.parent.mkdir(parents=True)
    old.rename(new)
    argv = tiny_run_args("iql", 2, output_dir=tmp_path / "new", max_timesteps=30)
    assert pogo_multi_main.main(argv + ["--resume"]) == new
    assert (new / "logs" / "eval.csv").read_text().splitlines()[-1].startswith("30,1,")


def test_a_line_torn_by_a_kill_mid_write_is_dropped_on_resume(tiny_run_args, tmp_path):
    """A kill -9 (or a node lost) while a log line was being written leaves half a line; the
    resumed run drops it and ends with the logs of a run never interrupted."""
    whole = pogo_multi_main.main(tiny_run_args("td3_bc", 2, output_dir=tmp_path / "a"))
    part = pogo_multi_main.main(
        tiny_run_args("td3_bc", 2, output_dir=tmp_path / "b", max_timesteps=10)
    )
    with (part / "logs" / "train.jsonl").open("a") as f:
        f.write('{"step": 15, "critic_lo')
    with (part / "logs" / "eval.csv").open("a") as f:
        f.write("2")  # the first digit of step 20's row
    argv = tiny_run_args("td3_bc", 2, output_dir=tmp_path / "b") + ["--resume"]
    assert pogo_multi_main.main(argv) == part
    for name in ("eval.csv", "train.jsonl"):
        assert (part / "logs" / name).read_text() == (whole / "logs" / name).read_text()


def test_unreadable_latest_checkpoint_falls_back_to_the_previous(tiny_run_args, capsys):
    argv = tiny_run_args("td3_bc", 3, max_timesteps=30, eval_freq=10)
    root = pogo_multi_main.main(argv)
    newest = root / "checkpoints" / "checkpoint_0000000030.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    run = pogo_multi_main.setup(parse_config(argv + ["--resume", "--max_timesteps", "40"]))
    assert run.step == 20
    out = capsys.readouterr().out
    assert f"checkpoint {newest} is unreadable" in out
    # the rows of steps 21..30 are dropped: they come again from the resumed run
    assert [line.split(",")[0] for line in _logs(root)[0].splitlines()[1:]] == ["10"] * 3 + [
        "20"
    ] * 3
    pogo_multi_main.train(run)
    steps = [line.split(",")[0] for line in _logs(root)[0].splitlines()[1:]]
    assert steps == [s for s in ("10", "20", "30", "40") for _ in range(3)]


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], r"resume: .* holds no run to resume"),
        (["--seed", "0", "--batch_size", "64"], r"resume: batch_size is 64 but the run .* used 32"),
    ],
)
def test_resume_refuses_a_missing_or_different_run(tiny_run_args, tmp_path, extra, message):
    if extra:
        pogo_multi_main.main(tiny_run_args("iql", 1, max_timesteps=10))
    with pytest.raises(SystemExit, match=message):
        pogo_multi_main.main(tiny_run_args("iql", 1, max_timesteps=10) + extra + ["--resume"])


def _files(root: Path) -> dict[str, bytes]:
    """Every file under the run's directory, by relative path: what a refused resume must keep."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("key", ["state_mean", "state_std"])
def test_resume_refuses_a_dataset_whose_statistics_differ(tiny_run_args, tmp_path, key):
    """The same file name, other data: the run's states would be normalised otherwise than the
    checkpoint's networks learnt. One line naming the key; nothing already written is touched."""
    path = tmp_path / "data.hdf5"
    write_synthetic_d4rl(path)
    with h5py.File(path, "r+") as f:  # state 0: quarters, whose float32 sums are exact
        obs = f["observations"][...]
        obs[:, 0], obs[:2, 0] = 0.5, [0.25, 0.75]
        f["observations"][...] = obs
    argv = tiny_run_args("iql", 2, dataset_path=path, max_timesteps=10, eval_freq=10)
    root = pogo_multi_main.main(argv)
    written = _files(root)
    assert "checkpoints/checkpoint_0000000010.pt" in written and "logs/eval.csv" in written
    with h5py.File(path, "r+") as f:
        if key == "state_mean":  # every state shifted
            obs = obs + np.float32(0.5)
        else:  # two values of state 0 spread apart with the same sum: the same mean, bit for
            obs[:2, 0] = [-1.5, 2.5]  # bit, and another std
        f["observations"][...] = obs
    with pytest.raises(SystemExit) as exit_info:
        pogo_multi_main.main(argv + ["--max_timesteps", "20", "--resume"])
    checkpoint = root / "checkpoints" / "checkpoint_0000000010.pt"
    assert str(exit_info.value.code) == (
        f"error: resume: the dataset's {key} differs from the one in {checkpoint}; "
        "resume on the same dataset or use --overwrite"
    )
    assert _files(root) == written  # no log row, config or checkpoint lost or changed


def test_resume_refuses_a_checkpoint_of_the_other_chain_layout(tiny_run_args, tmp_path):
    """The config check names vectorize_chain; the chain itself also refuses the other layout."""
    pogo_multi_main.main(tiny_run_args("iql", 3, max_timesteps=10, vectorize_chain=False))
    argv = tiny_run_args("iql", 3, max_timesteps=20, vectorize_chain=True) + ["--resume"]
    with pytest.raises(SystemExit, match=r"resume: vectorize_chain is True but the run .* False"):
        pogo_multi_main.main(argv)
    loop, stacked = (
        pogo_multi_main.setup(
            parse_config(tiny_run_args("iql", 3, vectorize_chain=v, output_dir=tmp_path / str(v)))
        )
        for v in (False, True)
    )
    source = tmp_path / "checkpoint.pt"
    with pytest.raises(
        CheckpointError, match=r"other layout .* resume with --vectorize_chain false$"
    ):
        stacked.chain.load_state_dict(loop.chain.state_dict(), source)
    with pytest.raises(
        CheckpointError, match=r"other layout .* resume with --vectorize_chain true$"
    ):
        loop.chain.load_state_dict(stacked.chain.state_dict(), source)


def test_non_finite_loss_stops_the_run_naming_step_and_loss(tmp_path, tiny_run_args):
    path = tmp_path / "huge_rewards.hdf5"
    write_synthetic_d4rl(path)
    with h5py.File(path, "r+") as f:
        f["rewards"][...] = np.float32(3e38)  # finite, but squared it overflows
    argv = tiny_run_args("td3_bc", 1, dataset_path=path)
    with pytest.raises(SystemExit, match=r"step 1: actor 0 / critics: loss critic_loss is inf"):
        pogo_multi_main.main(argv)


def _checkpoints_on_disk(root: Path) -> dict[str, dict]:
    """Every checkpoint file the run left, loaded: {file name: state}."""
    paths = sorted((root / "checkpoints").glob("checkpoint_*.pt"))
    return {p.name: torch.load(p, weights_only=False) for p in paths}


def _non_finite(state: dict) -> list[str]:
    """The names of the checkpoint's trainer and chain tensors that hold NaN or Inf."""
    tensors = named_tensors({"trainer": state["trainer"], "chain": state["chain"]})
    return [k for k, t in tensors if t.is_floating_point() and not torch.isfinite(t).all()]


def _message_it_stops_with(run: pogo_multi_main.Run) -> str:
    """Train until the NaN guard stops the run; its one-line message up to the resume hint,
    which must name the checkpoint of update 10 (the last one before the NaN)."""
    with pytest.raises(NonFiniteError) as err:
        pogo_multi_main.train(run)
    good = run.root / "checkpoints" / "checkpoint_0000000010.pt"
    head, hint = str(err.value).split("; ", 1)
    assert hint == f"last good checkpoint: {good} (continue from it with --resume)"
    return head


@pytest.mark.parametrize("vectorize", [True, False])
def test_non_finite_chain_loss_names_the_actor_and_keeps_the_last_good_checkpoint(
    tiny_run_args, vectorize
):
    argv = tiny_run_args("iql", 3, eval_freq=10, vectorize_chain=vectorize)
    run = pogo_multi_main.setup(parse_config(argv))
    assert run.chain.vectorized == vectorize
    train = run.trainer.train

    def poisoned(batch):
        if run.step >= 14:  # actor 2's weights turn NaN before the chain step of update 15
            with torch.no_grad():  # (through the views into the stacked ensemble, if vectorised)
                for p in run.chain.actors[2].parameters():
                    p.fill_(float("nan"))
        return train(batch)

    run.trainer.train = poisoned
    assert _message_it_stops_with(run) == "step 15: actor 2: loss chain/energy_2 is nan"
    good = run.root / "checkpoints" / "checkpoint_0000000010.pt"
    # every checkpoint on disk, not only the one written before the NaN: none was written
    # after it (the run stopped at update 15, before its own checkpoint), and none is non-finite
    on_disk = _checkpoints_on_disk(run.root)
    assert list(on_disk) == [good.name]
    assert {name: _non_finite(state) for name, state in on_disk.items()} == {good.name: []}
    assert (run.root / "checkpoints" / "latest").read_text() == good.name + "\n"


def test_losses_are_checked_at_the_next_log_step_naming_the_first_bad_update(tiny_run_args):
    """No host read per update: update 13's NaN loss is found at the log step 20 (the first
    read after it), the message names update 13, and nothing after update 10 was written."""
    argv = tiny_run_args("td3_bc", 3, max_timesteps=30, log_freq=10, eval_freq=10)
    run = pogo_multi_main.setup(parse_config(argv))
    train = run.trainer.train
    seen = []

    def poisoned(batch):
        log = train(batch)
        seen.append(run.step + 1)
        if run.step + 1 in (13, 15):  # this update's critic loss reads NaN
            log["critic_loss"] = torch.tensor(float("nan"))
        return log

    run.trainer.train = poisoned
    assert _message_it_stops_with(run) == "step 13: actor 0 / critics: loss critic_loss is nan"
    good = run.root / "checkpoints" / "checkpoint_0000000010.pt"
    assert seen[-1] == 20  # the updates went on to the read at the log step
    logged = [json.loads(x) for x in (run.root / "logs" / "train.jsonl").read_text().splitlines()]
    assert [line["step"] for line in logged] == [10]
    assert list(_checkpoints_on_disk(run.root)) == [good.name]


@pytest.mark.parametrize("vectorize", [True, False])
def test_non_finite_parameters_that_no_loss_sees_are_never_checkpointed(tiny_run_args, vectorize):
    """The chain's Polyak targets turn NaN after the chain step of update 20: every logged loss
    stays finite, so only the checkpoint guard stands between them and the disk at step 20."""
    argv = tiny_run_args("iql", 3, eval_freq=10, vectorize_chain=vectorize)
    run = pogo_multi_main.setup(parse_config(argv))
    update = run.chain.update

    def poisoned(states, actions):
        log = update(states, actions)
        if run.step == 19:  # during update 20 (run.step counts the updates done)
            with torch.no_grad():
                for p in run.chain.targets[-1].parameters():
                    p.fill_(float("nan"))
        return log

    run.chain.update = poisoned
    # the first tensor of the poisoned target: the stacked ensemble's (every chain actor's
    # targets at once), or actor 2's own
    target = "chain.targets.0.params.log_std" if vectorize else "chain.targets.1.log_std"
    assert _message_it_stops_with(run) == f"step 20: non-finite values in {target}"
    good = run.root / "checkpoints" / "checkpoint_0000000010.pt"
    logged = [json.loads(x) for x in (run.root / "logs" / "train.jsonl").read_text().splitlines()]
    assert logged[-1]["step"] == 20  # the losses of update 20 were finite and logged
    assert all(math.isfinite(v) for line in logged for v in line.values())
    on_disk = _checkpoints_on_disk(run.root)
    assert list(on_disk) == [good.name]  # no checkpoint of step 20
    assert {name: _non_finite(state) for name, state in on_disk.items()} == {good.name: []}


def test_same_seed_gives_the_same_logs_twice(tiny_run_args, tmp_path):
    first = pogo_multi_main.main(tiny_run_args("sac_n", 3, output_dir=tmp_path / "a"))
    second = pogo_multi_main.main(tiny_run_args("sac_n", 3, output_dir=tmp_path / "b"))
    assert _logs(first) == _logs(second)


def test_dataset_with_wrong_action_size_fails_before_training(tmp_path, tiny_run_args):
    path = tmp_path / "wide_actions.hdf5"
    write_synthetic_d4rl(path)
    with h5py.File(path, "r+") as f:
        actions = f["actions"][...]
        del f["actions"]
        f["actions"] = np.concatenate([actions, actions], axis=1)  # 6 columns, Hopper has 3
    with pytest.raises(SystemExit, match=r"actions have 6 columns but env Hopper-v4 has action"):
        pogo_multi_main.main(tiny_run_args("iql", 3, dataset_path=path))
