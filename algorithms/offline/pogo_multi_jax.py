"""POGO multi-actor in JAX: the chain pi_0 -> ... -> pi_{N-1} on ReBRAC or FQL.

The same chain as `pogo_multi_main.py`, on a JAX base algorithm (`utils_jax.AlgorithmInterface`):

* Actor 0 and the critics are the base algorithm's, updated by its own losses, unchanged: the
  critics only ever see actor 0.
* On the updates where actor 0 steps, every actor i >= 1 takes one step on

      L_i = E[ energy_i(s) ] + w_i * E[ W2^2(pi_i(.|s), stopgrad pi_{i-1}(.|s)) ]

  (energy from the algorithm file, W2^2 from `utils_jax`, on `w2.py`'s scale), seeing its
  predecessor as it is at that moment; then the chain's Polyak targets follow (nothing trains
  on them, as on the PyTorch side).
* Chain actors share actor 0's flax module; their parameters are stacked on a leading axis and
  updated with `vmap`. The whole update of one batch (critic, actor 0, all chain actors) is one
  traced function, run `log_freq`/`eval_freq` updates at a time inside one jitted loop.
* Batches, the base algorithm and the chain draw from separate keys, so actor 0 and the critics
  are the same whatever `num_actors` is.
* With `settle_steps`, after `max_timesteps` the chain trains on alone, as in the PyTorch main:
  actor 0 and the critics are frozen, every update is a chain step at `settle_w2_weights`
  (`settle_lr_schedule: cosine` scales Adam's steps from 1 towards 0), starting where the joint
  phase left the chain or, with `settle_from_predecessor` (or `joint_chain: false`, a chain
  that trains in this phase only), from copies of actor 0 with fresh optimiser moments.

Data, evaluation, config validation and outputs are the PyTorch side's (`data.py`, `envs.py`,
`utils_pytorch.evaluate_actors`, `config.py`, `run_io.py`), and so are checkpoints: at each
evaluation the whole carry (critics, actor 0, chain, optimiser states, random keys, step, the last
losses) is written as host arrays with the dataset's statistics and the config, atomically, by
`run_io.CheckpointStore`. `--resume` loads it back into the carry and continues number for number;
SIGTERM or Ctrl-C checkpoints the stretch of updates it finished and exits with status 75.

`--seeds 0 1 2` (a command-line option, not a config key) trains several seeds of one config in
one process: each seed is a `Run` with its own config (`seed: N`), directory, logs and
checkpoints; their carries are stacked on a leading seed axis and one jitted, vmapped stretch
updates them all (`Seeds`). A single run trains through the same loop, as seeds of one without
the axis. A seed gets a separate run's numbers bit for bit only where XLA compiles the batched
update as it compiles one seed's; elsewhere they drift apart from float rounding on
(docs/jax.md, "Several seeds in one process").

Run: python -m algorithms.offline.pogo_multi_jax --config_path configs/offline/pogo_multi/...yaml
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from algorithms.datasets.envs import env_dims, eval_env_id, normalized_score, parse_d4rl_name
from algorithms.datasets.training_data import load_data
from algorithms.errors import CheckpointError, ConfigError, NonFiniteError
from algorithms.offline.config import PogoConfig, load_algorithm, parse_config
from algorithms.offline.run_io import (
    CheckpointStore,
    RunLogger,
    StopSignal,
    check_run_dir,
    check_same_data,
    progress_bar,
    report_eval,
    report_final,
    resume_state,
    run_main,
    start_outputs,
    stop_if_signalled,
)
from algorithms.offline.utils_jax import (
    AlgorithmInterface,
    Batch,
    EvalFns,
    EvalPolicy,
    Log,
    device_dataset,
    device_tree,
    host_tree,
    next_actions,
    resolve_jax_device,
    sample_batch,
    seed_axes,
    seed_slice,
    stack_seeds,
    w2_squared,
)
from algorithms.offline.utils_pytorch import (
    check_finite_losses,
    check_finite_state,
    evaluate_actors,
    release_free_memory,
)
from algorithms.offline.w2 import resolve_w2_method

Carry = dict[str, Any]  # everything one update reads and writes (a pytree)
#: a checkpoint's part -> the carry's (the PyTorch main's names where it has the same part)
CHECKPOINT_PARTS = {"trainer": "base", "chain": "chain", "keys": "keys", "log": "log"}


def _nan_like(log: dict[str, jax.ShapeDtypeStruct]) -> Log:
    return {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in log.items()}


def watch(guard: dict[str, Any], t: jax.Array, log: Log) -> dict[str, Any]:
    """The NaN/Inf guard, on the device: the first update whose losses are not all finite, its
    step (0.0 before one; a float, since an integer leaf is a counter that `--seeds` shares)
    and its losses, read at the end of the stretch (`Seeds.check_finite`)."""
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in log.values()]))
    first = (guard["step"] == 0) & ~finite
    return {
        "step": jnp.where(first, t.astype(jnp.float32), guard["step"]),
        "log": {k: jnp.where(first, v, guard["log"][k]) for k, v in log.items()},
    }


class Chain:
    """Actors 1..N-1 as one stacked set of parameters, their optimiser states and targets."""

    def __init__(self, algo: AlgorithmInterface, config: PogoConfig, w2_method: str):
        self.algo = algo
        self.config = config
        self.n = config.num_actors - 1
        self.w2_method = w2_method
        self.tx = algo.make_actor_optimizer()
        self.weights = jnp.asarray(config.w2_weights[: self.n], jnp.float32)  # [N-1]
        settle = config.settle_w2_weights or config.w2_weights
        self.settle_weights = jnp.asarray(settle[: self.n], jnp.float32)  # [N-1]

    def init(self, actor0: Any) -> dict[str, Any]:
        """Every chain actor starts as a copy of actor 0 (its type and initial weights)."""
        if self.n == 0:
            return {}
        params = jax.tree_util.tree_map(lambda p: jnp.stack([p] * self.n), actor0)  # [N-1, ...]
        return {"params": params, "targets": params, "opt": jax.vmap(self.tx.init)(params)}

    def update(
        self,
        base: dict[str, Any],
        chain: dict[str, Any],
        states: jax.Array,
        key: jax.Array,
        weights: jax.Array,
        lr_scale: jax.Array | None = None,
    ) -> tuple[dict[str, Any], Log]:
        """One JKO step of every chain actor on states [B, S], all at once, at W2 weights
        [N-1]; `lr_scale` multiplies the optimiser's steps (its learning rate, for Adam)."""
        c, algo = self.config, self.algo
        actor0 = algo.actor_params(base)
        # predecessor of actor i: actor 0 after its step for i = 1, else actor i-1 before its own
        previous = jax.tree_util.tree_map(
            lambda a0, p: jnp.concatenate([a0[None], p[:-1]], axis=0), actor0, chain["params"]
        )

        def loss(params, previous_params, weight, key):
            energy_key, w2_key = jax.random.split(key)
            energy = algo.compute_energy_function(base, params, states, energy_key).mean()
            w2 = w2_squared(
                algo.actor,
                params,
                previous_params,
                states,
                self.w2_method,
                w2_key,
                K=c.sinkhorn_K,
                blur=c.sinkhorn_blur,
            ).mean()
            total = energy + weight * w2
            return total, (energy, w2, total)

        keys = jax.random.split(key, self.n)
        grads, (energy, w2, total) = jax.vmap(jax.grad(loss, has_aux=True))(
            chain["params"], previous, weights, keys
        )
        updates, opt = jax.vmap(self.tx.update)(grads, chain["opt"], chain["params"])
        if lr_scale is not None:
            updates = jax.tree_util.tree_map(lambda u: u * lr_scale, updates)
        params = optax.apply_updates(chain["params"], updates)
        targets = optax.incremental_update(params, chain["targets"], c.tau)
        log: Log = {}
        for i in range(1, self.n + 1):
            log[f"chain/energy_{i}"] = energy[i - 1]
            log[f"chain/w2_{i}"] = w2[i - 1]
            log[f"chain/loss_{i}"] = total[i - 1]
        return {"params": params, "targets": targets, "opt": opt}, log

    def actor(self, chain: dict[str, Any], i: int) -> Any:
        """Chain actor i's (1..N-1) parameters."""
        return jax.tree_util.tree_map(lambda p: p[i - 1], chain["params"])

    def q_gains(self, base: dict[str, Any], chain: dict[str, Any], states: jax.Array) -> Log:
        """What actors i >= 1 gain on the energy's critic over actor 0 at states [B, S], in the
        critic's units: mean Q(s, a_i) - mean Q(s, a_0), each at its mean action clipped to the
        box (as evaluated); the PyTorch chain's `q_gains`."""
        algo = self.algo

        def q(params: Any) -> jax.Array:
            actions = algo.actor.apply(params, states, method="mean_actions")  # [B, A]
            actions = jnp.clip(actions, -algo.max_action, algo.max_action)
            return algo.q_value(base, states, actions).mean()

        gains = jax.vmap(q)(chain["params"]) - q(algo.actor_params(base))  # [N-1]
        return {f"chain/q_gain_{i}": gains[i - 1] for i in range(1, self.n + 1)}


