"""TD3+BC (Fujimoto & Gu, 2021, arXiv:2106.06860), as CORL trains it, plus its POGO energy.

Actor 0 minimises `-alpha * Q / mean|Q| + ||pi(s) - a||^2` every `policy_freq` updates; twin
critics learn from a clipped-noise target actor. Actors i >= 1 minimise `-Q1(s, pi(s))`, by default
normalised as in TD3+BC's own loss (`-alpha * Q / mean|Q|`): the W2 term takes the BC term's place.
"""

import copy
from dataclasses import dataclass
from typing import Any, Dict

import torch
import torch.nn.functional as F

from algorithms.networks import DeterministicMLP, FullyConnectedQFunction, get_action
from algorithms.networks.actors import BaseActor
from algorithms.offline.config import PogoConfig
from algorithms.offline.interface import TensorBatch, q_energy, resolve_energy_config
from algorithms.offline.utils_pytorch import soft_update


@dataclass
class Config(PogoConfig):
    algorithm: str = "td3_bc"
    # weight of Q in the actor loss (lambda = alpha / mean|Q|)
    alpha: float = 2.5
    # std of the Gaussian noise on the target actor's action
    policy_noise: float = 0.2
    # clip of that noise
    noise_clip: float = 0.5
    # actor (and target) update every policy_freq critic updates
    policy_freq: int = 2
    # critic learning rate
    critic_lr: float = 3e-4


class TD3_BC:
    def __init__(
        self,
        actor: BaseActor,
        critic_1: FullyConnectedQFunction,
        critic_2: FullyConnectedQFunction,
        config: Config,
        max_action: float,
        device: str,
    ):
        self.config = config
        self.actor = actor
        self.actor_target = copy.deepcopy(actor).requires_grad_(False)
        self.actor_optimizer, _ = self.make_actor_optimizer(actor)
        self.critic_1, self.critic_2 = critic_1, critic_2
        self.critic_1_target = copy.deepcopy(critic_1).requires_grad_(False)
        self.critic_2_target = copy.deepcopy(critic_2).requires_grad_(False)
        self.critic_1_optimizer = torch.optim.Adam(critic_1.parameters(), lr=config.critic_lr)
        self.critic_2_optimizer = torch.optim.Adam(critic_2.parameters(), lr=config.critic_lr)
        self.max_action = max_action
        self.policy_freq = config.policy_freq
        self.total_it = 0
        self.device = device

    def make_actor_optimizer(self, actor: BaseActor):
        return torch.optim.Adam(actor.parameters(), lr=self.config.actor_lr), None

    def train(self, batch: TensorBatch) -> Dict[str, float]:
        log: Dict[str, float] = {}
        self.total_it += 1
        states, actions, rewards, next_states, dones = batch
        c = self.config

        with torch.no_grad():
            noise = (torch.randn_like(actions) * c.policy_noise).clamp(-c.noise_clip, c.noise_clip)
            next_actions = (self.actor_target(next_states) + noise).clamp(
                -self.max_action, self.max_action
            )  # [B, A]
            target_q = torch.min(
                self.critic_1_target(next_states, next_actions),
                self.critic_2_target(next_states, next_actions),
            )  # [B]
            target_q = rewards + (1.0 - dones) * c.discount * target_q

        critic_loss = F.mse_loss(self.critic_1(states, actions), target_q) + F.mse_loss(
            self.critic_2(states, actions), target_q
        )
        log["critic_loss"] = critic_loss.item()
        self.critic_1_optimizer.zero_grad()
        self.critic_2_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_1_optimizer.step()
        self.critic_2_optimizer.step()

        if self.total_it % self.policy_freq == 0:
            pi = self.actor(states)  # [B, A]
            q = self.critic_1(states, pi)  # [B]
            lmbda = c.alpha / q.abs().mean().detach()
            actor_loss = -lmbda * q.mean() + F.mse_loss(pi, actions)
            log["actor_loss"] = actor_loss.item()
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()

            soft_update(self.critic_1_target, self.critic_1, c.tau)
            soft_update(self.critic_2_target, self.critic_2, c.tau)
            soft_update(self.actor_target, self.actor, c.tau)
        return log

    def compute_energy_function(
        self, actor: BaseActor, states: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """-Q1(s, pi(s)) per state [B]; `-alpha * Q1 / mean|Q1|` when normalised (the default)."""
        q = self.critic_1(states, get_action(actor, states))  # [B]
        return q_energy(q, normalize=bool(self.config.energy_normalize_q), scale=self.config.alpha)

    def state_dict(self) -> Dict[str, Any]:
        return {
            "critic_1": self.critic_1.state_dict(),
            "critic_1_target": self.critic_1_target.state_dict(),
            "critic_1_optimizer": self.critic_1_optimizer.state_dict(),
            "critic_2": self.critic_2.state_dict(),
            "critic_2_target": self.critic_2_target.state_dict(),
            "critic_2_optimizer": self.critic_2_optimizer.state_dict(),
            "actor": self.actor.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "total_it": self.total_it,
        }

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        for name in ("critic_1", "critic_2", "actor"):
            getattr(self, name).load_state_dict(state_dict[name])
            getattr(self, f"{name}_target").load_state_dict(state_dict[f"{name}_target"])
            getattr(self, f"{name}_optimizer").load_state_dict(state_dict[f"{name}_optimizer"])
        self.total_it = state_dict["total_it"]


def build(
    config: Config, state_dim: int, action_dim: int, max_action: float, device: str
) -> TD3_BC:
    """CORL's TD3+BC networks, built in CORL's order (actor, critic 1, critic 2)."""
    # normalised as TD3+BC's own actor loss
    resolve_energy_config(config, has_value_function=False, normalize_q=True)
    actor = DeterministicMLP(state_dim, action_dim, max_action).to(device)
    critic_1 = FullyConnectedQFunction(state_dim, action_dim).to(device)
    critic_2 = FullyConnectedQFunction(state_dim, action_dim).to(device)
    return TD3_BC(actor, critic_1, critic_2, config, max_action, device)
