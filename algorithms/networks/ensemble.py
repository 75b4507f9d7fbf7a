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
    """What stacking needs: one class, the same settings of the forward (an actor's
    `architecture()` and action bound, e.g. `tanh_mean` or the log-std bounds, which no parameter
    shows), the same parameter names and shapes, and no buffers."""
    first = modules[0]

    def signature(m: nn.Module) -> tuple:
        settings = m.architecture() if hasattr(m, "architecture") else None
        shapes = [(n, p.shape) for n, p in m.named_parameters()]
        return type(m), settings, getattr(m, "max_action", None), shapes

    return all(signature(m) == signature(first) for m in modules) and not list(first.buffers())


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


#: link(actor i, actor i-1, states [B, S], actions [B, A]) -> a tuple of tensors, e.g. the mean
#: energy and the mean W2^2; the chain's own per-link function (pogo_multi_main.py)
Link = Callable[..., tuple[torch.Tensor, ...]]


class StackedLinks:
    """Every link (member i, its predecessor) of a stacked chain in one `vmap` call; member 0's
    predecessor is `first` (actor 0). The vectorised form of the chain's per-link loop: the same
    link function, the same order of random draws per member, outputs stacked to [E, ...].

    First each member's network output at the states (one batched forward), then each link
    reads its own output (with grad) and, detached, its predecessor's: actor 0's, then member
    i-1's, as the loop hands them on through `at_states`.
    """

    def __init__(self, stack: StackedModules, first: nn.Module, link: Link):
        self.stack, self.first, self.link = stack, first, link
        self.pair = PairCall(first, self._link)
        self.outputs = PairCall(first, lambda actor, _, states: actor.network_output(states))

    def _link(self, actor, previous, states, actions, output=None, previous_output=None):
        actor = actor.at_states(states, output)
        previous = previous.at_states(states, previous_output)
        return self.link(actor, previous, states, actions)

    def __call__(self, states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        params = self.stack.stacked()  # name -> [E, ...]
        first = dict(self.first.named_parameters())
        previous = {  # each member's predecessor: `first`, then members 0..E-2, detached
            name: torch.cat([first[name][None], p[:-1]]).detach() for name, p in params.items()
        }
        with torch.no_grad():
            first_output = self.first.network_output(states)  # [B, O], or None
        if first_output is None:  # a network that reads noise: nothing to share
            return torch.func.vmap(
                self.pair.call, in_dims=(0, 0, None, None), randomness="different"
            )(params, previous, states, actions)
        # "different": each member draws its own dropout mask
        output_of_each = torch.func.vmap(
            self.outputs.call, in_dims=(0, 0, None), randomness="different"
        )
        outputs = output_of_each(params, previous, states)  # [E, B, O]
        previous_outputs = torch.cat([first_output[None], outputs[:-1].detach()])
        return torch.func.vmap(
            self.pair.call, in_dims=(0, 0, None, None, 0, 0), randomness="different"
        )(params, previous, states, actions, outputs, previous_outputs)
