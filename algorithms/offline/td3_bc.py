"""TD3+BC (Fujimoto & Gu, 2021, arXiv:2106.06860), as CORL trains it, plus its POGO energy.

Actor 0 minimises `-alpha * Q / mean|Q| + ||pi(s) - a||^2` every `policy_freq` updates; twin
critics learn from a clipped-noise target actor. Actors i >= 1 minimise `-Q1(s, pi(s))`, by default
normalised as in TD3+BC's own loss (`-alpha * Q / mean|Q|`): the W2 term takes the BC term's place.
"""

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from algorithms.networks import DeterministicMLP, FullyConnectedQFunction, get_action
from algorithms.networks.actors import BaseActor
from algorithms.offline.config import PogoConfig
from algorithms.offline.interface import TensorBatch, TrainerBase, q_energy
from algorithms.offline.utils_pytorch import UpdateLog, soft_update


@dataclass
class Config(PogoConfig):
    default_energy_normalize_q = True  # normalised as TD3+BC's own actor loss

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


class TD3_BC(TrainerBase):
    stateful = ("critic_1", "critic_1_target", "critic_1_optimizer", "critic_2")
    stateful += ("critic_2_target", "critic_2_optimizer", "actor", "actor_target")
    stateful += ("actor_optimizer",)

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

    def train(self, batch: TensorBatch) -> UpdateLog:
        log: UpdateLog = {}
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
        log["critic_loss"] = critic_loss.detach()
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
            log["actor_loss"] = actor_loss.detach()
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            self.actor_optimizer.step()

            soft_update(self.critic_1_target, self.critic_1, c.tau)
            soft_update(self.critic_2_target, self.critic_2, c.tau)
            soft_update(self.actor_target, self.actor, c.tau)
        return log

    def q_value(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.critic_1(states, actions)  # [B]: Q1, as TD3+BC's actor loss

    def compute_energy_function(
        self, actor: BaseActor, states: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """-Q1(s, pi(s)) per state [B]; `-alpha * Q1 / mean|Q1|` when normalised (the default)."""
        q = self.q_value(states, get_action(actor, states))  # [B]
        return q_energy(q, normalize=bool(self.config.energy_normalize_q), scale=self.config.alpha)


def build(
    config: Config, state_dim: int, action_dim: int, max_action: float, device: str
) -> TD3_BC:
    """CORL's TD3+BC networks, built in CORL's order (actor, critic 1, critic 2)."""
    actor = DeterministicMLP(state_dim, action_dim, max_action).to(device)
    critic_1 = FullyConnectedQFunction(state_dim, action_dim).to(device)
    critic_2 = FullyConnectedQFunction(state_dim, action_dim).to(device)
    return TD3_BC(actor, critic_1, critic_2, config, max_action, device)
