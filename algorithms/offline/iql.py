"""IQL (Kostrikov et al., 2021, arXiv:2110.06169), as CORL trains it, plus its POGO energy.

Actor 0 is trained by advantage-weighted regression with `exp(beta * (Q_target - V))`; V by
expectile regression; Q by TD on V(s'). Actors i >= 1 of the chain minimise `-Q(s, pi(s))` or
`-(Q - V)` (`energy_function_type`), with Q the target twin-Q minimum IQL's own actor signal uses.
"""

import copy
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import CosineAnnealingLR

from algorithms.networks import DeterministicMLP, GaussianMLP, TwinQ, ValueFunction, get_action
from algorithms.networks.actors import BaseActor
from algorithms.offline.config import PogoConfig
from algorithms.offline.interface import (
    TensorBatch,
    TrainerBase,
    q_energy,
    resolve_energy_config,
)
from algorithms.offline.utils_pytorch import soft_update

EXP_ADV_MAX = 100.0


@dataclass
class Config(PogoConfig):
    algorithm: str = "iql"
    # inverse temperature of the advantage weights (small: BC, large: greedy w.r.t. Q)
    beta: float = 3.0
    # expectile of the V regression
    iql_tau: float = 0.7
    # deterministic actor (DeterministicMLP) instead of the Gaussian one
    iql_deterministic: bool = False
    # V learning rate
    vf_lr: float = 3e-4
    # Q learning rate
    qf_lr: float = 3e-4
    # dropout in the actor's hidden layers (null: none)
    actor_dropout: Optional[float] = None


def asymmetric_l2_loss(u: torch.Tensor, expectile: float) -> torch.Tensor:
    """Expectile regression loss: |expectile - 1(u < 0)| * u^2, averaged."""
    return torch.mean(torch.abs(expectile - (u < 0).float()) * u**2)


class ImplicitQLearning(TrainerBase):
    stateful = ("qf", "q_target", "q_optimizer", "vf", "v_optimizer", "actor")
    stateful += ("actor_optimizer", "actor_lr_schedule")

    def __init__(
        self,
        actor: BaseActor,
        q_network: TwinQ,
        v_network: ValueFunction,
        config: Config,
        device: str,
    ):
        self.actor = actor
        self.qf = q_network
        self.q_target = copy.deepcopy(q_network).requires_grad_(False)
        self.vf = v_network
        self.config = config
        self.actor_optimizer, self.actor_lr_schedule = self.make_actor_optimizer(actor)
        self.q_optimizer = torch.optim.Adam(self.qf.parameters(), lr=config.qf_lr)
        self.v_optimizer = torch.optim.Adam(self.vf.parameters(), lr=config.vf_lr)
        self.policy_freq = 1
        self.total_it = 0
        self.device = device

    def make_actor_optimizer(self, actor: BaseActor):
        optimizer = torch.optim.Adam(actor.parameters(), lr=self.config.actor_lr)
        return optimizer, CosineAnnealingLR(optimizer, self.config.max_timesteps)

    def _update_v(self, states, actions, log: Dict[str, float]) -> torch.Tensor:
        with torch.no_grad():
            target_q = self.q_target(states, actions)  # [B]
        adv = target_q - self.vf(states)  # [B]
        v_loss = asymmetric_l2_loss(adv, self.config.iql_tau)
        log["value_loss"] = v_loss.item()
        self.v_optimizer.zero_grad()
        v_loss.backward()
        self.v_optimizer.step()
        return adv

    def _update_q(self, next_v, states, actions, rewards, dones, log: Dict[str, float]) -> None:
        targets = rewards + (1.0 - dones) * self.config.discount * next_v.detach()  # [B]
        qs = self.qf.both(states, actions)
        q_loss = sum(F.mse_loss(q, targets) for q in qs) / len(qs)
        log["q_loss"] = q_loss.item()
        self.q_optimizer.zero_grad()
        q_loss.backward()
        self.q_optimizer.step()
        soft_update(self.q_target, self.qf, self.config.tau)

    def _update_policy(self, adv, states, actions, log: Dict[str, float]) -> None:
        exp_adv = torch.exp(self.config.beta * adv.detach()).clamp(max=EXP_ADV_MAX)  # [B]
        if self.actor.is_stochastic:
            bc_losses = -self.actor.log_prob_actions(states, actions)  # [B]
        else:
            bc_losses = torch.sum((self.actor(states) - actions) ** 2, dim=1)  # [B]
        policy_loss = torch.mean(exp_adv * bc_losses)
        log["actor_loss"] = policy_loss.item()
        self.actor_optimizer.zero_grad()
        policy_loss.backward()
        self.actor_optimizer.step()
        self.actor_lr_schedule.step()

    def train(self, batch: TensorBatch) -> Dict[str, float]:
        self.total_it += 1
        states, actions, rewards, next_states, dones = batch
        log: Dict[str, float] = {}
        with torch.no_grad():
            next_v = self.vf(next_states)  # [B]
        adv = self._update_v(states, actions, log)
        self._update_q(next_v, states, actions, rewards, dones, log)
        self._update_policy(adv, states, actions, log)
        return log

    def compute_energy_function(
        self, actor: BaseActor, states: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """-Q(s, pi(s)) or -(Q(s, pi(s)) - V(s)) per state, [B]."""
        q = self.q_target(states, get_action(actor, states))  # [B]
        if self.config.energy_function_type == "advantage":
            q = q - self.vf(states).detach()
        return q_energy(q, normalize=bool(self.config.energy_normalize_q))


def build(
    config: Config, state_dim: int, action_dim: int, max_action: float, device: str
) -> ImplicitQLearning:
    """CORL's IQL networks, built in CORL's order (Q, V, actor) so one seed gives one start."""
    # IQL's actor loss does not use Q's scale
    resolve_energy_config(config, has_value_function=True, normalize_q=False)
    q_network = TwinQ(state_dim, action_dim).to(device)
    v_network = ValueFunction(state_dim).to(device)
    actor_cls = DeterministicMLP if config.iql_deterministic else GaussianMLP
    actor = actor_cls(state_dim, action_dim, max_action, dropout=config.actor_dropout).to(device)
    return ImplicitQLearning(actor, q_network, v_network, config, device)
