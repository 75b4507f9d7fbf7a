"""Q and V networks shared by the base algorithms."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from algorithms.networks.mlp import build_mlp


class FullyConnectedQFunction(nn.Module):
    """Q(s, a): [B, S], [B, A] -> [B]."""

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        hidden_dim: int = 256,
        n_hidden: int = 2,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.net = build_mlp(
            [state_dim + action_dim, *([hidden_dim] * n_hidden), 1], layer_norm=layer_norm
        )

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([states, actions], dim=-1)).squeeze(-1)  # [B]


class ValueFunction(nn.Module):
    """V(s): [B, S] -> [B]."""

    def __init__(self, state_dim: int, hidden_dim: int = 256, n_hidden: int = 2):
        super().__init__()
        self.net = build_mlp([state_dim, *([hidden_dim] * n_hidden), 1])

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states).squeeze(-1)  # [B]


class TwinQ(nn.Module):
    """Two Q functions; `forward` is their minimum (clipped double Q)."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dim: int = 256, n_hidden: int = 2):
        super().__init__()
        self.q1 = FullyConnectedQFunction(state_dim, action_dim, hidden_dim, n_hidden)
        self.q2 = FullyConnectedQFunction(state_dim, action_dim, hidden_dim, n_hidden)

    def both(
        self, states: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(states, actions), self.q2(states, actions)  # [B], [B]

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.min(*self.both(states, actions))  # [B]


class VectorizedLinear(nn.Module):
    """`ensemble_size` Linear layers as one batched matmul: [E, B, in] -> [E, B, out]."""

    def __init__(self, in_features: int, out_features: int, ensemble_size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the default nn.Linear initialisation, member by member
        for e in range(self.weight.shape[0]):
            nn.init.kaiming_uniform_(self.weight[e].T, a=math.sqrt(5))  # [out, in] as nn.Linear
        bound = 1 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias  # [E, B, out]


class EnsembleCritic(nn.Module):
    """`num_critics` Q functions evaluated in one pass (SAC-N / EDAC): -> [E, B]."""

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        num_critics: int,
        hidden_dim: int = 256,
        n_hidden: int = 3,
    ):
        super().__init__()
        dims = [state_dim + action_dim, *([hidden_dim] * n_hidden), 1]
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-2], dims[1:-1]):
            layers += [VectorizedLinear(d_in, d_out, num_critics), nn.ReLU()]
        layers.append(VectorizedLinear(dims[-2], dims[-1], num_critics))
        self.net = nn.Sequential(*layers)
        self.num_critics = num_critics

    def forward(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        sa = torch.cat([states, actions], dim=-1)  # [B, S + A]
        sa = sa.unsqueeze(0).expand(self.num_critics, *sa.shape)  # [E, B, S + A]
        return self.net(sa).squeeze(-1)  # [E, B]
