"""D4RL-format datasets: reading HDF5 files, D4RL's transition semantics and CORL's normalisations.

The ``d4rl`` package is never needed: its files are plain HDF5, found in its cache dir (or
``$D4RL_DATASET_DIR``) or given by path, and the same layout is written by ``make_dataset``.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from algorithms.datasets.envs import parse_d4rl_name
from algorithms.errors import DatasetError, EnvError

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL_KEYS = ("next_observations",)
FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")
D4RL_URL_ROOT = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2"
DOWNLOAD_TIMEOUT_S = 10.0
MAKE_HINT = "python -m algorithms.datasets.make_dataset --env hopper-random-v2 --out FILE"


# --------------------------------------------------------------------------------------------
# Reading and checking HDF5 files


def load_hdf5(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the top-level arrays of a D4RL-layout file and check them before anything trains."""
    path = Path(path)
    if not path.is_file():
        make = MAKE_HINT.replace("FILE", str(path))
        raise DatasetError(f"dataset file {path} does not exist; make one with: {make}")
    try:
        with h5py.File(path, "r") as f:
            # Groups (infos/, metadata/) are D4RL's extras and not needed for training.
            raw = {k: v[()] for k, v in f.items() if isinstance(v, h5py.Dataset)}
    except OSError as e:
        raise DatasetError(f"{path} is not a readable HDF5 file ({e})") from e
    check_raw(raw, str(path))
    return raw


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


def check_raw(raw: dict[str, np.ndarray], source: str) -> None:
    """Validate keys, shapes and values in place (flattening [N, 1] columns to [N])."""
    missing = [k for k in D4RL_KEYS if k not in raw]
    if missing:
        raise DatasetError(
            f"{source}: missing required key {missing[0]!r} "
            f"(needs {', '.join(D4RL_KEYS)}; has {', '.join(sorted(raw)) or 'nothing'})"
        )
    for key in ("rewards", "terminals", "timeouts"):
        arr = np.asarray(raw[key])
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise DatasetError(f"{source}: {key!r} must be 1-D [N], got shape {arr.shape}")
        raw[key] = arr
    n = len(raw["rewards"])
    for key in ("observations", "actions", "next_observations"):
        if key in raw and raw[key].ndim != 2:
            shape = raw[key].shape
            raise DatasetError(f"{source}: {key!r} must be 2-D [N, dim], got shape {shape}")
    for key in D4RL_KEYS + OPTIONAL_KEYS:
        if key in raw and len(raw[key]) != n:
            raise DatasetError(f"{source}: {key!r} has {len(raw[key])} rows but 'rewards' has {n}")
    if "next_observations" in raw and raw["next_observations"].shape != raw["observations"].shape:
        raise DatasetError(
            f"{source}: 'next_observations' shape {raw['next_observations'].shape} differs from "
            f"'observations' shape {raw['observations'].shape}"
        )
    for key in FLOAT_KEYS:
        if key not in raw:
            continue
        arr = raw[key]
        if not np.issubdtype(arr.dtype, np.number):
            raise DatasetError(f"{source}: {key!r} is not numeric (dtype {arr.dtype})")
        finite = np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)  # [N]
        if not finite.all():
            bad = int(np.argmin(finite))
            raise DatasetError(
                f"{source}: {key!r} has NaN/Inf values, first in row {bad} "
                f"({int((~finite).sum())} bad rows)"
            )


def check_dims(
    dataset: dict[str, np.ndarray],
    obs_dim: int,
    action_dim: int,
    source: str,
    env_id: str | None = None,
) -> None:
    """Catch a dataset/env mismatch (e.g. a hopper file with a walker env) before training on it."""
    env = f"env {env_id}" if env_id else "the env"
    got_obs = dataset["observations"].shape[1]
    got_act = dataset["actions"].shape[1]
    if got_obs != obs_dim:
        raise DatasetError(
            f"{source}: observations have {got_obs} columns "
            f"but {env} has observation size {obs_dim}"
        )
    if got_act != action_dim:
        raise DatasetError(
            f"{source}: actions have {got_act} columns but {env} has action size {action_dim}"
        )


# --------------------------------------------------------------------------------------------
# D4RL semantics and CORL normalisations