def make_update(algo: AlgorithmInterface, chain: Chain, config: PogoConfig):
    """`update(carry, data) -> carry`: one batch, critic + actor 0 + every chain actor (the
    chain with `joint_chain` only); `settle_update(carry, data) -> carry`: one batch of the
    settle phase, the chain alone against the frozen actor 0 and critics.

    The dataset is an argument, not a closure: a captured array would be compiled in as a
    constant.
    """
    batch_size = config.batch_size
    joint_chain = bool(chain.n) and config.joint_chain

    def step(carry: Carry, data: dict[str, jax.Array]) -> tuple[Carry, Log, Log]:
        t = carry["step"] + 1
        keys = carry["keys"]
        batch_key, batch_sub = jax.random.split(keys["batch"])
        base_key, base_sub = jax.random.split(keys["base"])
        chain_key, chain_sub = jax.random.split(keys["chain"])
        batch: Batch = sample_batch(data, batch_sub, batch_size)
        actor_step = (t - 1) % algo.policy_freq == 0
        base, critic_log, actor_log = algo.train(carry["base"], batch, base_sub, actor_step)
        links = carry["chain"]
        if joint_chain:

            def chain_step() -> tuple[dict[str, Any], Log]:
                return chain.update(base, links, batch["states"], chain_sub, chain.weights)

            shapes = jax.eval_shape(chain_step)[1]
            links, chain_log = jax.lax.cond(
                actor_step, chain_step, lambda: (links, _nan_like(shapes))
            )
            actor_log = {**actor_log, **chain_log}
        new = {
            "step": t,
            "keys": {"batch": batch_key, "base": base_key, "chain": chain_key},
            "base": base,
            "chain": links,
        }
        return new, critic_log, {"actor_step": actor_step, **actor_log}

    def update(carry: Carry, data: dict[str, jax.Array]) -> Carry:
        new, critic_log, actor_log = step(carry, data)
        actor_step = actor_log.pop("actor_step")
        # losses of actors that did not step this update keep their last values
        kept = {k: jnp.where(actor_step, v, carry["log"][k]) for k, v in actor_log.items()}
        # (the chain's losses too, where it trains in the settle phase only)
        log = {**carry["log"], **critic_log, **kept}
        return {**new, "log": log, "guard": watch(carry["guard"], new["step"], log)}

    def settle_update(carry: Carry, data: dict[str, jax.Array]) -> Carry:
        t = carry["step"] + 1
        keys = carry["keys"]
        batch_key, batch_sub = jax.random.split(keys["batch"])
        chain_key, chain_sub = jax.random.split(keys["chain"])
        states = sample_batch(data, batch_sub, batch_size)["states"]  # [B, S]
        lr_scale = None
        if config.settle_lr_schedule == "cosine":  # of the settle phase's update k (0-based)
            k = t - config.max_timesteps - 1
            lr_scale = 0.5 * (1.0 + jnp.cos(jnp.pi * k / config.settle_steps))
        links, chain_log = chain.update(
            carry["base"], carry["chain"], states, chain_sub, chain.settle_weights, lr_scale
        )
        log = {**carry["log"], **chain_log}
        return {
            **carry,  # actor 0, the critics and their losses: as the joint phase left them
            "step": t,
            "keys": {**keys, "batch": batch_key, "chain": chain_key},
            "chain": links,
            "log": log,
            "guard": watch(carry["guard"], t, log),
        }

    def log_shapes(carry: Carry, data: dict[str, jax.Array]) -> dict[str, jax.ShapeDtypeStruct]:
        """Every loss either phase logs (the chain's, whether or not it trains jointly)."""
        _, critic_log, actor_log = jax.eval_shape(step, carry, data)
        actor_log.pop("actor_step")
        shapes = {**critic_log, **actor_log}
        if chain.n:
            states = jax.ShapeDtypeStruct((batch_size, data["states"].shape[1]), jnp.float32)
            key = carry["keys"]["chain"]
            args = (carry["base"], carry["chain"], states, key, chain.weights)
            shapes.update(jax.eval_shape(chain.update, *args)[1])
        return shapes

    return update, settle_update, log_shapes


