"""A run's outputs: its directory, evaluation table, training log, checkpoints, wandb; and the
steps of resuming, starting and stopping a run that both mains (PyTorch, JAX) take alike."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import netrc
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from algorithms.datasets.envs import parse_d4rl_name
from algorithms.errors import CheckpointError, PogoError, WandbError
from algorithms.offline.config import PogoConfig, dump_config

EVAL_COLUMNS = (
    "step",
    "actor",
    "return_mean",
    "return_std",
    "normalized_score_mean",
    "normalized_score_std",
)
WANDB_HINT = "run with --no_wandb, or set WANDB_MODE=offline to log locally for a later sync"


def run_dir(config: PogoConfig) -> Path:
    """<output_dir>/<algorithm>/<family>/<task>/seed_<N>: results/iql/hopper/medium-v2/seed_0"""
    name = parse_d4rl_name(config.env)
    return (
        Path(config.output_dir) / config.algorithm / name.family / name.task / f"seed_{config.seed}"
    )


#: keys a resumed run may change: they do not alter what is trained
RESUMABLE_CHANGES = ("resume", "overwrite", "use_wandb", "max_timesteps", "device", "project")
RESUMABLE_CHANGES += ("group", "name", "log_freq", "keep_checkpoints", "quiet")
RESUMABLE_CHANGES += ("settle_steps", "settle_w2_weights", "settle_lr_schedule")  # settle later
RESUMABLE_CHANGES += ("settle_from_predecessor",)
RESUMABLE_CHANGES += ("output_dir", "resume_step")  # a moved run: the directory found is the run's


def check_run_dir(config: PogoConfig) -> Path:
    """Refuse to mix two runs' outputs: a held directory needs --resume or --overwrite.

    With --resume the directory must hold the same run (its config.yaml, up to
    RESUMABLE_CHANGES). Writes nothing.
    """
    root = run_dir(config)
    held = (root / "logs" / "eval.csv").exists()
    if config.resume:
        if not held:
            raise CheckpointError(f"resume: {root} holds no run to resume")
        _check_same_run(config, root / "logs" / "config.yaml")
    elif held and not config.overwrite:
        raise CheckpointError(
            f"output_dir: {root} already holds a run; pass --resume to continue it, "
            "--overwrite to replace it, or choose another output_dir/seed"
        )
    return root


def _check_same_run(config: PogoConfig, saved_path: Path) -> None:
    try:
        saved = yaml.safe_load(saved_path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(
            f"resume: cannot read the run's config {saved_path} ({err})"
        ) from None
    current = dataclasses.asdict(config)
    for key, value in current.items():
        if key not in RESUMABLE_CHANGES and saved.get(key) != value:
            raise CheckpointError(
                f"resume: {key} is {value!r} but the run in {saved_path.parent.parent} "
                f"used {saved.get(key)!r}; resume with the same config or use --overwrite"
            )


def prepare_run_dir(config: PogoConfig) -> Path:
    """Create the run's directories (after `check_run_dir`), clearing an overwritten run."""
    root = check_run_dir(config)
    if config.overwrite and (root / "logs" / "eval.csv").exists():
        shutil.rmtree(root / "logs")
        shutil.rmtree(root / "checkpoints", ignore_errors=True)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    return root


