"""D4RL dataset names, the gymnasium MuJoCo envs that evaluate them, and D4RL-normalised scores.

D4RL names (``hopper-medium-replay-v2``) are the project's dataset vocabulary because CORL's tables
are reported on them; evaluation runs in gymnasium's MuJoCo envs (no mujoco-py).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from algorithms.errors import EnvError

# Gymnasium env that evaluates each D4RL locomotion family (same observation/action layout).
ENV_IDS: dict[str, str] = {
    "halfcheetah": "HalfCheetah-v4",
    "hopper": "Hopper-v4",
    "walker2d": "Walker2d-v4",
}

# D4RL's reference returns (random policy, expert policy) that define the normalised score.
REF_RETURNS: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

# Families a D4RL name may start with: those with reference returns (ant has no default eval env:
# D4RL's ant observations include contact forces, gymnasium's Ant-v4 leaves them out by default).
FAMILIES: tuple[str, ...] = tuple(REF_RETURNS)
DATASET_KINDS = ("random", "medium", "medium-replay", "medium-expert", "expert", "full-replay")
# Only D4RL's v2 locomotion files are hosted under one URL root and used by CORL.
VERSIONS = ("v2",)


@dataclass(frozen=True)
class D4RLName:
    """A parsed D4RL dataset name, so file names and URLs are built in one place."""

    family: str  # e.g. "hopper"
    kind: str  # e.g. "medium-replay"
    version: str  # e.g. "v2"

    @property
    def name(self) -> str:
        return f"{self.family}-{self.kind}-{self.version}"

    @property
    def task(self) -> str:
        """The dataset part without the family, as used in results paths ("medium-v2")."""
        return f"{self.kind}-{self.version}"

    @property
    def file_name(self) -> str:
        """D4RL's cache file name, e.g. ``hopper_medium_replay-v2.hdf5``."""
        return f"{self.family}_{self.kind.replace('-', '_')}-{self.version}.hdf5"


def parse_d4rl_name(name: str) -> D4RLName:
    """Split ``family-kind-version``; reject anything D4RL does not host, naming what it does."""
    parts = name.strip().split("-")
    hint = (
        f"families {', '.join(FAMILIES)}; kinds {', '.join(DATASET_KINDS)}; "
        f"versions {', '.join(VERSIONS)} (e.g. hopper-medium-replay-v2)"
    )
    if len(parts) < 3 or not re.fullmatch(r"v\d+", parts[-1]):
        raise EnvError(f"D4RL name {name!r} lacks a '-vN' version; known: {hint}")
    family, kind, version = parts[0], "-".join(parts[1:-1]), parts[-1]
    if family not in FAMILIES:
        raise EnvError(f"D4RL name {name!r} has unknown family {family!r}; known: {hint}")
    if kind not in DATASET_KINDS:
        raise EnvError(f"D4RL name {name!r} has unknown kind {kind!r}; known: {hint}")
    if version not in VERSIONS:
        raise EnvError(f"D4RL name {name!r} has unsupported version {version!r}; known: {hint}")
    return D4RLName(family, kind, version)


def eval_env_id(env_name: str, eval_env: str | None) -> str:
    """The gymnasium id to evaluate on: an explicit override wins over the family's default."""
    if eval_env:
        return eval_env
    family = parse_d4rl_name(env_name).family
    if family not in ENV_IDS:
        raise EnvError(
            f"no default gymnasium env for D4RL family {family!r} (defaults exist for "
            f"{', '.join(ENV_IDS)}); set eval_env in the config"
        )
    return ENV_IDS[family]


def normalized_score(family: str, returns: np.ndarray) -> np.ndarray:
    """D4RL-normalised score, 0 = random policy, 100 = expert, so results compare with CORL's."""
    if family not in REF_RETURNS:
        raise EnvError(
            f"no D4RL reference returns for family {family!r}; known: {', '.join(REF_RETURNS)}"
        )
    r_random, r_expert = REF_RETURNS[family]
    return 100.0 * (np.asarray(returns, dtype=np.float64) - r_random) / (r_expert - r_random)


def make_env(env_id: str, **kwargs: Any) -> gymnasium.Env:
    """``gymnasium.make`` minus the v4 "is out of date ... v5" nag (v4 matches D4RL's dynamics)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r".*is out of date.*v5", category=DeprecationWarning
        )
        try:
            return gymnasium.make(env_id, **kwargs)
        except gymnasium.error.Error as err:  # an unknown id, a missing dependency (mujoco)
            raise EnvError(f"gymnasium env {env_id!r} cannot be made: {err}") from err


def env_dims(env_id: str) -> tuple[int, int, float]:
    """(observation size, action size, max |action|) of an env, the sizes networks are built for."""
    env = make_env(env_id)
    dims = (env.observation_space.shape[0], env.action_space.shape[0])
    max_action = float(env.action_space.high[0])
    env.close()
    return *dims, max_action
