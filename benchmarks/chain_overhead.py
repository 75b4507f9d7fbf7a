"""What the chain costs: updates/s with 1, 3, 5 actors, and where an update's time goes.

    OMP_NUM_THREADS=1 python benchmarks/chain_overhead.py                  # docs/speed.md's table
    python benchmarks/chain_overhead.py --device cuda --threads 16         # on a GPU
    python benchmarks/chain_overhead.py --algorithms iql --actors 1 3 --steps 100   # quick look

Every case runs in this one process, on the same synthetic Hopper-sized dataset (speed does not
depend on the data's values), with the run's own pieces: `run.buffer.sample`, `run.trainer.train`,
`run.chain.update`, exactly the calls of `pogo_multi_main.train`; the cases of one row group
are timed in turns, chunk by chunk, each keeping its fastest. The ratio column is the time of
an update over the time of the same case with `num_actors: 1`. The share columns split one
update's time: data sampling, critic update (every optimiser of the trainer but actor 0's),
actor-0 update (the stretch of `trainer.train` that ends with actor 0's optimiser step), the chain
update, and evaluation (one evaluation of every actor, spread over `--eval_freq` updates). IQL's
one backward pass for its three losses falls before its first optimiser step, so IQL's critic
share holds actor 0's backward too. The last line compares that one pass with CORL's three
(`single_backward: false`) on IQL with one actor.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from algorithms.datasets.d4rl import write_hdf5  # noqa: E402
from algorithms.datasets.make_dataset import make_synthetic_dataset  # noqa: E402
from algorithms.offline import pogo_multi_main  # noqa: E402
from algorithms.offline.config import parse_config  # noqa: E402

ALGORITHMS = ("iql", "td3_bc", "cql", "awac", "sac_n", "edac")
# IQL cases the targets are stated for: (chain actor type, extra overrides)
IQL_CASES: dict[str, tuple[str | None, list[str]]] = {
    "gaussian / closed_form": (None, []),
    # differs from IQL's Gaussian actor 0, so the chain runs as a loop and link 1 is Sinkhorn
    "tanh_gaussian chain (loop)": ("tanh_gaussian", []),
    "deterministic chain (loop)": ("deterministic", []),
    "gaussian / sinkhorn K=8": (None, ["--w2_method", "sinkhorn", "--sinkhorn_K", "8"]),
}
SHARES = ("data", "critic", "actor 0", "chain", "eval")


class StepTimer:
    """Attributes the time up to each optimiser step to that optimiser's role."""

    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self.roles: dict[int, str] = {}  # id(optimizer) -> part, for every live case
        self.totals: dict[str, float] = defaultdict(float)
        self.mark = time.perf_counter()
        self.active = False
        self.handle = register_optimizer_step_post_hook(self._on_step)

    def _on_step(self, optimizer, args, kwargs) -> None:
        if not self.active:
            return
        self.sync()
        now = time.perf_counter()
        self.totals[self.roles.get(id(optimizer), "critic")] += now - self.mark
        self.mark = now

    def start(self) -> None:
        self.sync()
        self.mark = time.perf_counter()

    def add(self, role: str) -> None:
        """Charge the time since the last mark to `role`."""
        self.sync()
        now = time.perf_counter()
        self.totals[role] += now - self.mark
        self.mark = now


class Case:
    """One configuration, set up once and then timed in chunks of updates.

    The cases being compared (1, 3, 5 actors) are timed in turns, chunk by chunk, and each keeps
    its fastest chunk: on a shared machine a slow spell then hits every case alike instead of
    deciding one case's number.
    """

    def __init__(self, argv: list[str], timer: StepTimer, warmup: int):
        self.run = pogo_multi_main.setup(parse_config(argv))
        self.timer = timer
        trainer, chain = self.run.trainer, self.run.chain
        actor0_params = {id(p) for p in trainer.actor.parameters()}
        for value in vars(trainer).values():
            if isinstance(value, torch.optim.Optimizer):
                params = {id(p) for g in value.param_groups for p in g["params"]}
                timer.roles[id(value)] = "actor 0" if params <= actor0_params else "critic"
        for opt in chain.optimizers:
            timer.roles[id(opt)] = "chain"
        self.best: tuple[float, dict[str, float]] | None = None  # seconds per update, parts
        for _ in range(warmup):
            self.update()

    def update(self) -> None:
        run, timer = self.run, self.timer
        batch = run.buffer.sample(run.config.batch_size)
        timer.add("data")
        run.trainer.train(batch)
        timer.add("critic")  # whatever follows the last optimiser step inside train
        if run.chain.chain and run.trainer.total_it % run.trainer.policy_freq == 0:
            run.chain.update(batch[0], batch[1])
            timer.add("chain")

    def time(self, steps: int) -> None:
        timer = self.timer
        timer.totals.clear()
        timer.active = True
        timer.start()
        begin = time.perf_counter()
        for _ in range(steps):
            self.update()
        per_update = (time.perf_counter() - begin) / steps
        timer.active = False
        if self.best is None or per_update < self.best[0]:
            self.best = (per_update, {k: v / steps for k, v in timer.totals.items()})

    def result(self, eval_freq: int) -> dict:
        """Seconds per update (the fastest chunk), and each part's share of an update."""
        per_update, parts = self.best
        start = time.perf_counter()
        self.run.progress = tqdm(disable=True)
        with contextlib.redirect_stdout(io.StringIO()):  # evaluate's progress line
            pogo_multi_main.evaluate(self.run)
        shares = {k: parts.get(k, 0.0) for k in SHARES if k != "eval"}
        shares["eval"] = (time.perf_counter() - start) / eval_freq
        self.run.logger.close()
        total = sum(shares.values())
        return {"per_update": per_update, "shares": {k: v / total for k, v in shares.items()}}


