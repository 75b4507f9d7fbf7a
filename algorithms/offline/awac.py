"""AWAC (Nair et al., 2020, arXiv:2006.09359), as CORL trains it, plus its POGO energy.

Actor 0 is a Gaussian with an unsquashed mean and a learned state-independent log-std; it
maximises the data's log-likelihood weighted by `exp((Q(s, a) - V(s)) / awac_lambda)`, where
`V(s) = min(Q1, Q2)(s, a_pi)` at an action sampled from the policy. Twin critics learn by TD on
the policy's next actions and the target critics' minimum. Actors i >= 1 minimise
`-min(Q1, Q2)(s, pi(s))` at the Gaussian's mean clipped to the action box (where evaluation
plays it), or `-(Q - V)` (`energy_function_type: advantage`) with AWAC's own V.
"""

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from algorithms.networks import FullyConnectedQFunction, GaussianMLP, get_action
from algorithms.networks.actors import BaseActor
from algorithms.offline.config import ConfigError, PogoConfig
from algorithms.offline.interface import TensorBatch, TrainerBase, q_energy
from algorithms.offline.utils_pytorch import UpdateLog, soft_update

#: clip of the advantage weights exp(A / lambda)
EXP_ADV_MAX = 100.0


@dataclass
class Config(PogoConfig):
    has_value_function = True  # its V is Q at actor 0's sampled action
    # AWAC's own actor loss (advantage-weighted) has no Q scale to follow; raw -Q outweighs
    # w2_weights' W2^2 and the chain leaves the data (docs/chain_study_history.md): divide by
    # mean|Q|.
    default_energy_normalize_q = True

    algorithm: str = "awac"
    # temperature of the advantage weights (small: greedy w.r.t. Q, large: BC)
    awac_lambda: float = 1.0
    # hidden units of the actor's and the critics' 3 hidden layers
    hidden_dim: int = 256
    # critic learning rate (CORL's learning_rate, shared with actor_lr)
    critic_lr: float = 3e-4

    def check(self) -> None:
        super().check()
        if self.awac_lambda <= 0:
            raise ConfigError(f"awac_lambda: must be > 0, got {self.awac_lambda}")
        if self.hidden_dim < 1:
            raise ConfigError(f"hidden_dim: must be >= 1, got {self.hidden_dim}")


class AdvantageWeightedActorCritic(TrainerBase):
    stateful = ("actor", "actor_optimizer", "critic_1", "critic_1_target", "critic_1_optimizer")
    stateful += ("critic_2", "critic_2_target", "critic_2_optimizer")

    def __init__(
        self,
        actor: GaussianMLP,
        critic_1: FullyConnectedQFunction,
        critic_2: FullyConnectedQFunction,
        config: Config,
        max_action: float,
        device: str,
    ):
        self.config = config
        self.actor = actor
        self.actor_optimizer, _ = self.make_actor_optimizer(actor)
        self.critic_1, self.critic_2 = critic_1, critic_2
        self.critic_1_target = copy.deepcopy(critic_1).requires_grad_(False)
        self.critic_2_target = copy.deepcopy(critic_2).requires_grad_(False)
        self.critic_1_optimizer = torch.optim.Adam(critic_1.parameters(), lr=config.critic_lr)
        self.critic_2_optimizer = torch.optim.Adam(critic_2.parameters(), lr=config.critic_lr)
        self.max_action = max_action
        self.policy_freq = 1
        self.total_it = 0
        self.device = device

    @torch.no_grad()
    def _policy_sample(self, states: torch.Tensor) -> torch.Tensor:
        """An action of actor 0, sampled and clipped to the action box as AWAC does: [B, A]."""
        mean, std = self.actor.get_mean_std(states)
        actions = mean + std * torch.randn_like(mean)
        return actions.clamp(-self.max_action, self.max_action)

    def q_value(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.min(self.critic_1(states, actions), self.critic_2(states, actions))  # [B]

    @torch.no_grad()
    def value(self, states: torch.Tensor) -> torch.Tensor:
        """AWAC's baseline V(s) = min Q(s, a), a ~ pi_0 (one sample): [B]."""
        return self.q_value(states, self._policy_sample(states))

    def _update_critic(self, states, actions, rewards, next_states, dones, log) -> None:
        with torch.no_grad():
            next_actions = self._policy_sample(next_states)
            next_q = torch.min(
                self.critic_1_target(next_states, next_actions),
                self.critic_2_target(next_states, next_actions),
            )  # [B]
            target_q = rewards + self.config.discount * (1.0 - dones) * next_q
        critic_loss = F.mse_loss(self.critic_1(states, actions), target_q) + F.mse_loss(
            self.critic_2(states, actions), target_q
        )
        log["critic_loss"] = critic_loss.detach()
        self.critic_1_optimizer.zero_grad()
        self.critic_2_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_1_optimizer.step()
        self.critic_2_optimizer.step()

    def _update_actor(self, states, actions, log) -> None:
        with torch.no_grad():
            adv = self.q_value(states, actions) - self.value(states)  # [B]
            weights = torch.exp(adv / self.config.awac_lambda).clamp(max=EXP_ADV_MAX)
        actor_loss = (-self.actor.log_prob_actions(states, actions) * weights).mean()
        log["actor_loss"] = actor_loss.detach()
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()

    def train(self, batch: TensorBatch) -> UpdateLog:
        self.total_it += 1
        states, actions, rewards, next_states, dones = batch
        log: UpdateLog = {}
        self._update_critic(states, actions, rewards, next_states, dones, log)
        self._update_actor(states, actions, log)
        soft_update(self.critic_1_target, self.critic_1, self.config.tau)
        soft_update(self.critic_2_target, self.critic_2, self.config.tau)
        return log

    def compute_energy_function(
        self, actor: BaseActor, states: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """-min Q(s, pi(s)) or -(min Q(s, pi(s)) - V(s)) per state, [B]; pi(s) the mean action
        clipped to the action box, the action evaluation plays (AWAC's Gaussian mean is not
        squashed: unclipped, Q would pull the chain to actions it never plays)."""
        mean = get_action(actor, states).clamp(-self.max_action, self.max_action)  # [B, A]
        q = self.q_value(states, mean)  # [B]
        # detached: AWAC's V samples actor 0
        v = self.value(states) if self.config.energy_function_type == "advantage" else None
        return q_energy(q, normalize=bool(self.config.energy_normalize_q), baseline=v)


def build(
    config: Config, state_dim: int, action_dim: int, max_action: float, device: str
) -> AdvantageWeightedActorCritic:
    """CORL's AWAC networks (3 hidden layers, default init), in CORL's order (actor, critics)."""
    actor = GaussianMLP(
        state_dim,
        action_dim,
        max_action,
        hidden_dim=config.hidden_dim,
        n_hidden=3,
        tanh_mean=False,
        state_dependent_std=False,
        log_std_min=-20.0,
        log_std_max=2.0,
    ).to(device)
    critic_1 = FullyConnectedQFunction(state_dim, action_dim, config.hidden_dim, n_hidden=3)
    critic_2 = FullyConnectedQFunction(state_dim, action_dim, config.hidden_dim, n_hidden=3)
    return AdvantageWeightedActorCritic(
        actor, critic_1.to(device), critic_2.to(device), config, max_action, device
    )
