"""Make a D4RL-layout dataset from a real gymnasium MuJoCo env, so everything runs without D4RL.

Usage: ``python -m algorithms.datasets.make_dataset --env hopper-medium-v2 --size 100000 --seed 0
--out data/hopper_medium-v2.hdf5``. The D4RL-style name picks the env and the kind, made as D4RL
made them: ``random`` (uniform actions), ``medium`` / ``expert`` (a shipped behaviour actor's
sampled actions, see ``behavior_policy``), ``medium-expert`` (half medium, then half expert) and
``medium-replay`` (the behaviour agent's replay buffer up to its medium policy). ``--size d4rl``
makes a file as large as D4RL's (``D4RL_SIZES``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium
import h5py
import mujoco
import numpy as np
import torch
from tqdm import tqdm

from algorithms.datasets.behavior_policy import (
    ACTORS_DIR,
    DEFAULT_REPLAY_DIR,
    BehaviorPolicyError,
    load_behavior_actor,
    replay_path,
)
from algorithms.datasets.d4rl import load_hdf5, write_hdf5
from algorithms.datasets.envs import ENV_IDS, make_env, parse_d4rl_name
from algorithms.errors import DatasetError, PogoError
from algorithms.networks.actors import BaseActor

MAX_EPISODE_STEPS = 1000  # D4RL's and gymnasium's time limit for the locomotion envs
MAKEABLE_KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
# Rows in D4RL's own files of each kind (-v2): 1M env steps, medium-expert both 1M files; its
# medium-replay holds whatever its agent's buffer held up to the medium policy (None: all of it).
D4RL_SIZES: dict[str, int | None] = {
    "random": 1_000_000,
    "medium": 1_000_000,
    "expert": 1_000_000,
    "medium-expert": 2_000_000,
    "medium-replay": None,
}
# An action for one observation [S] -> [A]; the policy side of a rollout.
Policy = Callable[[np.ndarray], np.ndarray]


def rollout(
    family: str,
    size: int,
    seed: int,
    policy: Policy | None,
    desc: str = "",
    progress: bool = False,
    max_episode_steps: int = MAX_EPISODE_STEPS,
) -> dict[str, np.ndarray]:
    """Step the family's env for ``size`` steps; the same seed gives the same arrays.

    ``policy`` None draws uniform random actions (from the action space seeded with ``seed``).
    Episodes end at termination (``terminals``) or at the time limit (``timeouts``); the
    last row is marked as a timeout when ``size`` runs out mid-episode, as D4RL's files do.
    """
    if size < 1:
        raise DatasetError(f"size must be >= 1, got {size}")
    if family not in ENV_IDS:
        known = ", ".join(ENV_IDS)
        raise DatasetError(f"no gymnasium env for D4RL family {family!r}; known: {known}")
    env = make_env(ENV_IDS[family], max_episode_steps=max_episode_steps)
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
    for i in tqdm(range(size), desc=desc, disable=not progress):
        action = env.action_space.sample() if policy is None else policy(obs)
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


def make_random_dataset(
    env_name: str, size: int, seed: int, progress: bool = False
) -> dict[str, np.ndarray]:
    """Uniform random actions, as D4RL's ``random`` datasets."""
    name = parse_d4rl_name(env_name)
    if name.kind != "random":
        raise DatasetError(f"make_random_dataset makes 'random' datasets, not {name.kind!r}")
    return rollout(name.family, size, seed, None, f"{env_name} (random)", progress)


def make_synthetic_dataset(
    size: int, obs_dim: int, action_dim: int, seed: int = 0, episode_len: int = 1000
) -> dict[str, np.ndarray]:
    """Random numbers in D4RL's layout, no env: for benchmarks and memory checks (sizes matter)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(size + 1, obs_dim)).astype(np.float32)
    timeouts = np.zeros(size, dtype=bool)
    timeouts[episode_len - 1 :: episode_len] = True
    return {
        "observations": obs[:-1],
        "actions": rng.uniform(-1, 1, size=(size, action_dim)).astype(np.float32),
        "rewards": rng.normal(size=size).astype(np.float32),
        "next_observations": obs[1:],
        "terminals": np.zeros(size, dtype=bool),
        "timeouts": timeouts,
    }


def actor_policy(actor: BaseActor, seed: int) -> Policy:
    """Sample the actor's actions (D4RL sampled its SAC policies, not their means), seeded."""
    generator = torch.Generator().manual_seed(seed)

    def act(obs: np.ndarray) -> np.ndarray:
        state = torch.as_tensor(obs, dtype=torch.float32)[None]  # [1, S]
        with torch.no_grad():
            return actor.sample_actions(state, 1, generator=generator)[0, 0].numpy()  # [A]

    return act


