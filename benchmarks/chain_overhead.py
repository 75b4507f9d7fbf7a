"""What the chain costs: updates/s with 1, 3, 5 actors, and where an update's time goes.

    OMP_NUM_THREADS=1 python benchmarks/chain_overhead.py                  # the README's table
    python benchmarks/chain_overhead.py --device cuda --threads 16         # on a GPU
    python benchmarks/chain_overhead.py --algorithms iql --actors 1 3 --steps 100   # quick look

Every case runs in this one process, on the same synthetic Hopper-sized dataset (speed does not
depend on the data's values), with the run's own pieces: `run.buffer.sample`, `run.trainer.train`,
`run.chain.update`, exactly the calls of `pogo_multi_main.train`. The ratio column is the time of
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

from algorithms.offline import pogo_multi_main  # noqa: E402
from algorithms.offline.config import parse_config  # noqa: E402
from algorithms.offline.data import write_hdf5  # noqa: E402
from algorithms.offline.make_dataset import make_synthetic_dataset  # noqa: E402

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
        self.roles: dict[int, str] = {}
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


def measure(
    argv: list[str], steps: int, warmup: int, eval_freq: int, timer: StepTimer, repeats: int = 1
) -> dict:
    """Seconds per update of one case (the best of `repeats` timings), and each part's share."""
    run = pogo_multi_main.setup(parse_config(argv))
    trainer, chain, buffer, config = run.trainer, run.chain, run.buffer, run.config
    actor0_params = {id(p) for p in trainer.actor.parameters()}
    timer.roles = {}
    for value in vars(trainer).values():
        if isinstance(value, torch.optim.Optimizer):
            params = {id(p) for g in value.param_groups for p in g["params"]}
            timer.roles[id(value)] = "actor 0" if params <= actor0_params else "critic"
    for opt in chain.optimizers:
        timer.roles[id(opt)] = "chain"

    def update() -> None:
        batch = buffer.sample(config.batch_size)
        timer.add("data")
        trainer.train(batch)
        timer.add("critic")  # whatever follows the last optimiser step inside train
        if chain.chain and trainer.total_it % trainer.policy_freq == 0:
            chain.update(batch[0], batch[1])
            timer.add("chain")

    for _ in range(warmup):
        update()
    best: tuple[float, dict[str, float]] | None = None
    for _ in range(repeats):  # the fastest repeat: other processes only ever slow one down
        timer.totals.clear()
        timer.active = True
        timer.start()
        begin = time.perf_counter()
        for _ in range(steps):
            update()
        per_update = (time.perf_counter() - begin) / steps
        timer.active = False
        if best is None or per_update < best[0]:
            best = (per_update, dict(timer.totals))
    per_update, totals = best
    start = time.perf_counter()
    run.progress = tqdm(disable=True)
    with contextlib.redirect_stdout(io.StringIO()):  # evaluate's progress line
        pogo_multi_main.evaluate(run)
    eval_time = time.perf_counter() - start
    run.logger.close()
    shares = {k: totals.get(k, 0.0) / steps for k in SHARES if k != "eval"}
    shares["eval"] = eval_time / eval_freq
    total = sum(shares.values())
    return {"per_update": per_update, "shares": {k: v / total for k, v in shares.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    parser.add_argument("--actors", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--steps", type=int, default=300, help="timed updates per case")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="timings per case; the best counts")
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
        f"best of {args.repeats} x {args.steps} timed updates per case; eval share: "
        f"{args.n_episodes} episodes per actor every {args.eval_freq} updates\n"
    )
    print(
        "| algorithm | chain | actors | updates/s | ratio to 1 actor | " + " | ".join(SHARES) + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(SHARES))

    def case_argv(algorithm: str, n: int, configs: list[str]) -> list[str]:
        return [
            "--algorithm", algorithm, "--env", "hopper-medium-v2",
            "--dataset_path", str(data), "--device", args.device,
            "--num_actors", str(n), "--batch_size", str(args.batch_size),
            "--n_episodes", str(args.n_episodes), "--max_timesteps", "1000000",
            "--output_dir", str(tmp / "runs"), "--overwrite", "--no_wandb", "--quiet",
            *configs, *args.extra,
        ]  # fmt: skip

    iql_one_actor = None  # seconds per IQL update with one actor (one backward pass)
    for algorithm, name, kind, extra in cases:
        base = None
        for n in args.actors:
            configs = list(extra)
            if kind is not None and n > 1:  # every chain actor of this type
                specs = ", ".join([f"{{type: {kind}}}"] * (n - 1))
                configs += ["--actor_configs", f"[{specs}]"]
            result = measure(
                case_argv(algorithm, n, configs), args.steps, args.warmup, args.eval_freq, timer
            )
            base = result["per_update"] if n == 1 else base
            if algorithm == "iql" and n == 1 and not extra:
                iql_one_actor = result["per_update"]
            ratio = f"{result['per_update'] / base:.2f}x" if base else "-"
            shares = " | ".join(f"{100 * result['shares'][k]:.0f}%" for k in SHARES)
            print(
                f"| {algorithm} | {name} | {n} | {1 / result['per_update']:.1f} | {ratio} | "
                f"{shares} |",
                flush=True,
            )
    if iql_one_actor is not None:  # the base update's own saving: one backward instead of three
        argv = case_argv("iql", 1, ["--single_backward", "false"])
        corl = measure(argv, args.steps, args.warmup, args.eval_freq, timer, args.repeats)[
            "per_update"
        ]
        print(
            f"\nIQL, 1 actor: one backward pass {1 / iql_one_actor:.1f} updates/s, CORL's three "
            f"passes {1 / corl:.1f} updates/s: {corl / iql_one_actor:.2f}x",
            flush=True,
        )
    timer.handle.remove()


if __name__ == "__main__":
    main()
