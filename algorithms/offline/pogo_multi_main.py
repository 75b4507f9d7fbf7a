"""POGO multi-actor: a JKO chain of policies on top of an offline RL algorithm.

    pi_0 -> pi_1 -> ... -> pi_{N-1}

* Actor 0 and the critics are the base algorithm's (IQL, TD3+BC, ...), trained by its own
  `trainer.train(batch)`, unchanged: the critics only ever see actor 0.
* Every `policy_freq` updates, each actor i >= 1 takes one step on

      L_i = E[ energy_i(s) ] + w_i * E[ W2^2(pi_i(.|s), stopgrad pi_{i-1}(.|s)) ]

  where the energy comes from the algorithm file (`compute_energy_function`, e.g. -Q(s, pi(s)))
  and W2^2 from `w2.py` (an estimator chosen from the policy types, one scale for all of them).
  This is one JKO step per update: pi_i is the proximal point of the energy from pi_{i-1}.
* With `settle_steps`, after `max_timesteps` the chain trains on alone: actor 0 and the
  critics are frozen, so each link solves its JKO step from a fixed predecessor instead of
  tracking a moving one (`settle_w2_weights`: its size; `settle_from_predecessor`: from actor 0;
  `joint_chain: false`: the chain trains in this phase only, the joint phase is the base alone).
* `num_actors: 1` is the base algorithm, number for number.

Run: python -m algorithms.offline.pogo_multi_main --config_path configs/offline/pogo_multi/...yaml
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from algorithms.datasets.envs import env_dims, eval_env_id, normalized_score, parse_d4rl_name
from algorithms.datasets.training_data import load_data
from algorithms.errors import CheckpointError
from algorithms.networks.actors import BaseActor, build_actor
from algorithms.networks.ensemble import StackedLinks, StackedModules, same_architecture
from algorithms.networks.policy_call import sample_K_actions
from algorithms.offline.config import PogoConfig, load_algorithm, parse_config
from algorithms.offline.interface import Trainer
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
from algorithms.offline.utils_pytorch import (
    LossGuard,
    RandomStream,
    ReplayBuffer,
    UpdateLog,
    check_finite_state,
    evaluate_actors,
    log_values,
    release_free_memory,
    resolve_device,
    rng_state,
    set_rng_state,
    set_seed,
    soft_update,
)
from algorithms.offline.w2 import resolve_w2_method, sinkhorn_w2_squared, w2_squared

# offsets that give each random stream of a run its own seed
CHAIN_STREAM, BATCH_STREAM = 1_000_003, 2_000_003


class ActorChain:
    """Actors 1..N-1, their optimisers and Polyak targets; actor 0 stays the trainer's."""

    def __init__(
        self,
        trainer: Trainer,
        config: PogoConfig,
        state_dim: int,
        action_dim: int,
        max_action: float,
        device: str,
    ):
        self.trainer = trainer
        self.config = config
        self.max_action = max_action
        # the chain's own random stream: building actors, policy noise, W2 noise
        self.stream = RandomStream(config.seed + CHAIN_STREAM, device)
        actor0 = trainer.actor
        self.actors: list[BaseActor] = [actor0]
        with self.stream:
            for i in range(1, config.num_actors):
                if config.actor_configs is None:  # actor 0's type and initial weights
                    actor = copy.deepcopy(actor0)
                else:
                    spec = config.actor_configs[i - 1]
                    actor = build_actor(spec, state_dim, action_dim, max_action).to(device)
                self.actors.append(actor)
        self.chain = self.actors[1:]
        self.weights = torch.tensor(config.w2_weights[: len(self.chain)], device=device)  # [E]
        self.w2_methods = [
            resolve_w2_method(self.actors[i], self.actors[i - 1], config.w2_method)
            for i in range(1, len(self.actors))
        ]
        # One stacked ensemble when every actor shares actor 0's architecture and settings
        # (every link then has one W2 method); else the loop.
        self.vectorized = bool(
            config.vectorize_chain and self.chain and same_architecture(self.actors)
        )
        if self.vectorized:
            self.ensemble = StackedModules(self.chain)
            if self.w2_methods[0] == "sinkhorn":  # GeomLoss cannot run inside vmap
                self.stacked_links = StackedLinks(self.ensemble, actor0, self._link_clouds)
            else:
                link = functools.partial(self.link, method=self.w2_methods[0])
                self.stacked_links = StackedLinks(self.ensemble, actor0, link)
            trainables: list[torch.nn.Module] = [self.ensemble]
        else:
            trainables = list(self.chain)
        self.trainables = trainables
        self.targets = [copy.deepcopy(m).requires_grad_(False) for m in trainables]
        optimizers = [trainer.make_actor_optimizer(m) for m in trainables]
        self.optimizers = [opt for opt, _ in optimizers]
        self.schedulers = [sched for _, sched in optimizers]
        self.params = [p for m in trainables for p in m.parameters()]

    def update(self, states: torch.Tensor, actions: torch.Tensor) -> UpdateLog:
        """One JKO step for every actor i >= 1 on the same batch: states [B, S], actions [B, A].

        Each loss sees its predecessor as it is now (detached), so the N-1 steps are independent
        and take one backward pass; gradients go to the chain's parameters only (not the critic).
        """
        with self.stream:
            if self.vectorized:
                energy, w2 = self.terms_vectorized(states, actions)  # [E], [E]
            else:
                energy, w2 = self.terms(states, actions)  # [E], [E]
            loss = energy + self.weights * w2  # [E]
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            loss.sum().backward(inputs=self.params)
        for opt, sched in zip(self.optimizers, self.schedulers):
            opt.step()
            if sched is not None:
                sched.step()
        for target, module in zip(self.targets, self.trainables):
            soft_update(target, module, self.config.tau)
        values = torch.stack([energy, w2, loss]).detach()  # [3, E], read when logged
        return {
            f"chain/{name}_{i}": v
            for name, row in zip(("energy", "w2", "loss"), values)
            for i, v in enumerate(row, start=1)
        }

    def q_gains(self, states: torch.Tensor) -> dict[str, float]:
        """What actors i >= 1 gain on the energy's critic over actor 0 at the batch's states [B, S],
        in the critic's units: mean Q(s, a_i) - mean Q(s, a_0), each actor's deterministic action
        clipped to the action box (as evaluated). The chain trades this against W2; the energy
        itself, normalised by mean|Q|, reads -scale on every update. Leaves every RNG as it was."""
        devices = [torch.device(self.weights.device)] if self.weights.is_cuda else []
        bound = self.max_action
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            actions = [a.deterministic_actions(states).clamp(-bound, bound) for a in self.actors]
            q = torch.stack([self.trainer.q_value(states, a).mean() for a in actions])  # [N]
        gains = (q[1:] - q[0]).cpu().tolist()  # one sync, [E]
        return {f"chain/q_gain_{i}": gain for i, gain in enumerate(gains, start=1)}

    def link(
        self,
        actor: BaseActor,
        previous: BaseActor,
        states: torch.Tensor,
        actions: torch.Tensor,
        method: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Link i: the mean energy of actor i and its mean W2^2 to actor i-1 (which gets no
        gradient: `w2_squared` reads it without grad). states [B, S], actions [B, A]."""
        energy = self.trainer.compute_energy_function(actor, states, actions).mean()
        c = self.config
        w2 = w2_squared(actor, previous, states, method, K=c.sinkhorn_K, blur=c.sinkhorn_blur)
        return energy, w2.mean()

    def terms(self, states: torch.Tensor, actions: torch.Tensor):
        """The energies and W2^2 of actors 1..N-1, link by link: [E], [E].

        Each actor's network runs once at the batch's states: its output serves its own
        energy and W2 (with grad) and, detached, the next link's predecessor (`at_states`).
        """
        energies, w2s = [], []
        with torch.no_grad():
            previous_output = self.actors[0].network_output(states)  # [B, O] or None
        links = zip(self.chain, self.actors, self.w2_methods)  # (actor i, actor i-1, method)
        for actor, previous, method in links:
            output = actor.network_output(states)  # [B, O] or None
            energy, w2 = self.link(
                actor.at_states(states, output),
                previous.at_states(states, previous_output),
                states,
                actions,
                method,
            )
            energies.append(energy)
            w2s.append(w2)
            previous_output = None if output is None else output.detach()
        return torch.stack(energies), torch.stack(w2s)

    def terms_vectorized(self, states: torch.Tensor, actions: torch.Tensor):
        """The same terms from the stacked ensemble: every link at once, one `vmap` call."""
        if self.w2_methods[0] != "sinkhorn":
            return self.stacked_links(states, actions)  # [E], [E]
        energy, clouds, previous_clouds = self.stacked_links(states, actions)  # [E, B, K, A] x 2
        w2 = sinkhorn_w2_squared(
            clouds.flatten(0, 1), previous_clouds.flatten(0, 1), self.config.sinkhorn_blur
        )  # [E * B]
        return energy, w2.view(len(self.chain), -1).mean(1)

    def _link_clouds(self, actor, previous, states, actions):
        """A Sinkhorn link under vmap: GeomLoss reads values in Python, so the link returns its
        two K-sample clouds [B, K, A] and one GeomLoss call measures every link afterwards."""
        energy = self.trainer.compute_energy_function(actor, states, actions).mean()
        clouds = sample_K_actions(actor, states, self.config.sinkhorn_K)  # [B, K, A]
        with torch.no_grad():
            previous_clouds = sample_K_actions(previous, states, self.config.sinkhorn_K)
        return energy, clouds, previous_clouds

    def settle(self, weights: list[float]) -> None:
        """Enter the settle phase: the settle W2 weights, and each optimiser back at its initial
        learning rate, no longer on the joint phase's schedule (one that ends with the joint
        phase, like IQL's cosine, would leave the chain no steps to take)."""
        self.weights = torch.tensor(weights[: len(self.chain)], device=self.weights.device)
        self.schedulers = [None] * len(self.schedulers)
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"])

    def start_from_predecessors(self) -> None:
        """Every actor i >= 1 (and its Polyak target) becomes a copy of actor 0, with fresh
        optimiser moments: each settle JKO step then starts at its predecessor."""
        with torch.no_grad():
            for actor in self.chain:  # in the stacked ensemble these write into its stack
                for mine, source in zip(actor.parameters(), self.actors[0].parameters()):
                    mine.copy_(source)
            for target, module in zip(self.targets, self.trainables):
                target.load_state_dict(module.state_dict())
        for opt in self.optimizers:
            opt.state.clear()

    def settle_lr(self, k: int, steps: int) -> None:
        """Cosine decay over the settle phase: the learning rate of its update k (0-based) of
        `steps`, from the initial one towards 0. A function of k alone, so a resume is exact."""
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * 0.5 * (1.0 + math.cos(math.pi * k / steps))

    def state_dict(self) -> dict[str, Any]:
        return {
            "actors": [{k: v.clone() for k, v in a.state_dict().items()} for a in self.chain],
            "targets": [t.state_dict() for t in self.targets],
            "optimizers": [o.state_dict() for o in self.optimizers],
            "schedulers": [s.state_dict() if s is not None else None for s in self.schedulers],
            "stream": self.stream.state_dict(),
        }

    def check_state(self, state: dict[str, Any], source: Path) -> None:
        """Refuse a saved chain this one cannot load (the other layout), naming the fix."""
        saved = [sorted(t) for t in state["targets"]]
        if saved != [sorted(t.state_dict()) for t in self.targets]:
            layout = "one stacked ensemble" if self.vectorized else "one module per actor"
            raise CheckpointError(
                f"resume: {source} holds the chain in the other layout than this run's "
                f"({layout}, vectorize_chain: {self.config.vectorize_chain}); resume with "
                f"--vectorize_chain {str(not self.vectorized).lower()}"
            )

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        self.check_state(state, source)
        for actor, actor_state in zip(self.chain, state["actors"]):
            actor.load_state_dict(actor_state)  # writes through into the stacked tensors
        for i, target in enumerate(self.targets):
            target.load_state_dict(state["targets"][i])
            self.optimizers[i].load_state_dict(state["optimizers"][i])
            if self.schedulers[i] is not None and state["schedulers"][i] is not None:
                self.schedulers[i].load_state_dict(state["schedulers"][i])
        self.stream.load_state_dict(state["stream"])


@dataclasses.dataclass
class Run:
    """Everything a run needs, built and checked before the first update."""

    config: PogoConfig
    trainer: Trainer
    chain: ActorChain
    buffer: ReplayBuffer
    logger: RunLogger
    checkpoints: CheckpointStore
    root: Path
    env_id: str
    family: str
    state_mean: np.ndarray
    state_std: np.ndarray
    device: str
    step: int = 0  # updates done
    progress: Any = None  # the tqdm bar (disabled when quiet)
    clock: tuple[float, int] = (0.0, 0)  # (time, step) of the last evaluation, for updates/s
    scores: np.ndarray | None = None  # [n_actors, n_episodes] of the last evaluation
    stop: StopSignal = dataclasses.field(default_factory=StopSignal)  # SIGTERM / Ctrl-C seen
    guard: LossGuard = dataclasses.field(default_factory=LossGuard)  # losses not yet checked

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to continue number for number."""
        return {
            "step": self.step,
            "trainer": self.trainer.state_dict(),
            "chain": self.chain.state_dict(),
            "buffer": self.buffer.state_dict(),
            "rng": rng_state(self.device),
            "state_mean": self.state_mean,
            "state_std": self.state_std,
            "config": dataclasses.asdict(self.config),
        }

    def check_state(self, state: dict[str, Any], source: Path) -> None:
        """Refuse a checkpoint of other data or another chain layout, before anything is written."""
        check_same_data(state, self.state_mean, self.state_std, source)
        self.chain.check_state(state["chain"], source)

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        self.check_state(state, source)
        self.trainer.load_state_dict(state["trainer"])
        self.chain.load_state_dict(state["chain"], source)
        self.buffer.load_state_dict(state["buffer"])
        set_rng_state(state["rng"], self.device)
        self.step = state["step"]


def setup(config: PogoConfig) -> Run:
    """Data, networks, outputs; every bad input fails here, before any training or writing."""
    algorithm = load_algorithm(config.algorithm, backend="torch")
    device = resolve_device(config.device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    family = parse_d4rl_name(config.env).family
    env_id = eval_env_id(config.env, config.eval_env)
    obs_dim, action_dim, max_action = env_dims(env_id)
    dataset, state_mean, state_std = load_data(config, obs_dim, action_dim, env_id)

    set_seed(config.seed)  # the base algorithm's stream: its networks, its own noise
    trainer = algorithm.build(config, obs_dim, action_dim, max_action, device)
    chain = ActorChain(trainer, config, obs_dim, action_dim, max_action, device)
    if config.compile:  # the same updates, traced and compiled on their first calls
        trainer.train = torch.compile(trainer.train, backend=config.compile_backend)
        chain.update = torch.compile(chain.update, backend=config.compile_backend)
    buffer = ReplayBuffer(dataset, device, seed=config.seed + BATCH_STREAM)

    root = check_run_dir(config)  # fail before wandb starts or anything is written
    checkpoints = CheckpointStore.of_run(root, config)
    run = Run(
        config=config,
        trainer=trainer,
        chain=chain,
        buffer=buffer,
        logger=RunLogger(root, config),
        checkpoints=checkpoints,
        root=root,
        env_id=env_id,
        family=family,
        state_mean=state_mean,
        state_std=state_std,
        device=device,
    )
    if config.resume:  # checked as it loads: a checkpoint that does not fit fails before writing
        state, path = resume_state(config, checkpoints)
        run.load_state_dict(state, path)
        print(f"resuming {root} from {path.name} (step {run.step})")
    start_outputs(config, root, run.logger, checkpoints, run.step)  # the first write
    return run


def train(run: Run) -> Path:
    """The training loop; returns the run directory (logs/eval.csv, checkpoints/)."""
    config, trainer, chain = run.config, run.trainer, run.chain
    print(
        f"POGO {config.algorithm} on {config.env}: {run.buffer.size} transitions, eval on "
        f"{run.env_id}, {config.num_actors} actors, W2 {chain.w2_methods}, outputs in {run.root}"
    )
    run.progress = progress_bar(config, run.step)
    run.clock = (time.perf_counter(), run.step)
    with run.stop:
        for t in range(run.step + 1, config.max_timesteps + 1):  # the joint phase
            batch = run.buffer.sample(config.batch_size)
            log = trainer.train(batch)
            chain_trains = bool(chain.chain) and config.joint_chain
            if chain_trains and trainer.total_it % trainer.policy_freq == 0:
                log.update(chain.update(batch[0], batch[1]))
            after_update(run, t, log, batch[0] if chain_trains else None)
        if config.settle_steps:  # the settle phase: actor 0 and the critics stay as they are
            chain.settle(config.settle_w2_weights or config.w2_weights)
            from_actor0 = config.settle_from_predecessor or not config.joint_chain
            if from_actor0 and run.step == config.max_timesteps:
                chain.start_from_predecessors()  # once: a resumed settle phase has its copies
            for t in range(max(run.step, config.max_timesteps) + 1, config.total_steps + 1):
                if config.settle_lr_schedule == "cosine":
                    chain.settle_lr(t - config.max_timesteps - 1, config.settle_steps)
                batch = run.buffer.sample(config.batch_size)
                after_update(run, t, chain.update(batch[0], batch[1]), batch[0])
    run.progress.close()
    run.logger.close()
    report_final(run.scores, run.step, run.root)
    return run.root


def after_update(
    run: Run, t: int, log: UpdateLog, chain_states: torch.Tensor | None = None
) -> None:
    """Update t is done. Its losses stay on the device until a log step (or an evaluation):
    then every loss since the last check is checked in one read, and update t's are logged
    (with the chain's Q gains at the batch's states `chain_states` [B, S] where the chain
    trains). Evaluate and checkpoint when due."""
    config = run.config
    run.step = t
    run.guard.record(t, log)
    logs = t % config.log_freq == 0
    evaluates = t % config.eval_freq == 0 or t in (config.max_timesteps, config.total_steps)
    if logs or evaluates:
        run.guard.check(run.checkpoints.latest_path)  # the first non-finite loss stops here
    if logs:
        values = log_values(log)
        if chain_states is not None:
            values.update(run.chain.q_gains(chain_states))
        run.logger.log_train(t, values)
    run.progress.update()
    if evaluates:
        evaluate(run)
        save_checkpoint(run)
        release_free_memory()
    stop_if_signalled(run.stop, t, run.progress, run.logger, lambda: save_checkpoint(run))


def evaluate(run: Run) -> None:
    """Evaluate every actor of the chain on the same episodes, and log the scores."""
    config = run.config
    returns = evaluate_actors(
        run.chain.actors,
        run.env_id,
        config.n_episodes,
        config.seed,
        run.state_mean,
        run.state_std,
        config.eval_mode,
        run.device,
    )
    scores = normalized_score(run.family, returns)  # [n_actors, n_episodes]
    run.scores = scores
    run.logger.log_eval(run.step, returns, scores)
    run.clock = report_eval(run.progress, run.step, scores, run.clock)


def save_checkpoint(run: Run) -> Path:
    run.guard.check(run.checkpoints.latest_path)  # never save after a non-finite loss
    state = run.state_dict()
    check_finite_state(state, run.step, run.checkpoints.latest_path())  # never save NaNs
    return run.checkpoints.save(run.step, state)


def main(argv: list[str] | None = None) -> Path:
    return run_main(lambda: train(setup(parse_config(argv))))


if __name__ == "__main__":
    main()
