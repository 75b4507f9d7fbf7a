"""Chain study: algorithms x envs x datasets x seeds x w2_weights on the local datasets.

    python scripts/chain_study.py --dry-run                       # the plan: datasets, runs
    python scripts/chain_study.py --jobs 2 --max_timesteps 50000  # run it (resumable), then tables

Each run is the shipped config (`configs/offline/pogo_multi/<env>/<dataset>_v2_<algo>.yaml`) with
`--w2_weights [w]`, on a dataset made here (`data/<env>_<dataset>-v2.hdf5`, made first if missing,
`--dataset_size` rows, `d4rl` for D4RL's sizes) and written under `<out>/w<w>/`. Runs go `--jobs` at
a time with `OMP_NUM_THREADS=--threads` each, or with `--launcher slurm` (and its options, see
`algorithms/launch/`) as SLURM job arrays; arguments after `--` override config keys in every run;
the sweep's record and run logs are in `<out>/` (`python -m algorithms.launch status <out>`). Run
again after an interruption: finished runs are skipped and interrupted ones continue with
`--resume`. On SLURM the command submits and returns; once the runs are done, the same command
writes the tables (and submits a `--settle_sweep`'s runs, which start from the joint phases). Each
run has its config's settle phase (the chain alone after `--max_timesteps`; `--settle_steps`,
`--settle_w2_weight` and `--settle_lr_schedule` override it); runs finished before their settle
phase are resumed into it. `--settle_sweep s1 s2 ...` then redoes each run's settle phase at those
weights from its checkpoint at `--max_timesteps`, in copies under `<out>/w<w>_settle<s>/`
(`..._cosine/` with a cosine settle schedule; only the settle updates are spent again),
`--settle_sweep_steps n` long (`..._steps<n>/`; default: the runs' own). SIGTERM or Ctrl-C starts no
further run and stops the running ones, each after checkpointing the update it finished; the same
command later goes on from there. At the end the results table of every actor and the chain's
verdict (the results command with `--chain`) are printed for each output directory, and written to
`<out>/<directory>.md`.

    python scripts/chain_study.py --shipped --max_timesteps 50000 -- --eval_mode mean

gathers instead, per algorithm and dataset, the runs made with the shipped config's own chain
and settle settings (each run's recorded config equals the config with the command's
overrides, up to where the run was written) from whichever `<out>/` directory holds them, into
`<out>/shipped/`, and prints its table and verdict (`<out>/shipped.md`): the study judged on
the shipped defaults. A dataset goes in only with all `--seeds` finished. The settings were
chosen on seeds 0-2: `--fresh_seeds 3 4 5` gathers those seeds' runs too (made by the study with
`--w2_weights 10 --seeds 3 4 5`, the shipped weight) into `<out>/shipped_fresh/`, and puts the
chain's gain on both seed sets side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from algorithms.datasets.behavior_policy import DEFAULT_REPLAY_DIR  # noqa: E402
from algorithms.datasets.envs import ENV_IDS, parse_d4rl_name  # noqa: E402
from algorithms.datasets.make_dataset import MAKEABLE_KINDS, parse_size  # noqa: E402
from algorithms.errors import PogoError  # noqa: E402
from algorithms.launch.launcher import add_launcher_args, launch  # noqa: E402
from algorithms.launch.sweep import run_state  # noqa: E402
from algorithms.offline.config import (  # noqa: E402
    ALGORITHMS,
    PogoConfig,
    load_algorithm,
    parse_config,
)
from algorithms.offline.results import collect, gains_side_by_side  # noqa: E402
from algorithms.offline.run_io import (  # noqa: E402
    EXIT_STOPPED,
    RESUMABLE_CHANGES,
    CheckpointStore,
    StopSignal,
    run_dir,
    truncate_logs,
)


def dataset_file(data_dir: Path, env: str, dataset: str) -> Path:
    return data_dir / parse_d4rl_name(f"{env}-{dataset}-v2").file_name


def weight_dir(out: Path, weight: float) -> Path:
    return out / f"w{weight:g}"


@functools.cache
def config_values(config: str) -> dict:
    """A shipped config's keys (read once per file)."""
    return yaml.safe_load((REPO / config).read_text())


