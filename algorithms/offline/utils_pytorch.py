"""PyTorch utilities shared by every algorithm: seeding, targets, the replay buffer, evaluation."""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from algorithms.datasets.envs import make_env
from algorithms.errors import NonFiniteError
from algorithms.networks.adapters import ActorAPI
from algorithms.networks.policy_call import act_for_eval


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and the global torch RNG (the stream the base algorithm uses)."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(device: str) -> dict:
    """Every global random state a run draws from (resume restores them)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.device(device).type == "cuda" else None,
    }


def set_rng_state(state: dict, device: str) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda"])


def _resume_hint(last_good: Path | None) -> str:
    if last_good is None:
        return "no checkpoint was written before it"
    return f"last good checkpoint: {last_good} (continue from it with --resume)"


#: One update's log: names to detached 0-dim tensors on the run's device (read only when
#: logged, so an update needs no host synchronisation), or plain floats.
UpdateLog = dict[str, torch.Tensor | float]


def read_values(values: Sequence[torch.Tensor | float]) -> list[float]:
    """Log values as Python floats, every tensor among them read from the device in one
    transfer (`torch.stack` of the 0-dim tensors, their dtypes promoted to a common one)."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    read = iter(torch.stack(tensors).cpu().tolist() if tensors else [])
    return [next(read) if isinstance(v, torch.Tensor) else float(v) for v in values]


