"""CQL (Kumar et al., 2020, arXiv:2006.04779), as CORL trains it, plus its POGO energy.

Actor 0 is a tanh-Gaussian SAC policy: it minimises `alpha * log pi(a|s) - min(Q1, Q2)(s, a)` with
`a ~ pi` reparameterised and alpha tuned to a target entropy of `-action_dim` (after `bc_steps`
of behaviour cloning, `alpha * log pi(a|s) - log pi(a_data|s)`). The twin critics learn by TD
plus CQL's conservative penalty: a log-sum-exp of Q over uniform and policy actions (importance
weighted) minus Q on the data, weighted by `cql_alpha` (or a Lagrange multiplier).
Actors i >= 1 minimise the energy of the same actor loss, `alpha * log pi(a|s) - min(Q1, Q2)(s, a)`
with alpha detached (the BC loss during `bc_steps`); the W2 term adds the proximal pull.
"""

import copy
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from algorithms.networks import (
    FullyConnectedQFunction,
    TanhGaussianMLP,
    init_module_weights,
)
from algorithms.networks.actors import BaseActor
from algorithms.offline.config import ConfigError, PogoConfig
from algorithms.offline.interface import TensorBatch, TrainerBase, q_energy
from algorithms.offline.utils_pytorch import UpdateLog, soft_update

#: CORL's policy: log_std = multiplier * head + offset, the offset starting here
LOG_STD_OFFSET = -1.0


