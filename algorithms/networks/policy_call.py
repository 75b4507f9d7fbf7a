"""One way to call any ActorAPI policy, for losses and for evaluation."""

from __future__ import annotations

import torch

from algorithms.networks.adapters import ActorAPI

EVAL_MODES = ("auto", "mean")


def get_action(actor: ActorAPI, states: torch.Tensor, generator: torch.Generator | None = None):
    """The differentiable action a loss uses: [B, S] -> [B, A].

    Gaussian: its mean; other stochastic policies: one reparameterised sample;
    deterministic: the action. (`deterministic_actions` is no_grad, so it cannot serve here.)
    """
    if actor.is_gaussian:
        return actor.mean_actions(states)
    if actor.is_stochastic:
        return actor.sample_actions(states, K=1, generator=generator)[:, 0]
    return actor.mean_actions(states)


def sample_K_actions(
    actor: ActorAPI, states: torch.Tensor, K: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """[B, S] -> [B, K, A] differentiable samples (K copies of the action if deterministic)."""
    return actor.sample_actions(states, K=K, generator=generator)


@torch.no_grad()
def act_for_eval(
    actor: ActorAPI,
    states: torch.Tensor,
    mode: str = "auto",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The action an evaluation episode takes: [B, S] -> [B, A].

    `auto`: deterministic policies act deterministically, stochastic ones sample (the design);
    `mean`: every policy acts at its mean action (CORL's convention, to compare with its tables).
    """
    if mode not in EVAL_MODES:
        raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {mode!r}")
    if mode == "auto" and actor.is_stochastic:
        return actor.sample_actions(states, K=1, generator=generator)[:, 0]
    return actor.deterministic_actions(states)
