"""SAC-N (An et al., 2021, "Uncertainty-Based Offline RL with Diversified Q-Ensemble",
arXiv:2110.01548), as CORL trains it, plus its POGO energy.

Actor 0 is a tanh-Gaussian SAC policy trained on `alpha * log pi(a|s) - min_j Q_j(s, a)`,
`a ~ pi` reparameterised, against an ensemble of `num_critics` Q functions whose TD target takes
the ensemble minimum at the next state (the pessimism comes from the size of the ensemble alone);
the entropy weight alpha is tuned to a target entropy of `-action_dim`. One update runs in CORL's
(and the EDAC paper's) order: alpha, then the actor, then the critics, then the critic target.

Actors i >= 1 minimise the same per-state objective, `alpha * log pi(a|s) - min_j Q_j(s, a)`, with
alpha the trainer's current value (detached) and `-min Q` optionally divided by `mean|min Q|`
(`energy_normalize_q`, off by default as in SAC-N's own actor loss).
"""

import copy
import math
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn as nn

from algorithms.networks import EnsembleCritic, TanhGaussianMLP, VectorizedLinear
from algorithms.networks.actors import BaseActor
from algorithms.offline.config import ConfigError, PogoConfig
from algorithms.offline.interface import TensorBatch, TrainerBase, q_energy
from algorithms.offline.utils_pytorch import UpdateLog, soft_update


