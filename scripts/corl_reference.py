"""Reference numbers from CORL's own code, for tests/test_corl_parity.py.

The parity test checks that a few updates of this project's trainers, started from CORL's initial
weights on the same fixed batches, give CORL's losses and parameters. This script makes the
numbers it compares with: it imports CORL's networks and trainers from CORL's files (IQL, TD3+BC,
CQL, AWAC, SAC-N, EDAC in PyTorch; ReBRAC in JAX), builds them at tiny sizes, runs a few updates
on fixed random batches and writes

    <out>/reference.json   per case: CORL's hyperparameters, the per-update seeds and keys, and
                           the losses CORL logged at every update
    <out>/<case>.npz       per case: the batches, CORL's initial and final parameters (CORL's
                           own names: `init/<network>/<parameter>`, `final/...`)

No CORL code or text is copied into this project; the test reads only these files and needs
neither CORL nor a network.

How to regenerate (about half a minute on one core):

    git clone https://github.com/corl-team/CORL /tmp/CORL
    git -C /tmp/CORL checkout eeeeef2671235fcce3a3eb255576a207d78840e6
    pip install --target /tmp/corl_deps --no-deps chex==0.1.92 toolz==1.2.0   # ReBRAC only
    PYTHONPATH=/tmp/corl_deps OMP_NUM_THREADS=1 .venv/bin/python scripts/corl_reference.py \
        --corl /tmp/CORL --out tests/data/corl_reference/

`--corl` may also be a folder holding only `algorithms/offline/<name>.py` at that commit (e.g.
written with `git show <commit>:algorithms/offline/iql.py`); the script checks each file's git
blob hash against the pinned commit's and refuses others (`--any-corl` to override, e.g. to see
what a newer CORL says). Packages: this project's torch, numpy, jax, flax and optax, plus chex
(CORL's ReBRAC decorates its dataclasses with it).

CORL's files import gym, d4rl, wandb and pyrallis at the top, for data loading, logging and the
command line, none of which the trainers use: while CORL's files are imported, this script puts
small stand-in modules for those four in `sys.modules` (they accept any attribute and call and
do nothing; `pyrallis.wrap()` returns the function it decorates) and removes them afterwards.

Sizes: CORL's TD3+BC and CQL networks hard-code 256 hidden units; to keep the stored files small,
their `nn.Linear` is swapped, while those classes are built, for a subclass that makes every 256
a `WIDTH`. Every other network is given `WIDTH` through its own `hidden_dim` argument. Nothing
else of CORL changes: its forward passes, losses, optimisers and update order run as written.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

CORL_REPO = "https://github.com/corl-team/CORL"
CORL_COMMIT = "eeeeef2671235fcce3a3eb255576a207d78840e6"
#: git blob hashes of the files read, at CORL_COMMIT (`git ls-tree <commit> algorithms/offline/`)
CORL_BLOBS = {
    "awac": "2fb3bf1052ce514352e0f9f1821b855b03f22a6e",
    "cql": "099bce2958ae3d94a74d6eb4a405e2f547e99e48",
    "edac": "b668e43fae0742c59dce25c769ffff66ffa3cb63",
    "iql": "14cec70a54a05a9f0a6187758c84e841cbf151bf",
    "rebrac": "25df1240b2af3a761a32ce32d46b92641c0fe473",
    "sac_n": "a44da091657207186390451b0a4cc2cf5635da17",
    "td3_bc": "6ae0379c16a21cbd91e81ab6a70581d3605514dd",
}

STATE_DIM, ACTION_DIM, WIDTH, BATCH = 4, 2, 16, 6
MAX_ACTION = 1.0  # D4RL locomotion's; CORL's IQL, AWAC, CQL and ReBRAC assume it in places
INIT_SEED = 0  # torch.manual_seed before CORL's networks are built, in CORL's train() order
#: torch.manual_seed right before update k (the test seeds the project's trainer the same way)
STEP_SEEDS = [101, 102, 103, 104]
NUM_CRITICS = 3  # SAC-N / EDAC ensemble size
IQL_MAX_STEPS = 4  # the cosine schedule's length: the actor's learning rate moves within the test

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "corl_reference"


# --------------------------------------------------------------------------------------------
# Loading CORL's files


class _Anything:
    """A stand-in value: any attribute is another stand-in, any call returns one; a call with one
    function (a decorator's) returns that function."""

    def __getattr__(self, name: str) -> _Anything:
        return _Anything()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]):
            return args[0]
        return _Anything()


