"""`ActorAPI` is the whole contract: every actor implements it, and the code that takes an actor
(W2, policy calls, the energies, evaluation) calls nothing on it that the protocol does not name."""

import ast
from pathlib import Path

import pytest
import torch

from algorithms.networks import ACTOR_TYPES, PolicyAdapter, act_for_eval
from algorithms.networks.actors import DeterministicMLP, GaussianMLP
from algorithms.networks.adapters import ActorAPI, MeanStdActorAPI
from algorithms.offline.w2 import resolve_w2_method, w2_squared

ROOT = Path(__file__).resolve().parents[1]
S, A, B, K = 5, 3, 4, 6
#: the actors' own methods, where the code that receives an actor calls them
ENERGY_FILES = ("iql", "td3_bc", "cql", "awac", "sac_n", "edac")


def protocol_members(protocol: type) -> set[str]:
    """The names a runtime-checkable protocol requires: annotations, methods, properties."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if getattr(cls, "_is_protocol", False) and cls.__module__ != "typing":
            names |= set(getattr(cls, "__annotations__", {}))
            names |= {name for name in vars(cls) if not name.startswith("_")}
    return names


def test_protocol_members_are_the_documented_ones():
    assert protocol_members(ActorAPI) == {
        "is_gaussian",
        "is_stochastic",
        "exact_shared_noise",
        "has_log_prob",
        "training",
        "noise_dim",
        "mean_actions",
        "deterministic_actions",
        "sample_actions",
        "actions_from_noise",
        "log_prob_actions",
        "sample_with_log_prob",
        "network_output",
        "at_states",
        "train",
        "eval",
    }
    assert protocol_members(MeanStdActorAPI) == protocol_members(ActorAPI) | {"get_mean_std"}


@pytest.mark.parametrize("type_name", sorted(ACTOR_TYPES))
def test_every_actor_type_implements_actor_api(type_name):
    cls = ACTOR_TYPES[type_name]
    actor = cls(S, A)
    assert isinstance(actor, ActorAPI)
    # get_mean_std: Gaussian-type actors only (the closed form needs both to be is_gaussian)
    assert isinstance(actor, MeanStdActorAPI) == (type_name in ("gaussian", "tanh_gaussian"))
    if actor.is_gaussian:
        assert isinstance(actor, MeanStdActorAPI)
    states = torch.randn(B, S)
    noise = torch.randn(B, K, actor.noise_dim)
    assert actor.mean_actions(states).shape == (B, A)
    assert actor.deterministic_actions(states).shape == (B, A)
    assert actor.sample_actions(states, K=K).shape == (B, K, A)
    assert actor.actions_from_noise(states, noise).shape == (B, K, A)
    if actor.has_log_prob:
        pi, log_prob = actor.sample_with_log_prob(states)
        assert pi.shape == (B, A) and log_prob.shape == (B,)
        assert actor.log_prob_actions(states, pi).shape == (B,)
    else:
        with pytest.raises(NotImplementedError):
            actor.log_prob_actions(states, torch.zeros(B, A))


def test_policy_adapter_is_a_full_actor_for_w2_and_evaluation():
    torch.manual_seed(0)
    adapter = PolicyAdapter(torch.nn.Sequential(torch.nn.Linear(S, A), torch.nn.Tanh()))
    assert isinstance(adapter, ActorAPI) and not isinstance(adapter, MeanStdActorAPI)
    states = torch.randn(B, S)
    action = adapter.mean_actions(states)  # [B, A]
    for noise_dim in (adapter.noise_dim, A):  # it ignores the noise, whatever its size
        noise = torch.randn(B, K, noise_dim)
        assert torch.equal(
            adapter.actions_from_noise(states, noise), action[:, None].expand(B, K, A)
        )
    assert torch.equal(act_for_eval(adapter, states), action.detach())
    with pytest.raises(NotImplementedError):
        adapter.sample_with_log_prob(states)
    assert adapter.eval() is adapter and not adapter.training

    # W2 against the project's actors: l2 both ways, with a deterministic and a Gaussian one
    deterministic, gaussian = DeterministicMLP(S, A), GaussianMLP(S, A)
    for other in (deterministic, gaussian):
        assert resolve_w2_method(adapter, other) == "l2"
        w2 = w2_squared(adapter, other, states, "l2", K=K)
        assert w2.shape == (B,) and bool((w2 > 0).all())
        w2_back = w2_squared(other, adapter, states, "l2", K=K)
        assert w2_back.shape == (B,)
    expected = ((action - deterministic.mean_actions(states)) ** 2).sum(-1)
    assert torch.allclose(w2_squared(adapter, deterministic, states, "l2"), expected)


# --------------------------------------------------------------------------------------------
# What the code that receives an actor calls on it, read from its source


def _actor_attributes(function: ast.FunctionDef, actor_params: set[str]) -> set[str]:
    """Attributes read on the actor parameters of `function` (`actor.x`, `getattr(actor, "x")`),
    also through a loop over a list of actors (`for actor in actors`)."""
    names = {a.arg for a in function.args.args + function.args.kwonlyargs} & actor_params
    for node in ast.walk(function):  # `for actor, previous, method in links`
        if isinstance(node, ast.For):
            names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)} & actor_params
    for node in ast.walk(function):  # `for a in actors` / `[... for a in actors]`
        loops = [node] if isinstance(node, ast.For) else getattr(node, "generators", [])
        for loop in loops:
            if isinstance(loop.iter, ast.Name) and loop.iter.id in names:
                names |= {n.id for n in ast.walk(loop.target) if isinstance(n, ast.Name)}
            if isinstance(loop.iter, ast.Call) and any(  # zip(actors, ...), enumerate(actors)
                isinstance(arg, ast.Name) and arg.id in names for arg in loop.iter.args
            ):
                targets = loop.target.elts if isinstance(loop.target, ast.Tuple) else []
                for arg, target in zip(loop.iter.args, targets[-len(loop.iter.args) :]):
                    if isinstance(arg, ast.Name) and arg.id in names:
                        names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    used = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id in names:
                used.add(node.attr)
        is_getattr = isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr"
        if is_getattr and isinstance(node.args[0], ast.Name) and node.args[0].id in names:
            if isinstance(node.args[1], ast.Constant):
                used.add(node.args[1].value)
    return used


def _functions(path: Path, names: set[str] | None = None) -> list[ast.FunctionDef]:
    tree = ast.parse(path.read_text())
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and (names is None or node.name in names)
    ]


def _calls_on_actors() -> dict[str, set[str]]:
    """{where: attributes read on actors} over w2.py, policy_call.py, the energies, evaluation."""
    found = {}
    actor_params = {"actor", "previous", "actors"}
    sources = {
        "algorithms/offline/w2.py": None,
        "algorithms/networks/policy_call.py": None,
        "algorithms/offline/utils_pytorch.py": {"evaluate_actors"},
        "algorithms/offline/pogo_multi_main.py": {"link", "terms", "_link_clouds"},
        "algorithms/networks/ensemble.py": {"_link", "__call__"},
    }
    sources.update(
        {f"algorithms/offline/{name}.py": {"compute_energy_function"} for name in ENERGY_FILES}
    )
    for path, names in sources.items():
        for function in _functions(ROOT / path, names):
            used = _actor_attributes(function, actor_params)
            if used:
                found[f"{path}:{function.name}"] = used
    return found


def test_actor_api_names_everything_called_on_an_actor():
    found = _calls_on_actors()
    # the reading reaches every kind of caller (a parse that finds nothing proves nothing)
    assert {"mean_actions", "get_mean_std", "actions_from_noise", "noise_dim"} <= set().union(
        *(used for where, used in found.items() if "w2.py" in where)
    )
    assert any("evaluate_actors" in where for where in found)
    assert {"network_output", "at_states"} <= found["algorithms/offline/pogo_multi_main.py:terms"]
    assert any(
        "cql.py" in where and "sample_with_log_prob" in used for where, used in found.items()
    )
    allowed = protocol_members(MeanStdActorAPI)
    missing = {where: sorted(used - allowed) for where, used in found.items() if used - allowed}
    assert not missing, f"called on an actor but not in ActorAPI: {missing}"
    # get_mean_std only where the method needs Gaussian actors (w2's closed form)
    uses_mean_std = {where for where, used in found.items() if "get_mean_std" in used}
    assert uses_mean_std == {"algorithms/offline/w2.py:w2_squared"}
