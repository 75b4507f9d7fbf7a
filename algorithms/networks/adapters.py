"""`ActorAPI`: what the chain, the W2 module and evaluation need from any policy."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn as nn


@runtime_checkable
class ActorAPI(Protocol):
    """The policy interface. Shapes: states [B, S], actions [B, A]."""

    is_gaussian: bool
    is_stochastic: bool

    def deterministic_actions(self, states: torch.Tensor) -> torch.Tensor:
        """[B, A], no gradient: the policy's mean (or only) action."""
        ...

    def sample_actions(
        self,
        states: torch.Tensor,
        K: int = 1,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """[B, K, A], reparameterised: differentiable w.r.t. the policy's parameters."""
        ...

    def log_prob_actions(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """[B]: log pi(a|s) summed over action dimensions."""
        ...


class PolicyAdapter(nn.Module):
    """An algorithm's own deterministic actor module (`module(states) -> [B, A]`) as an ActorAPI.

    For an actor class that is not one of `algorithms.networks.actors`; the wrapped module's
    parameters stay the module's own, so its optimiser and checkpoints are unchanged.
    """

    is_gaussian = False
    is_stochastic = False

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.module(states)

    def mean_actions(self, states: torch.Tensor) -> torch.Tensor:
        return self.module(states)

    @torch.no_grad()
    def deterministic_actions(self, states: torch.Tensor) -> torch.Tensor:
        return self.module(states)

    def sample_actions(
        self,
        states: torch.Tensor,
        K: int = 1,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return self.module(states)[:, None].expand(-1, K, -1)  # [B, K, A]

    def actions_from_noise(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.module(states)[:, None].expand(-1, noise.shape[1], -1)  # [B, K, A]

    def log_prob_actions(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a deterministic policy has no density")