def make_policy_dataset(
    family: str,
    level: str,
    size: int,
    seed: int,
    progress: bool = False,
    actors_dir: Path = ACTORS_DIR,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Roll out the shipped ``level`` behaviour actor; returns the arrays and the actor's record."""
    actor, record = load_behavior_actor(family, level, actors_dir)
    desc = f"{family}-{level} (sampling)"
    return rollout(family, size, seed, actor_policy(actor, seed), desc, progress), record


def make_replay_dataset(
    family: str, size: int | None, replay_dir: Path = DEFAULT_REPLAY_DIR
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The behaviour agent's replay buffer up to its medium policy (D4RL's ``medium-replay``).

    A buffer longer than ``size`` keeps its last ``size`` rows, those closest to the medium
    policy; ``size=None`` keeps all of it, as D4RL's files do.
    """
    path = replay_path(family, replay_dir)
    if not path.is_file():
        raise BehaviorPolicyError(
            f"medium-replay needs the behaviour agent's replay buffer {path}, which is made by "
            f"training it: python -m algorithms.datasets.behavior_policy --env {family} "
            f"--stop_after medium --replay_dir {replay_dir}"
        )
    raw = load_hdf5(path)
    rows = len(raw["rewards"])
    if size is None:
        size = rows
    elif size > rows:
        raise DatasetError(
            f"the replay buffer {path} holds {rows} rows, fewer than the {size} asked for; "
            "--size d4rl takes all of it"
        )
    data = {k: raw[k][-size:] for k in ("observations", "actions", "rewards", "next_observations")}
    data["terminals"] = raw["terminals"][-size:].astype(bool)
    data["timeouts"] = raw["timeouts"][-size:].astype(bool)
    with h5py.File(path, "r") as f:
        record = {"replay_buffer": str(path), "env_steps": int(f.attrs["env_steps"])}
    return data, record


def make_dataset(
    env_name: str,
    size: int | None,
    seed: int,
    progress: bool = False,
    actors_dir: Path = ACTORS_DIR,
    replay_dir: Path = DEFAULT_REPLAY_DIR,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Any makeable D4RL-style dataset: its arrays and the root attributes that say how.
    ``size=None``: as many rows as D4RL's file of that kind."""
    name = parse_d4rl_name(env_name)
    if name.kind not in MAKEABLE_KINDS:
        raise DatasetError(
            f"cannot make {name.kind!r} datasets; makeable: {', '.join(MAKEABLE_KINDS)}"
        )
    if size is None:
        size = D4RL_SIZES[name.kind]  # medium-replay's stays None: the whole buffer
    if size is not None and size < 1:
        raise DatasetError(f"size must be >= 1, got {size}")
    if name.family not in ENV_IDS:
        raise DatasetError(f"no gymnasium env for {name.family!r}; known: {', '.join(ENV_IDS)}")
    sources: dict[str, Any] = {}
    if name.kind == "random":
        data, policy = make_random_dataset(env_name, size, seed, progress), "uniform random"
    elif name.kind in ("medium", "expert"):
        data, sources[name.kind] = make_policy_dataset(
            name.family, name.kind, size, seed, progress, actors_dir
        )
        policy = f"{name.kind} behaviour actor, sampled"
    elif name.kind == "medium-expert":
        # D4RL's medium-expert is its medium file followed by its expert file.
        half = size // 2
        medium, sources["medium"] = make_policy_dataset(
            name.family, "medium", half, seed, progress, actors_dir
        )
        expert, sources["expert"] = make_policy_dataset(
            name.family, "expert", size - half, seed + 1, progress, actors_dir
        )
        data = {k: np.concatenate([medium[k], expert[k]]) for k in medium}
        policy = "medium then expert behaviour actors, sampled"
    else:  # medium-replay
        data, sources["medium-replay"] = make_replay_dataset(name.family, size, replay_dir)
        policy = "replay buffer of the behaviour agent up to its medium policy"
    attrs = dataset_attrs(env_name, seed, len(data["rewards"]), policy)
    attrs["behavior"] = json.dumps(sources)
    return data, attrs


def dataset_attrs(
    env_name: str, seed: int, size: int, policy: str = "uniform random"
) -> dict[str, Any]:
    """Provenance stored on the file's root, so a dataset says how it was made."""
    name = parse_d4rl_name(env_name)
    return {
        "env_name": env_name,
        "gymnasium_env_id": ENV_IDS[name.family],
        "kind": name.kind,
        "policy": policy,
        "seed": seed,
        "size": size,
        "made_by": "algorithms.datasets.make_dataset",
        "gymnasium_version": gymnasium.__version__,
        "mujoco_version": mujoco.__version__,
    }


def episode_returns(data: dict[str, np.ndarray]) -> np.ndarray:
    """Returns of the episodes that end inside the data (terminal or time-limit cut)."""
    ends = np.flatnonzero(data["terminals"] | data["timeouts"])  # [E]
    sums = np.cumsum(data["rewards"], dtype=np.float64)[ends]
    return np.diff(np.concatenate([[0.0], sums]))


def write_dataset(
    env_name: str, out: str | Path, size: int | None, seed: int, progress: bool = True, **dirs: Path
) -> str:
    """Make and write one dataset; returns a one-line summary of what was written."""
    data, attrs = make_dataset(env_name, size, seed, progress, **dirs)
    write_hdf5(out, data, attrs)
    rets = episode_returns(data)
    return (
        f"wrote {out}: {len(data['rewards'])} rows, {int(data['terminals'].sum())} terminals, "
        f"{int(data['timeouts'].sum())} timeouts, episode return {rets.mean():.0f} "
        f"+- {rets.std():.0f} over {len(rets)} episodes"
    )


def ensure_dataset(env_name: str, path: str | Path, size: int, seed: int) -> None:
    """Make ``path`` from ``env_name`` unless it exists: the first-use cache of local runs."""
    if Path(path).is_file():
        return
    print(f"{path} not found: making {env_name} locally ({size} rows, seed {seed})", flush=True)
    try:
        print(write_dataset(env_name, path, size, seed, progress=True), flush=True)
    except (PogoError, OSError) as e:
        raise DatasetError(f"making {path} for {env_name} failed: {e}") from e


def parse_size(text: str) -> int | None:
    """A dataset size on a command line: a row count, or ``d4rl`` (None: D4RL's own size)."""
    if text == "d4rl":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a row count or d4rl: {text!r}") from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m algorithms.datasets.make_dataset",
        description="Make a D4RL-layout HDF5 dataset from a gymnasium MuJoCo env.",
    )
    kinds = ", ".join(MAKEABLE_KINDS)
    parser.add_argument("--env", required=True, help=f"D4RL-style name; kinds: {kinds}")
    parser.add_argument(
        "--size",
        type=parse_size,
        default=100_000,
        help="number of rows (env steps), or d4rl: as many as D4RL's file (medium-replay: the "
        "whole replay buffer)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="HDF5 file to write")
    parser.add_argument("--actors_dir", default=str(ACTORS_DIR), help="behaviour actors")
    parser.add_argument("--replay_dir", default=str(DEFAULT_REPLAY_DIR), help="replay buffers")
    args = parser.parse_args(argv)
    try:
        summary = write_dataset(
            args.env,
            args.out,
            args.size,
            args.seed,
            actors_dir=Path(args.actors_dir),
            replay_dir=Path(args.replay_dir),
        )
    except (PogoError, OSError) as e:  # a dataset, behaviour actor or env the user can fix
        sys.exit(f"make_dataset: {e}")
    print(summary)


if __name__ == "__main__":
    main()