class _StandInModule(types.ModuleType):
    """A module whose every attribute is a stand-in (gym.Env in annotations, pyrallis.wrap())."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()


STAND_INS = ("gym", "d4rl", "wandb", "pyrallis")


@contextlib.contextmanager
def stand_ins() -> Iterator[None]:
    """gym, d4rl, wandb and pyrallis as do-nothing modules while CORL's files are imported."""
    saved = {name: sys.modules.get(name) for name in STAND_INS}
    for name in STAND_INS:
        sys.modules[name] = _StandInModule(name)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def git_blob_hash(data: bytes) -> str:
    """The hash git gives a file's content (what `git ls-tree` lists)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def corl_checkout_commit(corl: Path) -> str | None:
    """The commit of a CORL git checkout, None for a plain folder."""
    try:
        out = subprocess.run(
            ["git", "-C", str(corl), "rev-parse", "HEAD"], capture_output=True, text=True
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def load_corl(corl: Path, name: str, any_corl: bool) -> tuple[types.ModuleType, str]:
    """CORL's `algorithms/offline/<name>.py` as a module, after checking it is the pinned one,
    and the file's git blob hash."""
    path = corl / "algorithms" / "offline" / f"{name}.py"
    blob = git_blob_hash(path.read_bytes())
    if blob != CORL_BLOBS[name] and not any_corl:
        sys.exit(
            f"{path}: git blob {blob} is not CORL {CORL_COMMIT[:12]}'s {CORL_BLOBS[name]}; "
            "check out the pinned commit (or pass --any-corl)"
        )
    spec = importlib.util.spec_from_file_location(f"corl_{name}", path)
    module = importlib.util.module_from_spec(spec)
    with stand_ins():
        spec.loader.exec_module(module)
    return module, blob


def corl_defaults(module: types.ModuleType, cls_name: str = "TrainConfig") -> dict[str, Any]:
    """CORL's default hyperparameters, read from its config dataclass (never instantiated: its
    __post_init__ names a run)."""
    fields = dataclasses.fields(getattr(module, cls_name))
    return {f.name: f.default for f in fields if f.default is not dataclasses.MISSING}


@contextlib.contextmanager
def narrow_linear(module: types.ModuleType, width: int) -> Iterator[None]:
    """While CORL's classes with a hard-coded 256 are built: `nn.Linear` with 256 -> width."""

    class Linear(torch.nn.Linear):
        def __init__(self, in_features: int, out_features: int, *args: Any, **kwargs: Any):
            in_features = width if in_features == 256 else in_features
            out_features = width if out_features == 256 else out_features
            super().__init__(in_features, out_features, *args, **kwargs)

    real = module.nn
    narrowed = types.ModuleType("torch.nn (narrowed)")
    narrowed.__dict__.update(vars(torch.nn))
    narrowed.Linear = Linear
    module.nn = narrowed
    try:
        yield
    finally:
        module.nn = real


# --------------------------------------------------------------------------------------------
# Batches


