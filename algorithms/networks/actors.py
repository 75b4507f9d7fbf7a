"""The four policy types of the chain; every one implements `ActorAPI` (adapters.py).

All actors map (normalised) states to actions in `[-max_action, max_action]` and describe their
noise as an explicit input: `actions_from_noise(states, z)` with `z ~ N(0, I)` of size `noise_dim`.
That makes `sample_actions` reparameterised (differentiable) and lets the W2 module couple two
policies through the same noise.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
from torch.distributions import Normal

from algorithms.errors import ConfigError
from algorithms.networks.mlp import build_mlp, create_generator

LOG_STD_MIN = -20.0
LOG_STD_MAX = 2.0


class BaseActor(nn.Module):
    """Shared plumbing: type flags, noise-driven sampling from a private generator."""

    is_gaussian: bool = False
    is_stochastic: bool = False
    #: the shared-noise coupling is the optimal (exact W2) coupling for this family
    exact_shared_noise: bool = False
    #: `log_prob_actions` is available (entropy-regularised energies need it)
    has_log_prob: bool = False
    #: the name `actor_configs` uses for this class
    type_name: str = ""
    #: `net` reads the states alone, so one forward at the batch's states serves every method
    net_reads_states: bool = True
    #: (states, the network's output at them) in a copy made by `at_states`; None otherwise
    _known_output: tuple[torch.Tensor, torch.Tensor] | None = None

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        max_action: float = 1.0,
        hidden_dim: int = 256,
        n_hidden: int = 2,
    ):
        super().__init__()
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.max_action = float(max_action)
        self.hidden_dim = hidden_dim
        self.n_hidden = n_hidden

    def _net(self, inputs: torch.Tensor) -> torch.Tensor:
        """The network at the inputs; a copy made by `at_states` reads its known output instead."""
        if self._known_output is not None and inputs is self._known_output[0]:
            return self._known_output[1]
        return self.net(inputs)

    def network_output(self, states: torch.Tensor) -> torch.Tensor | None:
        """The network's output at the states, [B, S] -> [B, O], from which every method of the
        actor derives its actions; None when the network reads noise as well (one per draw)."""
        return self.net(states) if self.net_reads_states else None

    def at_states(self, states: torch.Tensor, output: torch.Tensor | None) -> BaseActor:
        """This actor with its network's output at `states` already known: a shallow copy (the
        same parameters) whose methods, called with this `states` tensor, read `output` instead
        of running the network again; the actor itself when `output` is None.

        A chain link's energy and its W2 read one actor at one batch of states: one forward
        (and its backward) serves both, and the next link gets the output, detached, as its
        predecessor's. The values are those of separate calls, except that dropout draws one mask.
        """
        if output is None:
            return self
        view = copy.copy(self)
        view._known_output = (states, output)
        return view

    @property
    def noise_dim(self) -> int:
        return self.action_dim

    def actions_from_noise(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """states [B, S], noise [B, K, noise_dim] -> actions [B, K, A] (differentiable)."""
        raise NotImplementedError

    def mean_actions(self, states: torch.Tensor) -> torch.Tensor:
        """The action at the noise's centre, differentiable: [B, S] -> [B, A]."""
        raise NotImplementedError

    @torch.no_grad()
    def deterministic_actions(self, states: torch.Tensor) -> torch.Tensor:
        return self.mean_actions(states)  # [B, A]

    def sample_actions(
        self,
        states: torch.Tensor,
        K: int = 1,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """K reparameterised samples per state: [B, S] -> [B, K, A].

        Noise comes from `generator`, else a fresh generator seeded by `seed`, else torch's
        global RNG (which the chain and evaluation swap for their own streams).
        """
        if generator is None and seed is not None:
            generator = create_generator(seed, states.device)
        noise = torch.randn(
            (states.shape[0], K, self.noise_dim),
            generator=generator,
            device=states.device,
            dtype=states.dtype,
        )  # [B, K, Z]
        return self.actions_from_noise(states, noise)

    def log_prob_actions(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no tractable log-density")

    def sample_with_log_prob(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action [B, A] and its log pi(a|s) [B] (actors with `has_log_prob`).

        Noise from torch's global RNG, which the chain swaps for its own stream.
        """
        actions = self.sample_actions(states, K=1)[:, 0]  # [B, A]
        return actions, self.log_prob_actions(states, actions)

    def architecture(self) -> dict:
        """Every setting of the forward, the action bound aside: `build_actor` rebuilds an actor
        of the same function from it, and the chain stacks only actors whose settings agree."""
        return {"type": self.type_name, "hidden_dim": self.hidden_dim, "n_hidden": self.n_hidden}


class GaussianMLP(BaseActor):
    """Diagonal Gaussian `N(mu(s), sigma)`; IQL's and AWAC's policy.

    `tanh_mean=True` squashes the mean into the action box (IQL); the sample itself is not squashed,
    so the W2 to another Gaussian has a closed form. `state_dependent_std=False` uses one learned
    log-std vector (IQL, AWAC).
    """

    is_gaussian = True
    is_stochastic = True
    exact_shared_noise = True
    has_log_prob = True
    type_name = "gaussian"

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        max_action: float = 1.0,
        hidden_dim: int = 256,
        n_hidden: int = 2,
        tanh_mean: bool = True,
        state_dependent_std: bool = False,
        dropout: float | None = None,
        log_std_min: float = LOG_STD_MIN,
        log_std_max: float = LOG_STD_MAX,
    ):
        super().__init__(state_dim, action_dim, max_action, hidden_dim, n_hidden)
        self.tanh_mean = tanh_mean
        self.state_dependent_std = state_dependent_std
        self.dropout = dropout
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        out_dim = 2 * action_dim if state_dependent_std else action_dim
        self.net = build_mlp(
            [state_dim, *([hidden_dim] * n_hidden), out_dim],
            output_activation=None,
            dropout=dropout,
        )
        if not state_dependent_std:
            self.log_std = nn.Parameter(torch.zeros(action_dim, dtype=torch.float32))

    def get_mean_std(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, S] -> mean [B, A], std [B, A], both in action units."""
        out = self._net(states)
        if self.state_dependent_std:
            mean, log_std = out.chunk(2, dim=-1)
        else:
            mean, log_std = out, self.log_std.expand_as(out)
        if self.tanh_mean:
            mean = torch.tanh(mean)
        std = torch.exp(log_std.clamp(self.log_std_min, self.log_std_max))
        return self.max_action * mean, std

    def forward(self, states: torch.Tensor) -> Normal:
        # no argument validation: its data-dependent checks cannot run under vmap (the chain)
        return Normal(*self.get_mean_std(states), validate_args=False)

    def mean_actions(self, states: torch.Tensor) -> torch.Tensor:
        return self.get_mean_std(states)[0]

    def actions_from_noise(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mean, std = self.get_mean_std(states)
        return mean[:, None] + std[:, None] * noise  # [B, K, A]

    def log_prob_actions(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self(states).log_prob(actions).sum(-1)  # [B]

    def architecture(self) -> dict:
        return {
            **super().architecture(),
            "tanh_mean": self.tanh_mean,
            "state_dependent_std": self.state_dependent_std,
            "dropout": self.dropout,
            "log_std_min": self.log_std_min,
            "log_std_max": self.log_std_max,
        }


class TanhGaussianMLP(BaseActor):
    """`a = max_action * tanh(mu(s) + sigma(s) z)`; the SAC / CQL / SAC-N / EDAC policy.

    `get_mean_std` returns the pre-tanh Gaussian. `forward` returns a reparameterised sample and
    its log-probability (with the tanh change of variables), as SAC-style trainers use it.
    """

    is_stochastic = True
    exact_shared_noise = True
    has_log_prob = True
    type_name = "tanh_gaussian"

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        max_action: float = 1.0,
        hidden_dim: int = 256,
        n_hidden: int = 2,
        log_std_min: float = -5.0,
        log_std_max: float = 2.0,
        log_std_multiplier: float | None = None,
        log_std_offset: float | None = None,
    ):
        super().__init__(state_dim, action_dim, max_action, hidden_dim, n_hidden)
        self.log_std_min, self.log_std_max = log_std_min, log_std_max
        self.net = build_mlp([state_dim, *([hidden_dim] * n_hidden), 2 * action_dim])
        # CQL's policy: log_std = multiplier * head + offset, both learned scalars starting at the
        # given values (a missing one starts at 1 resp. 0). None and None: the head's log-std as is.
        self.learned_log_std_affine = log_std_multiplier is not None or log_std_offset is not None
        if self.learned_log_std_affine:
            init_mult = 1.0 if log_std_multiplier is None else float(log_std_multiplier)
            init_offset = 0.0 if log_std_offset is None else float(log_std_offset)
            self.log_std_multiplier = nn.Parameter(torch.tensor(init_mult, dtype=torch.float32))
            self.log_std_offset = nn.Parameter(torch.tensor(init_offset, dtype=torch.float32))
            self._log_std_affine_init = (init_mult, init_offset)

    def get_mean_std(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, S] -> pre-tanh mean [B, A], std [B, A]."""
        mean, log_std = self._net(states).chunk(2, dim=-1)
        if self.learned_log_std_affine:
            log_std = self.log_std_multiplier * log_std + self.log_std_offset
        std = torch.exp(log_std.clamp(self.log_std_min, self.log_std_max))
        return mean, std

    def _squash(self, pre_tanh: torch.Tensor) -> torch.Tensor:
        return self.max_action * torch.tanh(pre_tanh)

    def mean_actions(self, states: torch.Tensor) -> torch.Tensor:
        return self._squash(self.get_mean_std(states)[0])

    def actions_from_noise(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        mean, std = self.get_mean_std(states)
        return self._squash(mean[:, None] + std[:, None] * noise)  # [B, K, A]

    def _log_prob_pre_tanh(
        self, mean: torch.Tensor, std: torch.Tensor, pre_tanh: torch.Tensor
    ) -> torch.Tensor:
        # log N(u) - sum log(max_action * (1 - tanh(u)^2)), the latter in a stable form
        log_det = 2.0 * (np.log(2.0) - pre_tanh - nn.functional.softplus(-2.0 * pre_tanh))
        log_prob = Normal(mean, std, validate_args=False).log_prob(pre_tanh)
        log_prob = log_prob - log_det - np.log(self.max_action)
        return log_prob.sum(-1)

    def forward(
        self, states: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, S] -> reparameterised action [B, A], log pi(a|s) [B]."""
        mean, std = self.get_mean_std(states)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        pre_tanh = mean + std * noise
        return self._squash(pre_tanh), self._log_prob_pre_tanh(mean, std, pre_tanh)

    def sample_with_log_prob(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self(states)  # the log-prob from the pre-tanh sample, exact even when saturated

    def log_prob_actions(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, std = self.get_mean_std(states)
        eps = 1e-6
        pre_tanh = torch.atanh((actions / self.max_action).clamp(-1 + eps, 1 - eps))
        return self._log_prob_pre_tanh(mean, std, pre_tanh)  # [B]

    def architecture(self) -> dict:
        arch = {**super().architecture(), "log_std_min": self.log_std_min}
        arch["log_std_max"] = self.log_std_max
        if self.learned_log_std_affine:
            mult, offset = self._log_std_affine_init
            arch.update(log_std_multiplier=mult, log_std_offset=offset)
        return arch


class StochasticMLP(BaseActor):
    """A general noise-to-action map `a = max_action * tanh(T(s, z))`, `z ~ N(0, I_noise_dim)`.

    Its density is implicit, so its W2 uses Sinkhorn (or the shared-noise upper bound).
    """

    is_stochastic = True
    type_name = "stochastic"
    net_reads_states = False  # T(s, z): a forward per noise draw

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        max_action: float = 1.0,
        hidden_dim: int = 256,
        n_hidden: int = 2,
        noise_dim: int | None = None,
    ):
        super().__init__(state_dim, action_dim, max_action, hidden_dim, n_hidden)
        self._noise_dim = noise_dim or action_dim
        self.net = build_mlp(
            [state_dim + self._noise_dim, *([hidden_dim] * n_hidden), action_dim],
            output_activation=nn.Tanh,
        )

    @property
    def noise_dim(self) -> int:
        return self._noise_dim

    def forward(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """T(s, z): states [B, S], noise [B, Z] -> actions [B, A]."""
        return self.max_action * self.net(torch.cat([states, noise], dim=-1))  # nothing to share

    def actions_from_noise(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        B, K, _ = noise.shape
        flat_states = states[:, None].expand(B, K, states.shape[-1]).reshape(B * K, -1)
        return self(flat_states, noise.reshape(B * K, -1)).reshape(B, K, self.action_dim)

    def mean_actions(self, states: torch.Tensor) -> torch.Tensor:
        """T(s, 0): the action at the noise's mode (used by `eval_mode: mean`)."""
        return self(states, states.new_zeros(states.shape[0], self.noise_dim))

    def architecture(self) -> dict:
        return {**super().architecture(), "noise_dim": self._noise_dim}


class DeterministicMLP(BaseActor):
    """`a = max_action * tanh(f(s))`; TD3+BC's actor and IQL's deterministic variant."""

    type_name = "deterministic"

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        max_action: float = 1.0,
        hidden_dim: int = 256,
        n_hidden: int = 2,
        dropout: float | None = None,
    ):
        super().__init__(state_dim, action_dim, max_action, hidden_dim, n_hidden)
        self.dropout = dropout
        self.net = build_mlp(
            [state_dim, *([hidden_dim] * n_hidden), action_dim],
            output_activation=nn.Tanh,
            dropout=dropout,
        )

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.max_action * self._net(states)  # [B, A]

    def mean_actions(self, states: torch.Tensor) -> torch.Tensor:
        return self(states)

    def actions_from_noise(self, states: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self(states)[:, None].expand(-1, noise.shape[1], -1)  # [B, K, A], noise ignored

    def architecture(self) -> dict:
        return {**super().architecture(), "dropout": self.dropout}


ACTOR_TYPES: dict[str, type[BaseActor]] = {
    cls.type_name: cls for cls in (GaussianMLP, TanhGaussianMLP, StochasticMLP, DeterministicMLP)
}


def build_actor(spec: dict, state_dim: int, action_dim: int, max_action: float = 1.0) -> BaseActor:
    """An actor from `{"type": ..., **kwargs}` (an `actor_configs` entry or `architecture()`)."""
    spec = dict(spec)
    type_name = spec.pop("type", None)
    if type_name not in ACTOR_TYPES:
        raise ConfigError(
            f"actor_configs: unknown actor type {type_name!r}; known: {sorted(ACTOR_TYPES)}"
        )
    try:
        return ACTOR_TYPES[type_name](state_dim, action_dim, max_action, **spec)
    except TypeError as err:  # an unknown keyword for that class
        raise ConfigError(
            f"actor_configs: bad options {spec} for type {type_name!r}: {err}"
        ) from None
