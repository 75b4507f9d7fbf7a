"""Minari datasets: read a locally installed one into D4RL's layout, and export a local file to one.

Minari keeps episodes (``observations`` has one row more than ``actions``: the final state); D4RL
files keep rows of transitions with ``terminals`` / ``timeouts`` marking episode ends. Both
directions convert between the two, so a Minari dataset trains through the same buffer as a D4RL
file. Nothing is downloaded: ``minari_id`` must already be under ``$MINARI_DATASETS_PATH``.

Export: ``python -m algorithms.datasets.minari_io --dataset data/hopper_medium-v2.hdf5
--env hopper-medium-v2 --minari_id local/hopper/medium-v0``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from algorithms.datasets.d4rl import load_hdf5
from algorithms.datasets.envs import ENV_IDS, REF_RETURNS, make_env, parse_d4rl_name
from algorithms.errors import DatasetError, PogoError


def minari_root() -> Path:
    """Where Minari keeps local datasets (its own rule: the env variable, else ~/.minari)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    return Path(root).expanduser() if root else Path("~/.minari/datasets").expanduser()


def _import_minari() -> Any:
    try:
        import minari
    except ImportError as e:
        raise DatasetError(
            f"minari is not installed ({e}); pip install -r requirements/requirements.txt"
        ) from e
    return minari


def load_minari(minari_id: str) -> dict[str, np.ndarray]:
    """A local Minari dataset as D4RL-layout arrays (episodes concatenated, ends marked)."""
    minari = _import_minari()
    local = minari.list_local_datasets()
    if minari_id not in local:
        have = ", ".join(sorted(local)) or "none"
        raise DatasetError(
            f"minari_id: {minari_id!r} is not installed under {minari_root()} (local: {have}); "
            f"no download is tried offline: copy it there, or export a local file with "
            f"python -m algorithms.datasets.minari_io"
        )
    dataset = minari.load_dataset(minari_id, download=False)
    keys = ("obs", "next", "act", "rew", "term", "cut")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for episode in dataset.iterate_episodes():
        obs = np.asarray(episode.observations, dtype=np.float32)  # [T + 1, S]
        if obs.ndim != 2:
            raise DatasetError(
                f"minari_id {minari_id}: observations must be flat vectors, got shape {obs.shape}"
            )
        terminations = np.asarray(episode.terminations, dtype=bool)  # [T]
        truncations = np.asarray(episode.truncations, dtype=bool)  # [T]
        parts["obs"].append(obs[:-1])
        parts["next"].append(obs[1:])
        parts["act"].append(np.asarray(episode.actions, dtype=np.float32))  # [T, A]
        parts["rew"].append(np.asarray(episode.rewards, dtype=np.float32))  # [T]
        parts["term"].append(terminations)
        # An episode always ends: if Minari recorded neither flag on its last step, it was cut.
        cut = truncations & ~terminations
        cut[-1] = not terminations[-1]
        parts["cut"].append(cut)
    if not parts["obs"]:
        raise DatasetError(f"minari_id {minari_id}: the dataset has no episodes")
    return {
        "observations": np.concatenate(parts["obs"]),
        "actions": np.concatenate(parts["act"]),
        "rewards": np.concatenate(parts["rew"]),
        "next_observations": np.concatenate(parts["next"]),
        "terminals": np.concatenate(parts["term"]),
        "timeouts": np.concatenate(parts["cut"]),
    }


def split_episodes(raw: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """D4RL rows -> Minari episode buffers; a file ending mid-episode ends with a cut."""
    ends = np.flatnonzero(raw["terminals"] | raw["timeouts"])  # [E]
    if len(ends) == 0 or ends[-1] != len(raw["rewards"]) - 1:
        ends = np.append(ends, len(raw["rewards"]) - 1)
    episodes, start = [], 0
    for end in ends:
        rows = slice(start, end + 1)
        obs = raw["observations"][rows]
        terminations = raw["terminals"][rows].astype(bool)
        truncations = np.zeros(len(terminations), dtype=bool)
        truncations[-1] = not terminations[-1]
        episodes.append(
            {
                "observations": np.concatenate([obs, raw["next_observations"][end : end + 1]]),
                "actions": raw["actions"][rows],
                "rewards": raw["rewards"][rows],
                "terminations": terminations,
                "truncations": truncations,
                "infos": {},
            }
        )
        start = end + 1
    return episodes


def export_minari(dataset_path: str | Path, env_name: str, minari_id: str) -> Any:
    """Write a D4RL-layout file as the local Minari dataset ``minari_id``; returns it."""
    minari = _import_minari()
    from minari.data_collector import EpisodeBuffer

    name = parse_d4rl_name(env_name)
    if name.family not in ENV_IDS:
        raise DatasetError(f"no gymnasium env for {name.family!r}; known: {', '.join(ENV_IDS)}")
    raw = load_hdf5(dataset_path)
    if "next_observations" not in raw:
        raise DatasetError(f"{dataset_path}: export needs 'next_observations' (episode end states)")
    if minari_id in minari.list_local_datasets():
        raise DatasetError(
            f"minari_id: {minari_id!r} already exists under {minari_root()}; pick another id"
        )
    buffers = [
        EpisodeBuffer(
            observations=ep["observations"],
            actions=ep["actions"],
            rewards=ep["rewards"],
            terminations=ep["terminations"],
            truncations=ep["truncations"],
            infos=ep["infos"],
        )
        for ep in split_episodes(raw)
    ]
    ref_min, ref_max = REF_RETURNS[name.family]
    env = make_env(ENV_IDS[name.family])
    with warnings.catch_warnings():
        # Minari nags about unset author / e-mail / code link metadata of a local export.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"minari\.")
        dataset = minari.create_dataset_from_buffers(
            dataset_id=minari_id,
            buffer=buffers,
            env=env,
            eval_env=env,
            algorithm_name=f"exported from {Path(dataset_path).name} ({env_name})",
            ref_min_score=ref_min,
            ref_max_score=ref_max,
            description=f"{env_name}-style dataset made by this project's make_dataset",
        )
    env.close()
    return dataset


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m algorithms.datasets.minari_io",
        description="Export a D4RL-layout HDF5 file as a local Minari dataset.",
    )
    parser.add_argument("--dataset", required=True, help="D4RL-layout HDF5 file")
    parser.add_argument("--env", required=True, help="its D4RL-style name, e.g. hopper-medium-v2")
    parser.add_argument("--minari_id", required=True, help="e.g. local/hopper/medium-v0")
    args = parser.parse_args(argv)
    try:
        dataset = export_minari(args.dataset, args.env, args.minari_id)
    except (PogoError, OSError) as e:
        sys.exit(f"minari_io: {e}")
    print(
        f"wrote Minari dataset {args.minari_id} under {minari_root()}: "
        f"{dataset.total_episodes} episodes, {dataset.total_steps} steps"
    )


if __name__ == "__main__":
    main()