def phase_log(config: PogoConfig, log: dict[str, float], settling: bool) -> dict[str, float]:
    """The losses a phase logs, as the PyTorch main logs them: the settle phase the chain's
    alone; the joint phase all but the chain's where the chain trains in the settle phase only."""
    if settling:
        return {k: v for k, v in log.items() if k.startswith("chain/")}
    if not config.joint_chain:
        return {k: v for k, v in log.items() if not k.startswith("chain/")}
    return log


@dataclasses.dataclass
class Run:
    """One seed's run, everything it needs, built and checked before the first update."""

    config: PogoConfig
    algo: AlgorithmInterface
    chain: Chain
    carry: Carry
    run_updates: Any  # jitted (carry, data, n) -> carry after n updates
    run_settle_updates: Any  # jitted (carry, data, n) -> carry after n settle updates
    start_settle: Any  # jitted carry -> carry whose chain is copies of actor 0 (`Chain.init`)
    run_q_gains: Any  # jitted (carry, data) -> the chain's Q gains (`Chain.q_gains`)
    data: dict[str, jax.Array]  # the training set on the device
    eval_fns: EvalFns
    logger: RunLogger
    checkpoints: CheckpointStore
    root: Path
    env_id: str
    family: str
    state_mean: np.ndarray
    state_std: np.ndarray
    device: jax.Device
    n_transitions: int
    step: int = 0
    progress: Any = None
    clock: tuple[float, int] = (0.0, 0)
    scores: np.ndarray | None = None  # [n_actors, n_episodes] of the last evaluation
    stop: StopSignal = dataclasses.field(default_factory=StopSignal)  # SIGTERM / Ctrl-C seen

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue number for number, as host arrays."""
        state: dict[str, Any] = {"step": self.step}
        for part, key in CHECKPOINT_PARTS.items():
            state[part] = host_tree(self.carry[key])
        state["state_mean"] = self.state_mean
        state["state_std"] = self.state_std
        state["config"] = dataclasses.asdict(self.config)
        return state

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Refuse a checkpoint of other data or other networks, else take its carry."""
        check_same_data(state, self.state_mean, self.state_std, source)
        carry = dict(self.carry)
        for part, key in CHECKPOINT_PARTS.items():
            carry[key] = device_tree(self.carry[key], state[part], source)
        carry["step"] = jax.device_put(jnp.asarray(state["step"], jnp.int32), self.device)
        self.carry = carry
        self.step = state["step"]