def make_batches(seed: int, n: int, next_actions: bool = False) -> list[dict[str, np.ndarray]]:
    """Fixed random transitions: normal states and rewards, actions inside (-1, 1) (away from
    the tanh policies' atanh clip), about a quarter terminal."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n):
        batch = {
            "states": rng.normal(size=(BATCH, STATE_DIM)),
            "actions": rng.uniform(-0.9, 0.9, size=(BATCH, ACTION_DIM)),
            "rewards": rng.normal(size=BATCH),
            "next_states": rng.normal(size=(BATCH, STATE_DIM)),
            "dones": (rng.random(BATCH) < 0.25).astype(np.float64),
        }
        if next_actions:
            batch["next_actions"] = rng.uniform(-0.9, 0.9, size=(BATCH, ACTION_DIM))
        batches.append({k: v.astype(np.float32) for k, v in batch.items()})
    return batches


def corl_torch_batch(batch: dict[str, np.ndarray]) -> list[torch.Tensor]:
    """CORL's PyTorch batch: [states, actions, rewards, next_states, dones], rewards and dones
    [B, 1] as its ReplayBuffer returns them."""
    t = {k: torch.from_numpy(v) for k, v in batch.items()}
    return [t["states"], t["actions"], t["rewards"][:, None], t["next_states"], t["dones"][:, None]]


# --------------------------------------------------------------------------------------------
# The PyTorch cases


@dataclasses.dataclass
class TorchCase:
    """One reference run: how to build CORL's trainer, and its networks by the trainer's names."""

    algorithm: str
    num_updates: int
    #: (CORL module, CORL's defaults) -> (trainer, hyperparameters used)
    build: Callable[[types.ModuleType, dict], tuple[Any, dict]]
    #: trainer -> {network name: module or tensor} whose parameters are stored
    networks: Callable[[Any], dict[str, Any]]
    #: trainer, batch -> CORL's log dict
    update: Callable[[Any, list[torch.Tensor]], dict[str, float]] = lambda t, b: t.train(b)
    batch_seed: int = 0


def _adam(module: torch.nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr)


def build_iql(deterministic: bool) -> Callable:
    def build(m: types.ModuleType, d: dict) -> tuple[Any, dict]:
        hp = {k: d[k] for k in ("discount", "tau", "beta", "iql_tau", "vf_lr", "qf_lr")}
        hp |= {"actor_lr": d["actor_lr"], "max_timesteps": IQL_MAX_STEPS}
        hp["iql_deterministic"] = deterministic
        q = m.TwinQ(STATE_DIM, ACTION_DIM, hidden_dim=WIDTH)
        v = m.ValueFunction(STATE_DIM, hidden_dim=WIDTH)
        policy = m.DeterministicPolicy if deterministic else m.GaussianPolicy
        actor = policy(STATE_DIM, ACTION_DIM, MAX_ACTION, hidden_dim=WIDTH)
        trainer = m.ImplicitQLearning(
            max_action=MAX_ACTION,
            actor=actor,
            actor_optimizer=_adam(actor, hp["actor_lr"]),
            q_network=q,
            q_optimizer=_adam(q, hp["qf_lr"]),
            v_network=v,
            v_optimizer=_adam(v, hp["vf_lr"]),
            iql_tau=hp["iql_tau"],
            beta=hp["beta"],
            max_steps=IQL_MAX_STEPS,
            discount=hp["discount"],
            tau=hp["tau"],
        )
        return trainer, hp

    return build


def build_td3_bc(m: types.ModuleType, d: dict) -> tuple[Any, dict]:
    hp = {k: d[k] for k in ("discount", "tau", "policy_noise", "noise_clip", "policy_freq")}
    hp |= {"alpha": d["alpha"], "actor_lr": 3e-4, "critic_lr": 3e-4}  # CORL's train() literals
    with narrow_linear(m, WIDTH):
        actor = m.Actor(STATE_DIM, ACTION_DIM, MAX_ACTION)
        critic_1 = m.Critic(STATE_DIM, ACTION_DIM)
        critic_2 = m.Critic(STATE_DIM, ACTION_DIM)
    trainer = m.TD3_BC(
        max_action=MAX_ACTION,
        actor=actor,
        actor_optimizer=_adam(actor, hp["actor_lr"]),
        critic_1=critic_1,
        critic_1_optimizer=_adam(critic_1, hp["critic_lr"]),
        critic_2=critic_2,
        critic_2_optimizer=_adam(critic_2, hp["critic_lr"]),
        discount=hp["discount"],
        tau=hp["tau"],
        policy_noise=hp["policy_noise"] * MAX_ACTION,
        noise_clip=hp["noise_clip"] * MAX_ACTION,
        policy_freq=hp["policy_freq"],
        alpha=hp["alpha"],
    )
    return trainer, hp


CQL_KEYS = (
    "discount",
    "alpha_multiplier",
    "use_automatic_entropy_tuning",
    "backup_entropy",
    "policy_lr",
    "qf_lr",
    "soft_target_update_rate",
    "bc_steps",
    "target_update_period",
    "cql_n_actions",
    "cql_importance_sample",
    "cql_lagrange",
    "cql_target_action_gap",
    "cql_temp",
    "cql_alpha",
    "cql_max_target_backup",
    "orthogonal_init",
    "q_n_hidden_layers",
    "policy_log_std_multiplier",
)


def build_cql(**overrides: Any) -> Callable:
    def build(m: types.ModuleType, d: dict) -> tuple[Any, dict]:
        hp = {k: d[k] for k in CQL_KEYS} | overrides
        with narrow_linear(m, WIDTH):  # CORL's train() order: critic 1, critic 2, actor
            critic_1 = m.FullyConnectedQFunction(
                STATE_DIM, ACTION_DIM, hp["orthogonal_init"], hp["q_n_hidden_layers"]
            )
            critic_2 = m.FullyConnectedQFunction(STATE_DIM, ACTION_DIM, hp["orthogonal_init"])
            actor = m.TanhGaussianPolicy(
                STATE_DIM,
                ACTION_DIM,
                MAX_ACTION,
                log_std_multiplier=hp["policy_log_std_multiplier"],
                orthogonal_init=hp["orthogonal_init"],
            )
        kwargs = {k: hp[k] for k in CQL_KEYS[:-2]}
        kwargs.pop("orthogonal_init")
        trainer = m.ContinuousCQL(
            critic_1=critic_1,
            critic_1_optimizer=_adam(critic_1, hp["qf_lr"]),
            critic_2=critic_2,
            critic_2_optimizer=_adam(critic_2, hp["qf_lr"]),
            actor=actor,
            actor_optimizer=_adam(actor, hp["policy_lr"]),
            target_entropy=-float(ACTION_DIM),
            **kwargs,
        )
        return trainer, hp

    return build


def build_awac(m: types.ModuleType, d: dict) -> tuple[Any, dict]:
    hp = {k: d[k] for k in ("learning_rate", "gamma", "tau", "awac_lambda")}
    hp["hidden_dim"] = WIDTH
    kwargs = {"state_dim": STATE_DIM, "action_dim": ACTION_DIM, "hidden_dim": WIDTH}
    actor = m.Actor(**kwargs)
    critic_1 = m.Critic(**kwargs)
    critic_2 = m.Critic(**kwargs)
    trainer = m.AdvantageWeightedActorCritic(
        actor=actor,
        actor_optimizer=_adam(actor, hp["learning_rate"]),
        critic_1=critic_1,
        critic_1_optimizer=_adam(critic_1, hp["learning_rate"]),
        critic_2=critic_2,
        critic_2_optimizer=_adam(critic_2, hp["learning_rate"]),
        gamma=hp["gamma"],
        tau=hp["tau"],
        awac_lambda=hp["awac_lambda"],
    )
    return trainer, hp


def build_ensemble(edac: bool) -> Callable:
    def build(m: types.ModuleType, d: dict) -> tuple[Any, dict]:
        keys = ("gamma", "tau", "actor_learning_rate", "critic_learning_rate")
        hp = {k: d[k] for k in (*keys, "alpha_learning_rate")}
        hp |= {"hidden_dim": WIDTH, "num_critics": NUM_CRITICS}
        actor = m.Actor(STATE_DIM, ACTION_DIM, WIDTH, MAX_ACTION)
        critic = m.VectorizedCritic(STATE_DIM, ACTION_DIM, WIDTH, NUM_CRITICS)
        kwargs = {"eta": d["eta"]} if edac else {}
        hp |= kwargs
        trainer = (m.EDAC if edac else m.SACN)(
            actor=actor,
            actor_optimizer=_adam(actor, hp["actor_learning_rate"]),
            critic=critic,
            critic_optimizer=_adam(critic, hp["critic_learning_rate"]),
            gamma=hp["gamma"],
            tau=hp["tau"],
            alpha_learning_rate=hp["alpha_learning_rate"],
            **kwargs,
        )
        return trainer, hp

    return build


def _iql_nets(t: Any) -> dict[str, Any]:
    return {"qf": t.qf, "q_target": t.q_target, "vf": t.vf, "actor": t.actor}


def _td3_nets(t: Any) -> dict[str, Any]:
    names = ("actor", "actor_target", "critic_1", "critic_1_target", "critic_2")
    return {n: getattr(t, n) for n in (*names, "critic_2_target")}


def _cql_nets(t: Any) -> dict[str, Any]:
    names = ("actor", "critic_1", "critic_2", "target_critic_1", "target_critic_2")
    return {n: getattr(t, n) for n in (*names, "log_alpha", "log_alpha_prime")}


def _awac_nets(t: Any) -> dict[str, Any]:
    names = ("_actor", "_critic_1", "_critic_2", "_target_critic_1", "_target_critic_2")
    return {n: getattr(t, n) for n in names}


def _ensemble_nets(t: Any) -> dict[str, Any]:
    names = ("actor", "critic", "target_critic", "log_alpha")
    return {n: getattr(t, n) for n in names}


TORCH_CASES: dict[str, TorchCase] = {
    "iql": TorchCase("iql", 3, build_iql(False), _iql_nets),
    "iql_deterministic": TorchCase("iql", 3, build_iql(True), _iql_nets),
    "td3_bc": TorchCase("td3_bc", 4, build_td3_bc, _td3_nets),
    "cql": TorchCase("cql", 3, build_cql(), _cql_nets),
    # every other branch of CQL's critic loss at once
    "cql_branches": TorchCase(
        "cql",
        3,
        build_cql(
            cql_lagrange=True,
            cql_max_target_backup=True,
            backup_entropy=True,
            cql_importance_sample=False,
            target_update_period=2,
            cql_target_action_gap=0.5,
        ),
        _cql_nets,
    ),
    # one update inside CORL's behaviour-cloning stage (the test shows how the project departs)
    "cql_bc": TorchCase("cql", 1, build_cql(bc_steps=1), _cql_nets),
    "awac": TorchCase("awac", 3, build_awac, _awac_nets, lambda t, b: t.update(b)),
    "sac_n": TorchCase("sac_n", 3, build_ensemble(False), _ensemble_nets, lambda t, b: t.update(b)),
    "edac": TorchCase("edac", 3, build_ensemble(True), _ensemble_nets, lambda t, b: t.update(b)),
}


def torch_parameters(networks: dict[str, Any]) -> dict[str, np.ndarray]:
    """`<network>/<parameter>` -> float32 array, CORL's names (a bare tensor: `<name>/value`)."""
    out = {}
    for net_name, net in networks.items():
        if isinstance(net, torch.Tensor):
            out[f"{net_name}/value"] = net.detach().numpy().astype(np.float32).copy()
            continue
        for name, value in net.state_dict().items():
            out[f"{net_name}/{name}"] = value.detach().numpy().astype(np.float32).copy()
    return out


