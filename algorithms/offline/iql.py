"""IQL (Kostrikov et al., 2021, arXiv:2110.06169), as CORL trains it, plus its POGO energy.

Actor 0 is trained by advantage-weighted regression with `exp(beta * (Q_target - V))`; V by
expectile regression; Q by TD on V(s'). Actors i >= 1 of the chain minimise `-Q(s, pi(s))` or
`-(Q - V)` (`energy_function_type`), with Q the target twin-Q minimum IQL's own actor signal uses.
"""

import copy
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import CosineAnnealingLR

from algorithms.networks import DeterministicMLP, GaussianMLP, TwinQ, ValueFunction, get_action
from algorithms.networks.actors import BaseActor
from algorithms.offline.config import PogoConfig
from algorithms.offline.interface import TensorBatch, TrainerBase, q_energy
from algorithms.offline.utils_pytorch import UpdateLog, soft_update

EXP_ADV_MAX = 100.0


@dataclass
class Config(PogoConfig):
    has_value_function = True  # the advantage energy -(Q - V)
    # IQL's own actor loss (advantage-weighted regression) has no Q scale to follow. Raw -Q
    # (hundreds on locomotion data) outweighs w2_weights' W2^2 and the chain leaves the data
    # (docs/chain_study_history.md): divide by mean|Q| as TD3+BC does.
    default_energy_normalize_q = True

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
    # one backward pass over the V, Q and actor losses (CORL's gradients; false: CORL's 3 passes)
    single_backward: bool = True


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

    def _v_loss(self, states, actions) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            target_q = self.q_target(states, actions)  # [B]
        adv = target_q - self.vf(states)  # [B]
        return asymmetric_l2_loss(adv, self.config.iql_tau), adv

    def _q_loss(self, next_v, states, actions, rewards, dones) -> torch.Tensor:
        targets = rewards + (1.0 - dones) * self.config.discount * next_v.detach()  # [B]
        qs = self.qf.both(states, actions)
        return sum(F.mse_loss(q, targets) for q in qs) / len(qs)

    def _policy_loss(self, adv, states, actions) -> torch.Tensor:
        exp_adv = torch.exp(self.config.beta * adv.detach()).clamp(max=EXP_ADV_MAX)  # [B]
        if self.actor.is_stochastic:
            bc_losses = -self.actor.log_prob_actions(states, actions)  # [B]
        else:
            bc_losses = torch.sum((self.actor(states) - actions) ** 2, dim=1)  # [B]
        return torch.mean(exp_adv * bc_losses)

    def train(self, batch: TensorBatch) -> UpdateLog:
        """CORL's V, Q and actor steps. The three losses share no parameters and all read the
        networks before this update (V's step comes first in CORL, but Q's target uses V(s')
        taken before it, and the actor's weights use the advantage taken before it), so one
        backward pass over their sum gives each network exactly CORL's gradient; with
        `single_backward: false` they take CORL's three passes (the same numbers, slower)."""
        self.total_it += 1
        states, actions, rewards, next_states, dones = batch
        with torch.no_grad():
            next_v = self.vf(next_states)  # [B]
        optimizers = (self.v_optimizer, self.q_optimizer, self.actor_optimizer)
        if self.config.single_backward:
            v_loss, adv = self._v_loss(states, actions)
            q_loss = self._q_loss(next_v, states, actions, rewards, dones)
            policy_loss = self._policy_loss(adv, states, actions)
            for optimizer in optimizers:
                optimizer.zero_grad()
            (v_loss + q_loss + policy_loss).backward()
            for optimizer in optimizers:
                optimizer.step()
        else:  # CORL's order: each loss, its backward and its step in turn
            v_loss, adv = self._v_loss(states, actions)
            self._step(self.v_optimizer, v_loss)
            q_loss = self._q_loss(next_v, states, actions, rewards, dones)
            self._step(self.q_optimizer, q_loss)
            policy_loss = self._policy_loss(adv, states, actions)
            self._step(self.actor_optimizer, policy_loss)
        soft_update(self.q_target, self.qf, self.config.tau)
        self.actor_lr_schedule.step()
        return {
            "value_loss": v_loss.detach(),
            "q_loss": q_loss.detach(),
            "actor_loss": policy_loss.detach(),
        }

    @staticmethod
    def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def q_value(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.q_target(states, actions)  # [B]

    def compute_energy_function(
        self, actor: BaseActor, states: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """-Q(s, pi(s)) or -(Q(s, pi(s)) - V(s)) per state, [B]."""
        q = self.q_value(states, get_action(actor, states))  # [B]
        v = self.vf(states).detach() if self.config.energy_function_type == "advantage" else None
        return q_energy(q, normalize=bool(self.config.energy_normalize_q), baseline=v)


def build(
    config: Config, state_dim: int, action_dim: int, max_action: float, device: str
) -> ImplicitQLearning:
    """CORL's IQL networks, built in CORL's order (Q, V, actor) so one seed gives one start."""
    q_network = TwinQ(state_dim, action_dim).to(device)
    v_network = ValueFunction(state_dim).to(device)
    actor_cls = DeterministicMLP if config.iql_deterministic else GaussianMLP
    actor = actor_cls(state_dim, action_dim, max_action, dropout=config.actor_dropout).to(device)
    return ImplicitQLearning(actor, q_network, v_network, config, device)