def settle_of(args: argparse.Namespace, config: str) -> int:
    """The settle phase's length: --settle_steps, else the config's."""
    if args.settle_steps is not None:
        return args.settle_steps
    return config_values(config)["settle_steps"]


def schedule_of(args: argparse.Namespace, config: str) -> str:
    """The settle phase's learning-rate schedule: --settle_lr_schedule, else the config's."""
    if args.settle_lr_schedule is not None:
        return args.settle_lr_schedule
    return config_values(config).get("settle_lr_schedule", "constant")


def each_run(args: argparse.Namespace):
    """(config, dataset file, algorithm, env name, w2 weight, seed) of every run of the plan."""
    for env in args.envs:
        for dataset in args.datasets:
            path = dataset_file(args.data_dir, env, dataset)
            for algorithm in args.algorithms:
                config = f"configs/offline/pogo_multi/{env}/{dataset.replace('-', '_')}_v2_"
                config += f"{algorithm}.yaml"
                for weight in args.w2_weights:
                    for seed in args.seeds:
                        yield config, path, algorithm, f"{env}-{dataset}-v2", weight, seed


def run_command(
    args: argparse.Namespace, config: str, path: Path, weight: float, seed: int, out: Path
) -> list[str]:
    cmd = [sys.executable, "-m", "algorithms.offline.pogo_multi_main"]
    cmd += ["--config_path", config, "--seed", str(seed)]
    cmd += ["--dataset_path", str(path), "--w2_weights", f"[{weight:g}]"]
    cmd += ["--max_timesteps", str(args.max_timesteps)]
    if args.settle_steps is not None:
        cmd += ["--settle_steps", str(args.settle_steps)]
    if args.settle_lr_schedule is not None:
        cmd += ["--settle_lr_schedule", args.settle_lr_schedule]
    if args.settle_from_predecessor:
        cmd += ["--settle_from_predecessor", "true"]
    cmd += ["--n_episodes", str(args.n_episodes), "--no_wandb", "--quiet"]
    return cmd + ["--output_dir", str(out), *args.extra]


def plan(args: argparse.Namespace) -> tuple[list[list[str]], list[list[str]], int]:
    """(dataset commands, run commands, runs already done)."""
    datasets, runs, done = [], [], 0
    size = "d4rl" if args.dataset_size is None else str(args.dataset_size)
    for env in args.envs:
        for dataset in args.datasets:
            path = dataset_file(args.data_dir, env, dataset)
            if not path.is_file():
                datasets.append(
                    [sys.executable, "-m", "algorithms.datasets.make_dataset"]
                    + ["--env", f"{env}-{dataset}-v2", "--size", size]
                    + ["--seed", "0", "--replay_dir", str(args.replay_dir), "--out", str(path)]
                )  # the made file last: an error names it
    for config, path, algorithm, env, weight, seed in each_run(args):
        out = weight_dir(args.out, weight)
        root = run_dir(PogoConfig(algorithm, env, output_dir=str(out), seed=seed))
        state = run_state(root, args.max_timesteps + settle_of(args, config))
        if state == "done":
            done += 1
            continue
        cmd = run_command(args, config, path, weight, seed, out)
        if args.settle_w2_weight is not None:
            cmd += ["--settle_w2_weights", f"[{args.settle_w2_weight:g}]"]
        runs.append(cmd + {"partial": ["--resume"], "stale": ["--overwrite"]}.get(state, []))
    return datasets, runs, done


def sweep_dir(
    out: Path,
    weight: float,
    settle_weight: float,
    schedule: str,
    from_predecessor: bool = False,
    steps: int | None = None,
) -> Path:
    """<out>/w10_settle0.1, or <out>/w10_settle0.1_cosine with a cosine settle schedule, with
    `_pred` when the settle phase starts from copies of actor 0 (settle_from_predecessor) and
    `_steps<n>` when its length is --settle_sweep_steps rather than the joint runs'."""
    name = f"w{weight:g}_settle{settle_weight:g}"
    name += "" if schedule == "constant" else f"_{schedule}"
    name += "_pred" if from_predecessor else ""
    return out / (name + ("" if steps is None else f"_steps{steps}"))


def sweep_steps_of(args: argparse.Namespace, config: str) -> int:
    """The sweep's settle length: --settle_sweep_steps, else the joint runs' (settle_of)."""
    if args.settle_sweep_steps is not None:
        return args.settle_sweep_steps
    return settle_of(args, config)