def run_torch_case(m: types.ModuleType, case: TorchCase) -> tuple[dict, dict[str, np.ndarray]]:
    """CORL's trainer from INIT_SEED, `num_updates` updates, each after torch.manual_seed."""
    torch.manual_seed(INIT_SEED)
    trainer, hp = case.build(m, corl_defaults(m))
    arrays = {f"init/{k}": v for k, v in torch_parameters(case.networks(trainer)).items()}
    batches = make_batches(case.batch_seed, case.num_updates)
    logs = []
    for k, batch in enumerate(batches):
        torch.manual_seed(STEP_SEEDS[k])
        log = case.update(trainer, corl_torch_batch(batch))
        logs.append({key: float(value) for key, value in log.items()})
        for field, value in batch.items():
            arrays[f"batch/{k}/{field}"] = value
    arrays |= {f"final/{k}": v for k, v in torch_parameters(case.networks(trainer)).items()}
    meta = {
        "algorithm": case.algorithm,
        "hyperparameters": hp,
        "step_seeds": STEP_SEEDS[: case.num_updates],
        "losses": logs,
    }
    return meta, arrays


# --------------------------------------------------------------------------------------------
# ReBRAC (JAX)

REBRAC_UPDATES = 4
REBRAC_KEY_SEED = 7  # jax.random.PRNGKey: its split gives the actor's and the critic's init keys
#: jax.random.PRNGKey(seed) passed to CORL's update_td3 at update k
REBRAC_STEP_KEYS = [201, 202, 203, 204]
#: per-dataset coefficients in CORL's configs; two different values, so a swap shows
REBRAC_BC = {"actor_bc_coef": 0.4, "critic_bc_coef": 0.7}


