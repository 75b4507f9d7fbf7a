"""Updates/s of whole runs, one or K side by side on one device: what `--runs_per_gpu K` buys;
for JAX, also S seeds vmapped in one run: what `pogo_multi_jax --seeds` buys.

    python benchmarks/throughput.py --device cuda --algorithm iql --actors 3 --runs 1 4 8 16
    python benchmarks/throughput.py --device cuda --algorithm rebrac --actors 3 --runs 1 4
    python benchmarks/throughput.py --device cuda --algorithm rebrac --runs 1 --seeds 1 8
    OMP_NUM_THREADS=1 python benchmarks/throughput.py --algorithm td3_bc --runs 1 2 --steps 200

For each K, K worker processes (each a run of the main's own pieces on a synthetic Hopper-sized
dataset, batch 256, no evaluation) start together, warm up, then time `--steps` updates with
nothing but the update in the loop; the CPU threads are divided among them. Each worker reports
its updates/s; the table shows the slowest worker's and the sum over workers and seeds (the
device's throughput). PyTorch runs step as `pogo_multi_main.train` does (sample, `trainer.train`,
the chain when due); JAX runs call the jitted stretch of updates that `pogo_multi_jax.train_seeds`
calls, for S seeds (`--seeds`: seeds 0..S-1 vmapped; 1: a run's own updates, no seed axis), and
report updates/s per seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

JAX_ALGORITHMS = ("rebrac", "fql")


def worker_argv(args: argparse.Namespace, data: Path, out: Path) -> list[str]:
    return [
        "--algorithm", args.algorithm, "--env", "hopper-medium-v2", "--dataset_path", str(data),
        "--device", args.device, "--num_actors", str(args.actors), "--batch_size", "256",
        "--max_timesteps", "1000000", "--settle_steps", "0", "--output_dir", str(out),
        "--no_wandb", "--quiet", *args.extra,
    ]  # fmt: skip


def time_torch(argv: list[str], warmup: int, steps: int) -> float:
    import torch

    from algorithms.offline import pogo_multi_main
    from algorithms.offline.config import parse_config

    run = pogo_multi_main.setup(parse_config(argv))
    trainer, chain, size = run.trainer, run.chain, run.config.batch_size

    def updates(n: int) -> None:
        for _ in range(n):
            batch = run.buffer.sample(size)
            trainer.train(batch)
            if chain.chain and trainer.total_it % trainer.policy_freq == 0:
                chain.update(batch[0], batch[1])

    sync = torch.cuda.synchronize if run.device.startswith("cuda") else (lambda: None)
    updates(warmup)
    sync()
    begin = time.perf_counter()
    updates(steps)
    sync()
    return steps / (time.perf_counter() - begin)


def time_jax(argv: list[str], warmup: int, steps: int, seeds: int = 1) -> float:
    """Updates/s of each of `seeds` seeds trained together (one vmapped stretch)."""
    import jax
    import jax.numpy as jnp

    from algorithms.offline import pogo_multi_jax
    from algorithms.offline.config import parse_config

    configs = [parse_config([*argv, "--seed", str(seed)]) for seed in range(seeds)]
    run = pogo_multi_jax.setup_seeds(configs)
    data = run.runs[0].data
    n = jnp.asarray(steps, jnp.int32)  # one compiled loop for both calls
    carry = run.run_updates(run.carry, data, jnp.asarray(warmup, jnp.int32))
    jax.block_until_ready(carry)
    begin = time.perf_counter()
    carry = run.run_updates(carry, data, n)
    jax.block_until_ready(carry)
    return steps / (time.perf_counter() - begin)


def worker(args: argparse.Namespace) -> None:
    out = Path(tempfile.mkdtemp(prefix="throughput_run_"))
    argv = worker_argv(args, Path(args.data), out)
    if args.algorithm in JAX_ALGORITHMS:
        speed = time_jax(argv, args.warmup, args.steps, args.seeds[0])
    else:
        speed = time_torch(argv, args.warmup, args.steps)
    print(json.dumps({"updates_per_s": speed}), flush=True)


def side_by_side(args: argparse.Namespace, k: int, seeds: int, data: Path) -> list[float]:
    """K workers of `seeds` seeds each started together on the same device; each one's
    updates/s (per seed)."""
    threads = max((os.cpu_count() or 1) // k, 1)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # K JAX processes share one GPU's memory
    cmd = [sys.executable, __file__, "--worker", "--data", str(data)]
    cmd += ["--algorithm", args.algorithm, "--actors", str(args.actors), "--device", args.device]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup), "--seeds", str(seeds)]
    cmd += ["--extra", *args.extra] if args.extra else []
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(k)
    ]
    speeds = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"throughput: a worker failed (exit {proc.returncode})")
        speeds.append(json.loads(out.strip().splitlines()[-1])["updates_per_s"])
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithm", default="iql")
    parser.add_argument("--actors", type=int, default=3)
    parser.add_argument("--runs", nargs="+", type=int, default=[1, 4, 8, 16], help="K values")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=2000, help="timed updates per worker")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=[1], help="S values: seeds per run, vmapped (JAX)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="config overrides")
    args = parser.parse_args()
    if args.seeds != [1] and args.algorithm not in JAX_ALGORITHMS:
        parser.error("--seeds: seeds are vmapped in the JAX main only (rebrac, fql)")
    if args.worker:
        return worker(args)

    from algorithms.datasets.d4rl import write_hdf5
    from algorithms.datasets.make_dataset import make_synthetic_dataset

    data = Path(tempfile.mkdtemp(prefix="throughput_")) / "hopper_synthetic.hdf5"
    write_hdf5(data, make_synthetic_dataset(100_000, 11, 3), {})  # Hopper's sizes
    print(
        f"{args.algorithm}, {args.actors} actors, device {args.device}, batch 256, "
        f"{args.steps} timed updates per run after {args.warmup}"
        + (f", overrides: {' '.join(args.extra)}" if args.extra else "")  # e.g. another batch
        + "\n"
    )
    print("| runs side by side | seeds per run | updates/s per seed (slowest run) | summed |")
    print("|---|---|---|---|")
    for k in args.runs:
        for seeds in args.seeds:
            speeds = side_by_side(args, k, seeds, data)
            print(f"| {k} | {seeds} | {min(speeds):.0f} | {sum(speeds) * seeds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
