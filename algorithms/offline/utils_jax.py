"""What the JAX chain (`pogo_multi_jax.py`) shares: the algorithm interface, W2^2 in JAX, data on
the device, pytrees to and from checkpoints and on a seed axis, and the bridge to the project's
(PyTorch-side) evaluation.

W2^2 here is the same quantity as in `w2.py`, with the same names: per state, summed over action
dimensions, shape [B]; `sinkhorn_w2_squared` is GeomLoss's debiased Sinkhorn divergence (cost
`|x - y|^2 / 2`) times 2, computed in the log domain with the same epsilon-scaling, so one
`w2_weight` means the same thing on both sides (tests/test_jax.py checks every estimator against
its PyTorch twin). Which estimator a pair of policies gets is decided by `w2.resolve_w2_method`
from the policies' type flags, as on the PyTorch side.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from algorithms.errors import CheckpointError
from algorithms.offline.config import ConfigError, PogoConfig

Params = Any  # a pytree of arrays
Batch = dict[str, jax.Array]  # states [B, S], actions [B, A], rewards [B], next_states [B, S],
# next_actions [B, A], dones [B]
Log = dict[str, jax.Array]  # scalar losses


# --------------------------------------------------------------------------------------------
# The algorithm interface


class AlgorithmInterface(abc.ABC):
    """What a JAX base algorithm gives the chain: the JAX twin of `interface.Trainer`, name for
    name, in JAX's functional style (every method is pure and traced under `jit`).

    `state` is the algorithm's whole training state as a pytree (networks, targets, optimiser
    states), made by `init` and passed in and out, where a PyTorch trainer holds it in itself.

    `interface.Trainer` (PyTorch) -> here (JAX):
      * module `Config`, `build(config, state_dim, action_dim, max_action, device)` -> the same
        (`device`: a `jax.Device`, or None for JAX's default);
      * `actor` (actor 0, a module holding its weights) -> `actor` (its flax module) and
        `actor_params(state)` (its weights);
      * `policy_freq` -> `policy_freq`;
      * `total_it` -> the loop's step count (`carry["step"]` in `pogo_multi_jax`);
      * `train(batch) -> log` -> `train(state, batch, key, actor_step) -> (state, critic log,
        actor log)`;
      * `compute_energy_function(actor, states, actions) -> [B]` ->
        `compute_energy_function(state, actor_params, states, key) -> [B]`;
      * `q_value(states, actions) -> [B]` -> `q_value(state, states, actions) -> [B]`;
      * `make_actor_optimizer(actor) -> (optimizer, schedule)` -> `make_actor_optimizer() ->`
        an optax transformation (a schedule lives inside it);
      * `state_dict()` / `load_state_dict()` -> `init(key) -> state`; the loop checkpoints
        the state as host arrays (`host_tree`) and loads it back onto `init`'s
        (`device_tree`).

    `train` is the base algorithm's whole update, made of `update_critic` and `update_actor`
    (JAX-CORL/ReBRAC's own parts); the critics see actor 0 alone, the chain only ever reads
    actor 0's parameters and calls `compute_energy_function`.
    """

    #: actor 0's flax module; chain actors i >= 1 are the same module with their own parameters
    actor: Any
    #: actor 0 (and the chain) step on updates t with (t - 1) % policy_freq == 0
    policy_freq: int = 1
    #: True when actor 0's loss sees the critic as it was before this update's critic step
    #: (FQL: one joint loss); False when it sees the freshly updated critic (TD3, ReBRAC)
    actor_sees_critic_before_update: bool = False
    #: batches carry `next_actions`, the dataset's action at the next state (ReBRAC's critic)
    needs_next_actions: bool = False

    def __init__(
        self,
        config: PogoConfig,
        state_dim: int,
        action_dim: int,
        max_action: float,
        device: jax.Device | None = None,
    ):
        self.config = config
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.max_action = max_action
        self.device = device

    @abc.abstractmethod
    def init(self, key: jax.Array) -> dict[str, Any]:
        """The initial training state."""

    @abc.abstractmethod
    def update_critic(
        self, state: dict[str, Any], batch: Batch, key: jax.Array
    ) -> tuple[dict[str, Any], Log]:
        """One critic step, exactly as the base algorithm."""

    @abc.abstractmethod
    def update_actor(
        self, state: dict[str, Any], batch: Batch, key: jax.Array, critic: Params
    ) -> tuple[dict[str, Any], Log]:
        """One step of actor 0 (and whatever else the base algorithm updates with it),
        with its loss seeing the critic parameters `critic`."""

    @abc.abstractmethod
    def compute_energy_function(
        self, state: dict[str, Any], actor_params: Params, states: jax.Array, key: jax.Array
    ) -> jax.Array:
        """The energy [B] a chain actor with `actor_params` minimises; differentiable in them."""

    @abc.abstractmethod
    def q_value(self, state: dict[str, Any], states: jax.Array, actions: jax.Array) -> jax.Array:
        """Q(s, a) [B] as the energy reads it (its critics' reduction), in the critic's units:
        what the chain trades against W2 (logged as `chain/q_gain_i`)."""

    @abc.abstractmethod
    def actor_params(self, state: dict[str, Any]) -> Params:
        """Actor 0's parameters in `state`."""

    def make_actor_optimizer(self) -> optax.GradientTransformation:
        """The optimiser the base algorithm gives actor 0 (chain actors get the same)."""
        return optax.adam(self.config.actor_lr)

    def train(
        self, state: dict[str, Any], batch: Batch, key: jax.Array, actor_step: jax.Array
    ) -> tuple[dict[str, Any], Log, Log]:
        """The base algorithm's whole update on one batch: the critic, then (when `actor_step`)
        actor 0. Returns the state, the critic's log and actor 0's log (NaN where it did not
        step: the loop keeps its last real values)."""
        critic_key, actor_key = jax.random.split(key)
        new_state, critic_log = self.update_critic(state, batch, critic_key)
        critic = state["critic"] if self.actor_sees_critic_before_update else new_state["critic"]

        def step(s: dict[str, Any]) -> tuple[dict[str, Any], Log]:
            return self.update_actor(s, batch, actor_key, critic)

        shapes = jax.eval_shape(step, new_state)[1]

        def skip(s: dict[str, Any]) -> tuple[dict[str, Any], Log]:
            return s, {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in shapes.items()}

        new_state, actor_log = jax.lax.cond(actor_step, step, skip, new_state)
        return new_state, critic_log, actor_log


def check_jax_config(config: PogoConfig) -> None:
    """What the JAX chain does not do (yet), refused at parse time with the key's name."""
    if config.actor_configs is not None:
        raise ConfigError(
            "actor_configs: the JAX chain's actors share actor 0's type (stacked parameters); "
            "leave it null"
        )


def q_energy(q: jax.Array, normalize: bool, scale: float = 1.0) -> jax.Array:
    """`-Q` per state, or `-scale * Q / mean|Q|` (ReBRAC's, TD3+BC's normalisation): [B] -> [B].

    The JAX twin of `interface.q_energy`.
    """
    if normalize:
        return -scale * q / jax.lax.stop_gradient(jnp.abs(q).mean())
    return -q


def resolve_jax_device(device: str) -> jax.Device:
    """`auto` (JAX's default backend), `cpu`, or `cuda`/`cuda:N`/`gpu`/`gpu:N`."""
    kind, _, index = device.partition(":")
    try:
        if kind == "auto":
            return jax.devices()[0]
        if kind == "cpu":
            return jax.devices("cpu")[0]
        if kind in ("cuda", "gpu"):
            return jax.devices("gpu")[int(index or 0)]
    except (RuntimeError, IndexError, ValueError) as err:
        raise ConfigError(f"device: JAX has no device {device!r} ({err})") from None
    raise ConfigError(f"device: must be auto, cpu, cuda or cuda:N for JAX, got {device!r}")


# --------------------------------------------------------------------------------------------
# W2^2 between consecutive actors, on w2.py's scale


def gaussian_w2_squared(
    mean1: jax.Array, std1: jax.Array, mean2: jax.Array, std2: jax.Array
) -> jax.Array:
    """Exact W2^2 between diagonal Gaussians: [B, A] x 4 -> [B]."""
    return ((mean1 - mean2) ** 2 + (std1 - std2) ** 2).sum(-1)


def coupled_w2_squared(actions1: jax.Array, actions2: jax.Array) -> jax.Array:
    """E ||x_k - y_k||^2 over paired samples: [B, K, A] x 2 -> [B]."""
    return ((actions1 - actions2) ** 2).sum(-1).mean(-1)


def _softmin(eps: jax.Array, cost: jax.Array, h: jax.Array) -> jax.Array:
    """-eps log sum_j exp(h_j - C_ij / eps): cost [B, K, L], h [B, L] -> [B, K]."""
    return -eps * jax.nn.logsumexp(h[:, None, :] - cost / eps, axis=-1)


def sinkhorn_w2_squared(
    x: jax.Array, y: jax.Array, blur: float = 0.05, scaling: float = 0.5
) -> jax.Array:
    """Sinkhorn-divergence estimate of W2^2 between K-sample clouds: [B, K, A] x 2 -> [B].

    GeomLoss's `SamplesLoss("sinkhorn", p=2, blur, debias=True, scaling=0.5)` times 2, step by
    step: uniform weights, cost `|x - y|^2 / 2`, its epsilon schedule (diameter^2, then down by
    `scaling^2` per symmetric (averaged) update to blur^2; the diameter from one bounding box
    over the batch), and one last full update through which the gradient flows (the potentials
    are constants, as in GeomLoss). The schedule has a fixed length (steps past GeomLoss's are
    skipped), enough for diameters up to 1e6 * blur. Biased for small K and large blur.
    """
    B, K, _ = x.shape
    log_w = jnp.full((B, K), -math.log(K), x.dtype)  # uniform weights, both clouds have K points

    def cost(u: jax.Array, v: jax.Array) -> jax.Array:
        """C(u_i, v_j) [B, K, K], differentiable in u only: with the potentials fixed, that is
        the envelope-theorem gradient (as GeomLoss; both sides would count it twice)."""
        v = jax.lax.stop_gradient(v)
        return 0.5 * ((u[:, :, None, :] - v[:, None, :, :]) ** 2).sum(-1)

    c_xy, c_yx, c_xx, c_yy = cost(x, y), cost(y, x), cost(x, x), cost(y, y)
    flat = jnp.concatenate([x, y], axis=1).reshape(-1, x.shape[-1])  # [B * 2K, A]
    diameter = jax.lax.stop_gradient(jnp.linalg.norm(flat.max(0) - flat.min(0)))
    log_d = jnp.log(jnp.maximum(diameter, 1e-6))
    # GeomLoss: [d^2] + [exp(e) for e in arange(2 log d, 2 log blur, 2 log scaling)] + [blur^2]
    n_anneal = jnp.maximum(jnp.ceil((math.log(blur) - log_d) / math.log(scaling)), 0)
    steps = jnp.arange(2 + math.ceil(math.log(1e6) / -math.log(scaling)), dtype=x.dtype)  # [T]
    annealed = jnp.exp(2 * log_d + 2 * (steps - 1) * math.log(scaling))
    eps_list = jnp.where(steps == 0, jnp.exp(2 * log_d), annealed)
    eps_list = jnp.where(steps - 1 < n_anneal, eps_list, blur**2)  # [T]
    active = steps <= n_anneal + 1  # [T]

    def body(potentials, eps_active):
        eps, on = eps_active
        f_ba, g_ab, f_aa, g_bb = potentials
        ft_ba = _softmin(eps, c_xy, log_w + g_ab / eps)
        gt_ab = _softmin(eps, c_yx, log_w + f_ba / eps)
        ft_aa = _softmin(eps, c_xx, log_w + f_aa / eps)
        gt_bb = _softmin(eps, c_yy, log_w + g_bb / eps)
        new = (ft_ba, gt_ab, ft_aa, gt_bb)
        return tuple(jnp.where(on, 0.5 * (p + n), p) for p, n in zip(potentials, new)), None

    eps0 = eps_list[0]
    init = (
        _softmin(eps0, c_xy, log_w),
        _softmin(eps0, c_yx, log_w),
        _softmin(eps0, c_xx, log_w),
        _softmin(eps0, c_yy, log_w),
    )
    potentials, _ = jax.lax.scan(body, init, (eps_list, active))
    f_ba, g_ab, f_aa, g_bb = jax.lax.stop_gradient(potentials)
    eps = blur**2
    # last extrapolation: one full update, differentiable in x and y through the costs
    f_ba, g_ab = (
        _softmin(eps, c_xy, log_w + g_ab / eps),
        _softmin(eps, c_yx, log_w + f_ba / eps),
    )
    f_aa = _softmin(eps, c_xx, log_w + f_aa / eps)
    g_bb = _softmin(eps, c_yy, log_w + g_bb / eps)
    divergence = ((f_ba - f_aa) + (g_ab - g_bb)).mean(-1)  # <a, f_ba - f_aa> + <b, g_ab - g_bb>
    return 2.0 * divergence  # [B]


def w2_squared(
    policy: Any,
    params: Params,
    previous_params: Params,
    states: jax.Array,
    method: str,
    key: jax.Array,
    K: int = 8,
    blur: float = 0.05,
) -> jax.Array:
    """W2^2(pi(.|s), previous(.|s)) per state [B] between two policies of the same flax module;
    gradients reach `params` only. `method` is resolved (`w2.resolve_w2_method`)."""
    previous_params = jax.lax.stop_gradient(previous_params)
    if method == "l2" and not policy.is_stochastic:
        actions = policy.apply(params, states, method="mean_actions")  # [B, A]
        previous = policy.apply(previous_params, states, method="mean_actions")  # [B, A]
        return ((actions - previous) ** 2).sum(-1)
    noise_shape = (states.shape[0], K, policy.noise_dim)
    if method in ("shared_noise", "l2"):
        noise = jax.random.normal(key, noise_shape, states.dtype)  # [B, K, Z]
        actions = policy.apply(params, states, noise, method="actions_from_noise")  # [B, K, A]
        previous = policy.apply(previous_params, states, noise, method="actions_from_noise")
        return coupled_w2_squared(actions, previous)
    if method == "sinkhorn":
        key_1, key_2 = jax.random.split(key)
        noise_1 = jax.random.normal(key_1, noise_shape, states.dtype)
        noise_2 = jax.random.normal(key_2, noise_shape, states.dtype)
        actions = policy.apply(params, states, noise_1, method="actions_from_noise")
        previous = policy.apply(previous_params, states, noise_2, method="actions_from_noise")
        return sinkhorn_w2_squared(actions, previous, blur)
    raise ValueError(f"w2_method: {method!r} is not available for the JAX policies")


# --------------------------------------------------------------------------------------------
# Data on the device


def next_actions(dataset: dict[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """The dataset action taken at each transition's next state, [N, A], and how many are
    missing (filled with the transition's own action).

    `data.qlearning_dataset` keeps transition i's next state as the state of the following row;
    when that row is also a kept transition its action is the next action (ReBRAC's buffer). It
    is missing only where the following row was dropped (a timeout row) or is past the end.
    """
    states, next_states = dataset["observations"], dataset["next_observations"]  # [N, S]
    actions = dataset["actions"]  # [N, A]
    follows = np.zeros(len(actions), dtype=bool)  # [N]
    follows[:-1] = (states[1:] == next_states[:-1]).all(axis=1)
    result = actions.copy()
    result[:-1][follows[:-1]] = actions[1:][follows[:-1]]
    return result, int((~follows).sum())


def device_dataset(
    dataset: dict[str, np.ndarray], device: jax.Device, with_next_actions: bool
) -> dict[str, jax.Array]:
    """The training set as float32 arrays on `device` (batches are gathered there)."""
    data = {
        "states": dataset["observations"],
        "actions": dataset["actions"],
        "rewards": dataset["rewards"].reshape(-1),
        "next_states": dataset["next_observations"],
        "dones": dataset["terminals"].reshape(-1),
    }
    if with_next_actions:
        data["next_actions"] = next_actions(dataset)[0]
    return {k: jax.device_put(np.asarray(v, dtype=np.float32), device) for k, v in data.items()}


def sample_batch(data: dict[str, jax.Array], key: jax.Array, batch_size: int) -> Batch:
    """A uniform batch with replacement (like the PyTorch ReplayBuffer), inside `jit`."""
    size = data["states"].shape[0]
    idx = jax.random.randint(key, (batch_size,), 0, size)  # [B]
    return {k: v[idx] for k, v in data.items()}


# --------------------------------------------------------------------------------------------
# Pytrees to and from checkpoints


def _leaf_name(path: tuple) -> str:
    return jax.tree_util.keystr(path, simple=True, separator=".")


def _is_key(leaf: jax.Array) -> bool:
    return jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def host_tree(tree: Any) -> dict[str, np.ndarray]:
    """A pytree as {dotted path: host array} (writable copies): a checkpoint that holds plain
    arrays, no pickled flax or optax classes. A typed random key is stored as its key data."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        flat[_leaf_name(path)] = np.array(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
    return flat


def device_tree(template: Any, saved: dict[str, np.ndarray], source: Path) -> Any:
    """`host_tree`'s arrays back into `template`'s structure, dtypes, key types and devices;
    a path missing, unknown or of another shape is a CheckpointError naming it and `source`."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [_leaf_name(path) for path, _ in leaves]
    unmatched = sorted(set(saved) ^ set(names))
    if unmatched:
        where = "only in" if unmatched[0] in saved else "missing from"
        raise CheckpointError(
            f"resume: {unmatched[0]} is {where} {source}; it holds another run's state"
        )
    restored = []
    for name, (_, leaf) in zip(names, leaves):
        value = saved[name]
        expected = jax.random.key_data(leaf) if _is_key(leaf) else leaf
        if (value.shape, value.dtype) != (expected.shape, expected.dtype):
            raise CheckpointError(
                f"resume: {name} in {source} is {value.dtype}{list(value.shape)}, this run's "
                f"{expected.dtype}{list(expected.shape)}"
            )
        array = jax.device_put(value, next(iter(leaf.devices())))
        if _is_key(leaf):
            array = jax.random.wrap_key_data(array, impl=jax.random.key_impl(leaf))
        restored.append(array)
    return jax.tree_util.tree_unflatten(treedef, restored)


# --------------------------------------------------------------------------------------------
# Seeds on a leading axis (`pogo_multi_jax --seeds`)


def is_counter(leaf: jax.Array) -> bool:
    """An integer leaf: the step or an optimiser's update count, equal in every seed (every seed
    makes the same updates). Random keys are not integers."""
    return jnp.issubdtype(leaf.dtype, jnp.integer)


def seed_axes(tree: Any) -> Any:
    """`vmap` axes of a `stack_seeds` pytree: 0, the seed axis, for every leaf but the counters,
    which stay unbatched so that the compiled update sees them as a separate run does (with a
    per-seed count, XLA compiles Adam's bias correction into other roundings)."""
    return jax.tree_util.tree_map(lambda leaf: None if is_counter(leaf) else 0, tree)


def stack_seeds(trees: list[Any]) -> Any:
    """Seeds' pytrees (of one structure) as one: every leaf [S, ...], the counters once."""

    def stack(*leaves: jax.Array) -> jax.Array:
        if not is_counter(leaves[0]):
            return jnp.stack(leaves)
        if any(not np.array_equal(leaves[0], leaf) for leaf in leaves[1:]):
            raise ValueError("seeds at different counts cannot share one seed axis")
        return leaves[0]

    return jax.tree_util.tree_map(stack, *trees)


def seed_slice(tree: Any, i: int) -> Any:
    """Seed i's pytree out of a `stack_seeds` one (the shape a separate run's has)."""
    return jax.tree_util.tree_map(lambda leaf: leaf if is_counter(leaf) else leaf[i], tree)


# --------------------------------------------------------------------------------------------
# Evaluation through the project's `evaluate_actors`


class EvalPolicy:
    """A JAX policy with fixed parameters seen through the part of `ActorAPI` that evaluation
    calls (flags, `deterministic_actions`, `sample_actions`, `train`/`eval`), so the project's
    `utils_pytorch.evaluate_actors` plays its episodes: same seeds, same lockstep episodes, the
    policy noise drawn from that actor's own evaluation stream (torch's RNG inside it)."""

    has_log_prob = False

    def __init__(self, policy: Any, params: Params, fns: EvalFns, max_batch: int):
        self.policy, self.params, self.fns = policy, params, fns
        self.is_gaussian = policy.is_gaussian
        self.is_stochastic = policy.is_stochastic
        self.max_batch = max_batch
        self.training = False

    def eval(self) -> EvalPolicy:
        return self

    def train(self, mode: bool = True) -> EvalPolicy:
        return self

    def _padded(self, array: np.ndarray) -> tuple[np.ndarray, int]:
        """Pad the batch to a fixed size: one compiled function however many episodes live."""
        n = array.shape[0]
        size = max(self.max_batch, n)
        return np.concatenate([array, np.zeros((size - n, *array.shape[1:]), array.dtype)]), n

    def deterministic_actions(self, states: torch.Tensor) -> torch.Tensor:
        padded, n = self._padded(states.cpu().numpy())
        actions = np.array(self.fns.mean(self.params, padded))[:n]  # [B, A]
        return torch.from_numpy(actions)

    def sample_actions(
        self,
        states: torch.Tensor,
        K: int = 1,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        noise = torch.randn((states.shape[0], K, self.policy.noise_dim), generator=generator)
        padded, n = self._padded(states.cpu().numpy())
        padded_noise, _ = self._padded(noise.numpy())
        actions = np.array(self.fns.noise(self.params, padded, padded_noise))[:n]  # [B, K, A]
        return torch.from_numpy(actions)


class EvalFns:
    """The jitted calls evaluation makes, compiled once per run."""

    def __init__(self, policy: Any):
        self.mean: Callable = jax.jit(lambda p, s: policy.apply(p, s, method="mean_actions"))
        self.noise: Callable = jax.jit(
            lambda p, s, z: policy.apply(p, s, z, method="actions_from_noise")
        )