def plan_settle_sweep(args: argparse.Namespace) -> tuple[list[list[str]], int, list[str]]:
    """(run commands, runs already done, runs not ready) of --settle_sweep: each run's settle
    phase again at each weight, from its checkpoint at max_timesteps, in a copy of the run under
    `<out>/w<w>_settle<s>/` (the joint phase is shared, so only the settle updates are spent)."""
    runs, done, waiting = [], 0, []
    for config, path, algorithm, env, weight, seed in each_run(args):
        settle = sweep_steps_of(args, config)
        base = run_dir(
            PogoConfig(algorithm, env, output_dir=str(weight_dir(args.out, weight)), seed=seed)
        )
        joint_end = CheckpointStore(base / "checkpoints", keep=1).path(args.max_timesteps)
        for settle_weight in args.settle_sweep:
            schedule = schedule_of(args, config)
            out = sweep_dir(
                args.out,
                weight,
                settle_weight,
                schedule,
                args.settle_from_predecessor,
                args.settle_sweep_steps,
            )
            root = run_dir(PogoConfig(algorithm, env, output_dir=str(out), seed=seed))
            state = run_state(root, args.max_timesteps + settle)
            if state == "done":
                done += 1
                continue
            cmd = run_command(args, config, path, weight, seed, out)
            cmd += ["--settle_steps", str(settle), "--settle_w2_weights", f"[{settle_weight:g}]"]
            if state == "partial":
                runs.append(cmd + ["--resume"])
                continue
            if not joint_end.is_file():
                waiting.append(f"{base} (no {joint_end.name})")
                continue
            shutil.rmtree(root, ignore_errors=True)  # a stale copy is made again
            shutil.copytree(base / "logs", root / "logs")
            truncate_logs(root / "logs", args.max_timesteps)  # never "done" before it has run
            (root / "checkpoints").mkdir()
            shutil.copy2(joint_end, root / "checkpoints" / joint_end.name)
            runs.append(cmd + ["--resume", "--resume_step", str(args.max_timesteps)])
    return runs, done, waiting


#: config keys that say where and how a run was written, not what it trained
BOOKKEEPING = {"dataset_path", "threads"} | {
    key for key in RESUMABLE_CHANGES if key != "max_timesteps" and not key.startswith("settle_")
}


def shipped_runs(args: argparse.Namespace) -> tuple[dict[tuple[str, str], list[Path]], list[str]]:
    """({(algorithm, env): each seed's finished run of the shipped setting}, what is missing).

    A run is of the shipped setting when its recorded config equals the shipped config with
    this command's overrides (max_timesteps, settle_steps, the arguments after --), up to
    BOOKKEEPING and the config's nulls (an algorithm's default, filled in by the run). A key
    missing from a run's record is older than the run: it ran with the key's default."""
    found, missing = {}, []
    # run directories only: not the launcher's record, not a gathered copy
    bookkeeping = ("logs", "exits", "slurm")
    homes = [
        d
        for d in sorted(args.out.glob("*/"))
        if d.name not in bookkeeping and not d.name.startswith("shipped")
    ]
    planned = {(c, p, a, e, s): None for c, p, a, e, _, s in each_run(args)}  # one per w2 weight
    for config, path, algorithm, env, seed in planned:
        key = (algorithm, env)
        default = dataclasses.asdict(load_algorithm(algorithm).Config())
        argv = ["--config_path", config, "--seed", str(seed), "--dataset_path", str(path)]
        argv += ["--max_timesteps", str(args.max_timesteps), "--n_episodes", str(args.n_episodes)]
        if args.settle_steps is not None:
            argv += ["--settle_steps", str(args.settle_steps)]
        wanted = {
            k: v
            for k, v in dataclasses.asdict(parse_config(argv + args.extra)).items()
            if k not in BOOKKEEPING and v is not None
        }
        length = wanted["max_timesteps"] + wanted["settle_steps"]
        for home in homes:
            root = run_dir(PogoConfig(algorithm, env, output_dir=str(home), seed=seed))
            if run_state(root, length) != "done":
                continue
            recorded = yaml.safe_load((root / "logs" / "config.yaml").read_text())
            if all(recorded.get(k, default[k]) == v for k, v in wanted.items()):
                found.setdefault(key, []).append(root)
                break
        else:
            missing.append(f"{algorithm} {env} seed {seed}")
    return found, missing


