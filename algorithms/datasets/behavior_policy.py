"""Behaviour policies for the local D4RL-style datasets: SAC trained online, shipped small.

D4RL made its ``medium`` data with a SAC policy at about a third of expert performance and its
``medium-replay`` data from that agent's replay buffer. This module does the same here, with
stable-baselines3's SAC on gymnasium's MuJoCo envs (``requirements/requirements_behavior.txt``):

    python -m algorithms.datasets.behavior_policy --env hopper --seed 0

It evaluates the stochastic policy every ``--eval_freq`` steps. The first policy whose mean return
reaches ``--medium_fraction`` of D4RL's expert reference return is the **medium** actor, and the
replay buffer at that step is the medium-replay source; ``--expert_fraction`` likewise gives an
**expert** actor when training gets that far. Actors are stored as ``TanhGaussianMLP`` state dicts
(no SB3 zip, critics or optimisers) beside a JSON record of how they were made, so loading them
(:func:`load_behavior_actor`) needs torch only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algorithms.datasets.d4rl import write_hdf5
from algorithms.datasets.envs import ENV_IDS, REF_RETURNS, make_env, normalized_score
from algorithms.errors import BehaviorPolicyError
from algorithms.networks.actors import TanhGaussianMLP

# Shipped actors: <family>_<level>.pt (state dict) and <family>_<level>.json (how it was made).
ACTORS_DIR = Path(__file__).resolve().parent / "behavior_actors"
# Replay buffers are datasets (made by a command, not committed): the medium-replay source.
DEFAULT_REPLAY_DIR = Path("data") / "behavior"
LEVELS = ("medium", "expert")
SB3_LOG_STD_MIN = -20.0  # SB3's SAC clamps the log-std to [-20, 2]; the loaded actor must agree
SB3_LOG_STD_MAX = 2.0
HIDDEN_DIM, N_HIDDEN = 256, 2  # SB3's default SAC actor for continuous control
INSTALL_HINT = "pip install -r requirements/requirements_behavior.txt"


def actor_paths(family: str, level: str, actors_dir: Path = ACTORS_DIR) -> tuple[Path, Path]:
    """(state dict, JSON record) of one shipped actor."""
    return actors_dir / f"{family}_{level}.pt", actors_dir / f"{family}_{level}.json"


def replay_path(family: str, replay_dir: Path = DEFAULT_REPLAY_DIR) -> Path:
    return Path(replay_dir) / f"{family}_medium_replay.hdf5"


def available_levels(family: str, actors_dir: Path = ACTORS_DIR) -> list[str]:
    return [lv for lv in LEVELS if all(p.is_file() for p in actor_paths(family, lv, actors_dir))]


def load_behavior_actor(
    family: str, level: str, actors_dir: Path = ACTORS_DIR
) -> tuple[TanhGaussianMLP, dict[str, Any]]:
    """The shipped ``level`` actor of ``family`` (eval mode) and its record."""
    weights, record_file = actor_paths(family, level, actors_dir)
    if not weights.is_file() or not record_file.is_file():
        have = ", ".join(available_levels(family, actors_dir)) or "none"
        raise BehaviorPolicyError(
            f"no {level} behaviour actor for {family} ({weights} missing; shipped levels: {have}); "
            f"train one with: python -m algorithms.datasets.behavior_policy --env {family}"
        )
    record = json.loads(record_file.read_text())
    arch = record["architecture"]
    actor = TanhGaussianMLP(
        arch["state_dim"],
        arch["action_dim"],
        max_action=arch["max_action"],
        hidden_dim=arch["hidden_dim"],
        n_hidden=arch["n_hidden"],
        log_std_min=arch["log_std_min"],
        log_std_max=arch["log_std_max"],
    )
    try:
        actor.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (RuntimeError, OSError, KeyError) as e:
        raise BehaviorPolicyError(f"{weights} does not match its record {record_file}: {e}") from e
    return actor.eval(), record


def sb3_to_actor(sb3_actor: torch.nn.Module, state_dim: int, action_dim: int) -> TanhGaussianMLP:
    """SB3's SAC actor (trunk, then separate mean and log-std heads) as the project's actor.

    The two heads become the halves of one output layer, in the order ``TanhGaussianMLP`` chunks.
    """
    actor = TanhGaussianMLP(
        state_dim,
        action_dim,
        max_action=1.0,
        hidden_dim=HIDDEN_DIM,
        n_hidden=N_HIDDEN,
        log_std_min=SB3_LOG_STD_MIN,
        log_std_max=SB3_LOG_STD_MAX,
    )
    linears = [m for m in sb3_actor.latent_pi if isinstance(m, torch.nn.Linear)]
    ours = [m for m in actor.net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for src, dst in zip(linears, ours[:-1]):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        ours[-1].weight.copy_(torch.cat([sb3_actor.mu.weight, sb3_actor.log_std.weight]))
        ours[-1].bias.copy_(torch.cat([sb3_actor.mu.bias, sb3_actor.log_std.bias]))
    return actor.eval()


def rollout_returns(
    actor: TanhGaussianMLP, family: str, episodes: int, seed: int, max_steps: int = 1000
) -> np.ndarray:
    """Undiscounted returns of ``actor`` sampling its actions (as the datasets are collected)."""
    env = make_env(ENV_IDS[family], max_episode_steps=max_steps)
    gen = torch.Generator().manual_seed(seed)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            with torch.no_grad():
                state = torch.as_tensor(obs, dtype=torch.float32)[None]
                action = actor.sample_actions(state, 1, generator=gen)[0, 0].numpy()
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return np.asarray(returns)


def _replay_arrays(buffer: Any, size: int) -> dict[str, np.ndarray]:
    """SB3's replay buffer (one env) up to ``size`` rows in D4RL's layout."""
    dones = buffer.dones[:size, 0].astype(bool)
    timeouts = buffer.timeouts[:size, 0].astype(bool)
    data = {
        "observations": buffer.observations[:size, 0].astype(np.float32),
        "actions": buffer.actions[:size, 0].astype(np.float32),
        "rewards": buffer.rewards[:size, 0].astype(np.float32),
        "next_observations": buffer.next_observations[:size, 0].astype(np.float32),
        "terminals": dones & ~timeouts,
        "timeouts": timeouts,
    }
    # The buffer stops mid-episode: its last row ends that episode as a cut, as D4RL's files do.
    if size and not data["terminals"][-1]:
        data["timeouts"][-1] = True
    return data


def train(args: argparse.Namespace) -> None:
    try:
        from stable_baselines3 import SAC
        from stable_baselines3.common.callbacks import BaseCallback
    except ImportError:
        sys.exit(f"behavior_policy: stable-baselines3 is not installed; {INSTALL_HINT}")

    torch.set_num_threads(args.threads)
    family = args.env
    ref_expert = REF_RETURNS[family][1]
    targets = {
        "medium": args.medium_fraction * ref_expert,
        "expert": args.expert_fraction * ref_expert,
    }
    env = make_env(ENV_IDS[family], max_episode_steps=1000)
    state_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    model = SAC(
        "MlpPolicy",
        env,
        learning_starts=args.learning_starts,
        buffer_size=args.max_steps,
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    actors_dir, replay_dir = Path(args.actors_dir), Path(args.replay_dir)
    start = time.time()
    saved: dict[str, dict[str, Any]] = {}

    def save_level(level: str, step: int, sb3_return: float) -> None:
        actor = sb3_to_actor(model.actor, state_dim, action_dim)
        returns = rollout_returns(actor, family, args.eval_episodes, seed=10_000 + args.seed)
        weights, record_file = actor_paths(family, level, actors_dir)
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(actor.state_dict(), weights)
        record = {
            "family": family,
            "level": level,
            "gymnasium_env_id": ENV_IDS[family],
            "algorithm": "stable-baselines3 SAC (MlpPolicy, default hyperparameters)",
            "learning_starts": args.learning_starts,
            "seed": args.seed,
            "env_steps": step,
            "target_return": targets[level],
            "sb3_eval_return": sb3_return,
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "return_episodes": len(returns),
            "normalized_score": float(normalized_score(family, returns.mean())),
            "train_minutes": round((time.time() - start) / 60, 1),
            "architecture": {
                "type": "tanh_gaussian",
                "state_dim": state_dim,
                "action_dim": action_dim,
                "max_action": 1.0,
                "hidden_dim": HIDDEN_DIM,
                "n_hidden": N_HIDDEN,
                "log_std_min": SB3_LOG_STD_MIN,
                "log_std_max": SB3_LOG_STD_MAX,
            },
        }
        if level == "medium":
            # SB3 calls back before storing the step's transition: the buffer holds step - 1 rows.
            rows = model.replay_buffer.pos
            path = replay_path(family, replay_dir)
            write_hdf5(path, _replay_arrays(model.replay_buffer, rows), {"env_steps": step})
            record["replay_buffer_rows"] = rows
        record_file.write_text(json.dumps(record, indent=2) + "\n")
        saved[level] = record
        print(
            f"[{family}] saved {level} actor at step {step}: return {returns.mean():.0f}",
            flush=True,
        )

    class LevelCallback(BaseCallback):
        """Evaluate every eval_freq steps; save the first policy past each level's target."""

        def _on_step(self) -> bool:
            step = self.num_timesteps
            if step % args.eval_freq:
                return True
            eval_env = make_env(ENV_IDS[family], max_episode_steps=1000)
            rets = []
            for ep in range(args.eval_episodes):
                obs, _ = eval_env.reset(seed=1_000_000 + step + ep)
                done, total = False, 0.0
                while not done:
                    action, _ = self.model.predict(obs, deterministic=False)
                    obs, reward, terminated, truncated, _ = eval_env.step(action)
                    total += float(reward)
                    done = terminated or truncated
                rets.append(total)
            eval_env.close()
            mean = float(np.mean(rets))
            mins = (time.time() - start) / 60
            print(f"[{family}] step {step}: return {mean:.0f} ({mins:.1f} min)", flush=True)
            for level in LEVELS:
                if level not in saved and mean >= targets[level]:
                    save_level(level, step, mean)
            return args.stop_after not in saved

    model.learn(total_timesteps=args.max_steps, callback=LevelCallback())
    wanted = LEVELS[: LEVELS.index(args.stop_after) + 1]
    missing = [lv for lv in wanted if lv not in saved]
    if missing:
        print(f"[{family}] not reached within {args.max_steps} steps: {', '.join(missing)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m algorithms.datasets.behavior_policy",
        description="Train SB3 SAC online and save medium (and expert) behaviour actors.",
    )
    parser.add_argument("--env", required=True, choices=sorted(ENV_IDS), help="D4RL family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_steps", type=int, default=1_000_000, help="env steps at most")
    parser.add_argument("--learning_starts", type=int, default=10_000, help="random steps first")
    parser.add_argument("--eval_freq", type=int, default=5_000, help="env steps between evals")
    parser.add_argument("--eval_episodes", type=int, default=10)
    parser.add_argument("--medium_fraction", type=float, default=1 / 3, help="of expert return")
    parser.add_argument("--expert_fraction", type=float, default=0.9, help="of expert return")
    parser.add_argument("--stop_after", choices=LEVELS, default="expert", help="last level")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--actors_dir", default=str(ACTORS_DIR))
    parser.add_argument("--replay_dir", default=str(DEFAULT_REPLAY_DIR))
    train(parser.parse_args(argv))


if __name__ == "__main__":
    main()