@dataclass
class Config(PogoConfig):
    # the energy has the actor loss's entropy term and Q scale (raw Q)
    energy_needs_log_prob = True
    default_energy_normalize_q = False

    algorithm: str = "cql"
    # CORL's policy_lr
    actor_lr: float = 3e-5
    # critic (and Lagrange multiplier) learning rate
    qf_lr: float = 3e-4
    # alpha = exp(log_alpha) * alpha_multiplier (the constant alpha without automatic tuning)
    alpha_multiplier: float = 1.0
    # tune alpha to a target entropy of -action_dim
    use_automatic_entropy_tuning: bool = True
    # subtract alpha * log pi(a'|s') in the TD target
    backup_entropy: bool = False
    # soft-update the target critics every target_update_period updates
    target_update_period: int = 1
    # actions sampled per state (uniform, pi(s), pi(s')) for the conservative penalty
    cql_n_actions: int = 10
    # weight the log-sum-exp samples by their densities (CQL(H) with importance sampling)
    cql_importance_sample: bool = True
    # tune the penalty weight by dual gradient descent (CQL-Lagrange)
    cql_lagrange: bool = False
    # Lagrange threshold on the penalty (tau in the paper)
    cql_target_action_gap: float = -1.0
    # temperature of the log-sum-exp
    cql_temp: float = 1.0
    # weight of the conservative penalty
    cql_alpha: float = 10.0
    # TD target from the best of cql_n_actions next actions
    cql_max_target_backup: bool = False
    # clip of the per-state penalty (log-sum-exp - Q(s, a_data))
    cql_clip_diff_min: float = float("-inf")
    cql_clip_diff_max: float = float("inf")
    # orthogonal initialisation of the critics (CORL's policy is never initialised orthogonally)
    orthogonal_init: bool = True
    # hidden layers of each critic (256 units)
    q_n_hidden_layers: int = 3
    # updates of behaviour cloning before the SAC-style actor loss
    bc_steps: int = 0
    # with normalize_reward: r <- r * reward_scale + reward_bias after the range normalisation
    reward_scale: float = 5.0
    reward_bias: float = -1.0
    # initial value of the policy's learned log-std multiplier
    policy_log_std_multiplier: float = 1.0

    def check(self) -> None:
        super().check()
        for key in ("cql_n_actions", "target_update_period", "q_n_hidden_layers"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if self.cql_temp <= 0:
            raise ConfigError(f"cql_temp: must be > 0, got {self.cql_temp}")


def init_as_corl(net: nn.Sequential, orthogonal: bool) -> None:
    """CORL's CQL initialisation: orthogonal everywhere (gain sqrt 2, last 1e-2), or only the last
    layer re-initialised (Xavier, gain 1e-2); biases that are re-initialised become 0."""
    if orthogonal:
        init_module_weights(net, orthogonal=True, last_scale=1e-2)
        return
    last = [m for m in net if isinstance(m, nn.Linear)][-1]
    nn.init.xavier_uniform_(last.weight, gain=1e-2)
    nn.init.zeros_(last.bias)


def q_of_many(critic: nn.Module, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q at N actions per state: states [B, S], actions [B, N, A] -> [B, N]."""
    return critic(states[:, None].expand(-1, actions.shape[1], -1), actions)


class ContinuousCQL(TrainerBase):
    stateful = ("actor", "actor_optimizer", "critic_1", "critic_1_target", "critic_1_optimizer")
    stateful += ("critic_2", "critic_2_target", "critic_2_optimizer", "alpha_optimizer")
    stateful += ("alpha_prime_optimizer",)
    tensors = ("log_alpha", "log_alpha_prime")

    def __init__(
        self,
        actor: TanhGaussianMLP,
        critic_1: FullyConnectedQFunction,
        critic_2: FullyConnectedQFunction,
        config: Config,
        action_dim: int,
        device: str,
    ):
        self.config = config
        self.actor = actor
        self.actor_optimizer, _ = self.make_actor_optimizer(actor)
        self.critic_1, self.critic_2 = critic_1, critic_2
        self.critic_1_target = copy.deepcopy(critic_1).requires_grad_(False)
        self.critic_2_target = copy.deepcopy(critic_2).requires_grad_(False)
        self.critic_1_optimizer = torch.optim.Adam(critic_1.parameters(), lr=config.qf_lr)
        self.critic_2_optimizer = torch.optim.Adam(critic_2.parameters(), lr=config.qf_lr)
        self.target_entropy = -float(action_dim)
        # SAC's temperature (used only with use_automatic_entropy_tuning) ...
        self.log_alpha = nn.Parameter(torch.zeros((), device=device))
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.actor_lr)
        # ... and CQL-Lagrange's penalty multiplier (used only with cql_lagrange)
        self.log_alpha_prime = nn.Parameter(torch.ones((), device=device))
        self.alpha_prime_optimizer = torch.optim.Adam([self.log_alpha_prime], lr=config.qf_lr)
        self.policy_freq = 1
        self.total_it = 0
        self.device = device

    @property
    def alpha(self) -> torch.Tensor:
        """The current entropy weight, with log_alpha's graph (detach it to use a constant)."""
        if self.config.use_automatic_entropy_tuning:
            return self.log_alpha.exp() * self.config.alpha_multiplier
        return self.log_alpha.new_tensor(self.config.alpha_multiplier)

    def _in_bc_stage(self) -> bool:
        return self.total_it <= self.config.bc_steps

    def _policy_loss(self, states, actions, new_actions, log_pi, alpha) -> torch.Tensor:
        if self._in_bc_stage():
            return (alpha * log_pi - self.actor.log_prob_actions(states, actions)).mean()
        q = torch.min(self.critic_1(states, new_actions), self.critic_2(states, new_actions))
        return (alpha * log_pi - q).mean()

    def _td_target(self, next_states, rewards, dones, alpha) -> Tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            if c.cql_max_target_backup:
                next_states_n = next_states[:, None].expand(-1, c.cql_n_actions, -1)
                next_actions, next_log_pi = self.actor(next_states_n)  # [B, N, A], [B, N]
                target_q = torch.min(
                    self.critic_1_target(next_states_n, next_actions),
                    self.critic_2_target(next_states_n, next_actions),
                )  # [B, N]
                target_q, best = target_q.max(dim=1)  # [B]
                next_log_pi = next_log_pi.gather(1, best[:, None]).squeeze(1)
            else:
                next_actions, next_log_pi = self.actor(next_states)  # [B, A], [B]
                target_q = torch.min(
                    self.critic_1_target(next_states, next_actions),
                    self.critic_2_target(next_states, next_actions),
                )
            if c.backup_entropy:
                target_q = target_q - alpha * next_log_pi
            return rewards + (1.0 - dones) * c.discount * target_q, target_q  # [B], [B]

    def _q_loss(self, states, actions, next_states, rewards, dones, alpha, log) -> torch.Tensor:
        c = self.config
        q1 = self.critic_1(states, actions)  # [B]
        q2 = self.critic_2(states, actions)
        td_target, target_q = self._td_target(next_states, rewards, dones, alpha)
        qf1_loss = F.mse_loss(q1, td_target)
        qf2_loss = F.mse_loss(q2, td_target)

        # the conservative penalty: Q pushed down on uniform actions and on pi's actions at s and
        # at s' (all evaluated at s), pushed up on the data
        batch_size, action_dim = actions.shape
        n = c.cql_n_actions
        random_actions = actions.new_empty((batch_size, n, action_dim)).uniform_(-1, 1)
        with torch.no_grad():
            current_actions, current_log_pi = self.actor(states[:, None].expand(-1, n, -1))
            next_actions, next_log_pi = self.actor(next_states[:, None].expand(-1, n, -1))
        penalties, diffs, log_q = [], [], {}
        for k, (critic, q_data) in enumerate(((self.critic_1, q1), (self.critic_2, q2)), start=1):
            q_rand = q_of_many(critic, states, random_actions)  # [B, N]
            q_current = q_of_many(critic, states, current_actions)
            q_next = q_of_many(critic, states, next_actions)
            if c.cql_importance_sample:
                random_density = np.log(0.5**action_dim)  # uniform on [-1, 1]^A
                cat_q = torch.cat(
                    [q_rand - random_density, q_next - next_log_pi, q_current - current_log_pi],
                    dim=1,
                )  # [B, 3N]
            else:
                cat_q = torch.cat([q_rand, q_data[:, None], q_next, q_current], dim=1)  # [B, 3N+1]
            ood = torch.logsumexp(cat_q / c.cql_temp, dim=1) * c.cql_temp  # [B]
            diff = (ood - q_data).clamp(c.cql_clip_diff_min, c.cql_clip_diff_max).mean()
            diffs.append(diff)
            log_q[f"cql_q{k}_rand"] = q_rand.mean().detach()
            log_q[f"cql_q{k}_current_actions"] = q_current.mean().detach()
            log_q[f"cql_q{k}_next_actions"] = q_next.mean().detach()

        if c.cql_lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            penalties = [alpha_prime * c.cql_alpha * (d - c.cql_target_action_gap) for d in diffs]
            alpha_prime_loss = -0.5 * (penalties[0] + penalties[1])
            self.alpha_prime_optimizer.zero_grad()
            alpha_prime_loss.backward(inputs=[self.log_alpha_prime], retain_graph=True)
            self.alpha_prime_optimizer.step()
        else:
            alpha_prime = states.new_tensor(0.0)
            penalties = [d * c.cql_alpha for d in diffs]
            alpha_prime_loss = states.new_tensor(0.0)

        log.update(
            qf1_loss=qf1_loss.detach(),
            qf2_loss=qf2_loss.detach(),
            average_qf1=q1.mean().detach(),
            average_qf2=q2.mean().detach(),
            average_target_q=target_q.mean().detach(),
            cql_qf1_diff=diffs[0].detach(),
            cql_qf2_diff=diffs[1].detach(),
            cql_min_qf1_loss=penalties[0].detach(),
            cql_min_qf2_loss=penalties[1].detach(),
            alpha_prime=alpha_prime.detach(),
            alpha_prime_loss=alpha_prime_loss.detach(),
            **log_q,
        )
        return qf1_loss + qf2_loss + penalties[0] + penalties[1]

    def train(self, batch: TensorBatch) -> UpdateLog:
        c = self.config
        self.total_it += 1
        states, actions, rewards, next_states, dones = batch
        if c.normalize_reward:  # CORL's affine step after the range normalisation (data.py)
            rewards = rewards * c.reward_scale + c.reward_bias

        new_actions, log_pi = self.actor(states)  # [B, A], [B]
        alpha = self.alpha
        if c.use_automatic_entropy_tuning:
            alpha_loss = -(self.log_alpha * (log_pi + self.target_entropy).detach()).mean()
        else:
            alpha_loss = states.new_tensor(0.0)
        policy_loss = self._policy_loss(states, actions, new_actions, log_pi, alpha.detach())
        log = {
            "log_pi": log_pi.mean().detach(),
            "policy_loss": policy_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "alpha": alpha.detach(),
        }
        # critics' loss before any step: pi's samples and the Lagrange step see this update's start
        qf_loss = self._q_loss(states, actions, next_states, rewards, dones, alpha.detach(), log)

        if c.use_automatic_entropy_tuning:
            self.alpha_optimizer.zero_grad()
            alpha_loss.backward(inputs=[self.log_alpha])
            self.alpha_optimizer.step()

        self.actor_optimizer.zero_grad()
        policy_loss.backward(inputs=list(self.actor.parameters()))
        self.actor_optimizer.step()

        self.critic_1_optimizer.zero_grad()
        self.critic_2_optimizer.zero_grad()
        qf_loss.backward(inputs=[*self.critic_1.parameters(), *self.critic_2.parameters()])
        self.critic_1_optimizer.step()
        self.critic_2_optimizer.step()

        if self.total_it % c.target_update_period == 0:
            soft_update(self.critic_1_target, self.critic_1, c.tau)
            soft_update(self.critic_2_target, self.critic_2, c.tau)
        return log

    def q_value(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.min(self.critic_1(states, actions), self.critic_2(states, actions))  # [B]

    def compute_energy_function(
        self, actor: BaseActor, states: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """CQL's actor loss per state [B], alpha detached: `alpha * log pi(a|s) - min Q(s, a)`,
        `a ~ pi` reparameterised; during bc_steps `alpha * log pi(a|s) - log pi(a_data|s)`."""
        alpha = self.alpha.detach()
        pi_actions, log_pi = actor.sample_with_log_prob(states)  # [B, A], [B]
        if self._in_bc_stage():
            return alpha * log_pi - actor.log_prob_actions(states, actions)
        q = self.q_value(states, pi_actions)  # [B]
        return alpha * log_pi + q_energy(q, normalize=bool(self.config.energy_normalize_q))


def build(
    config: Config, state_dim: int, action_dim: int, max_action: float, device: str
) -> ContinuousCQL:
    """CORL's CQL networks, built and initialised in CORL's order (critic 1, critic 2, actor)."""
    critics = []
    for _ in range(2):
        critic = FullyConnectedQFunction(state_dim, action_dim, n_hidden=config.q_n_hidden_layers)
        init_as_corl(critic.net, config.orthogonal_init)
        critics.append(critic.to(device))
    actor = TanhGaussianMLP(
        state_dim,
        action_dim,
        max_action,
        n_hidden=3,
        log_std_min=-20.0,
        log_std_max=2.0,
        log_std_multiplier=config.policy_log_std_multiplier,
        log_std_offset=LOG_STD_OFFSET,
    )
    init_as_corl(actor.net, orthogonal=False)
    return ContinuousCQL(actor.to(device), *critics, config, action_dim, device)