def init_wandb(config: PogoConfig, root: Path):
    """Start a wandb run, or fail now (before training) with a message that says what to do.

    A resumed run continues its wandb run (its id is kept in logs/wandb_id).
    """
    import wandb

    id_file = root / "logs" / "wandb_id"
    resume_id = id_file.read_text().strip() if config.resume and id_file.exists() else None

    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode not in ("offline", "disabled", "dryrun") and not _has_wandb_key():
        raise WandbError(f"use_wandb: no wandb account is set up (WANDB_API_KEY); {WANDB_HINT}")
    try:
        return wandb.init(
            config=dataclasses.asdict(config),
            project=config.project,
            group=config.group,
            name=f"{config.name}-{config.algorithm}-{config.env}-seed{config.seed}",
            id=resume_id,
            resume="allow" if resume_id else None,
            settings=wandb.Settings(init_timeout=60),
        )
    except Exception as err:  # network down, bad key, ...: wandb raises many types
        raise WandbError(f"use_wandb: wandb.init failed ({err}); {WANDB_HINT}") from None


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class RunLogger:
    """Writes `logs/eval.csv` (one row per step and actor), `logs/train.jsonl`, and to wandb."""

    def __init__(self, root: Path, config: PogoConfig):
        self.config = config
        self.logs = root / "logs"
        self.eval_path = self.logs / "eval.csv"
        self.train_path = self.logs / "train.jsonl"
        self.wandb_run = None

    def start(self, wandb_run=None, resumed_at: int | None = None) -> None:
        """Write the resolved config and the CSV header (nothing before this writes); a run
        resumed at a step drops the rows logged after it, which it logs again."""
        dump_config(self.config, self.logs / "config.yaml")
        if not self.eval_path.exists():
            with self.eval_path.open("w", newline="") as f:
                csv.writer(f).writerow(EVAL_COLUMNS)
        self.wandb_run = wandb_run
        if wandb_run is not None:
            (self.logs / "wandb_id").write_text(wandb_run.id + "\n")
        if resumed_at is not None:
            truncate_logs(self.logs, resumed_at)

    def log_train(self, step: int, values: dict[str, float]) -> None:
        with self.train_path.open("a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(values, step=step)

    def log_eval(self, step: int, returns: np.ndarray, scores: np.ndarray) -> None:
        """returns, scores: [n_actors, n_episodes]."""
        rows = [
            (step, i, r.mean(), r.std(), s.mean(), s.std())
            for i, (r, s) in enumerate(zip(returns, scores))
        ]
        with self.eval_path.open("a", newline="") as f:
            csv.writer(f).writerows(rows)
        if self.wandb_run is not None:
            flat: dict[str, Any] = {}
            for _, i, r_mean, _, s_mean, s_std in rows:
                flat[f"eval/actor_{i}/return"] = r_mean
                flat[f"eval/actor_{i}/d4rl_normalized_score"] = s_mean
                flat[f"eval/actor_{i}/d4rl_normalized_score_std"] = s_std
            self.wandb_run.log(flat, step=step)

    def close(self) -> None:
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to a temporary file and rename it: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def whole_lines(path: Path) -> list[str]:
    """The file's complete lines: a last line without its newline was torn by a kill mid-write."""
    lines = path.read_text().split("\n")
    return lines[:-1]  # after the last newline: "" or the torn line


def truncate_logs(logs: Path, step: int) -> None:
    """Drop the rows of `logs/eval.csv` and `logs/train.jsonl` logged after update `step`, and a
    last line a killed process left half-written."""
    rows = list(csv.reader(whole_lines(logs / "eval.csv")))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
    write_atomic(logs / "eval.csv", _csv_text(kept))
    if (logs / "train.jsonl").exists():
        lines = whole_lines(logs / "train.jsonl")
        kept_lines = [ln for ln in lines if ln and json.loads(ln)["step"] <= step]
        write_atomic(logs / "train.jsonl", "".join(ln + "\n" for ln in kept_lines))


class StopSignal:
    """SIGTERM or SIGINT (Ctrl-C) during training only set a flag; the loop then checkpoints the
    update it finished and stops, so a preempted run loses nothing (`--resume` continues it).
    A second Ctrl-C stops at once; a repeated SIGTERM (a scheduler's, or the one chain_study
    forwards after a Ctrl-C reached the whole terminal) changes nothing, until the process
    exits."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # handlers live there only
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.received:
            self.received = signal.Signals(signum).name
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt("second Ctrl-C")

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            # once stopping, a repeated SIGTERM must not kill the process on its way out
            stopping = self.received is not None and sig == signal.SIGTERM
            signal.signal(sig, signal.SIG_IGN if stopping else handler)
        self._previous = {}


class RunStopped(Exception):
    """Training stopped on a signal after writing a checkpoint."""


EXIT_STOPPED = 75  # a run's exit status after RunStopped: sysexits' "temporary failure, retry"


class CheckpointStore:
    """`checkpoints/checkpoint_<step>.pt`, each written atomically (temp file, then rename), a
    `latest` pointer, and the newest `keep` files kept. A crash never leaves a half-written
    checkpoint under a checkpoint's name; one that is unreadable anyway is reported by name and
    the previous one used.
    """

    def __init__(self, directory: Path, keep: int, pinned: tuple[int, ...] = ()):
        self.directory = directory
        self.keep = keep
        self.pinned = {self.path(step) for step in pinned}  # never rotated out

    @classmethod
    def of_run(cls, root: Path, config: PogoConfig) -> CheckpointStore:
        """A run's store: `checkpoints/` under its directory; the joint phase's last
        checkpoint (`max_timesteps`) is kept, so a settle phase can be redone from it."""
        return cls(root / "checkpoints", config.keep_checkpoints, (config.max_timesteps,))

    def path(self, step: int) -> Path:
        return self.directory / f"checkpoint_{step:010d}.pt"

    def _all(self) -> list[Path]:
        """Checkpoints on disk, newest first."""
        return sorted(self.directory.glob("checkpoint_*.pt"), reverse=True)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        path = self.path(step)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        write_atomic(self.directory / "latest", path.name + "\n")
        rotated = [p for p in self._all() if p not in self.pinned]
        for old in rotated[self.keep :]:
            old.unlink()
        return path

    def latest_path(self) -> Path | None:
        pointer = self.directory / "latest"
        if pointer.exists():
            path = self.directory / pointer.read_text().strip()
            if path.exists():
                return path
        existing = self._all()
        return existing[0] if existing else None

    def load(self, step: int) -> tuple[dict[str, Any], Path]:
        """The checkpoint of update `step` (`resume_step`): it must exist and be readable."""
        path = self.path(step)
        if not path.exists():
            kept = ", ".join(p.name for p in reversed(self._all())) or "none"
            raise CheckpointError(
                f"resume_step: no checkpoint of step {step} in {self.directory}; kept: {kept}"
            )
        try:
            return torch.load(path, map_location="cpu", weights_only=False), path
        except Exception as err:  # truncated or corrupt
            raise CheckpointError(
                f"resume_step: {path} is unreadable ({type(err).__name__})"
            ) from err

    def drop_after(self, step: int) -> None:
        """Remove checkpoints of updates after `step`: a run resumed from `step` replaces them."""
        for path in self._all():
            if int(path.stem.split("_")[1]) > step:
                path.unlink()
        write_atomic(self.directory / "latest", self.path(step).name + "\n")

    def load_latest(self) -> tuple[dict[str, Any], Path]:
        """The newest readable checkpoint (the `latest` pointer's first)."""
        first = self.latest_path()
        candidates = [first] + [p for p in self._all() if p != first] if first else []
        for path in candidates:
            try:
                return torch.load(path, map_location="cpu", weights_only=False), path
            except Exception as err:  # truncated or corrupt: torch raises several types
                print(
                    f"warning: checkpoint {path} is unreadable ({type(err).__name__}: {err});"
                    " trying the previous one"
                )
        raise CheckpointError(f"resume: no readable checkpoint in {self.directory}")


def resume_state(config: PogoConfig, checkpoints: CheckpointStore) -> tuple[dict[str, Any], Path]:
    """The checkpoint `--resume` continues from: `resume_step`'s, else the newest readable."""
    if config.resume_step is None:
        return checkpoints.load_latest()
    return checkpoints.load(config.resume_step)


def check_same_data(
    state: dict[str, Any], state_mean: np.ndarray, state_std: np.ndarray, source: Path
) -> None:
    """Refuse a checkpoint trained on other data: its state normalisation is not this one's."""
    for key, value in (("state_mean", state_mean), ("state_std", state_std)):
        if not np.array_equal(state[key], value):
            raise CheckpointError(
                f"resume: the dataset's {key} differs from the one in {source}; "
                "resume on the same dataset or use --overwrite"
            )


def start_outputs(
    config: PogoConfig, root: Path, logger: RunLogger, checkpoints: CheckpointStore, step: int
) -> None:
    """The run's first write, once every input is checked: wandb, the directories, the config
    and logs (a resumed run's cut back to `step`, which it logs again from), and the
    checkpoints after `step` dropped (`resume_step`: they come again)."""
    wandb_run = init_wandb(config, root) if config.use_wandb else None
    prepare_run_dir(config)
    logger.start(wandb_run, resumed_at=step if config.resume else None)
    if config.resume:
        checkpoints.drop_after(step)


def stop_if_signalled(
    stop: StopSignal, step: int, progress: Any, logger: RunLogger, save: Callable[[], Path]
) -> None:
    """After update `step`: on a SIGTERM/Ctrl-C seen meanwhile, close the outputs, checkpoint
    (`save`) and raise RunStopped, which the main turns into exit status EXIT_STOPPED."""
    if stop.received:
        progress.close()
        logger.close()
        path = save()
        raise RunStopped(f"{stop.received} after update {step}: saved {path}; --resume continues")


def run_main(run: Callable[[], Path]) -> Path:
    """A main's body (`run`: parse, set up, train) with the project's exits: bad input or NaN
    is one line (`error: ...`, status 1), a stopped run exits EXIT_STOPPED, an interrupt (a
    second Ctrl-C) one line and SIGINT's own status, as a shell expects; a bug keeps its
    traceback."""
    try:
        return run()
    except PogoError as err:  # bad input (config, dataset, env, checkpoint, wandb), NaN: one line
        sys.exit(f"error: {err}")
    except RunStopped as err:
        print(f"stopped: {err}", file=sys.stderr)
        sys.exit(EXIT_STOPPED)
    except KeyboardInterrupt:
        print(
            "interrupted: the update in progress is not saved; --resume continues from the "
            "last checkpoint",
            file=sys.stderr,
            flush=True,
        )
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        raise  # not reached: SIGINT ends the process


def report_eval(
    progress: Any, step: int, scores: np.ndarray, clock: tuple[float, int]
) -> tuple[float, int]:
    """Print every actor's score [n_actors, n_episodes] and the updates/s since the last
    evaluation (`clock`: its time and step) on the progress bar; returns the new clock."""
    now = time.perf_counter()
    speed = (step - clock[1]) / max(now - clock[0], 1e-9)
    per_actor = "  ".join(
        f"actor {i}: {s.mean():.1f} +- {s.std():.1f}" for i, s in enumerate(scores)
    )
    progress.write(f"step {step}: {per_actor}  ({speed:.1f} updates/s)")
    progress.set_postfix({f"actor {i}": f"{s.mean():.1f}" for i, s in enumerate(scores)})
    return now, step


def progress_bar(config: PogoConfig, step: int) -> tqdm:
    """The run's bar (updates/s, scores); disabled when quiet or not on a terminal."""
    show = not config.quiet and sys.stderr.isatty()
    return tqdm(total=config.total_steps, initial=step, disable=not show, unit="upd",
                dynamic_ncols=True, smoothing=0.05)  # fmt: skip


def report_final(scores: np.ndarray | None, step: int, root: Path) -> None:
    """The last evaluation's mean score per actor, and where the logs are."""
    if scores is not None:
        final = ", ".join(f"actor {i} {s.mean():.1f}" for i, s in enumerate(scores))
        print(f"final normalised scores (step {step}): {final}; logs in {root / 'logs'}")
