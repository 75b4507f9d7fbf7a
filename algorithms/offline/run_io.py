"""A run's outputs: its directory, evaluation table, training log, checkpoints, wandb."""

from __future__ import annotations

import csv
import dataclasses
import json
import netrc
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algorithms.offline.config import ConfigError, PogoConfig, dump_config
from algorithms.offline.envs import parse_d4rl_name

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


def check_run_dir(config: PogoConfig) -> Path:
    """Refuse to mix two runs' outputs unless `overwrite`; writes nothing."""
    root = run_dir(config)
    if (root / "logs" / "eval.csv").exists() and not config.overwrite:
        raise ConfigError(
            f"output_dir: {root} already holds a run; pass --overwrite to replace it "
            "or choose another output_dir/seed"
        )
    return root


def prepare_run_dir(config: PogoConfig) -> Path:
    """Create the run's directories (after `check_run_dir`), clearing an overwritten run."""
    root = check_run_dir(config)
    if (root / "logs" / "eval.csv").exists():
        shutil.rmtree(root / "logs")
        shutil.rmtree(root / "checkpoints", ignore_errors=True)
    (root / "logs").mkdir(parents=True, exist_ok=True)
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    return root


def init_wandb(config: PogoConfig):
    """Start a wandb run, or fail now (before training) with a message that says what to do."""
    import wandb

    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode not in ("offline", "disabled", "dryrun") and not _has_wandb_key():
        raise ConfigError(f"use_wandb: no wandb account is set up (WANDB_API_KEY); {WANDB_HINT}")
    try:
        return wandb.init(
            config=dataclasses.asdict(config),
            project=config.project,
            group=config.group,
            name=f"{config.name}-{config.algorithm}-{config.env}-seed{config.seed}",
            settings=wandb.Settings(init_timeout=60),
        )
    except Exception as err:  # network down, bad key, ...: wandb raises many types
        raise ConfigError(f"use_wandb: wandb.init failed ({err}); {WANDB_HINT}") from None


def _has_wandb_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class RunLogger:
    """Writes `logs/eval.csv` (one row per step and actor), `logs/train.jsonl`, and to wandb."""

    def __init__(self, root: Path, config: PogoConfig, wandb_run=None):
        self.logs = root / "logs"
        dump_config(config, self.logs / "config.yaml")
        self.eval_path = self.logs / "eval.csv"
        self.train_path = self.logs / "train.jsonl"
        if not self.eval_path.exists():
            with self.eval_path.open("w", newline="") as f:
                csv.writer(f).writerow(EVAL_COLUMNS)
        self.wandb_run = wandb_run

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


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (temp file, then rename): a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