def gather_shipped(args: argparse.Namespace, name: str) -> tuple[Path | None, list[str]]:
    """<out>/<name>: a copy of the logs of each dataset's runs of its shipped setting, every one
    of `args.seeds` finished (a dataset is judged on all its seeds or not at all); returns the
    directory (None if empty) and the runs not finished."""
    found, missing = shipped_runs(args)
    shipped = args.out / name
    shutil.rmtree(shipped, ignore_errors=True)
    for (algorithm, env), runs in sorted(found.items()):
        if len(runs) < len(args.seeds):
            continue
        for root in runs:
            shutil.copytree(root / "logs", shipped / root.relative_to(root.parents[3]) / "logs")
        homes = ", ".join(f"{root.name} from {root.parents[3].name}" for root in runs)
        print(f"{name}: {algorithm} {env}: {homes}")
    for run in missing:
        print(f"{name}: not finished with the shipped setting: {run}")
    return (shipped if shipped.is_dir() else None), missing


def collect_shipped(args: argparse.Namespace) -> int:
    """The shipped settings' table and verdict on --seeds (<out>/shipped.md); with
    --fresh_seeds also on those seeds, and the two verdicts side by side: settings chosen on
    some seeds are judged on others. Exit status 1 when a planned run is missing."""
    report, missing = [], []
    seed_sets = [("shipped", args.seeds)]
    if args.fresh_seeds:
        seed_sets.append(("shipped_fresh", args.fresh_seeds))
    gathered = {}
    for name, seeds in seed_sets:
        directory, not_done = gather_shipped(
            argparse.Namespace(**{**vars(args), "seeds": seeds}), name
        )
        missing += not_done
        if directory is not None:
            cmd = [sys.executable, "-m", "algorithms.offline.results", str(directory), "--chain"]
            table = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=True)
            label = f"seeds {' '.join(map(str, seeds))}"
            report.append(f"## {name} ({label})\n\n{table.stdout}")
            gathered[label] = collect(directory)
    if len(gathered) == 2:
        labels = tuple(gathered)
        side = gains_side_by_side(gathered[labels[0]], gathered[labels[1]], labels)
        report.append(
            f"## the chain's gain: the seeds that chose the settings, and fresh ones\n\n{side}"
        )
    if report:
        text = "\n".join(report)
        (args.out / "shipped.md").write_text(text)
        print("\n" + text)
    return 1 if missing else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["iql", "td3_bc"], choices=ALGORITHMS)
    parser.add_argument(
        "--envs", nargs="+", default=["hopper", "halfcheetah", "walker2d"], choices=sorted(ENV_IDS)
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["medium", "medium-replay"], choices=MAKEABLE_KINDS
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--fresh_seeds",
        nargs="+",
        type=int,
        default=[],
        help="with --shipped: judge also on these seeds (not those that chose the settings)",
    )
    parser.add_argument("--w2_weights", nargs="+", type=float, default=[10.0, 50.0, 100.0, 500.0])
    parser.add_argument("--max_timesteps", type=int, default=50_000)
    parser.add_argument(
        "--settle_steps", type=int, help="the chain's settle phase (default: the config's)"
    )
    parser.add_argument("--settle_w2_weight", type=float, help="its W2 weight (the config's)")
    parser.add_argument(
        "--settle_lr_schedule", choices=("constant", "cosine"), help="its schedule (the config's)"
    )
    parser.add_argument(
        "--settle_sweep",
        nargs="+",
        type=float,
        default=[],
        help="settle each finished joint phase again at these W2 weights, in <out>/w<w>_settle<s>",
    )
    parser.add_argument(
        "--settle_sweep_steps",
        type=int,
        help="the sweep's settle length (default: the runs'), in <out>/w<w>_settle<s>_steps<n>",
    )
    parser.add_argument(
        "--settle_from_predecessor",
        action="store_true",
        help="start each settle phase from copies of actor 0 (in the sweep: <...>_pred)",
    )
    parser.add_argument("--n_episodes", type=int, default=10)
    parser.add_argument(
        "--dataset_size",
        type=parse_size,
        default=100_000,
        help="rows of made datasets, or d4rl: D4RL's sizes (put them in their own --data_dir)",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="local: at a time")
    parser.add_argument("--threads", type=int, default=1, help="local: OMP_NUM_THREADS per job")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "chain_study")
    parser.add_argument("--data_dir", type=Path, default=REPO / "data", help="made datasets")
    parser.add_argument(
        "--replay_dir",
        type=Path,
        default=REPO / DEFAULT_REPLAY_DIR,
        help="the behaviour agents' replay buffers, which medium-replay datasets are made from",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    parser.add_argument(
        "--shipped",
        action="store_true",
        help="run nothing: gather the runs of each config's own settings into <out>/shipped",
    )
    parser.add_argument("extra", nargs="*", help="config overrides after --, for every run")
    add_launcher_args(parser)
    args = parser.parse_args(argv)
    if args.settle_sweep and args.settle_w2_weight is not None:
        parser.error("--settle_sweep makes its own copies; drop --settle_w2_weight")
    chosen = args.settle_sweep or args.settle_w2_weight is not None or args.settle_lr_schedule
    chosen = chosen or args.settle_from_predecessor
    if args.settle_sweep_steps is not None and not args.settle_sweep:
        parser.error("--settle_sweep_steps: only with --settle_sweep")
    if args.fresh_seeds and not args.shipped:
        parser.error("--fresh_seeds: only with --shipped (run the fresh seeds with --seeds)")
    if args.shipped and chosen:
        parser.error("--shipped takes each config's settle settings; drop the settle options")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.shipped:
        return collect_shipped(args)
    datasets, runs, done = plan(args)
    if args.dry_run:
        print(f"# {len(datasets)} datasets to make, {len(runs)} runs to go ({done} done)")
        for cmd in datasets + runs:
            print(" ".join(cmd[1:]))
        return 0
    for cmd in datasets:  # one at a time: each is quick, and later runs need them all
        if subprocess.run(cmd, cwd=REPO).returncode != 0:  # its own error is printed above
            print(f"error: chain study: could not make {cmd[-1]}; no run started", file=sys.stderr)
            return 2
    with StopSignal() as stop:
        try:  # the launcher: runs here (local) or submits them (slurm); one record in <out>
            tally = launch(args.out, runs, args, lambda: stop.received is not None)
            n_sweep = 0
            if args.settle_sweep and not stop.received:  # it starts from the joint phases' ends
                sweep, sweep_done, waiting = plan_settle_sweep(args)
                for run in waiting:
                    print(f"settle sweep: not ready: {run}")
                tally += launch(args.out, sweep, args, lambda: stop.received is not None)
                n_sweep, done = len(sweep), done + sweep_done
        except PogoError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if stop.received:
        print(
            f"chain study stopped ({stop.received}): {tally['stopped']} runs checkpointed, "
            f"{tally['not started']} not started, {tally['failed']} failed; "
            "the same command goes on from there"
        )
        return EXIT_STOPPED
    if args.launcher == "slurm" and (tally["submitted"] or tally["queued"]):
        print(
            f"chain study: {tally['submitted']} runs submitted, {tally['queued']} in the queue, "
            f"{done} done; `python -m algorithms.launch status {args.out}` follows them, and the "
            "same command, once they are done, "
            + ("submits the settle sweep's runs and " if args.settle_sweep else "")
            + "writes the tables"
        )
        return 0
    outs = [weight_dir(args.out, w) for w in args.w2_weights]
    schedules = {schedule_of(args, config) for config, *_ in each_run(args)}
    outs += [
        sweep_dir(args.out, w, s, schedule, args.settle_from_predecessor, args.settle_sweep_steps)
        for w in args.w2_weights
        for s in args.settle_sweep
        for schedule in sorted(schedules)
    ]
    for out in outs:
        if out.is_dir():
            cmd = [sys.executable, "-m", "algorithms.offline.results", str(out), "--chain"]
            table = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True).stdout
            (args.out / f"{out.name}.md").write_text(table)
            print(f"\n## {out.name}\n\n{table}")
    stopped = f", {tally['stopped']} stopped (resumable)" if tally["stopped"] else ""
    print(
        f"chain study: {len(runs) + n_sweep} runs, {tally['failed']} failed{stopped}, "
        f"{done} done before"
    )
    return 1 if tally["failed"] else EXIT_STOPPED if tally["stopped"] else 0


if __name__ == "__main__":
    sys.exit(main())