@dataclasses.dataclass
class Seeds:
    """Runs of one config that differ in their seed alone, trained as one: their carries stacked
    on a leading seed axis (`utils_jax.stack_seeds`: the counters once, every seed makes the same
    updates), every seed's stretch of updates one jitted, vmapped call. One run is seeds of one
    with no seed axis (`of`), so a single run and `--seeds` train through the same loop."""

    runs: list[Run]  # one per seed; a run's carry is its seed's as of the last `sync`
    carry: Carry  # every leaf [S, ...] but the counters; one run's: its carry
    run_updates: Any  # jitted (carry, data, n) -> carry after n updates of every seed
    run_settle_updates: Any  # jitted (carry, data, n) -> after n settle updates of every seed
    start_settle: Any  # jitted carry -> every seed's chain as copies of its actor 0
    run_q_gains: Any  # jitted (carry, data) -> every seed's chain Q gains
    step: int = 0
    stop: StopSignal = dataclasses.field(default_factory=StopSignal)  # SIGTERM / Ctrl-C seen

    @classmethod
    def of(cls, run: Run) -> Seeds:
        """One run as seeds of one: its own carry and updates, no seed axis."""
        return cls(
            [run],
            run.carry,
            run.run_updates,
            run.run_settle_updates,
            run.start_settle,
            run.run_q_gains,
            run.step,
            run.stop,
        )

    @property
    def stacked(self) -> bool:
        return len(self.runs) > 1

    def per_seed(self, values: Log) -> list[dict[str, float]]:
        """{name: [S]} (one run's: {name: []}) on the device -> each seed's {name: value}."""
        host = jax.device_get(values)
        return [
            {k: float(np.reshape(v, -1)[i]) for k, v in host.items()} for i in range(len(self.runs))
        ]

    def check_finite(self) -> None:
        """Stop at the first update, of any seed, whose losses were not all finite (the guard's
        step and losses, `watch`), with `check_finite_losses`' message (naming the seed)."""
        steps = [int(g["step"]) for g in self.per_seed({"step": self.carry["guard"]["step"]})]
        bad = [(step, i) for i, step in enumerate(steps) if step]
        if bad:
            step, i = min(bad)
            check_finite_seed(
                self, self.runs[i], self.per_seed(self.carry["guard"]["log"])[i], step
            )

    def losses(self) -> list[dict[str, float]]:
        """Each seed's losses of the last update (`carry["log"]`)."""
        return self.per_seed(self.carry["log"])

    def q_gains(self) -> list[dict[str, float]]:
        """Each seed's chain Q gains now, at a batch's states drawn from a key derived from (not
        advancing) its batch key ({} without a chain)."""
        if not self.runs[0].chain.n:
            return [{} for _ in self.runs]
        return self.per_seed(self.run_q_gains(self.carry, self.runs[0].data))

    def sync(self) -> None:
        """Give each run its seed's carry and step as they are now (before it is evaluated,
        checkpointed or returned)."""
        for i, run in enumerate(self.runs):
            run.carry = seed_slice(self.carry, i) if self.stacked else self.carry
            run.step = self.step

    def save_checkpoints(self) -> Path:
        """Checkpoint every seed; the checkpoint's path (`seed_{0,1,2}` for several seeds)."""
        self.sync()
        paths = [save_checkpoint(run) for run in self.runs]
        return self.path(paths[0].relative_to(self.runs[0].root))

    def path(self, relative: Path = Path()) -> Path:
        """`relative` in the run directory, or in every seed's: results/.../seed_{0,1,2}/..."""
        if not self.stacked:
            return self.runs[0].root / relative
        seeds = ",".join(str(run.config.seed) for run in self.runs)
        return self.runs[0].root.parent / f"seed_{{{seeds}}}" / relative

    def close(self) -> None:
        """Close every seed's logger (`stop_if_signalled` closes the run's logger)."""
        for run in self.runs:
            run.logger.close()


