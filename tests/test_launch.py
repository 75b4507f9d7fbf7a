"""The launcher (algorithms/launch): the local pool, status, resubmission, bad input, and a sweep
on a real one-node SLURM (scripts/local_slurm.sh; CI brings it up) preempted and requeued."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from algorithms.launch.sweep import Sweep

ROOT = Path(__file__).resolve().parents[1]
#: a few hundred updates of two algorithms on the synthetic dataset, with a settle phase
RUN_ARGS = ["--max_timesteps", "400", "--eval_freq", "100", "--settle_steps", "100"]
RUN_ARGS += ["--n_episodes", "2", "--batch_size", "32", "--device", "cpu", "--no_wandb"]
RUN_ARGS += ["--quiet"]


def sweep(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """scripts/sweep_hopper.sh as a user types it (medium, IQL and TD3+BC unless chosen)."""
    return subprocess.run(
        ["bash", str(ROOT / "scripts/sweep_hopper.sh"), "--datasets", "medium", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
        timeout=600,
    )


def launch_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "algorithms.launch", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def eval_tables(out: Path) -> dict[str, str]:
    """{run directory relative to out: its eval.csv}."""
    return {
        str(p.parent.parent.relative_to(out)): p.read_text()
        for p in sorted(out.rglob("logs/eval.csv"))
    }


def test_local_sweep_reports_a_failed_run_finishes_the_others_and_never_reruns_them(
    synthetic_dataset, tmp_path
):
    sweep_dir, out = tmp_path / "sweep", tmp_path / "out"
    common = ["--algorithms", "iql td3_bc", "--jobs", "2", "--sweep_dir", str(sweep_dir)]
    done = sweep(*common, "--seeds", "0", "--", "--dataset_path", str(synthetic_dataset),
                 "--output_dir", str(out), *RUN_ARGS)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sweep (local): 2 done" in done.stdout
    tables = eval_tables(out)
    assert sorted(tables) == ["iql/hopper/medium-v2/seed_0", "td3_bc/hopper/medium-v2/seed_0"]
    assert all(t.splitlines()[-1].startswith("500,") for t in tables.values())
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    # the same sweep with a second seed whose dataset is missing: it fails, the others are
    # finished already, and nothing they wrote is touched
    bad = sweep(*common, "--seeds", "0 1", "--", "--dataset_path", str(synthetic_dataset),
                "--output_dir", str(out), *RUN_ARGS, "--seed_dataset_hint", "x")  # fmt: skip
    assert bad.returncode == 2 and "seed_dataset_hint" in bad.stderr  # bad key: nothing runs
    assert not (out / "iql/hopper/medium-v2/seed_1").exists()

    missing = tmp_path / "missing.hdf5"
    runs = [
        f"{sys.executable} -m algorithms.offline.pogo_multi_main --config_path "
        f"configs/offline/pogo_multi/hopper/medium_v2_{algo}.yaml --seed {seed} --dataset_path "
        f"{synthetic_dataset if seed == 0 else missing} --output_dir {out} {' '.join(RUN_ARGS)}"
        for algo in ("iql", "td3_bc")
        for seed in (0, 1)
    ]
    second = subprocess.run(
        [sys.executable, "-m", "algorithms.launch", "run", str(sweep_dir), "--jobs", "2"],
        input="\n".join(runs) + "\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 1, second.stdout + second.stderr
    assert "sweep (local): 2 done before, 2 failed" in second.stdout
    log = sweep_dir / "logs" / "out_iql_hopper_medium-v2_seed1.log"
    assert f"failed: out_iql_hopper_medium-v2_seed1 (exit 1; log: {log})" in second.stdout
    assert str(missing) in log.read_text()  # the run's own one-line error is in its log
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # finished runs untouched

    status = launch_cli("status", str(sweep_dir))
    assert status.returncode == 0, status.stderr
    lines = dict(line.split(None, 1) for line in status.stdout.splitlines()[:-1])
    assert lines["out_iql_hopper_medium-v2_seed0"].startswith("done     step 500/500")
    assert lines["out_td3_bc_hopper_medium-v2_seed1"].startswith("failed   step 0/500, exit 1")
    assert status.stdout.splitlines()[-1] == "2 done; 2 failed"


def test_slurm_without_sbatch_fails_in_one_line_before_writing(synthetic_dataset, tmp_path):
    sweep_dir = tmp_path / "sweep"
    bare = tmp_path / "bin"  # a PATH with bash and python only: no sbatch
    bare.mkdir()
    for tool in ("bash", "env", "nproc", "dirname", "sed"):
        (bare / tool).symlink_to(shutil.which(tool))
    result = sweep(
        "--algorithms", "iql", "--seeds", "0", "--launcher", "slurm", "--sweep_dir",
        str(sweep_dir), "--", "--dataset_path", str(synthetic_dataset), *RUN_ARGS,
        env={"PATH": str(bare)},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --launcher slurm: no sbatch/squeue on PATH (run on a SLURM login node; "
        "scripts/local_slurm.sh up starts a one-node SLURM here)"
    )
    assert not sweep_dir.exists()


def test_launcher_options_are_checked_before_anything_is_written(synthetic_dataset, tmp_path):
    sweep_dir = tmp_path / "sweep"
    result = sweep(
        "--algorithms", "iql", "--seeds", "0", "--runs_per_gpu", "2", "--sweep_dir",
        str(sweep_dir), "--", "--dataset_path", str(synthetic_dataset), *RUN_ARGS,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --runs_per_gpu: no GPU is visible here (use --jobs on a CPU)"
    )
    assert not sweep_dir.exists()
    assert launch_cli("status", str(sweep_dir)).stderr.strip() == (
        f"error: {sweep_dir}/sweep.json: no sweep here (a launcher writes it)"
    )


def _require_slurm() -> None:
    """This test needs a SLURM it may submit to: CI starts one (scripts/local_slurm.sh up)."""
    probe = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    if shutil.which("sbatch") is None or probe.returncode != 0 or not probe.stdout.strip():
        pytest.fail(
            "no SLURM cluster to submit to: run `sudo scripts/local_slurm.sh up` first "
            "(or leave it out: pytest -m 'not slurm')"
        )


@pytest.mark.slurm
def test_a_failing_squeue_stops_status_and_resubmission_in_one_line(synthetic_dataset, tmp_path):
    """SLURM's own squeue, failing (here on a configuration file it cannot use): status and
    resubmit refuse to guess the queue, since an empty one would resubmit queued tasks."""
    if shutil.which("squeue") is None:
        pytest.fail("needs SLURM's commands (squeue): CI installs them (scripts/local_slurm.sh)")
    sweep_dir = tmp_path / "sweep"
    sweep_ = Sweep.open(sweep_dir)
    command = [sys.executable, "-m", "algorithms.offline.pogo_multi_main", "--algorithm", "iql"]
    command += ["--dataset_path", str(synthetic_dataset), "--output_dir", str(tmp_path / "out")]
    (run,) = sweep_.add([command + RUN_ARGS])
    sweep_.submissions.append({"launcher": "slurm", "tasks": [["7_0", [run.tag]]]})
    sweep_.save()
    before = (sweep_dir / "sweep.json").read_text()
    conf = tmp_path / "slurm.conf"
    conf.write_text("")  # squeue: "fatal: Unable to process configuration file"
    for args in (["status"], ["resubmit", "--launcher", "slurm"]):
        result = launch_cli(args[0], str(sweep_dir), *args[1:], env={"SLURM_CONF": str(conf)})
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip() == (
            "error: squeue failed (squeue: fatal: Unable to process configuration file): "
            "cannot tell which runs are queued"
        )
    assert (sweep_dir / "sweep.json").read_text() == before  # nothing submitted
    assert not (tmp_path / "out").exists()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slurm
def test_slurm_sweep_survives_a_preemption_with_the_local_eval_tables(synthetic_dataset, tmp_path):
    _require_slurm()
    runs = ["--algorithms", "iql td3_bc", "--seeds", "0 1"]
    data = ["--dataset_path", str(synthetic_dataset), *RUN_ARGS]
    local = sweep(*runs, "--jobs", "2", "--sweep_dir", str(tmp_path / "local_sweep"), "--",
                  *data, "--output_dir", str(tmp_path / "local"))  # fmt: skip
    assert local.returncode == 0, local.stdout + local.stderr

    sweep_dir, out = tmp_path / "slurm_sweep", tmp_path / "slurm"
    submitted = sweep(*runs, "--launcher", "slurm", "--runs_per_gpu", "2", "--time_min", "60",
                      "--sweep_dir", str(sweep_dir), "--", *data, "--output_dir", str(out))  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "4 runs in 2 tasks (2 per task)" in submitted.stdout
    job = submitted.stdout.split("submitted job array ")[1].split(":")[0]

    # preempt task 0 the way SLURM does (its warning signal, USR2) once one of its runs has
    # checkpointed and before it is done; the task checkpoints its runs and is requeued
    first = out / "iql/hopper/medium-v2/seed_0"
    _wait(lambda: any((first / "checkpoints").glob("checkpoint_*.pt")), 240, "a checkpoint")
    assert not (first / "logs/eval.csv").read_text().splitlines()[-1].startswith("500,")
    subprocess.run(["scancel", "--signal=USR2", f"{job}_0"], check=True)

    status = lambda: launch_cli("status", str(sweep_dir)).stdout  # noqa: E731
    _wait(lambda: status().splitlines()[-1] == "4 done", 420, "every run done")
    assert eval_tables(out) == eval_tables(tmp_path / "local")  # number for number
    task_log = (sweep_dir / "slurm" / f"{job}_0" / f"{job}_0_0_log.out").read_text()
    assert "this job is preempted" in task_log and f"Requeued job {job}_0" in task_log
    for seed in (0, 1):  # both runs of task 0 were stopped, then continued from a checkpoint
        log = (sweep_dir / "logs" / f"slurm_iql_hopper_medium-v2_seed{seed}.log").read_text()
        assert "stopped: SIGTERM after update" in log and "resuming " in log

    # resubmitting a finished sweep submits nothing and rewrites nothing
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = launch_cli("resubmit", str(sweep_dir), "--launcher", "slurm")
    assert again.returncode == 0, again.stderr
    assert "sweep (slurm): 4 done before" in again.stdout and "submitted job" not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_sigusr2_does_not_reach_a_run_unsaved(synthetic_dataset, tmp_path):
    """SLURM sends its warning to every process of a task: a run (started by the pool) ignores
    it and keeps training; only the task's SIGTERM stops it, after a checkpoint."""
    from algorithms.launch.pool import Pool
    from algorithms.launch.sweep import Sweep

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "algorithms.offline.pogo_multi_main", "--config_path",
           "configs/offline/pogo_multi/hopper/medium_v2_iql.yaml", "--dataset_path",
           str(synthetic_dataset), "--output_dir", str(out), *RUN_ARGS,
           "--max_timesteps", "100000", "--eval_freq", "50"]  # fmt: skip
    sweep_ = Sweep.open(tmp_path / "sweep")
    runs = sweep_.add([cmd])
    pool = Pool(sweep_, runs, jobs=1, threads=1)
    pool._start(runs[0], 0)
    proc = pool.running[0][0]
    latest = out / "iql/hopper/medium-v2/seed_0/checkpoints/latest"
    _wait(lambda: latest.exists(), 120, "a first checkpoint")
    proc.send_signal(signal.SIGUSR2)
    time.sleep(1.0)
    assert proc.poll() is None  # still training
    pool.stop(wait_s=60)
    assert proc.returncode == 75
    assert pool.tally == {"stopped": 1}


