"""Long-run memory check (not in CI): train a chain for many steps and sample the process's RSS.

    python scripts/memory_check.py --steps 200000 --num_actors 5 --sample_every 10000 \
        -- --config_path configs/quickstart/hopper_random_v2_iql.yaml --algorithm td3_bc

Everything after `--` goes to `pogo_multi_main` (config, algorithm, dataset). The run's RSS is
read from /proc every half second and recorded whenever the training log reaches a new step.
Prints a markdown table and exits 1 if RSS grew by more than `--max_growth` between the second
sample (after start-up and the first evaluation) and the last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from algorithms.datasets.d4rl import write_hdf5  # noqa: E402
from algorithms.datasets.make_dataset import make_synthetic_dataset  # noqa: E402


def rss_mib(pid: int, field: str = "VmRSS:") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def last_step(train_log: Path) -> int | None:
    if not train_log.exists():
        return None
    lines = train_log.read_text().splitlines()
    return json.loads(lines[-1])["step"] if lines else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--num_actors", type=int, default=5)
    parser.add_argument("--sample_every", type=int, default=10_000)
    parser.add_argument("--max_growth", type=float, default=0.05, help="allowed RSS growth")
    parser.add_argument("--report", type=Path, help="also write the markdown table here")
    parser.add_argument(
        "--synthetic_rows",
        type=int,
        help="train on a synthetic HalfCheetah-sized dataset of this many rows (e.g. 2000000)",
    )
    args, main_args = parser.parse_known_args()
    main_args = [a for a in main_args if a != "--"]

    out = Path(tempfile.mkdtemp(prefix="pogo_memory_"))
    if args.synthetic_rows:  # D4RL's largest locomotion sets have 2M rows
        data = out / "synthetic.hdf5"
        write_hdf5(data, make_synthetic_dataset(args.synthetic_rows, 17, 6), {})
        main_args += ["--env", "halfcheetah-medium-v2", "--dataset_path", str(data)]
    cmd = [sys.executable, "-m", "algorithms.offline.pogo_multi_main", *main_args]
    cmd += ["--max_timesteps", str(args.steps), "--num_actors", str(args.num_actors)]
    cmd += ["--w2_weights", "10", "--log_freq", str(args.sample_every)]
    cmd += ["--eval_freq", str(args.sample_every), "--n_episodes", "2"]
    cmd += ["--output_dir", str(out), "--no_wandb"]
    print(" ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    samples: list[tuple[int, float, float]] = []  # step, RSS MiB, seconds
    peak = 0.0  # the kernel's high-water mark of RSS (VmHWM), last read
    start = time.time()
    train_log = None
    while proc.poll() is None:
        time.sleep(0.5)
        try:
            peak = rss_mib(proc.pid, "VmHWM:")
        except (FileNotFoundError, RuntimeError):
            pass
        if train_log is None:
            found = list(out.rglob("train.jsonl"))
            train_log = found[0] if found else None
        step = last_step(train_log) if train_log else None
        if step is not None and (not samples or step > samples[-1][0]):
            try:
                samples.append((step, rss_mib(proc.pid), time.time() - start))
            except (FileNotFoundError, RuntimeError):
                break
            print(f"step {step}: RSS {samples[-1][1]:.1f} MiB", flush=True)
    if proc.wait() != 0:
        print(f"training failed with exit code {proc.returncode}")
        return 1

    rows = ["| step | RSS (MiB) | elapsed (s) |", "|---:|---:|---:|"]
    rows += [f"| {s} | {r:.1f} | {t:.0f} |" for s, r, t in samples]
    base, last = samples[min(1, len(samples) - 1)][1], samples[-1][1]
    growth = (last - base) / base
    rows.append(f"\nRSS growth from step {samples[min(1, len(samples) - 1)][0]}: {growth:+.1%}")
    rows.append(f"peak RSS (VmHWM, incl. loading the dataset): {peak:.0f} MiB")
    table = "\n".join(rows)
    print(table)
    if args.report:
        args.report.write_text(" ".join(cmd[1:]) + "\n\n" + table + "\n")
    return 0 if growth <= args.max_growth else 1


if __name__ == "__main__":
    sys.exit(main())