def log_values(log: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    """A log's values as Python floats, read in one transfer."""
    return dict(zip(log, read_values(list(log.values()))))


class LossGuard:
    """The NaN/Inf guard on the losses, with no host read per update.

    Each update's log (device tensors) is kept by `record`; `check` (at a logged update, before
    an evaluation or a checkpoint) reads all of them in one transfer and, if any is not finite,
    stops with `check_finite_losses`' message for the first update that had one.
    """

    def __init__(self) -> None:
        self.pending: list[tuple[int, UpdateLog]] = []  # (step, log) since the last check

    def record(self, step: int, log: UpdateLog) -> None:
        self.pending.append((step, log))

    def check(self, last_good: Callable[[], Path | None]) -> None:
        """`last_good` (the newest checkpoint, for the message) is asked only on a failure."""
        pending, self.pending = self.pending, []
        values = [v for _, log in pending for v in log.values()]
        if all(math.isfinite(v) for v in read_values(values)):
            return
        good = last_good()
        for step, log in pending:  # the first update with a non-finite loss raises
            check_finite_losses(log_values(log), step, good)


def check_finite_losses(log: dict[str, float], step: int, last_good: Path | None) -> None:
    """Stop at the first non-finite loss, naming the step, the actor and the loss.

    Keys `chain/<name>_<i>` belong to actor i; every other loss to the base algorithm (actor 0
    and the critics).
    """
    for key, value in log.items():
        if not math.isfinite(value):
            if key.startswith("chain/"):
                actor = f"actor {key.rsplit('_', 1)[1]}"
            else:
                actor = "actor 0 / critics"
            raise NonFiniteError(
                f"step {step}: {actor}: loss {key} is {value}; {_resume_hint(last_good)}"
            )


def check_finite_state(state: dict, step: int, last_good: Path | None) -> None:
    """Stop before checkpointing a non-finite parameter, naming where it is."""
    for name in ("trainer", "chain"):
        for path, tensor in named_tensors(state[name], name):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise NonFiniteError(
                    f"step {step}: non-finite values in {path}; {_resume_hint(last_good)}"
                )


def named_tensors(tree, prefix: str = ""):
    """(dotted path, tensor) for every tensor in nested dicts/lists (state dicts, checkpoints)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from named_tensors(value, f"{prefix}.{key}")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from named_tensors(value, f"{prefix}.{i}")
    elif torch.is_tensor(tree):
        yield prefix, tree


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim; a no-op elsewhere).

    Evaluation's allocations interleaved with training's fragment the heap: without this, a
    long run's RSS grows by megabytes per evaluation although nothing leaks (see
    scripts/memory_check.py).
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging: target <- (1 - tau) target + tau source."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(1.0 - tau).add_(s, alpha=tau)


class RandomStream:
    """A private stream of torch's global RNG: code inside `with stream:` draws from it.

    The chain and evaluation run inside their own streams, so whatever they sample (policy
    noise, W2 noise, new networks) leaves the base algorithm's random numbers exactly as they
    would be without them: actor 0 and the critics do not depend on `num_actors`.
    """

    def __init__(self, seed: int, device: str):
        self.cuda = torch.device(device).type == "cuda"
        with torch.random.fork_rng(devices=self._devices()):
            torch.manual_seed(seed)
            self._state = self._get()

    def _devices(self) -> list:
        return [torch.cuda.current_device()] if self.cuda else []

    def _get(self) -> tuple:
        return (torch.get_rng_state(), torch.cuda.get_rng_state() if self.cuda else None)

    def _set(self, state: tuple) -> None:
        torch.set_rng_state(state[0])
        if self.cuda:
            torch.cuda.set_rng_state(state[1])

    def __enter__(self) -> RandomStream:
        self._outer = self._get()
        self._set(self._state)
        return self

    def __exit__(self, *exc) -> None:
        self._state = self._get()
        self._set(self._outer)

    def state_dict(self) -> dict:
        return {"cpu": self._state[0], "cuda": self._state[1]}

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint made on the CPU has no CUDA state: the fresh stream's stays
        cuda = state["cuda"] if state["cuda"] is not None else self._state[1]
        self._state = (state["cpu"], cuda if self.cuda else None)


class ReplayBuffer:
    """The whole offline dataset as tensors on the training device; sampling never leaves it.

    Batches are drawn with a private generator so that the base update and the chain, which use
    other streams, cannot shift which transitions are sampled.
    """

    def __init__(self, dataset: dict[str, np.ndarray], device: str, seed: int):
        def as_tensor(key: str) -> torch.Tensor:
            return torch.as_tensor(dataset[key], dtype=torch.float32, device=device)

        self.states = as_tensor("observations")  # [N, S]
        self.actions = as_tensor("actions")  # [N, A]
        self.rewards = as_tensor("rewards").reshape(-1)  # [N]
        self.next_states = as_tensor("next_observations")  # [N, S]
        self.dones = as_tensor("terminals").reshape(-1)  # [N]
        self.size = self.states.shape[0]
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def sample(self, batch_size: int) -> list[torch.Tensor]:
        idx = torch.randint(
            0, self.size, (batch_size,), generator=self.generator, device=self.states.device
        )  # [B]
        return [
            self.states[idx],
            self.actions[idx],
            self.rewards[idx],
            self.next_states[idx],
            self.dones[idx],
        ]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "device": self.generator.device.type}

    def load_state_dict(self, state: dict) -> None:
        """The saved sampler; from a run on another device type (resumed on the CPU after a
        GPU, say), a stream seeded by the saved state: one device's generator state does not
        load into another's, and such a resume is not number for number anyway."""
        saved = state["generator"]
        if state.get("device", self.generator.device.type) == self.generator.device.type:
            self.generator.set_state(saved)
        else:
            digest = hashlib.sha256(saved.numpy().tobytes()).digest()
            self.generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@torch.no_grad()
def evaluate_actors(
    actors: list[ActorAPI],
    env_id: str,
    n_episodes: int,
    seed: int,
    state_mean: np.ndarray,
    state_std: np.ndarray,
    mode: str,
    device: str,
) -> np.ndarray:
    """Undiscounted returns of every actor, [n_actors, n_episodes].

    All actors play the same episodes (episode j resets with `seed + j`), in lockstep: one
    batched forward per actor per step. Each actor samples from its own stream seeded by
    `seed` (common random numbers): evaluation never touches the training RNG, and an actor's
    score does not depend on how many actors are evaluated beside it.
    """
    streams = [RandomStream(seed, device) for _ in actors]
    n_actors = len(actors)
    envs = [[make_env(env_id) for _ in range(n_episodes)] for _ in range(n_actors)]
    obs = np.stack(
        [np.stack([env.reset(seed=seed + j)[0] for j, env in enumerate(row)]) for row in envs]
    )  # [n_actors, n_episodes, S]
    low, high = envs[0][0].action_space.low, envs[0][0].action_space.high
    returns = np.zeros((n_actors, n_episodes))
    alive = np.ones((n_actors, n_episodes), dtype=bool)
    training = [getattr(a, "training", False) for a in actors]
    for actor in actors:
        actor.eval()
    while alive.any():
        for i, actor in enumerate(actors):
            live = np.flatnonzero(alive[i])
            if live.size == 0:
                continue
            states = torch.as_tensor(
                (obs[i, live] - state_mean) / state_std, dtype=torch.float32, device=device
            )  # [n_live, S]
            with streams[i]:
                actions = act_for_eval(actor, states, mode).cpu().numpy()  # [n_live, A]
            actions = np.clip(actions, low, high)  # Gaussian samples can leave the box
            for j, action in zip(live, actions):
                next_obs, reward, terminated, truncated, _ = envs[i][j].step(action)
                returns[i, j] += reward
                obs[i, j] = next_obs
                if terminated or truncated:
                    alive[i, j] = False
    for actor, was_training in zip(actors, training):
        actor.train(was_training)
    for row in envs:
        for env in row:
            env.close()
    return returns