def measure_together(argvs: list[list[str]], args: argparse.Namespace, timer: StepTimer):
    """Results of several cases timed in turns, `args.repeats` chunks of `args.steps` each."""
    cases = [Case(argv, timer, args.warmup) for argv in argvs]
    for _ in range(args.repeats):
        for case in cases:
            case.time(args.steps)
    return [case.result(args.eval_freq) for case in cases]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--actors", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--steps", type=int, default=60, help="updates per timed chunk")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed chunks per case, in turns; the best counts"
    )
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--n_episodes", type=int, default=10, help="per evaluation")
    parser.add_argument("--eval_freq", type=int, default=5000, help="updates per evaluation")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="config overrides")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    timer = StepTimer(sync)
    tmp = Path(tempfile.mkdtemp(prefix="chain_overhead_"))
    data = tmp / "hopper_synthetic.hdf5"
    write_hdf5(data, make_synthetic_dataset(100_000, 11, 3), {})  # Hopper's sizes

    cases: list[tuple[str, str, str | None, list[str]]] = []
    for algorithm in args.algorithms:
        if algorithm == "iql":
            cases += [("iql", name, kind, extra) for name, (kind, extra) in IQL_CASES.items()]
        else:
            cases.append((algorithm, "auto", None, []))
    print(
        f"device {args.device}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
        f"best of {args.repeats} chunks of {args.steps} updates per case, cases in turns; eval: "
        f"{args.n_episodes} episodes per actor every {args.eval_freq} updates\n"
    )
    print(
        "| algorithm | chain | actors | updates/s | ratio to 1 actor | " + " | ".join(SHARES) + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(SHARES))

    def case_argv(algorithm: str, n: int, configs: list[str]) -> list[str]:
        # each case its own output directory: the cases of a group are alive at the same time
        return [
            "--algorithm", algorithm, "--env", "hopper-medium-v2",
            "--dataset_path", str(data), "--device", args.device,
            "--num_actors", str(n), "--batch_size", str(args.batch_size),
            "--n_episodes", str(args.n_episodes), "--max_timesteps", "1000000",
            "--output_dir", tempfile.mkdtemp(dir=tmp), "--no_wandb", "--quiet",
            *configs, *args.extra,
        ]  # fmt: skip

    for algorithm, name, kind, extra in cases:
        argvs = []
        for n in args.actors:
            configs = list(extra)
            if kind is not None and n > 1:  # every chain actor of this type
                specs = ", ".join([f"{{type: {kind}}}"] * (n - 1))
                configs += ["--actor_configs", f"[{specs}]"]
            argvs.append(case_argv(algorithm, n, configs))
        results = measure_together(argvs, args, timer)
        base = next((r["per_update"] for n, r in zip(args.actors, results) if n == 1), None)
        for n, result in zip(args.actors, results):
            ratio = f"{result['per_update'] / base:.2f}x" if base else "-"
            shares = " | ".join(f"{100 * result['shares'][k]:.0f}%" for k in SHARES)
            print(
                f"| {algorithm} | {name} | {n} | {1 / result['per_update']:.1f} | {ratio} | "
                f"{shares} |",
                flush=True,
            )
    if "iql" in args.algorithms:  # the base update's own saving: one backward instead of three
        single, corl = measure_together(
            [case_argv("iql", 1, ["--single_backward", flag]) for flag in ("true", "false")],
            args,
            timer,
        )
        single, corl = single["per_update"], corl["per_update"]
        print(
            f"\nIQL, 1 actor: one backward pass {1 / single:.1f} updates/s, CORL's three "
            f"passes {1 / corl:.1f} updates/s: {corl / single:.2f}x",
            flush=True,
        )
    timer.handle.remove()


if __name__ == "__main__":
    main()
