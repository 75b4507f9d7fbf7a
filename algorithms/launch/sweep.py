"""A sweep: the runs of one multi-run command, where each writes, and what state each is in.

A run is one command of a main (`python -m algorithms.offline.pogo_multi_main ...`). The sweep
keeps each run's command without `--resume`/`--overwrite`: whichever launcher starts the run
decides those from the run's directory at that moment (`command_now`), so a run started again
after a preemption, a crash or a resubmission continues from its checkpoint, and a finished run
is never run again.

    <sweep_dir>/sweep.json        the runs (tag, command, run directory) and the submissions
    <sweep_dir>/logs/<tag>.log    each run's output, appended on every start
    <sweep_dir>/exits/<tag>.json  each run's last start: where, and its exit status once ended
"""

from __future__ import annotations

import dataclasses
import json
import socket
from pathlib import Path

from algorithms.errors import LaunchError
from algorithms.offline.config import parse_config
from algorithms.offline.run_io import (
    EXIT_STOPPED,
    CheckpointStore,
    run_dir,
    whole_lines,
    write_atomic,
)

REPO = Path(__file__).resolve().parents[2]  # where every run starts
#: flags a launcher adds from the run's directory (never kept in a sweep's commands)
RESUME_FLAGS = ("--resume", "--overwrite")


@dataclasses.dataclass(frozen=True)
class SweepRun:
    tag: str  # unique within the sweep: names its log and exit record
    argv: tuple[str, ...]  # the command, without --resume/--overwrite
    run_dir: str  # where the run writes logs/eval.csv and checkpoints/
    total_steps: int  # updates of the whole run (joint + settle phase): done at this step


def describe(argv: list[str]) -> SweepRun:
    """A run from its command `python -m <main> <config args>`; its config is parsed (and
    checked) here, so a bad one fails before anything is submitted."""
    if "-m" not in argv[:-1]:
        raise ValueError(f"not a command of a main (python -m ...): {' '.join(argv)}")
    start = argv.index("-m") + 2  # the main's own arguments start here
    kept = [a for a in argv[start:] if a not in RESUME_FLAGS]
    if "--resume_step" in kept:
        at = kept.index("--resume_step")
        del kept[at : at + 2]
    config = parse_config(kept)
    root = REPO / run_dir(config)  # runs start in the repository (an absolute path stays)
    # e.g. w10_iql_hopper_medium-v2_seed0 (output_dir's last name, then the run's)
    tag = "_".join([Path(config.output_dir).name, config.algorithm, *root.parts[-3:-1]])
    tag += f"_seed{config.seed}"
    return SweepRun(tag, tuple(argv[:start] + kept), str(root), config.total_steps)


def last_step(root: Path) -> int:
    """The step of the run's last evaluation (0 before the first)."""
    eval_csv = root / "logs" / "eval.csv"
    rows = whole_lines(eval_csv)[1:] if eval_csv.is_file() else []  # not a row a kill tore
    return int(rows[-1].split(",")[0]) if rows else 0


def run_state(root: Path, total_steps: int) -> str:
    """'done' (evaluated at the last step), 'partial' (resumable), 'stale' (logs, no
    checkpoint: start again) or 'new'."""
    if not (root / "logs" / "eval.csv").is_file():
        return "new"
    if last_step(root) >= total_steps:
        return "done"
    if CheckpointStore(root / "checkpoints", keep=1).latest_path() is not None:
        return "partial"
    return "stale"


def command_now(run: SweepRun) -> list[str] | None:
    """The command that continues `run` from its directory now; None once it is done."""
    state = run_state(Path(run.run_dir), run.total_steps)
    extra = {"done": None, "partial": ["--resume"], "stale": ["--overwrite"], "new": []}[state]
    return None if extra is None else [*run.argv, *extra]


class Sweep:
    """`sweep.json` in a sweep's directory: its runs, and every submission of them."""

    def __init__(self, directory: Path, runs: list[SweepRun], submissions: list[dict]):
        self.directory = directory
        self.runs = runs
        self.submissions = submissions  # [{"launcher": "slurm", "tasks": [[job id, [tag, ...]]]}]

    @classmethod
    def open(cls, directory: Path) -> Sweep:
        """The sweep in `directory`, or a new empty one there (written by `save`)."""
        if (directory / "sweep.json").is_file():
            return cls.load(directory)
        return cls(directory, [], [])

    def add(self, commands: list[list[str]]) -> list[SweepRun]:
        """The runs of these commands, added to the sweep (a run already in it takes the new
        command, e.g. a longer --max_timesteps; the main refuses a change it cannot resume)."""
        runs = [describe(cmd) for cmd in commands]
        tags = [r.tag for r in runs]
        if len(set(tags)) != len(tags):
            twice = sorted({t for t in tags if tags.count(t) > 1})
            raise ValueError(f"the same run twice: {', '.join(twice)}")
        new = {r.tag: r for r in runs}
        self.runs = [new.pop(r.tag, r) for r in self.runs] + list(new.values())
        return runs

    @classmethod
    def load(cls, directory: Path) -> Sweep:
        path = directory / "sweep.json"
        if not path.is_file():
            raise LaunchError(f"{path}: no sweep here (a launcher writes it)")
        data = json.loads(path.read_text())
        runs = [SweepRun(**{**r, "argv": tuple(r["argv"])}) for r in data["runs"]]
        return cls(directory, runs, data["submissions"])

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {
            "runs": [dataclasses.asdict(r) for r in self.runs],
            "submissions": self.submissions,
        }
        write_atomic(self.directory / "sweep.json", json.dumps(data, indent=1) + "\n")

    def log_path(self, run: SweepRun) -> Path:
        return self.directory / "logs" / f"{run.tag}.log"

    def exit_path(self, run: SweepRun) -> Path:
        return self.directory / "exits" / f"{run.tag}.json"


def record_exit(path: Path, pid: int, status: int | None) -> None:
    """A run's last start (`status` None while it runs), then its exit status."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"host": socket.gethostname(), "pid": pid, "exit": status}
    write_atomic(path, json.dumps(record) + "\n")


def read_exit(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def exit_kind(status: int) -> str:
    """'done' (0), 'stopped' (checkpointed on a signal: resumable) or 'failed'."""
    return {0: "done", EXIT_STOPPED: "stopped"}.get(status, "failed")
