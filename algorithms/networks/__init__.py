"""Networks shared by every algorithm: actors (the four policy types), critics, MLP helpers."""

from algorithms.networks.actors import (
    ACTOR_TYPES,
    BaseActor,
    DeterministicMLP,
    GaussianMLP,
    StochasticMLP,
    TanhGaussianMLP,
    build_actor,
)
from algorithms.networks.adapters import ActorAPI, PolicyAdapter
from algorithms.networks.critics import (
    EnsembleCritic,
    FullyConnectedQFunction,
    TwinQ,
    ValueFunction,
    VectorizedLinear,
)
from algorithms.networks.mlp import build_mlp, create_generator, init_module_weights
from algorithms.networks.policy_call import act_for_eval, get_action, sample_K_actions

__all__ = [
    "ACTOR_TYPES",
    "ActorAPI",
    "BaseActor",
    "DeterministicMLP",
    "EnsembleCritic",
    "FullyConnectedQFunction",
    "GaussianMLP",
    "PolicyAdapter",
    "StochasticMLP",
    "TanhGaussianMLP",
    "TwinQ",
    "ValueFunction",
    "VectorizedLinear",
    "act_for_eval",
    "build_actor",
    "build_mlp",
    "create_generator",
    "get_action",
    "init_module_weights",
    "sample_K_actions",
]