class SeedProgress:
    """The seeds' one progress bar as a seed's evaluation sees it: its lines name the seed."""

    def __init__(self, bar: Any, seed: int):
        self.bar, self.seed = bar, seed

    def write(self, line: str) -> None:
        self.bar.write(f"seed {self.seed}, {line}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bar, name)


def setup(config: PogoConfig) -> Run:
    """One run: data, networks, outputs; every bad input fails here, before any training or
    writing."""
    return setup_seeds([config]).runs[0]


def setup_seeds(configs: list[PogoConfig]) -> Seeds:
    """The runs of `configs`, which differ in `seed` alone (`--seeds`), on one copy of the data and
    one compiled update; every bad input of any seed fails here, before any training or
    writing."""
    config = configs[0]
    module = load_algorithm(config.algorithm, backend="jax")
    device = resolve_jax_device(config.device)
    family = parse_d4rl_name(config.env).family
    env_id = eval_env_id(config.env, config.eval_env)
    obs_dim, action_dim, max_action = env_dims(env_id)
    dataset, state_mean, state_std = load_data(config, obs_dim, action_dim, env_id)

    algo: AlgorithmInterface = module.build(config, obs_dim, action_dim, max_action, device)
    w2_method = resolve_w2_method(algo.actor, algo.actor, config.w2_method)
    chain = Chain(algo, config, w2_method)
    roots = [check_run_dir(c) for c in configs]  # fail before wandb starts or anything is written

    with_next = algo.needs_next_actions
    if with_next:
        missing = next_actions(dataset)[1]
        if missing:
            print(
                f"{missing} of {len(dataset['actions'])} transitions have no next action in the "
                "data (the following row was a dropped timeout or the end); their own action "
                "stands in for it in the critic's BC penalty"
            )
    data = device_dataset(dataset, device, with_next)
    update, settle_update, log_shapes = make_update(algo, chain, config)

    @jax.jit
    def initial_carry(seed_key: jax.Array, data: dict[str, jax.Array]) -> Carry:
        """Networks, optimisers, keys; compiled (flax's init op by op is slow on the CPU)."""
        base_key, chain_key, batch_key = jax.random.split(seed_key, 3)
        base = algo.init(base_key)
        carry: Carry = {
            "step": jnp.asarray(0, jnp.int32),
            "keys": {
                "batch": batch_key,
                "base": jax.random.fold_in(base_key, 1),
                "chain": chain_key,
            },
            "base": base,
            "chain": chain.init(algo.actor_params(base)),
        }
        shapes = log_shapes(carry, data)
        carry["log"] = {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}
        # not checkpointed: a checkpoint is only ever written before any non-finite loss
        carry["guard"] = {"step": jnp.asarray(0.0, jnp.float32), "log": carry["log"]}
        return carry

    @jax.jit
    def run_updates(carry: Carry, data: dict[str, jax.Array], n: jax.Array) -> Carry:
        return jax.lax.fori_loop(0, n, lambda _, c: update(c, data), carry)

    @jax.jit
    def run_settle_updates(carry: Carry, data: dict[str, jax.Array], n: jax.Array) -> Carry:
        return jax.lax.fori_loop(0, n, lambda _, c: settle_update(c, data), carry)

    def start_from_actor0(carry: Carry) -> Carry:
        return {**carry, "chain": chain.init(algo.actor_params(carry["base"]))}

    start_settle = jax.jit(start_from_actor0)

    def q_gains(carry: Carry, data: dict[str, jax.Array]) -> Log:
        key = jax.random.fold_in(carry["keys"]["batch"], 1)  # read, not advanced
        states = sample_batch(data, key, config.batch_size)["states"]  # [B, S]
        return chain.q_gains(carry["base"], carry["chain"], states)

    run_q_gains = jax.jit(q_gains)  # one compiled call for every seed's run

    eval_fns = EvalFns(algo.actor)  # compiled once for every seed
    runs = []
    for c, root in zip(configs, roots):
        checkpoints = CheckpointStore.of_run(root, c)
        run = Run(
            config=c,
            algo=algo,
            chain=chain,
            carry=initial_carry(jax.device_put(jax.random.key(c.seed), device), data),
            run_updates=run_updates,
            run_settle_updates=run_settle_updates,
            start_settle=start_settle,
            run_q_gains=run_q_gains,
            data=data,
            eval_fns=eval_fns,
            logger=RunLogger(root, c),
            checkpoints=checkpoints,
            root=root,
            env_id=env_id,
            family=family,
            state_mean=state_mean,
            state_std=state_std,
            device=device,
            n_transitions=len(dataset["actions"]),
        )
        if c.resume:  # checked as it loads: a checkpoint that does not fit fails before writing
            state, path = resume_state(c, checkpoints)
            run.load_state_dict(state, path)
            print(f"resuming {root} from {path.name} (step {run.step})")
        runs.append(run)
    if len({run.step for run in runs}) > 1:
        steps = ", ".join(f"seed {run.config.seed} at step {run.step}" for run in runs)
        raise CheckpointError(
            f"resume: the seeds' checkpoints are at different steps ({steps}); resume them "
            "separately, or all from one step with --resume_step"
        )
    for run in runs:
        start_outputs(run.config, run.root, run.logger, run.checkpoints, run.step)  # first write
    if len(runs) == 1:
        return Seeds.of(runs[0])

    @jax.jit
    def run_seed_updates(carry: Carry, data: dict[str, jax.Array], n: jax.Array) -> Carry:
        axes = seed_axes(carry)
        seeds_update = jax.vmap(update, in_axes=(axes, None), out_axes=axes)
        return jax.lax.fori_loop(0, n, lambda _, c: seeds_update(c, data), carry)

    @jax.jit
    def run_seed_settle_updates(carry: Carry, data: dict[str, jax.Array], n: jax.Array) -> Carry:
        axes = seed_axes(carry)
        seeds_update = jax.vmap(settle_update, in_axes=(axes, None), out_axes=axes)
        return jax.lax.fori_loop(0, n, lambda _, c: seeds_update(c, data), carry)

    @jax.jit
    def start_seeds_settle(carry: Carry) -> Carry:
        axes = seed_axes(carry)
        return jax.vmap(start_from_actor0, in_axes=(axes,), out_axes=axes)(carry)

    @jax.jit
    def run_seed_q_gains(carry: Carry, data: dict[str, jax.Array]) -> Log:
        return jax.vmap(q_gains, in_axes=(seed_axes(carry), None))(carry, data)

    carry = stack_seeds([run.carry for run in runs])
    return Seeds(
        runs,
        carry,
        run_seed_updates,
        run_seed_settle_updates,
        start_seeds_settle,
        run_seed_q_gains,
        runs[0].step,
    )


def train(run: Run) -> Path:
    """Train one run (`train_seeds`, seeds of one); returns its directory."""
    return train_seeds(Seeds.of(run))[0]


def train_seeds(seeds: Seeds) -> list[Path]:
    """The training loop, in jitted stretches that end at every multiple of `log_freq` and
    `eval_freq` and at the joint phase's end (whatever step it starts from, so a resumed run
    runs the same stretches); then the settle phase's stretches. Returns each seed's run
    directory (logs/eval.csv, logs/train.jsonl, checkpoints/)."""
    runs = seeds.runs
    config, first = runs[0].config, runs[0]
    which = f"seeds {', '.join(str(r.config.seed) for r in runs)}, " if seeds.stacked else ""
    print(
        f"POGO {config.algorithm} (JAX on {first.device.platform}) on {config.env}: "
        f"{first.n_transitions} transitions, eval on {first.env_id}, {config.num_actors} actors, "
        f"W2 {first.chain.w2_method if first.chain.n else 'none'}, {which}"
        f"outputs in {seeds.path()}"
    )
    progress = progress_bar(config, seeds.step)
    for run in runs:
        run.progress = SeedProgress(progress, run.config.seed) if seeds.stacked else progress
        run.clock = (time.perf_counter(), seeds.step)
    from_actor0 = config.settle_from_predecessor or not config.joint_chain
    with seeds.stop:
        while seeds.step < config.total_steps:
            t = seeds.step
            settling = t >= config.max_timesteps  # the settle phase: actor 0, critics frozen
            if settling and t == config.max_timesteps and from_actor0:
                seeds.carry = seeds.start_settle(seeds.carry)  # once: a resumed one has its copies
            end = min(
                (t // config.log_freq + 1) * config.log_freq,
                (t // config.eval_freq + 1) * config.eval_freq,
                config.total_steps if settling else config.max_timesteps,
            )
            n = jnp.asarray(end - t, jnp.int32)
            stretch = seeds.run_settle_updates if settling else seeds.run_updates
            seeds.carry = stretch(seeds.carry, first.data, n)
            seeds.step = end
            seeds.check_finite()  # every update of every seed, before any is logged
            logs = seeds.losses()  # the losses of the stretch's last update, per seed
            if end % config.log_freq == 0:
                chain_trains = settling or config.joint_chain
                gains = seeds.q_gains() if chain_trains else [{} for _ in runs]
                for run, log, gain in zip(runs, logs, gains):
                    run.logger.log_train(end, {**phase_log(config, log, settling), **gain})
            progress.update(end - t)
            if end % config.eval_freq == 0 or end in (config.max_timesteps, config.total_steps):
                seeds.sync()
                for run in runs:
                    evaluate(run)
                    save_checkpoint(run)
                release_free_memory()
            stop_if_signalled(seeds.stop, end, progress, seeds, seeds.save_checkpoints)
    seeds.sync()
    progress.close()
    for run in runs:
        run.logger.close()
        report_final(run.scores, run.step, run.root)
    return [run.root for run in runs]


def check_finite_seed(seeds: Seeds, run: Run, log: dict[str, float], step: int) -> None:
    """`check_finite_losses` for one seed; with several seeds the message names it first."""
    try:
        check_finite_losses(log, step, run.checkpoints.latest_path())
    except NonFiniteError as err:
        if not seeds.stacked:
            raise
        raise NonFiniteError(f"seed {run.config.seed}: {err}") from None


def eval_policies(run: Run) -> list[EvalPolicy]:
    """Every actor of the chain with its current parameters, as `evaluate_actors` plays them."""
    base, links = run.carry["base"], run.carry["chain"]
    params = [run.algo.actor_params(base)]
    params += [run.chain.actor(links, i) for i in range(1, run.chain.n + 1)]
    return [EvalPolicy(run.algo.actor, p, run.eval_fns, run.config.n_episodes) for p in params]


def evaluate(run: Run) -> None:
    """Evaluate every actor of the chain on the same episodes and log."""
    config = run.config
    returns = evaluate_actors(
        eval_policies(run),
        run.env_id,
        config.n_episodes,
        config.seed,
        run.state_mean,
        run.state_std,
        config.eval_mode,
        "cpu",  # the torch side of evaluation: its random streams
    )
    scores = normalized_score(run.family, returns)  # [n_actors, n_episodes]
    run.scores = scores
    run.logger.log_eval(run.step, returns, scores)
    run.clock = report_eval(run.progress, run.step, scores, run.clock)


def save_checkpoint(run: Run) -> Path:
    """Checkpoint the carry; a non-finite parameter is refused (the PyTorch main's check, on
    zero-copy torch views of the host arrays), so the last checkpoint is always a good one."""
    state = run.state_dict()
    views = {
        part: {k: torch.from_numpy(v) for k, v in state[part].items()}
        for part in ("trainer", "chain")
    }
    check_finite_state(views, run.step, run.checkpoints.latest_path())
    return run.checkpoints.save(run.step, state)


def parse_seeds(argv: list[str]) -> tuple[list[int] | None, list[str]]:
    """`--seeds 0 1 2` taken out of the command line: (the seeds or None, the other arguments).

    `--seeds` is an option of this main, not a config key: each seed's config is the one a
    separate run with `--seed N` has (so one seed can later be resumed alone)."""
    seeds: list[int] | None = None
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--seeds="):
            raise ConfigError("--seeds: give the seeds as separate values, e.g. --seeds 0 1 2")
        if arg != "--seeds":
            rest.append(arg)
            i += 1
            continue
        if seeds is not None:
            raise ConfigError("--seeds: given twice")
        values = []
        i += 1
        while i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
        if not values:
            raise ConfigError("--seeds: needs one or more integer seeds, e.g. --seeds 0 1 2")
        try:
            seeds = [int(v) for v in values]
        except ValueError:
            raise ConfigError(f"--seeds: seeds are integers, got {' '.join(values)}") from None
        twice = sorted({s for s in seeds if seeds.count(s) > 1})
        if twice:
            raise ConfigError(f"--seeds: seed {twice[0]} is given twice")
    if seeds is not None and any(a == "--seed" or a.startswith("--seed=") for a in rest):
        raise ConfigError("--seeds: pass either --seed or --seeds, not both")
    return seeds, rest


def parse_seed_configs(argv: list[str] | None = None) -> list[PogoConfig]:
    """The command line's config, one per seed of `--seeds` (without it, the one config)."""
    seeds, rest = parse_seeds(sys.argv[1:] if argv is None else list(argv))
    if seeds is None:
        return [parse_config(rest)]
    configs = [parse_config([*rest, "--seed", str(seed)]) for seed in seeds]
    if len(configs) > 1 and configs[0].use_wandb:
        raise ConfigError(
            "--seeds: wandb keeps one run per process; pass --no_wandb (each seed still writes "
            "its logs/), or run the seeds separately"
        )
    return configs


def main(argv: list[str] | None = None) -> Path | list[Path]:
    """Train the command line's run (its directory), or each seed of `--seeds` (theirs)."""

    def run() -> Path | list[Path]:
        configs = parse_seed_configs(argv)
        if len(configs) == 1:
            return train(setup(configs[0]))
        return train_seeds(setup_seeds(configs))

    return run_main(run)


if __name__ == "__main__":
    main()
