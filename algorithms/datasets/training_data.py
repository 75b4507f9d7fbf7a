"""A run's training set: found, read (or made first), checked against its env, normalised.

The one place that knows every data source (a D4RL-format file, D4RL's own files, a local
Minari dataset, a file made here on first use); both mains call `load_data`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from algorithms.datasets.d4rl import (
    check_dims,
    check_raw,
    compute_mean_std,
    find_d4rl_file,
    load_hdf5,
    modify_reward,
    normalize_states,
    qlearning_dataset,
)
from algorithms.datasets.make_dataset import ensure_dataset


class DataConfig(Protocol):
    """The config keys that say where a run's data comes from (`PogoConfig` has them)."""

    env: str
    dataset_path: str | None
    minari_id: str | None
    make_dataset_size: int | None
    make_dataset_seed: int
    normalize: bool
    normalize_reward: bool


def load_dataset(
    env_name: str, dataset_path: str | None = None, minari_id: str | None = None
) -> dict[str, np.ndarray]:
    """The qlearning transitions of a run: from a file, a local Minari dataset, or D4RL's files."""
    if minari_id is not None:
        from algorithms.datasets.minari_io import load_minari  # minari is imported only when used

        raw = load_minari(minari_id)
        check_raw(raw, f"minari_id {minari_id}")
        return qlearning_dataset(raw)
    path = Path(dataset_path) if dataset_path else find_d4rl_file(env_name)
    return qlearning_dataset(load_hdf5(path))


def load_data(config: DataConfig, obs_dim: int, action_dim: int, env_id: str):
    """The training set of a run (made first with `make_dataset_size`, checked against the
    environment, states normalised), and the state statistics evaluation needs."""
    if config.make_dataset_size is not None:
        ensure_dataset(
            config.env, config.dataset_path, config.make_dataset_size, config.make_dataset_seed
        )
    dataset = load_dataset(config.env, config.dataset_path, config.minari_id)
    source = config.dataset_path or config.minari_id or config.env
    check_dims(dataset, obs_dim, action_dim, source, env_id)
    if config.normalize_reward:
        modify_reward(dataset, config.env)
    if config.normalize:
        mean, std = compute_mean_std(dataset["observations"], eps=1e-3)
    else:
        mean, std = np.zeros(obs_dim), np.ones(obs_dim)
    for key in ("observations", "next_observations"):
        dataset[key] = normalize_states(dataset[key], mean, std)
    return dataset, mean, std