def flatten_tree(tree: Any, prefix: str) -> dict[str, np.ndarray]:
    """A flax parameter tree as `prefix/<path>` -> float32 array."""
    import jax

    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in flat:
        name = "/".join(str(getattr(p, "key", p)) for p in path)
        out[f"{prefix}/{name}"] = np.asarray(leaf, dtype=np.float32).copy()
    return out


def run_rebrac(m: types.ModuleType) -> tuple[dict, dict[str, np.ndarray]]:
    """CORL's ReBRAC update functions, as its train() loop calls them: update_td3 (critic, actor,
    targets) on updates 0, 2, ... and update_td3_no_targets (the critic alone) in between."""
    import jax
    import jax.numpy as jnp
    import optax

    d = corl_defaults(m, "Config")
    keys = ("actor_learning_rate", "critic_learning_rate", "actor_n_hiddens", "critic_n_hiddens")
    keys += ("gamma", "tau", "actor_ln", "critic_ln", "policy_noise", "noise_clip")
    hp = {k: d[k] for k in (*keys, "policy_freq", "normalize_q")} | REBRAC_BC
    hp["hidden_dim"] = WIDTH

    key = jax.random.PRNGKey(REBRAC_KEY_SEED)
    key, actor_key, critic_key = jax.random.split(key, 3)  # as CORL's train()
    init_state = jnp.zeros((1, STATE_DIM))
    init_action = jnp.zeros((1, ACTION_DIM))
    actor_module = m.DetActor(
        action_dim=ACTION_DIM,
        hidden_dim=WIDTH,
        layernorm=hp["actor_ln"],
        n_hiddens=hp["actor_n_hiddens"],
    )
    actor_params = actor_module.init(actor_key, init_state)
    actor = m.ActorTrainState.create(
        apply_fn=actor_module.apply,
        params=actor_params,
        target_params=actor_params,
        tx=optax.adam(learning_rate=hp["actor_learning_rate"]),
    )
    critic_module = m.EnsembleCritic(
        hidden_dim=WIDTH, num_critics=2, layernorm=hp["critic_ln"], n_hiddens=hp["critic_n_hiddens"]
    )
    critic_params = critic_module.init(critic_key, init_state, init_action)
    critic = m.CriticTrainState.create(
        apply_fn=critic_module.apply,
        params=critic_params,
        target_params=critic_params,
        tx=optax.adam(learning_rate=hp["critic_learning_rate"]),
    )

    def parameters(stage: str) -> dict[str, np.ndarray]:
        return {
            **flatten_tree(actor.params, f"{stage}/actor"),
            **flatten_tree(actor.target_params, f"{stage}/actor_target"),
            **flatten_tree(critic.params, f"{stage}/critic"),
            **flatten_tree(critic.target_params, f"{stage}/critic_target"),
        }

    arrays = parameters("init")
    common = {
        "gamma": hp["gamma"],
        "actor_bc_coef": hp["actor_bc_coef"],
        "critic_bc_coef": hp["critic_bc_coef"],
        "tau": hp["tau"],
        "policy_noise": hp["policy_noise"],
        "noise_clip": hp["noise_clip"],
    }
    logs = []
    batches = make_batches(1, REBRAC_UPDATES, next_actions=True)
    for k, batch in enumerate(batches):
        jbatch = {name: jnp.asarray(value) for name, value in batch.items()}
        step_key = jax.random.PRNGKey(REBRAC_STEP_KEYS[k])
        full = k % hp["policy_freq"] == 0  # CORL's delayed_updates
        names = ["critic_loss", "q_min"]
        if full:
            names += ["actor_loss", "bc_mse_policy", "bc_mse_random", "action_mse"]
        metrics = m.Metrics.create(names)  # fresh each update: its compute() is this update's
        if full:
            _, actor, critic, metrics = m.update_td3(
                step_key, actor, critic, jbatch, metrics, normalize_q=hp["normalize_q"], **common
            )
        else:
            _, actor, critic, metrics = m.update_td3_no_targets(
                step_key, actor, critic, jbatch, metrics=metrics, **common
            )
        logs.append(
            {name: float(np.asarray(v).reshape(-1)[0]) for name, v in metrics.compute().items()}
        )
        for field, value in batch.items():
            arrays[f"batch/{k}/{field}"] = value
    arrays |= parameters("final")
    meta = {
        "algorithm": "rebrac",
        "hyperparameters": hp,
        "step_keys": REBRAC_STEP_KEYS,
        "actor_updates": [k % hp["policy_freq"] == 0 for k in range(REBRAC_UPDATES)],
        "losses": logs,
    }
    return meta, arrays


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corl", type=Path, required=True, help="a CORL checkout (or its files)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cases", nargs="*", help="only these cases (default: all)")
    parser.add_argument("--any-corl", action="store_true", help="accept other CORL files")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    ref_path = args.out / "reference.json"
    reference = json.loads(ref_path.read_text()) if ref_path.exists() else {"cases": {}}
    checkout = corl_checkout_commit(args.corl)
    reference.update(
        {
            "corl_repo": CORL_REPO,
            "corl_commit": CORL_COMMIT if not args.any_corl else (checkout or "unknown"),
            "generator": "scripts/corl_reference.py",
            "sizes": {
                "state_dim": STATE_DIM,
                "action_dim": ACTION_DIM,
                "hidden_dim": WIDTH,
                "batch_size": BATCH,
                "max_action": MAX_ACTION,
                "num_critics": NUM_CRITICS,
            },
            "init_seed": INIT_SEED,
        }
    )
    wanted = args.cases or [*TORCH_CASES, "rebrac"]
    modules: dict[str, types.ModuleType] = {}
    for name in wanted:
        algorithm = TORCH_CASES[name].algorithm if name in TORCH_CASES else name
        if algorithm not in modules:
            modules[algorithm], blob = load_corl(args.corl, algorithm, args.any_corl)
            reference.setdefault("corl_blobs", {})[algorithm] = blob  # the files actually read
        if name == "rebrac":
            meta, arrays = run_rebrac(modules[algorithm])
        else:
            meta, arrays = run_torch_case(modules[algorithm], TORCH_CASES[name])
        reference["cases"][name] = meta
        np.savez_compressed(args.out / f"{name}.npz", **arrays)
        print(f"{name}: {len(meta['losses'])} updates, {len(arrays)} arrays")
    reference["cases"] = dict(sorted(reference["cases"].items()))
    reference["corl_blobs"] = dict(sorted(reference["corl_blobs"].items()))
    ref_path.write_text(json.dumps(reference, indent=1, sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
