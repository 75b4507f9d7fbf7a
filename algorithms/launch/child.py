"""Starts one run's command as the launcher's child: `python -m algorithms.launch.child CMD...`.

Set up here, in the new process, then kept through `exec` (not in a `preexec_fn`, which runs
Python between fork and exec, unsafe in a launcher with threads):
* USR2 ignored: SLURM signals every process of a task (its warning before a time limit or a
  preemption), and USR2 would kill a run unsaved; the task forwards SIGTERM instead;
* SIGTERM when the launcher dies (Linux): the run checkpoints and stops, so no orphan goes on
  writing a run that a requeued task continues.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the launcher died before the line above: stop now
            sys.exit(1)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
