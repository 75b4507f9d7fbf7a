"""W2^2 between consecutive actors of the chain: one quantity, four estimators.

Every method returns the same thing: the squared 2-Wasserstein distance between the two policies'
action distributions at each state, summed over action dimensions, as a tensor [B]. The chain
averages it over states. One scale for every policy type means a `w2_weight` means the same
thing whatever the actors are.

| method         | when (auto)                 | what                                      |
|----------------|-----------------------------|-------------------------------------------|
| `closed_form`  | both diagonal Gaussian      | ||mu1 - mu2||^2 + ||sigma1 - sigma2||^2   |
| `shared_noise` | both tanh-Gaussian          | E_z ||T1(s, z) - T2(s, z)||^2, one z      |
| `sinkhorn`     | both stochastic, otherwise  | debiased Sinkhorn on K samples, times 2   |
| `l2`           | at least one deterministic  | ||a1 - a2||^2 (E_z over a stochastic one) |

`shared_noise` is exact for Gaussian and tanh-Gaussian pairs: both are coordinate-wise monotone
maps of the same standard normal, the product of 1-D monotone couplings is optimal for
product measures. For a general noise-to-action map it is an upper bound of W2^2.
GeomLoss's Sinkhorn cost is `|x - y|^2 / 2`, hence the factor 2.
"""

from __future__ import annotations

import functools

import torch

from algorithms.errors import ConfigError
from algorithms.networks.adapters import ActorAPI
from algorithms.networks.policy_call import sample_K_actions

W2_METHODS = ("auto", "closed_form", "shared_noise", "sinkhorn", "l2")


def gaussian_w2_squared(
    mean1: torch.Tensor, std1: torch.Tensor, mean2: torch.Tensor, std2: torch.Tensor
) -> torch.Tensor:
    """Exact W2^2 between diagonal Gaussians: [B, A] x 4 -> [B]."""
    return ((mean1 - mean2) ** 2 + (std1 - std2) ** 2).sum(-1)


def coupled_w2_squared(actions1: torch.Tensor, actions2: torch.Tensor) -> torch.Tensor:
    """E ||x_k - y_k||^2 over paired samples: [B, K, A] x 2 -> [B]."""
    return ((actions1 - actions2) ** 2).sum(-1).mean(-1)


@functools.lru_cache(maxsize=8)
def _sinkhorn_loss(blur: float):
    from geomloss import SamplesLoss  # imported lazily: only Sinkhorn users pay for it

    return SamplesLoss("sinkhorn", p=2, blur=blur, debias=True, backend="tensorized")


def sinkhorn_w2_squared(x: torch.Tensor, y: torch.Tensor, blur: float = 0.05) -> torch.Tensor:
    """Sinkhorn-divergence estimate of W2^2 between K-sample clouds: [B, K, A] x 2 -> [B].

    Biased for small K and large blur; exact in the limit K -> inf, blur -> 0.
    """
    return 2.0 * _sinkhorn_loss(float(blur))(x, y)


def resolve_w2_method(actor: ActorAPI, previous: ActorAPI, requested: str = "auto") -> str:
    """The estimator for this pair: `requested`, or the exact/cheapest one the types allow."""
    if requested not in W2_METHODS:
        raise ConfigError(f"w2_method must be one of {W2_METHODS}, got {requested!r}")
    both_stochastic = actor.is_stochastic and previous.is_stochastic
    if requested != "auto":
        if requested == "closed_form" and not (actor.is_gaussian and previous.is_gaussian):
            raise ConfigError("w2_method: closed_form needs two Gaussian actors")
        if requested in ("shared_noise", "sinkhorn") and not both_stochastic:
            raise ConfigError(f"w2_method: {requested} needs two stochastic actors")
        return requested
    if not both_stochastic:
        return "l2"
    if actor.is_gaussian and previous.is_gaussian:
        return "closed_form"
    if (
        getattr(actor, "exact_shared_noise", False)
        and getattr(previous, "exact_shared_noise", False)
        and type(actor) is type(previous)
    ):
        return "shared_noise"
    return "sinkhorn"


def w2_squared(
    actor: ActorAPI,
    previous: ActorAPI,
    states: torch.Tensor,
    method: str,
    K: int = 8,
    blur: float = 0.05,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """W2^2(pi(.|s), previous(.|s)) per state, [B]; gradients reach `actor` only.

    `method` is a resolved one (see `resolve_w2_method`); noise comes from `generator`.
    """
    if method == "closed_form":
        mean, std = actor.get_mean_std(states)
        with torch.no_grad():
            prev_mean, prev_std = previous.get_mean_std(states)
        return gaussian_w2_squared(mean, std, prev_mean, prev_std)
    if method == "l2" and not (actor.is_stochastic or previous.is_stochastic):
        actions = actor.mean_actions(states)
        with torch.no_grad():
            prev_actions = previous.mean_actions(states)
        return ((actions - prev_actions) ** 2).sum(-1)
    if method in ("shared_noise", "l2"):
        # l2 with one stochastic side: E_z ||a - x_z||^2 is the exact W2^2 to a Dirac
        noise_dim = actor.noise_dim if actor.is_stochastic else previous.noise_dim
        noise = torch.randn(
            (states.shape[0], K, noise_dim), generator=generator, device=states.device
        )  # [B, K, Z]
        actions = actor.actions_from_noise(states, noise)  # [B, K, A]
        with torch.no_grad():
            prev_actions = previous.actions_from_noise(states, noise)  # [B, K, A]
        return coupled_w2_squared(actions, prev_actions)
    if method == "sinkhorn":
        actions = sample_K_actions(actor, states, K, generator)  # [B, K, A]
        with torch.no_grad():
            prev_actions = sample_K_actions(previous, states, K, generator)
        return sinkhorn_w2_squared(actions, prev_actions, blur)
    raise ValueError(f"unknown resolved w2 method {method!r}")
