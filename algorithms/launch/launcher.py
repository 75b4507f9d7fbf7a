"""One launcher for every multi-run command: `--launcher local` (a process pool, the default)
or `--launcher slurm` (job arrays through submitit); the same runs, the same commands."""

from __future__ import annotations

import argparse
import os
import socket
from collections import Counter
from pathlib import Path

from algorithms.errors import LaunchError
from algorithms.launch.pool import Pool
from algorithms.launch.slurm import SlurmOptions, check_slurm, queue_states, submit
from algorithms.launch.sweep import (
    Sweep,
    SweepRun,
    exit_kind,
    last_step,
    read_exit,
    run_state,
)

LAUNCHERS = ("local", "slurm")


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    """The launcher's options, the same in every multi-run command."""
    group = parser.add_argument_group("launcher")
    group.add_argument("--launcher", choices=LAUNCHERS, default="local")
    group.add_argument("--partition", help="slurm: sbatch --partition")
    defaults = SlurmOptions()  # one place for the defaults
    group.add_argument(
        "--time_min",
        type=int,
        default=defaults.time_min,
        help="slurm: time limit per task, minutes (default %(default)s)",
    )
    group.add_argument("--account", help="slurm: sbatch --account")
    group.add_argument("--qos", help="slurm: sbatch --qos")
    group.add_argument("--cpus_per_task", type=int, help="slurm: default one per run of a task")
    group.add_argument(
        "--gpus_per_task",
        type=int,
        default=defaults.gpus_per_task,
        help="slurm: GPUs of a task (default %(default)s)",
    )
    group.add_argument(
        "--runs_per_gpu",
        type=int,
        help="runs side by side on one GPU (slurm without GPUs: runs per task; default 1)",
    )
    group.add_argument(
        "--array_parallelism",
        type=int,
        default=defaults.array_parallelism,
        help="slurm: tasks at once (default %(default)s)",
    )
    group.add_argument(
        "--max_requeues",
        type=int,
        default=defaults.max_requeues,
        help="slurm: time-limit requeues (default %(default)s)",
    )
    group.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="slurm: any other sbatch parameter (repeatable), e.g. --sbatch constraint=a100",
    )


def slurm_options(args: argparse.Namespace) -> SlurmOptions:
    extra = {}
    for item in args.sbatch:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LaunchError(f"--sbatch: expected KEY=VALUE, got {item!r}")
        extra[key.lstrip("-")] = value
    options = SlurmOptions(
        partition=args.partition,
        time_min=args.time_min,
        account=args.account,
        qos=args.qos,
        cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task,
        runs_per_gpu=args.runs_per_gpu or 1,
        array_parallelism=args.array_parallelism,
        max_requeues=args.max_requeues,
        sbatch=extra,
    )
    options.check()
    return options


def local_slots(jobs: int, threads: int | None, runs_per_gpu: int | None):
    """(jobs, threads per run, GPUs of the slots): with --runs_per_gpu K, K runs per visible GPU."""
    gpus = None
    if runs_per_gpu is not None:
        if runs_per_gpu < 1:
            raise LaunchError(f"--runs_per_gpu: must be >= 1, got {runs_per_gpu}")
        import torch

        n_gpus = torch.cuda.device_count()
        if n_gpus == 0:
            raise LaunchError("--runs_per_gpu: no GPU is visible here (use --jobs on a CPU)")
        gpus = [str(i) for i in range(n_gpus)]
        jobs = runs_per_gpu * n_gpus
    if jobs < 1:
        raise LaunchError(f"--jobs: must be >= 1, got {jobs}")
    threads = threads or max((os.cpu_count() or 1) // jobs, 1)
    return jobs, threads, gpus


def launch(
    sweep_dir: Path,
    commands: list[list[str]],
    args: argparse.Namespace,
    should_stop=lambda: False,
) -> Counter[str]:
    """Run `commands` (each continued from its run's directory) with the chosen launcher. Local:
    blocks until they have ended, returns their tally. SLURM: submits what is neither done nor
    in the queue, returns {"submitted": n, "done before": m, "queued": q}."""
    if args.launcher == "slurm":
        check_slurm()
        options = slurm_options(args)
    else:
        jobs, threads, gpus = local_slots(args.jobs, args.threads, args.runs_per_gpu)
    sweep = Sweep.open(sweep_dir)
    try:
        runs = sweep.add(commands)
    except ValueError as err:  # a command that names no run, a run twice
        raise LaunchError(f"sweep {sweep_dir}: {err}") from None
    sweep.save()
    if args.launcher == "local":
        return Pool(sweep, runs, jobs, threads, gpus).run(should_stop)
    return submit_unfinished(sweep, runs, options)


def submit_unfinished(sweep: Sweep, runs: list[SweepRun], options: SlurmOptions) -> Counter[str]:
    """Submit the runs that are neither done nor waiting or running in SLURM's queue."""
    queued = queue_states(sweep)
    tally: Counter[str] = Counter()
    todo = []
    for run in runs:
        if run_state(Path(run.run_dir), run.total_steps) == "done":
            tally["done before"] += 1
        elif run.tag in queued:
            tally["queued"] += 1
        else:
            todo.append(run)
    if todo:
        job_id = submit(sweep, todo, options)
        n_tasks = -(-len(todo) // options.runs_per_task)
        print(
            f"submitted job array {job_id}: {len(todo)} runs in {n_tasks} tasks "
            f"({options.runs_per_task} per task); "
            f"status: python -m algorithms.launch status {sweep.directory}"
        )
    tally["submitted"] = len(todo)
    return tally


def run_states(sweep: Sweep) -> list[tuple[SweepRun, str, str]]:
    """(run, state, detail) for each run: done, running or queued (SLURM), failed (its exit
    status and log), stopped (checkpointed on a signal), partial (interrupted with a
    checkpoint), or new. `resubmit` continues every one that is not done, running or queued."""
    queued = queue_states(sweep)
    rows = []
    for run in sweep.runs:
        root = Path(run.run_dir)
        detail = f"step {last_step(root)}/{run.total_steps}"
        state = run_state(root, run.total_steps)
        record = read_exit(sweep.exit_path(run))
        if state == "done":
            rows.append((run, "done", detail))
        elif run.tag in queued:
            kind = "running" if queued[run.tag] in ("RUNNING", "COMPLETING") else "queued"
            rows.append((run, kind, f"{detail}, slurm {queued[run.tag].lower()}"))
        elif record is not None and record["exit"] is None and _alive(record):
            rows.append((run, "running", f"{detail}, pid {record['pid']}"))
        elif record is not None and record["exit"] is not None and record["exit"] != 0:
            kind = exit_kind(record["exit"])
            rows.append((run, kind, f"{detail}, exit {record['exit']}, log {sweep.log_path(run)}"))
        else:
            rows.append((run, "partial" if state == "partial" else "new", detail))
    return rows


def _alive(record: dict) -> bool:
    """A run started on this machine whose process still exists."""
    if record["host"] != socket.gethostname():
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
