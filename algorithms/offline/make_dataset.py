"""Make a D4RL-layout dataset from a real gymnasium MuJoCo env, so everything runs without D4RL.

Usage: ``python -m algorithms.offline.make_dataset --env hopper-random-v2 --size 100000 --seed 0
--out data/hopper_random-v2.hdf5``. Only the ``random`` kind (uniform random actions) exists so far.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium
import h5py
import mujoco
import numpy as np
from tqdm import tqdm

from algorithms.offline.envs import ENV_IDS, make_env, parse_d4rl_name

MAX_EPISODE_STEPS = 1000  # D4RL's and gymnasium's time limit for the locomotion envs
MAKEABLE_KINDS = ("random",)


def make_random_dataset(
    env_name: str, size: int, seed: int, progress: bool = False
) -> dict[str, np.ndarray]:
    """Roll out a uniform random policy for ``size`` steps; the same seed gives the same arrays.

    Episodes end at termination (``terminals``) or at the 1000-step time limit (``timeouts``); the
    last row is marked as a timeout when ``size`` runs out mid-episode, as D4RL's files do.
    """
    name = parse_d4rl_name(env_name)
    if name.kind != "random":
        raise ValueError(f"make_random_dataset makes 'random' datasets, not {name.kind!r}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if name.family not in ENV_IDS:
        known = ", ".join(ENV_IDS)
        raise ValueError(f"no gymnasium env for D4RL family {name.family!r}; known: {known}")
    env = make_env(ENV_IDS[name.family], max_episode_steps=MAX_EPISODE_STEPS)
    obs_dim = env.observation_space.shape[0]
    act_dim = env.action_space.shape[0]
    data = {
        "observations": np.zeros((size, obs_dim), dtype=np.float32),
        "actions": np.zeros((size, act_dim), dtype=np.float32),
        "rewards": np.zeros(size, dtype=np.float32),
        "next_observations": np.zeros((size, obs_dim), dtype=np.float32),
        "terminals": np.zeros(size, dtype=bool),
        "timeouts": np.zeros(size, dtype=bool),
    }
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    for i in tqdm(range(size), desc=f"{env_name} (random)", disable=not progress):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        data["observations"][i] = obs
        data["actions"][i] = action
        data["rewards"][i] = reward
        data["next_observations"][i] = next_obs
        data["terminals"][i] = terminated
        # A real termination at the time limit is a terminal, not a cut.
        data["timeouts"][i] = truncated and not terminated
        if terminated or truncated:
            obs, _ = env.reset()
        else:
            obs = next_obs
    env.close()
    if not data["terminals"][-1]:
        data["timeouts"][-1] = True
    return data


def write_hdf5(path: str | os.PathLike, data: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Write plain (uncompressed) top-level datasets atomically: temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A pid-named sibling (not mkstemp) so the file gets the usual umask permissions, not 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for key, arr in data.items():
                f.create_dataset(key, data=arr)
            for key, value in attrs.items():
                f.attrs[key] = value
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dataset_attrs(env_name: str, seed: int, size: int) -> dict[str, Any]:
    """Provenance stored on the file's root, so a dataset says how it was made."""
    name = parse_d4rl_name(env_name)
    return {
        "env_name": env_name,
        "gymnasium_env_id": ENV_IDS[name.family],
        "kind": name.kind,
        "policy": "uniform random",
        "seed": seed,
        "size": size,
        "made_by": "algorithms.offline.make_dataset",
        "gymnasium_version": gymnasium.__version__,
        "mujoco_version": mujoco.__version__,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m algorithms.offline.make_dataset",
        description="Make a D4RL-layout HDF5 dataset from a gymnasium MuJoCo env.",
    )
    parser.add_argument("--env", required=True, help="D4RL-style name, e.g. hopper-random-v2")
    parser.add_argument("--size", type=int, default=100_000, help="number of rows (env steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="HDF5 file to write")
    args = parser.parse_args(argv)

    try:
        name = parse_d4rl_name(args.env)
    except ValueError as e:
        sys.exit(f"make_dataset: {e}")
    if name.kind not in MAKEABLE_KINDS:
        sys.exit(
            f"make_dataset: only 'random' datasets can be made so far, not {name.kind!r} "
            f"(from --env {args.env})"
        )
    if name.family not in ENV_IDS:
        sys.exit(f"make_dataset: no gymnasium env for {name.family!r}; known: {', '.join(ENV_IDS)}")
    if args.size < 1:
        sys.exit(f"make_dataset: --size must be >= 1, got {args.size}")

    data = make_random_dataset(args.env, args.size, args.seed, progress=True)
    write_hdf5(args.out, data, dataset_attrs(args.env, args.seed, args.size))
    n_term = int(data["terminals"].sum())
    n_timeout = int(data["timeouts"].sum())
    print(
        f"wrote {args.out}: {args.size} rows, {n_term} terminals, {n_timeout} timeouts, "
        f"obs {data['observations'].shape[1]}, actions {data['actions'].shape[1]}"
    )


if __name__ == "__main__":
    main()
