"""SLURM through submitit: one job array per submission, a few runs per array task.

Each task runs its runs side by side (`pool.Pool`: the local launcher's code, each run its
share of the task's CPUs and, with GPUs, `runs_per_gpu` runs per GPU). When SLURM warns the task
of its time limit or a preemption (USR2, `signal_delay_s` before), the task sends each run
SIGTERM, waits for its checkpoint (exit 75), and submitit requeues the task; started again, it
continues every unfinished run with `--resume` and never reruns a finished one.

Without an accounting daemon `sacct` is missing, and submitit's job-state calls need it; this
module reads states from `squeue` and from the runs' directories instead.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

from algorithms.errors import LaunchError
from algorithms.launch.pool import REPO, Pool
from algorithms.launch.sweep import Sweep, SweepRun

#: the seconds a task gives its runs to checkpoint after SIGTERM (the notice comes 90 s ahead)
STOP_GRACE_S = 60.0


@dataclasses.dataclass
class SlurmOptions:
    partition: str | None = None  # sbatch --partition (None: the cluster's default)
    time_min: int = 24 * 60  # each task's time limit; a task hitting it is requeued
    account: str | None = None  # sbatch --account
    qos: str | None = None  # sbatch --qos
    cpus_per_task: int | None = None  # None: one per run of the task
    gpus_per_task: int = 0  # 0 on CPU-only partitions
    runs_per_gpu: int = 1  # runs side by side on one GPU (per task without GPUs)
    array_parallelism: int = 256  # tasks of the array running at once
    max_requeues: int = 20  # time-limit requeues a task may take (preemptions are not counted)
    sbatch: dict[str, str] = dataclasses.field(default_factory=dict)  # any other sbatch key

    @property
    def runs_per_task(self) -> int:
        return self.runs_per_gpu * max(self.gpus_per_task, 1)

    def check(self) -> None:
        for key in ("time_min", "runs_per_gpu", "array_parallelism"):
            if getattr(self, key) < 1:
                raise LaunchError(f"--{key}: must be >= 1, got {getattr(self, key)}")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise LaunchError(f"--cpus_per_task: must be >= 1, got {self.cpus_per_task}")
        if self.gpus_per_task < 0 or self.max_requeues < 0:
            raise LaunchError("--gpus_per_task and --max_requeues: must be >= 0")


def check_slurm() -> None:
    """Fail in one line, before anything is written, where SLURM cannot be reached."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        raise LaunchError(
            "--launcher slurm: no sbatch/squeue on PATH (run on a SLURM login node; "
            "scripts/local_slurm.sh up starts a one-node SLURM here)"
        )
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise LaunchError(
            "--launcher slurm: submitit is not installed "
            "(pip install -r requirements/requirements.txt)"
        ) from None


class Task:
    """One array task: its runs, side by side. Requeued by submitit through `checkpoint`."""

    def __init__(self, sweep_dir: str, runs_per_gpu: int):
        self.sweep_dir = sweep_dir
        self.runs_per_gpu = runs_per_gpu
        self._pool: Pool | None = None

    def __getstate__(self) -> dict:
        return {"sweep_dir": self.sweep_dir, "runs_per_gpu": self.runs_per_gpu, "_pool": None}

    def __call__(self, tags: list[str]) -> dict[str, int]:
        sweep = Sweep.load(Path(self.sweep_dir))
        runs = [r for r in sweep.runs if r.tag in set(tags)]
        gpus = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", os.cpu_count() or 1))
        jobs = min(len(runs), self.runs_per_gpu * len(gpus)) if gpus else len(runs)
        threads = max(cpus // max(jobs, 1), 1)
        print(f"task: {len(runs)} runs, {jobs} at a time, {threads} threads each", flush=True)
        self._pool = Pool(sweep, runs, jobs, threads, gpus or None)
        tally = self._pool.run()
        if tally["failed"] or tally["stopped"]:
            # the task fails in SLURM's eyes; `python -m algorithms.launch status` names the runs
            raise RuntimeError(
                f"{tally['failed']} runs failed, {tally['stopped']} stopped by a signal "
                f"(see {self.sweep_dir}/logs; `python -m algorithms.launch resubmit` continues)"
            )
        return dict(tally)

    def checkpoint(self, tags: list[str]):
        """On SLURM's USR2: each run checkpoints and exits, then submitit requeues this task
        with the same runs (each then continues from its directory)."""
        import submitit

        if self._pool is not None:
            self._pool.stop(wait_s=STOP_GRACE_S)
        return submitit.helpers.DelayedSubmission(Task(self.sweep_dir, self.runs_per_gpu), tags)


def submit(sweep: Sweep, runs: list[SweepRun], options: SlurmOptions) -> str:
    """Submit `runs` as one job array (runs_per_task runs per task); returns its job id."""
    import submitit

    groups = [
        [r.tag for r in runs[i : i + options.runs_per_task]]
        for i in range(0, len(runs), options.runs_per_task)
    ]
    executor = submitit.SlurmExecutor(
        folder=sweep.directory / "slurm" / "%j", max_num_timeout=options.max_requeues
    )
    cpus = options.cpus_per_task or options.runs_per_task
    params = dict(
        job_name=f"pogo-{sweep.directory.name}",
        time=options.time_min,
        cpus_per_task=cpus,
        array_parallelism=options.array_parallelism,
        stderr_to_stdout=True,
        setup=[f"cd {REPO}", f"export PYTHONPATH={REPO}${{PYTHONPATH:+:$PYTHONPATH}}"],
        additional_parameters=dict(options.sbatch),
    )
    if options.gpus_per_task:
        params["gpus_per_task"] = options.gpus_per_task
    for key in ("partition", "account", "qos"):
        if getattr(options, key):
            params[key] = getattr(options, key)
    executor.update_parameters(**params)
    try:
        jobs = executor.map_array(Task(str(sweep.directory), options.runs_per_gpu), groups)
    except subprocess.CalledProcessError as err:
        output = (err.output or b"").decode(errors="replace").strip()
        raise LaunchError(f"--launcher slurm: sbatch refused the array ({output})") from None
    # a one-task submission is a plain job ("6"), an array's tasks are "7_0", "7_1", ...
    tasks = [[job.job_id, tags] for job, tags in zip(jobs, groups)]
    sweep.submissions.append({"launcher": "slurm", "tasks": tasks})
    sweep.save()
    return jobs[0].job_id.split("_")[0]


def queue_states(sweep: Sweep) -> dict[str, str]:
    """{run tag: SLURM state (PENDING, RUNNING, ...)} of the sweep's tasks still in the queue."""
    if not sweep.submissions or shutil.which("squeue") is None:
        return {}
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:  # an empty queue assumed here would resubmit running tasks
        detail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "no output"
        raise LaunchError(f"squeue failed ({detail}): cannot tell which runs are queued")
    in_queue = dict(line.split("|", 1) for line in out.stdout.split() if "|" in line)
    states: dict[str, str] = {}
    for submission in sweep.submissions:
        for task_id, tags in submission["tasks"]:
            state = in_queue.get(task_id)
            if state is not None:
                for tag in tags:
                    states[tag] = state  # later submissions of a run override earlier ones
    return states
