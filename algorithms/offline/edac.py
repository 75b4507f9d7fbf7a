"""EDAC (An et al., 2021, "Uncertainty-Based Offline RL with Diversified Q-Ensemble",
arXiv:2110.01548), as CORL trains it, plus its POGO energy.

EDAC is SAC-N (`sac_n.py`) with one more term in the critic loss: `eta` times the mean pairwise
cosine similarity of the members' action-gradients `grad_a Q_j(s, a)` at the dataset's actions,
which diversifies the ensemble so that far fewer critics give the same pessimism. Everything else
(actor 0's loss, alpha tuning, the update order, the networks) is SAC-N's, and so is the energy of
actors i >= 1: `alpha * log pi(a|s) - min_j Q_j(s, a)`, `a ~ pi` reparameterised.
"""

from dataclasses import dataclass

import torch

from algorithms.offline import sac_n
from algorithms.offline.config import ConfigError
from algorithms.offline.utils_pytorch import UpdateLog


@dataclass
class Config(sac_n.Config):
    algorithm: str = "edac"
    # weight of the ensemble-diversity term in the critic loss
    eta: float = 1.0

    def check(self) -> None:
        super().check()
        if self.num_critics < 2:
            raise ConfigError(
                f"num_critics: EDAC's diversity term compares pairs, needs >= 2, "
                f"got {self.num_critics}"
            )
        if self.eta < 0:
            raise ConfigError(f"eta: must be >= 0, got {self.eta}")


class EDAC(sac_n.SACN):
    def diversity_loss(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Sum over pairs j != k of cos(grad_a Q_j, grad_a Q_k), averaged over states, / (E - 1).

        Differentiable in the critics (the gradients are taken with `create_graph`).
        """
        num_critics = self.critic.num_critics
        # each member gets its own copy of the actions, so autograd returns per-member gradients
        states_e = states.unsqueeze(0).expand(num_critics, -1, -1)  # [E, B, S]
        actions_e = actions.unsqueeze(0).repeat(num_critics, 1, 1).requires_grad_(True)  # [E, B, A]
        q = self.critic.net(torch.cat([states_e, actions_e], dim=-1)).squeeze(-1)  # [E, B]
        grads = torch.autograd.grad(q.sum(), actions_e, create_graph=True)[0]  # [E, B, A]
        grads = grads / (grads.norm(p=2, dim=2, keepdim=True) + 1e-10)
        grads = grads.transpose(0, 1)  # [B, E, A]
        cosines = grads @ grads.transpose(1, 2)  # [B, E, E]
        off_diagonal = 1.0 - torch.eye(num_critics, device=cosines.device)
        return (cosines * off_diagonal).sum(dim=(1, 2)).mean() / (num_critics - 1)

    def critic_loss(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_states: torch.Tensor,
        dones: torch.Tensor,
        log: UpdateLog,
    ) -> torch.Tensor:
        """SAC-N's ensemble TD loss + eta * diversity loss."""
        td_loss = super().critic_loss(states, actions, rewards, next_states, dones, log)
        diversity = self.diversity_loss(states, actions)
        log["diversity_loss"] = diversity.detach()
        return td_loss + self.config.eta * diversity


def build(config: Config, state_dim: int, action_dim: int, max_action: float, device: str) -> EDAC:
    """SAC-N's networks and checks with EDAC's critic loss."""
    return sac_n.build(config, state_dim, action_dim, max_action, device, trainer_cls=EDAC)
