"""E modules of one architecture held as one set of stacked parameters, for `torch.func.vmap`.

The chain's actors 1..N-1 train as one ensemble: one batched forward and backward for all of them,
one optimiser step over the stacked tensors (Adam is elementwise, so that is each actor's own Adam).
The member modules stay usable on their own (evaluation, checkpoints): their parameters are views
into the stacked tensors, so every in-place optimiser step shows in them without a copy.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state


def same_architecture(modules: Sequence[nn.Module]) -> bool:
    """Same class and the same parameter names and shapes: what stacking needs."""
    first = modules[0]
    shapes = [(n, p.shape) for n, p in first.named_parameters()]
    return all(
        type(m) is type(first) and [(n, p.shape) for n, p in m.named_parameters()] == shapes
        for m in modules
    ) and not list(first.buffers())


class StackedModules(nn.Module):
    """`params[name]` is [E, *shape]; member i's `name` is a view of `params[name][i]`."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not same_architecture(members):
            raise ValueError("StackedModules needs modules of one class, shapes, and no buffers")
        self.names = [n for n, _ in members[0].named_parameters()]
        stacked, _ = stack_module_state(list(members))
        # ParameterDict keys may not contain dots
        self.params = nn.ParameterDict(
            {self._key(n): nn.Parameter(stacked[n].detach().clone()) for n in self.names}
        )
        # members are not kept: a deepcopy of the ensemble (the targets) copies the stack only
        for i, member in enumerate(members):
            for name in self.names:
                owner, _, leaf = name.rpartition(".")
                module = member.get_submodule(owner) if owner else member
                view = self.params[self._key(name)].data[i]
                module._parameters[leaf] = nn.Parameter(view, requires_grad=False)

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    def stacked(self) -> dict[str, torch.Tensor]:
        """name -> [E, *shape], differentiable (the optimiser's tensors)."""
        return {n: self.params[self._key(n)] for n in self.names}


class PairCall(nn.Module):
    """`fn(actor, previous, *args)` with both modules' parameters given per call (vmap-able).

    `functional_call` swaps parameters into a module's `forward`; this wrapper makes that forward
    any function of an (actor, previous) pair of the chain's architecture.
    """

    def __init__(self, template: nn.Module, fn: Callable[..., Any]):
        super().__init__()
        self.actor = copy.deepcopy(template)
        self.previous = copy.deepcopy(template)
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(self.actor, self.previous, *args)

    def call(
        self,
        params: dict[str, torch.Tensor],
        previous_params: dict[str, torch.Tensor],
        *args: Any,
    ) -> Any:
        named = {f"actor.{n}": p for n, p in params.items()}
        named.update({f"previous.{n}": p for n, p in previous_params.items()})
        return functional_call(self, named, args)
