"""MLP building blocks shared by every actor and critic."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn


def build_mlp(
    dims: Sequence[int],
    activation: Callable[[], nn.Module] = nn.ReLU,
    output_activation: Callable[[], nn.Module] | None = None,
    dropout: float | None = None,
    layer_norm: bool = False,
) -> nn.Sequential:
    """`Linear -> [LayerNorm] -> act -> [Dropout]` for every hidden layer, then a linear head.

    The layer order matches CORL's MLPs, so default PyTorch initialisation gives the same
    parameter shapes and random-number consumption as the reference implementations.
    """
    if len(dims) < 2:
        raise ValueError(f"build_mlp needs at least an input and an output size, got {list(dims)}")
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        layers.append(nn.Linear(d_in, d_out))
        if layer_norm:
            layers.append(nn.LayerNorm(d_out))
        layers.append(activation())
        if dropout is not None:
            layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(dims[-2], dims[-1]))
    if output_activation is not None:
        layers.append(output_activation())
    return nn.Sequential(*layers)


def init_module_weights(
    module: nn.Module, orthogonal: bool = False, last_scale: float = 1e-2
) -> None:
    """Re-initialise a stack of Linear layers (SAC-style: a small last layer keeps actions near 0).

    `orthogonal=False` uses Xavier-uniform; the last Linear layer is scaled by `last_scale`.
    """
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        is_last = i == len(linears) - 1
        if orthogonal:
            nn.init.orthogonal_(layer.weight, gain=last_scale if is_last else 2**0.5)
        else:
            nn.init.xavier_uniform_(layer.weight, gain=last_scale if is_last else 1.0)
        nn.init.zeros_(layer.bias)


def create_generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator:
    """A private random stream: sampling with it never shifts the global torch RNG."""
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator
