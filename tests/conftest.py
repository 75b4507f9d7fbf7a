"""Shared fixtures: tiny synthetic D4RL-layout datasets for Hopper-v4's sizes."""

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # tests run beside other jobs on 2 cores
# one XLA thread, for the same reason (read when JAX's backend starts)
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import h5py
import numpy as np
import pytest
import torch

from algorithms.datasets import behavior_policy  # trains with stable-baselines3 (CI installs it)

torch.set_num_threads(1)

HOPPER_OBS, HOPPER_ACT = 11, 3


def write_synthetic_d4rl(path, n: int = 600, episode_len: int = 100, seed: int = 0) -> None:
    """Random transitions in D4RL's layout: a timeout every `episode_len` rows, a few terminals."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, HOPPER_OBS)).astype(np.float32)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[episode_len - 1 :: episode_len] = True
    terminals = np.zeros(n, dtype=bool)
    terminals[rng.choice(n, size=5, replace=False)] = True
    terminals &= ~timeouts
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = rng.uniform(-1, 1, size=(n, HOPPER_ACT)).astype(np.float32)
        f["rewards"] = rng.normal(size=n).astype(np.float32)
        f["next_observations"] = np.roll(obs, -1, axis=0)
        f["terminals"] = terminals
        f["timeouts"] = timeouts


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "hopper_synthetic.hdf5"
    write_synthetic_d4rl(path)
    return path


def tiny_argv(
    dataset: Path, out: Path, algorithm: str, num_actors: int, *extra: str, **overrides
) -> list[str]:
    """CLI arguments for a few-second run of either main on a synthetic dataset: 20 updates,
    evaluated every 10; `overrides` replace these values, `extra` arguments come last."""
    args = {
        "algorithm": algorithm,
        "env": "hopper-medium-v2",
        "dataset_path": dataset,
        "device": "cpu",
        "num_actors": num_actors,
        "max_timesteps": 20,
        "eval_freq": 10,
        "log_freq": 5,
        "n_episodes": 1,
        "batch_size": 32,
        "output_dir": out,
        **overrides,
    }
    argv = [item for key, value in args.items() for item in (f"--{key}", str(value))]
    return argv + list(extra) + ["--no_wandb"]


@pytest.fixture
def tiny_run_args(synthetic_dataset, tmp_path):
    """`tiny_argv` on the session's synthetic dataset, 2 episodes per evaluation."""

    def make(algorithm: str, num_actors: int, **extra) -> list[str]:
        args = {"n_episodes": 2, **extra}
        return tiny_argv(synthetic_dataset, tmp_path / "results", algorithm, num_actors, **args)

    return make


@pytest.fixture(scope="session")
def tiny_behavior(tmp_path_factory):
    """(actors dir, replay dir) of a few-hundred-step SB3 agent on Hopper: a real actor and buffer
    for the collector's mechanics, independent of the shipped ones."""
    root = tmp_path_factory.mktemp("behavior")
    actors, replay = root / "actors", root / "replay"
    behavior_policy.main(
        ["--env", "hopper", "--max_steps", "400", "--learning_starts", "200"]
        + ["--eval_freq", "200", "--eval_episodes", "1", "--medium_fraction", "0"]
        + ["--stop_after", "medium", "--actors_dir", str(actors), "--replay_dir", str(replay)]
    )
    return actors, replay


@pytest.fixture(scope="module")
def xla_cache(tmp_path_factory) -> dict[str, str]:
    """One persistent XLA cache for a module's JAX runs, in-process and in subprocesses (the
    environment it returns): each run compiles the same programs, so all but the first load
    them instead of compiling again (most of a tiny run's time). JAX's settings are restored
    after the module."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    directory = str(tmp_path_factory.mktemp("xla_cache"))
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    previous = {name: getattr(jax.config, name) for name in names}
    jax.config.update(names[0], directory)
    jax.config.update(names[1], 0)
    compilation_cache.reset_cache()  # JAX decides once whether to use a cache; ask again
    yield {
        "JAX_COMPILATION_CACHE_DIR": directory,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    for name, value in previous.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()