@dataclass
class Config(PogoConfig):
    # the energy has the actor loss's entropy term and Q scale (raw Q)
    energy_needs_log_prob = True
    default_energy_normalize_q = False

    algorithm: str = "sac_n"
    # total updates (CORL: num_epochs 3000 x num_updates_on_epoch 1000)
    max_timesteps: int = 3_000_000
    # evaluate every eval_freq updates (CORL: eval_every 5 epochs of 1000 updates)
    eval_freq: int = 5000
    # CORL's SAC-N trains on raw states
    normalize: bool = False
    # hidden width of the actor and of every critic
    hidden_dim: int = 256
    # number of Q functions in the ensemble
    num_critics: int = 10
    # critic ensemble learning rate
    critic_lr: float = 3e-4
    # learning rate of log(alpha), the entropy weight
    alpha_lr: float = 3e-4

    def check(self) -> None:
        super().check()
        for key in ("hidden_dim", "num_critics"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")


def init_actor_as_edac(actor: TanhGaussianMLP) -> None:
    """The EDAC paper's actor initialisation: hidden biases 0.1, the mean/log-std head ~ U(+-1e-3).

    (The head is one Linear(hidden, 2A) here, CORL has two Linear(hidden, A); initialised alike,
    they are the same function.) Hidden weights keep PyTorch's default initialisation.
    """
    linears = [m for m in actor.net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer in linears[:-1]:
            nn.init.constant_(layer.bias, 0.1)
        nn.init.uniform_(linears[-1].weight, -1e-3, 1e-3)
        nn.init.uniform_(linears[-1].bias, -1e-3, 1e-3)


def init_critic_as_edac(critic: EnsembleCritic) -> None:
    """The EDAC paper's critic initialisation, with CORL's weight scale.

    Hidden layers: weights ~ U(+-1/sqrt(fan)), where CORL's VectorizedLinear takes `fan` from the
    last dimension of each member's [in, out] weight, i.e. the layer's output width (this differs
    from PyTorch's default only in the first layer); biases 0.1. Output layer: weight and bias
    ~ U(+-3e-3).
    """
    layers = [m for m in critic.net if isinstance(m, VectorizedLinear)]
    with torch.no_grad():
        for layer in layers[:-1]:
            bound = 1.0 / math.sqrt(layer.weight.shape[-1])
            nn.init.uniform_(layer.weight, -bound, bound)
            nn.init.constant_(layer.bias, 0.1)
        nn.init.uniform_(layers[-1].weight, -3e-3, 3e-3)
        nn.init.uniform_(layers[-1].bias, -3e-3, 3e-3)


class SACN(TrainerBase):
    stateful = ("actor", "actor_optimizer", "critic", "critic_target", "critic_optimizer")
    stateful += ("alpha_optimizer",)
    tensors = ("log_alpha",)

    def __init__(
        self,
        actor: TanhGaussianMLP,
        critic: EnsembleCritic,
        config: Config,
        device: str,
    ):
        self.config = config
        self.actor = actor
        self.actor_optimizer, _ = self.make_actor_optimizer(actor)
        self.critic = critic
        self.critic_target = copy.deepcopy(critic).requires_grad_(False)
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=config.critic_lr)
        # automatic entropy tuning: alpha = exp(log_alpha), starting at 1
        self.target_entropy = -float(actor.action_dim)
        self.log_alpha = torch.zeros(1, dtype=torch.float32, device=device, requires_grad=True)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr)
        self.policy_freq = 1
        self.total_it = 0
        self.device = device

    @property
    def alpha(self) -> torch.Tensor:
        """The current entropy weight [1], detached."""
        return self.log_alpha.exp().detach()

    def alpha_loss(self, states: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            _, log_prob = self.actor(states)  # [B]
        return (-self.log_alpha * (log_prob + self.target_entropy)).mean()

    def actor_loss(self, states: torch.Tensor, log: UpdateLog) -> torch.Tensor:
        actions, log_prob = self.actor(states)  # [B, A], [B]
        q = self.critic(states, actions)  # [E, B]
        log["batch_entropy"] = -log_prob.mean().detach()
        log["q_policy_std"] = q.std(0).mean().detach()
        return (self.alpha * log_prob - q.min(0).values).mean()

    def critic_loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_states: torch.Tensor,
        dones: torch.Tensor,
        log: UpdateLog,
    ) -> torch.Tensor:
        """Every member's MSE to the soft TD target (ensemble min), summed over the ensemble."""
        with torch.no_grad():
            next_actions, next_log_prob = self.actor(next_states)  # [B, A], [B]
            next_q = self.critic_target(next_states, next_actions).min(0).values  # [B]
            next_q = next_q - self.alpha * next_log_prob
            target_q = rewards + self.config.discount * (1.0 - dones) * next_q  # [B]
        q = self.critic(states, actions)  # [E, B]
        return ((q - target_q[None]) ** 2).mean(dim=1).sum(dim=0)

    def train(self, batch: TensorBatch) -> UpdateLog:
        self.total_it += 1
        states, actions, rewards, next_states, dones = batch
        log: UpdateLog = {}

        alpha_loss = self.alpha_loss(states)
        self.alpha_optimizer.zero_grad()
        alpha_loss.backward()
        self.alpha_optimizer.step()

        actor_loss = self.actor_loss(states, log)
        self.actor_optimizer.zero_grad()
        actor_loss.backward()
        self.actor_optimizer.step()

        critic_loss = self.critic_loss(states, actions, rewards, next_states, dones, log)
        self.critic_optimizer.zero_grad()  # also clears what the actor loss left on the critics
        critic_loss.backward()
        self.critic_optimizer.step()

        with torch.no_grad():
            soft_update(self.critic_target, self.critic, self.config.tau)
            # ensemble spread at uniformly random actions (a diagnostic CORL logs)
            max_action = self.actor.max_action
            random_actions = max_action * (2.0 * torch.rand_like(actions) - 1.0)
            log["q_random_std"] = self.critic(states, random_actions).std(0).mean().detach()
        log.update(
            alpha_loss=alpha_loss.detach(),
            critic_loss=critic_loss.detach(),
            actor_loss=actor_loss.detach(),
            alpha=self.alpha.squeeze(0),  # [1] -> a 0-dim log value
        )
        return log

    def q_value(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.critic(states, actions).min(0).values  # [B]: the ensemble's minimum

    def compute_energy_function(
        self, actor: BaseActor, states: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """`alpha * log pi(a|s) - min_j Q_j(s, a)` per state [B], `a ~ pi` reparameterised."""
        pi, log_prob = actor.sample_with_log_prob(states)  # [B, A], [B]
        q = self.q_value(states, pi)  # [B]
        return self.alpha * log_prob + q_energy(q, normalize=bool(self.config.energy_normalize_q))


def build_networks(
    config: Config, state_dim: int, action_dim: int, max_action: float, device: str
) -> Tuple[TanhGaussianMLP, EnsembleCritic]:
    """CORL's SAC-N / EDAC networks and initialisation, in CORL's order (actor, then critic)."""
    actor = TanhGaussianMLP(
        state_dim, action_dim, max_action, hidden_dim=config.hidden_dim, n_hidden=3
    )
    init_actor_as_edac(actor)
    critic = EnsembleCritic(
        state_dim, action_dim, config.num_critics, hidden_dim=config.hidden_dim, n_hidden=3
    )
    init_critic_as_edac(critic)
    return actor.to(device), critic.to(device)


def build(
    config: Config,
    state_dim: int,
    action_dim: int,
    max_action: float,
    device: str,
    trainer_cls: type = SACN,
) -> SACN:
    """SAC-N's trainer (or a subclass's, EDAC's) on CORL's networks."""
    actor, critic = build_networks(config, state_dim, action_dim, max_action, device)
    return trainer_cls(actor, critic, config, device)
