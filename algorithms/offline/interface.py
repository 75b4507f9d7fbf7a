"""What every algorithm file presents to the chain (`pogo_multi_main.py`).

An algorithm module exposes:
  * `Config`: a dataclass extending `PogoConfig` with the algorithm's own hyperparameters
    (CORL's names and defaults), its own `check()` (calling `super().check()`), and what its
    energy can do as class attributes (`has_value_function`, `energy_needs_log_prob`,
    `default_energy_normalize_q`: read by `PogoConfig.check_energy` and `PogoConfig.resolve`);
  * `build(config, state_dim, action_dim, max_action, device) -> Trainer`: builds the networks
    and the trainer from a checked, resolved config, and never writes to the config.

The main never branches on the algorithm's name: it only uses the `Trainer` protocol below.
The JAX algorithms (ReBRAC, FQL) present the same names: `utils_jax.AlgorithmInterface`.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from algorithms.networks.actors import BaseActor
from algorithms.offline.config import PogoConfig
from algorithms.offline.utils_pytorch import UpdateLog

TensorBatch = list[
    torch.Tensor
]  # states [B, S], actions [B, A], rewards [B], next [B, S], dones [B]


class Trainer(Protocol):
    #: actor 0, trained by the base algorithm's own loss inside `train`
    actor: BaseActor
    #: the chain steps when `total_it % policy_freq == 0` (the base algorithm's actor delay)
    policy_freq: int
    #: updates done so far (incremented by `train`)
    total_it: int

    def train(self, batch: TensorBatch) -> UpdateLog:
        """One update of critics (V, Q) and actor 0, exactly as the base algorithm; a flat log
        of detached 0-dim tensors (no host read: the main reads them when it logs)."""
        ...

    def q_value(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q(s, a) per state [B] as the energy reads it (its critic, its ensemble's reduction),
        in the critic's units: what the chain trades against W2 (logged as `chain/q_gain_i`)."""
        ...

    def compute_energy_function(
        self, actor: BaseActor, states: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """The energy E(pi) per state [B] that actors i >= 1 minimise; differentiable in `actor`.

        states [B, S] and the dataset's actions [B, A] of the batch (an energy that follows a
        behaviour-cloning stage, as CQL's, needs them; most energies ignore them).
        """
        ...

    def make_actor_optimizer(
        self, actor: BaseActor
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
        """The optimiser (and schedule) the base algorithm gives its own actor, for chain actors."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


class TrainerBase:
    """What every trainer shares: its checkpoint state from one list of names, and the actor
    optimiser most algorithms give actor 0 (Adam at `actor_lr`, no schedule).

    Subclasses list `stateful` (modules, optimisers, schedules: saved by their own state_dict)
    and `tensors` (e.g. log_alpha: restored in place, because an optimiser holds the tensor).
    """

    stateful: tuple[str, ...] = ()
    tensors: tuple[str, ...] = ()
    config: PogoConfig
    total_it: int

    def make_actor_optimizer(self, actor: BaseActor):
        return torch.optim.Adam(actor.parameters(), lr=self.config.actor_lr), None

    def state_dict(self) -> dict[str, Any]:
        state = {name: getattr(self, name).state_dict() for name in self.stateful}
        state.update({name: getattr(self, name).detach().clone() for name in self.tensors})
        state["total_it"] = self.total_it
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name in self.stateful:
            getattr(self, name).load_state_dict(state_dict[name])
        with torch.no_grad():
            for name in self.tensors:
                getattr(self, name).copy_(state_dict[name])
        self.total_it = state_dict["total_it"]


def q_energy(
    q: torch.Tensor, normalize: bool, scale: float = 1.0, baseline: torch.Tensor | None = None
) -> torch.Tensor:
    """`-Q` per state, or `-(Q - V)` with a `baseline` V(s) (the advantage); normalised, either is
    multiplied by `scale / mean|Q|` (TD3+BC's and ReBRAC's normalisation), [B] -> [B].

    Normalising makes the energy O(scale) whatever the reward scale, which fixes the scale on
    which `w2_weights` act. V does not depend on the actor, so both energies have the same
    gradient; one divisor, mean|Q|, keeps it so: a W2 weight takes the same step in both modes.
    """
    signal = q if baseline is None else q - baseline
    if normalize:
        return -scale * signal / q.abs().mean().detach()
    return -signal