def test_a_run_whose_launcher_dies_checkpoints_and_stops(synthetic_dataset, tmp_path):
    """kill -9 of the launcher (a task killed past its grace time, a login shell gone): its run
    gets SIGTERM, checkpoints the update it finished and exits, instead of writing on as an
    orphan beside the run a requeued task starts."""
    out, sweep_dir = tmp_path / "out", tmp_path / "sweep"
    cmd = [sys.executable, "-m", "algorithms.offline.pogo_multi_main", "--config_path",
           "configs/offline/pogo_multi/hopper/medium_v2_iql.yaml", "--dataset_path",
           str(synthetic_dataset), "--output_dir", str(out), *RUN_ARGS,
           "--max_timesteps", "100000", "--eval_freq", "50"]  # fmt: skip
    launcher = subprocess.Popen(
        [sys.executable, "-m", "algorithms.launch", "run", str(sweep_dir)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    launcher.stdin.write(" ".join(cmd) + "\n")
    launcher.stdin.close()
    latest = out / "iql/hopper/medium-v2/seed_0/checkpoints/latest"
    _wait(lambda: latest.exists(), 120, "a first checkpoint")
    launcher.kill()
    launcher.wait()
    log = sweep_dir / "logs" / "out_iql_hopper_medium-v2_seed0.log"
    try:
        _wait(lambda: "--resume continues" in log.read_text(), 60, "the orphaned run to stop")
    finally:  # never leave an orphan training on after a failure
        pid = json.loads((sweep_dir / "exits" / f"{log.stem}.json").read_text())["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    step = int(log.read_text().split("stopped: SIGTERM after update ")[1].split(":")[0])
    assert latest.read_text().strip() == f"checkpoint_{step:010d}.pt"
