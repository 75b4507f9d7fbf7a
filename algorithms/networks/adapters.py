"""`ActorAPI`: what the chain, the W2 module, the energies and evaluation need from any policy.

Every actor of `actors.py` (`ACTOR_TYPES`) and `PolicyAdapter` implement it; a test checks that,
and that `w2.py` and `policy_call.py` call no actor method it does not name.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
import torch.nn as nn


@runtime_checkable
class ActorAPI(Protocol):
    """The policy interface. Shapes: states [B, S], actions [B, A], noise [B, K, noise_dim].

    Flags (class attributes) say which estimators and energies an actor admits:
      * `is_gaussian`: a diagonal Gaussian; `get_mean_std` gives its mean and std (closed-form W2);
      * `is_stochastic`: actions depend on noise (False: `actions_from_noise` ignores it);
      * `exact_shared_noise`: the shared-noise coupling is the optimal one for two actors of this
        type (Gaussian, tanh-Gaussian), so `shared_noise` W2 is exact;
      * `has_log_prob`: `log_prob_actions` and `sample_with_log_prob` work (entropy energies).

    Methods only some actors provide:
      * `get_mean_std(states) -> (mean [B, A], std [B, A])`: Gaussian-type actors only
        (`GaussianMLP`: the action's mean and std; `TanhGaussianMLP`: the pre-tanh Gaussian's),
        see `MeanStdActorAPI`; `w2.py` calls it only for `closed_form`, i.e. two `is_gaussian`
        actors;
      * `log_prob_actions`, `sample_with_log_prob`: present on every actor, but they raise
        `NotImplementedError` unless `has_log_prob`.

    `training`, `train(mode)` and `eval()` are nn.Module's: evaluation switches actors to eval
    mode and back.
    nn.Module's other methods (`parameters`, `state_dict`) and `BaseActor`'s plumbing for the
    chain's shared forward are not part of this protocol.
    """

    is_gaussian: bool
    is_stochastic: bool
    exact_shared_noise: bool
    has_log_prob: bool
    #: nn.Module's training flag (dropout on)
    training: bool

    @property
    def noise_dim(self) -> int:
        """Size of the standard normal noise `actions_from_noise` reads (per sample)."""
        ...

    def mean_actions(self, states: torch.Tensor) -> torch.Tensor:
        """[B, A], differentiable: the action at the noise's centre (the mean of a Gaussian,
        tanh of the pre-tanh mean, T(s, 0), or the deterministic action)."""
        ...

    def deterministic_actions(self, states: torch.Tensor) -> torch.Tensor:
        """[B, A], no gradient: `mean_actions` for evaluation."""
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

    def actions_from_noise(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """noise [B, K, noise_dim] ~ N(0, I) -> actions [B, K, A], differentiable: the map that
        lets two policies share noise (the shared-noise and l2 W2 estimators)."""
        ...

    def log_prob_actions(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """[B]: log pi(a|s) summed over action dimensions (only with `has_log_prob`)."""
        ...

    def sample_with_log_prob(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action [B, A] and its log pi(a|s) [B] (only with `has_log_prob`)."""
        ...

    def network_output(self, states: torch.Tensor) -> torch.Tensor | None:
        """[B, O]: the network's output at the states, which every method above derives from;
        None when there is nothing to share (the network reads noise too, or is not one)."""
        ...

    def at_states(self, states: torch.Tensor, output: torch.Tensor | None) -> ActorAPI:
        """The actor reading `output` as its network's output at `states` (one forward serves
        a chain link's energy and W2); itself when `output` is None."""
        ...

    def train(self, mode: bool = True) -> ActorAPI:
        """nn.Module's training switch (dropout); returns the actor."""
        ...

    def eval(self) -> ActorAPI:
        """`train(False)`."""
        ...


@runtime_checkable
class MeanStdActorAPI(ActorAPI, Protocol):
    """An `ActorAPI` whose noise enters through a diagonal Gaussian it can report:
    `GaussianMLP` (the action distribution) and `TanhGaussianMLP` (the pre-tanh one)."""

    def get_mean_std(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mean [B, A], std [B, A], differentiable (the closed-form W2 for `is_gaussian`)."""
        ...


class PolicyAdapter(nn.Module):
    """An algorithm's own deterministic actor module (`module(states) -> [B, A]`) as an ActorAPI.

    For an actor class that is not one of `algorithms.networks.actors`; the wrapped module's
    parameters stay the module's own, so its optimiser and checkpoints are unchanged.
    """

    is_gaussian = False
    is_stochastic = False
    exact_shared_noise = False
    has_log_prob = False

    #: it reads no noise: `actions_from_noise` takes noise of any size and ignores it
    noise_dim = 0

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

    def sample_with_log_prob(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError("a deterministic policy has no density")

    def network_output(self, states: torch.Tensor) -> None:
        return None  # an opaque module: nothing to share

    def at_states(self, states: torch.Tensor, output: torch.Tensor | None) -> PolicyAdapter:
        return self
