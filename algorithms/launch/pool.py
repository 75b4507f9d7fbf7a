"""Runs side by side as child processes: the local launcher, and the inside of a SLURM task.

Each run gets its share of the CPU threads (torch's OpenMP threads spin-wait: runs must not
share cores), optionally one GPU, and its log. A run is started with the command that continues
it from its directory (`sweep.command_now`), so the same pool finishes a sweep after any
interruption.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

from algorithms.launch.sweep import (
    REPO,
    Sweep,
    SweepRun,
    command_now,
    exit_kind,
    record_exit,
)


class Pool:
    """Start `runs` at most `jobs` at a time; `stop()` ends them each after a checkpoint."""

    def __init__(
        self,
        sweep: Sweep,
        runs: list[SweepRun],
        jobs: int,
        threads: int,
        gpus: list[str] | None = None,
    ):
        self.sweep = sweep
        self.pending = list(runs)
        self.jobs = jobs
        self.threads = threads
        self.gpus = gpus  # CUDA_VISIBLE_DEVICES of the slots, jobs // len(gpus) runs per GPU
        self.running: list[tuple[subprocess.Popen, SweepRun, int]] = []  # (process, run, slot)
        self.tally: Counter[str] = Counter()
        self.stopping = False

    def _start(self, run: SweepRun, slot: int) -> bool:
        """Start `run` in `slot`; False if it had finished earlier (never run again)."""
        cmd = command_now(run)
        if cmd is None:
            self.tally["done before"] += 1
            return False
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads), "PYTHONUNBUFFERED": "1"}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus[slot % len(self.gpus)]
        log = self.sweep.log_path(run)
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"start: {run.tag}", flush=True)
        with log.open("a") as f:  # the child keeps its own handle
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            proc = subprocess.Popen(
                [sys.executable, "-m", "algorithms.launch.child", *cmd],  # USR2 ignored, ...
                cwd=REPO,
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
            )
        record_exit(self.sweep.exit_path(run), proc.pid, None)  # started, not ended
        self.running.append((proc, run, slot))
        return True

    def _reap(self) -> None:
        for entry in list(self.running):
            proc, run, _ = entry
            if proc.poll() is None:
                continue
            self.running.remove(entry)
            record_exit(self.sweep.exit_path(run), proc.pid, proc.returncode)
            kind = exit_kind(proc.returncode)
            self.tally[kind] += 1
            note = {
                "failed": f" (exit {proc.returncode}; log: {self.sweep.log_path(run)})",
                "stopped": " (checkpointed)",
            }.get(kind, "")
            print(f"{kind}: {run.tag}{note}", flush=True)

    def run(self, should_stop=lambda: False, poll_s: float = 0.5) -> Counter[str]:
        """Until every run has ended; once `should_stop()` no run starts and the running ones
        get SIGTERM. Returns how many ended "done", "failed", "stopped" (checkpointed),
        "done before" (skipped) or were "not started"."""
        while self.running or (self.pending and not self.stopping):
            busy = {slot for *_, slot in self.running}
            free = [s for s in range(self.jobs) if s not in busy]
            while self.pending and free and not self.stopping:
                if self._start(self.pending.pop(0), free[0]):
                    free.pop(0)
            if not self.running:
                continue
            time.sleep(poll_s)
            if should_stop() and not self.stopping:
                self.stop(wait_s=None)
            self._reap()
        self.tally["not started"] += len(self.pending)
        return self.tally

    def stop(self, wait_s: float | None) -> None:
        """SIGTERM every running run (each checkpoints the update it finished and exits 75);
        with `wait_s`, wait that long for them and record how they ended."""
        self.stopping = True
        for proc, _, _ in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        if wait_s is None:
            return
        deadline = time.monotonic() + wait_s
        for proc, _, _ in self.running:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                pass
        self._reap()
