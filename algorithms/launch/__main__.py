"""A sweep's runs from the command line.

    python -m algorithms.launch status   <sweep_dir>            # per run: state, step, log
    python -m algorithms.launch resubmit <sweep_dir> [options]  # continue what is unfinished
    <commands, one per line> | python -m algorithms.launch run <sweep_dir> [options]

`run` is what `scripts/sweep.sh` calls. A resubmission (or a second `run`) starts only runs that
are neither done nor running nor queued, each continued from its checkpoint; nothing a finished
run wrote is touched.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections import Counter
from pathlib import Path

from algorithms.errors import PogoError
from algorithms.launch.launcher import add_launcher_args, launch, run_states
from algorithms.launch.sweep import Sweep
from algorithms.offline.run_io import EXIT_STOPPED, StopSignal


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m algorithms.launch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="each run's state")
    status.add_argument("sweep_dir", type=Path)
    for name in ("run", "resubmit"):
        p = sub.add_parser(name, help="run commands from stdin" if name == "run" else
                           "continue every unfinished run of the sweep")  # fmt: skip
        p.add_argument("sweep_dir", type=Path)
        p.add_argument("--jobs", type=int, default=1, help="local: runs at a time")
        p.add_argument("--threads", type=int, help="local: OMP_NUM_THREADS per run")
        add_launcher_args(p)
    return parser.parse_args(argv)


def print_status(sweep_dir: Path) -> int:
    rows = run_states(Sweep.load(sweep_dir))
    width = max((len(run.tag) for run, _, _ in rows), default=0)
    for run, state, detail in rows:
        print(f"{run.tag:<{width}}  {state:<8} {detail}")
    tally = Counter(state for _, state, _ in rows)
    print("; ".join(f"{n} {state}" for state, n in sorted(tally.items())))
    return 0


def report(tally: Counter[str], launcher: str) -> int:
    """One summary line; the exit status: 1 if a run failed, 75 if one stopped on a signal."""
    print(f"sweep ({launcher}): " + ", ".join(f"{n} {k}" for k, n in sorted(tally.items()) if n))
    if tally["failed"]:
        return 1
    return EXIT_STOPPED if tally["stopped"] or tally["not started"] else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "status":
            return print_status(args.sweep_dir)
        if args.command == "run":
            commands = [shlex.split(line) for line in sys.stdin.read().splitlines() if line.strip()]
        else:
            commands = [list(run.argv) for run in Sweep.load(args.sweep_dir).runs]
        with StopSignal() as stop:
            tally = launch(args.sweep_dir, commands, args, lambda: stop.received is not None)
        return report(tally, args.launcher)
    except PogoError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