def qlearning_dataset(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """(s, a, r, s', done) transitions with D4RL's semantics, so scores compare with CORL's.

    Like D4RL and CORL: transition i (0..N-2) takes ``observations[i + 1]`` as its next state,
    ignoring any ``next_observations``, and rows cut by the time limit (``timeouts[i]``) are dropped
    because the next row starts a new episode. After a terminal the next state is the next episode's
    first observation, which the done flag masks.
    """
    n = len(raw["rewards"])
    if n < 2:
        raise DatasetError(f"dataset has {n} rows; at least 2 are needed to form a transition")
    keep = ~np.asarray(raw["timeouts"][: n - 1], dtype=bool)  # [N-1]
    idx = np.flatnonzero(keep)  # [M]
    if len(idx) == 0:
        raise DatasetError("dataset has no transitions left after dropping timeout rows")
    obs = np.asarray(raw["observations"], dtype=np.float32)  # [N, obs_dim]
    return {
        "observations": obs[idx],  # [M, obs_dim]
        "actions": np.asarray(raw["actions"], dtype=np.float32)[idx],  # [M, act_dim]
        "rewards": np.asarray(raw["rewards"], dtype=np.float32)[idx],  # [M]
        "next_observations": obs[idx + 1],  # [M, obs_dim]
        "terminals": np.asarray(raw["terminals"], dtype=bool)[idx].astype(np.float32),  # [M]
    }


def compute_mean_std(states: np.ndarray, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension state statistics; eps keeps constant dimensions from dividing by zero."""
    mean = states.mean(0)  # [obs_dim]
    std = states.std(0) + eps  # [obs_dim]
    return mean, std


def normalize_states(states: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (states - mean) / std  # [N, obs_dim]


def return_reward_range(
    dataset: dict[str, np.ndarray], max_episode_steps: int
) -> tuple[float, float]:
    """Min and max episode return, with CORL's episode cuts (terminal, or every max steps).

    An episode counter restarts after each terminal, and an episode also ends whenever it reaches
    ``max_episode_steps`` rows; the unfinished tail is not an episode.
    """
    rewards = np.asarray(dataset["rewards"], dtype=np.float64)  # [N]
    terminals = np.asarray(dataset["terminals"]).astype(bool)  # [N]
    n = len(rewards)
    rows = np.arange(n)
    # Row where the current terminal-delimited segment started: 0 or just after a terminal.
    seg_start = np.zeros(n, dtype=np.int64)
    seg_start[1:] = np.where(terminals[:-1], rows[1:], 0)
    seg_start = np.maximum.accumulate(seg_start)  # [N]
    step_in_seg = rows - seg_start  # [N]
    ends = np.flatnonzero(terminals | ((step_in_seg + 1) % max_episode_steps == 0))  # [E]
    if len(ends) == 0:
        raise DatasetError(
            f"dataset has no complete episode (no terminal and fewer than {max_episode_steps} rows)"
        )
    starts = np.concatenate([[0], ends[:-1] + 1])  # [E]
    returns = np.add.reduceat(rewards, starts)  # [E]
    # reduceat sums start..next start; the last one would run to N, so cut at its end instead.
    returns[-1] = rewards[starts[-1] : ends[-1] + 1].sum()
    return float(returns.min()), float(returns.max())


def modify_reward(
    dataset: dict[str, np.ndarray], env_name: str, max_episode_steps: int = 1000
) -> None:
    """CORL's reward normalisation (``normalize_reward: true``), in place."""
    if any(s in env_name for s in ("halfcheetah", "hopper", "walker2d")):
        min_ret, max_ret = return_reward_range(dataset, max_episode_steps)
        if max_ret == min_ret:
            raise DatasetError(
                f"cannot normalise rewards for {env_name}: all episode returns equal {max_ret}"
            )
        dataset["rewards"] *= max_episode_steps / (max_ret - min_ret)
    elif "antmaze" in env_name:
        dataset["rewards"] -= 1.0


# --------------------------------------------------------------------------------------------
# Finding D4RL's files


def d4rl_search_dirs() -> list[Path]:
    """Where D4RL files are looked for: ``$D4RL_DATASET_DIR`` (as d4rl uses), then its cache."""
    dirs = []
    if os.environ.get("D4RL_DATASET_DIR"):
        dirs.append(Path(os.environ["D4RL_DATASET_DIR"]).expanduser())
    dirs.append(Path("~/.d4rl/datasets").expanduser())
    return dirs


def _resolves(host: str, timeout: float) -> bool:
    """DNS lookup with a deadline: urllib's timeout does not cover name resolution."""
    ok: list[bool] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, 80)
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch url to dest via a temp file, so a broken transfer never leaves a half file at dest."""
    host = urllib.parse.urlparse(url).hostname or ""
    if not _resolves(host, timeout):
        raise OSError(f"cannot resolve host {host}")
    with urllib.request.urlopen(url, timeout=timeout) as response:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            with open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def find_d4rl_file(env_name: str, download: bool = True) -> Path:
    """Path of a D4RL dataset file: the first found in the search dirs, else downloaded there."""
    try:
        name = parse_d4rl_name(env_name)
    except EnvError as e:
        raise DatasetError(str(e)) from e
    dirs = d4rl_search_dirs()
    for d in dirs:
        if (d / name.file_name).is_file():
            return d / name.file_name
    url = f"{D4RL_URL_ROOT}/{name.file_name}"
    dest = dirs[0] / name.file_name
    reason = "download disabled"
    if download:
        try:
            _download(url, dest)
            return dest
        except Exception as e:  # any failure becomes the one clear message below
            reason = f"download failed: {type(e).__name__}: {e}"
    searched = ", ".join(str(d) for d in dirs)
    raise DatasetError(
        f"D4RL file {name.file_name} for {env_name} not found in {searched} ({reason}); "
        f"download {url} into {dirs[0]} (or set D4RL_DATASET_DIR), or set dataset_path: in the "
        f"config to a D4RL-layout HDF5 file, or make one here with "
        f"python -m algorithms.datasets.make_dataset --env {name.name} --out FILE"
    )
