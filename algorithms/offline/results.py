"""Results across runs: a per-actor table over seeds, and plots.

    python -m algorithms.offline.results results/ [--format markdown|csv] [--plot plots/] [--chain]
        [--up_to N]

Reads every `<algorithm>/<family>/<task>/seed_<N>/logs/eval.csv` under the directory. A row per
algorithm and dataset, a column per actor; "last" is each seed's final evaluation and "best" each
seed's best one (CORL's convention), both as mean +- std over seeds; then the average over the
datasets of each algorithm. `--chain` adds the chain's verdict: per seed, the last actor against
actor 0, and per dataset whether it wins, is level within actor 0's seed spread, or loses.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CSV_COLUMNS = ("algorithm", "dataset", "seeds", "actor", "last_mean", "last_std")
CSV_COLUMNS += ("best_mean", "best_std")


@dataclass
class RunScores:
    """One run's evaluations: steps [T], normalised scores [T, n_actors] (mean over episodes)."""

    algorithm: str
    dataset: str  # e.g. hopper-medium-v2
    seed: int
    steps: np.ndarray
    scores: np.ndarray
    root: Path

    @property
    def last(self) -> np.ndarray:
        return self.scores[-1]  # [n_actors]

    @property
    def best(self) -> np.ndarray:
        return self.scores.max(axis=0)  # [n_actors]


def read_run(eval_csv: Path, up_to: int | None = None) -> RunScores | None:
    """A run from its eval.csv, evaluations after update `up_to` left out (None if it has no
    evaluation by then)."""
    root = eval_csv.parent.parent  # .../<algorithm>/<family>/<task>/seed_<N>
    seed_dir, task, family, algorithm = (
        root.name,
        root.parent.name,
        root.parents[1].name,
        root.parents[2].name,
    )
    if not seed_dir.startswith("seed_"):
        raise ValueError(f"{eval_csv}: not under <algorithm>/<env>/<task>/seed_<N>/logs/")
    by_step: dict[int, dict[int, float]] = defaultdict(dict)
    with eval_csv.open(newline="") as f:
        for row in csv.DictReader(f):
            if up_to is None or int(row["step"]) <= up_to:
                by_step[int(row["step"])][int(row["actor"])] = float(row["normalized_score_mean"])
    if not by_step:
        return None
    steps = sorted(by_step)
    n_actors = max(len(v) for v in by_step.values())
    scores = np.array([[by_step[s].get(i, np.nan) for i in range(n_actors)] for s in steps])
    return RunScores(
        algorithm, f"{family}-{task}", int(seed_dir[5:]), np.array(steps), scores, root
    )


def collect(results_dir: Path, up_to: int | None = None) -> list[RunScores]:
    runs = [read_run(p, up_to) for p in sorted(results_dir.rglob("logs/eval.csv"))]
    return [r for r in runs if r is not None]


def by_dataset(runs: list[RunScores]) -> dict[tuple[str, str], list[RunScores]]:
    """The runs of each (algorithm, dataset), in that order, each group's seeds in order."""
    groups: dict[tuple[str, str], list[RunScores]] = defaultdict(list)
    for run in sorted(runs, key=lambda r: (r.algorithm, r.dataset, r.seed)):
        groups[(run.algorithm, run.dataset)].append(run)
    return dict(groups)


def markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown_header(names: list[str]) -> list[str]:
    return [markdown_row(names), "|" + "---|" * len(names)]


@dataclass
class Cell:
    """Mean and std over seeds of one actor's score."""

    mean: float
    std: float

    def text(self) -> str:
        return "" if np.isnan(self.mean) else f"{self.mean:.1f} ± {self.std:.1f}"


def summarize(runs: list[RunScores]) -> list[dict]:
    """One entry per (algorithm, dataset), plus one average entry per algorithm."""
    n_actors = max((r.scores.shape[1] for r in runs), default=0)
    table = []
    for (algorithm, dataset), group in by_dataset(runs).items():
        entry = {"algorithm": algorithm, "dataset": dataset, "seeds": len(group)}
        for metric in ("last", "best"):
            values = np.full((len(group), n_actors), np.nan)  # [seeds, actors]
            for k, run in enumerate(group):
                v = getattr(run, metric)
                values[k, : len(v)] = v
            entry[metric] = [
                Cell(float(np.mean(col)), float(np.std(col)))
                if not np.isnan(col).any()
                else Cell(np.nan, np.nan)
                for col in values.T
            ]
        table.append(entry)
    for algorithm in sorted({e["algorithm"] for e in table}):
        rows = [e for e in table if e["algorithm"] == algorithm]
        average = {"algorithm": algorithm, "dataset": "average", "seeds": ""}
        for metric in ("last", "best"):
            means = np.array([[c.mean for c in e[metric]] for e in rows])  # [datasets, actors]
            stds = np.array([[c.std for c in e[metric]] for e in rows])
            average[metric] = [
                Cell(float(m), float(s)) for m, s in zip(means.mean(0), stds.mean(0))
            ]
        table.append(average)
    return table


def format_table(table: list[dict], fmt: str = "markdown") -> str:
    """Markdown: a column per actor for "last" then for "best"; csv: one row per actor."""
    n_actors = max((len(e["last"]) for e in table), default=0)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for e in table:
            for i, (last, best) in enumerate(zip(e["last"], e["best"])):
                stats = [f"{x:.3f}" for x in (last.mean, last.std, best.mean, best.std)]
                writer.writerow([e["algorithm"], e["dataset"], e["seeds"], i, *stats])
        return out.getvalue()
    if fmt != "markdown":
        raise ValueError(f"--format must be markdown or csv, got {fmt!r}")
    header = ["algorithm", "dataset", "seeds"]
    header += [f"actor {i} last" for i in range(n_actors)]
    header += [f"actor {i} best" for i in range(n_actors)]
    lines = markdown_header(header)
    for e in table:
        cells = [e["algorithm"], e["dataset"], str(e["seeds"])]
        cells += [c.text() for c in e["last"]] + [""] * (n_actors - len(e["last"]))
        cells += [c.text() for c in e["best"]] + [""] * (n_actors - len(e["best"]))
        lines.append(markdown_row(cells))
    return "\n".join(lines) + "\n"


@dataclass
class ChainGain:
    """The last actor against actor 0 on one (algorithm, dataset), paired by seed, over the
    seeds that got as far as the dataset's furthest one (an unfinished run is not judged)."""

    algorithm: str
    dataset: str
    group: list[RunScores]  # the judged seeds' runs
    unfinished: int
    first: np.ndarray  # [seeds] actor 0's final score
    last: np.ndarray  # [seeds] the last actor's

    @property
    def diff(self) -> np.ndarray:
        return self.last - self.first  # [seeds]

    @property
    def spread(self) -> float:
        return float(np.std(self.first))  # actor 0's seed spread

    @property
    def verdict(self) -> str:
        """wins (mean above actor 0's seed spread), level (within it) or loses (below it).

        Symmetric: a gain smaller than the seed-to-seed noise is no more a win than a loss that
        small is a loss. One seed has no spread to judge against: it is shown, not judged."""
        if len(self.group) < 2:
            return "not judged (1 seed)"
        mean = float(self.diff.mean())
        return "wins" if mean > self.spread else "loses" if mean < -self.spread else "level"


def chain_gains(runs: list[RunScores]) -> list[ChainGain]:
    """A `ChainGain` per (algorithm, dataset) with a chain, in `by_dataset`'s order."""
    gains = []
    for (algorithm, dataset), runs_here in by_dataset(
        [r for r in runs if r.scores.shape[1] > 1]
    ).items():
        furthest = max(r.steps[-1] for r in runs_here)
        group = [r for r in runs_here if r.steps[-1] == furthest]
        first = np.array([r.last[0] for r in group])
        last = np.array([r.last[-1] for r in group])
        gains.append(ChainGain(algorithm, dataset, group, len(runs_here) - len(group), first, last))
    return gains


def algorithm_verdicts(gains: list[ChainGain]) -> dict[str, tuple[float, float, float, str]]:
    """Per algorithm: actor 0, last actor and their difference averaged over datasets, and
    "passes" if that difference is >= 0 and no dataset loses, else "fails"."""
    by_algorithm: dict[str, list[ChainGain]] = defaultdict(list)
    for gain in gains:
        by_algorithm[gain.algorithm].append(gain)
    verdicts = {}
    for algorithm, rows in by_algorithm.items():
        first = float(np.mean([g.first.mean() for g in rows]))
        last = float(np.mean([g.last.mean() for g in rows]))
        diff = float(np.mean([g.diff.mean() for g in rows]))
        passes = diff >= 0 and all(g.verdict != "loses" for g in rows)
        verdicts[algorithm] = (first, last, diff, "passes" if passes else "fails")
    return verdicts


def chain_verdict(runs: list[RunScores]) -> str:
    """Does the chain beat its own actor 0? (issue 9's test of POGO, in markdown.)

    Per run: every actor's final score and the last actor minus actor 0. Per (algorithm,
    dataset): that difference paired by seed, mean ± std over seeds, against actor 0's seed
    spread (its std over seeds, as in the main table): "wins" if the mean is above the spread,
    "level" if it is within it, "loses" if it is below minus the spread; one seed is not judged
    (it has no spread). Only the seeds that got as far as the dataset's furthest one count (an
    unfinished run is shown, not judged). Per algorithm: "passes" if the difference averaged
    over datasets is >= 0 and no dataset loses. The worst seed's difference is shown beside the
    mean, so a mean that hides one seed's loss beyond the spread is seen.
    """
    chains = [r for r in runs if r.scores.shape[1] > 1]
    if not chains:
        return ""
    n_actors = max(r.scores.shape[1] for r in chains)
    header = ["algorithm", "dataset", "seed", "updates"]
    header += [f"actor {i}" for i in range(n_actors)] + ["last - actor 0"]
    lines = markdown_header(header)
    for run in (run for group in by_dataset(chains).values() for run in group):
        cells = [run.algorithm, run.dataset, str(run.seed), str(int(run.steps[-1]))]
        cells += [f"{x:.1f}" for x in run.last] + [""] * (n_actors - len(run.last))
        cells.append(f"{run.last[-1] - run.last[0]:+.1f}")
        lines.append(markdown_row(cells))

    header = ["algorithm", "dataset", "seeds", "actor 0", "last actor", "last - actor 0"]
    header += ["worst seed", "actor 0 seed spread", "verdict"]
    lines += ["", *markdown_header(header)]
    gains = chain_gains(runs)
    for g in gains:
        n = len(g.group)
        seeds = f"{n} (+{g.unfinished} unfinished)" if g.unfinished else str(n)
        cells = [g.algorithm, g.dataset, seeds, Cell(g.first.mean(), g.first.std()).text()]
        cells += [Cell(g.last.mean(), g.last.std()).text()]
        cells += [f"{g.diff.mean():+.1f} ± {g.diff.std():.1f}"]
        worst = int(g.diff.argmin())
        cells += [f"{g.diff[worst]:+.1f} (seed {g.group[worst].seed})", f"{g.spread:.1f}"]
        lines.append(markdown_row(cells + [g.verdict]))
    for algorithm, (first, last, diff, verdict) in algorithm_verdicts(gains).items():
        cells = [algorithm, "average", "", f"{first:.1f}", f"{last:.1f}", f"{diff:+.1f}", "", ""]
        lines.append(markdown_row(cells + [verdict]))
    return "\n".join(lines) + "\n"


def gains_side_by_side(
    chosen: list[RunScores], fresh: list[RunScores], labels: tuple[str, str]
) -> str:
    """The chain's gain (last actor - actor 0, mean ± std over seeds) and verdict per dataset,
    on the seeds that chose the settings and on seeds that did not, side by side: a setting
    that only fits its own seeds shows here. Datasets judged on one side only are left out."""
    one = {(g.algorithm, g.dataset): g for g in chain_gains(chosen)}
    other = {(g.algorithm, g.dataset): g for g in chain_gains(fresh)}
    both = [key for key in one if key in other]
    header = ["algorithm", "dataset"]
    for label in labels:
        header += [f"{label}: seeds", f"{label}: last - actor 0", f"{label}: verdict"]
    lines = markdown_header(header)

    def cells(g: ChainGain) -> list[str]:
        seeds = ",".join(str(r.seed) for r in g.group)
        return [seeds, f"{g.diff.mean():+.1f} ± {g.diff.std():.1f}", g.verdict]

    for key in both:
        lines.append(markdown_row([*key, *cells(one[key]), *cells(other[key])]))
    verdicts = [
        algorithm_verdicts([one[k] for k in both]),
        algorithm_verdicts([other[k] for k in both]),
    ]
    for algorithm in verdicts[0]:
        row = [algorithm, "average"]
        for side in verdicts:
            row += ["", f"{side[algorithm][2]:+.1f}", side[algorithm][3]]
        lines.append(markdown_row(row))
    return "\n".join(lines) + "\n"


def read_chain_log(root: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """steps [T] and each `chain/*` series [T] from a run's train.jsonl."""
    path = root / "logs" / "train.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    keys = sorted({k for r in records for k in r if k.startswith("chain/")})
    steps = np.array([r["step"] for r in records])
    return steps, {k: np.array([r.get(k, np.nan) for r in records]) for k in keys}


def chain_panels(
    series: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], tuple[str, dict[str, np.ndarray]]]:
    """The chain plot's two panels from a run's `chain/*` series: each link's W2^2, and what
    the chain trades against it, each actor's Q gain over actor 0 in the critic's units (a run
    logged before `chain/q_gain_i` existed shows its energy, which normalised reads -scale)."""
    w2 = {
        f"W2^2(pi_{k[9:]}, pi_{int(k[9:]) - 1})": v
        for k, v in series.items()
        if k.startswith("chain/w2_")
    }
    gains = {k: v for k, v in series.items() if k.startswith("chain/q_gain_")}
    if gains:
        ylabel = "Q(s, pi_i(s)) - Q(s, pi_0(s)) on the batch"
    else:
        ylabel, gains = "energy", {k: v for k, v in series.items() if k.startswith("chain/energy_")}
    return w2, (ylabel, {f"actor {k.rpartition('_')[2]}": v for k, v in gains.items()})


def plot_all(runs: list[RunScores], out_dir: Path) -> list[Path]:
    """Per run: score vs step per actor, and the chain's W2 and Q gains; per dataset: the
    actors' final scores with their seed spread. Returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        stem = f"{run.algorithm}_{run.dataset}_seed{run.seed}"
        fig, ax = plt.subplots(figsize=(6, 4))
        for i in range(run.scores.shape[1]):
            ax.plot(run.steps, run.scores[:, i], marker="o", markersize=3, label=f"actor {i}")
        ax.set(
            xlabel="update",
            ylabel="D4RL normalised score",
            title=f"{run.algorithm} {run.dataset} seed {run.seed}",
        )
        ax.legend()
        written.append(_save(fig, out_dir / f"curve_{stem}.png"))

        steps, series = read_chain_log(run.root)
        if series:
            w2, (ylabel, gains) = chain_panels(series)
            fig, (ax_w2, ax_gain) = plt.subplots(1, 2, figsize=(10, 4))
            for label, values in w2.items():
                ax_w2.plot(steps, values, label=label)
            for label, values in gains.items():
                ax_gain.plot(steps, values, label=label)
            ax_w2.set(xlabel="update", ylabel="W2^2 to the previous actor", yscale="log")
            ax_gain.set(xlabel="update", ylabel=ylabel)
            ax_w2.legend()
            ax_gain.legend()
            fig.suptitle(f"chain: {run.algorithm} {run.dataset} seed {run.seed}")
            written.append(_save(fig, out_dir / f"chain_{stem}.png"))

    for (algorithm, dataset), group in by_dataset(runs).items():
        n_actors = max(r.scores.shape[1] for r in group)
        fig, ax = plt.subplots(figsize=(1.2 * n_actors + 2, 4))
        for i in range(n_actors):
            finals = [r.last[i] for r in group if i < len(r.last)]
            ax.bar(i, np.mean(finals), yerr=np.std(finals), capsize=4, color=f"C{i}", alpha=0.6)
            ax.scatter([i] * len(finals), finals, color="k", s=12, zorder=3)
        ax.set_xticks(range(n_actors), [f"actor {i}" for i in range(n_actors)])
        ax.set(ylabel="final normalised score", title=f"{algorithm} {dataset} ({len(group)} seeds)")
        written.append(_save(fig, out_dir / f"final_{algorithm}_{dataset}.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path, help="output_dir of the runs, e.g. results/")
    parser.add_argument("--format", default="markdown", choices=("markdown", "csv"))
    parser.add_argument("--plot", type=Path, help="write the plots (PNG) into this directory")
    parser.add_argument(
        "--chain", action="store_true", help="also: per seed, the last actor against actor 0"
    )
    parser.add_argument(
        "--up_to", type=int, help="tabulate each run as it was at this update (e.g. before its "
        "settle phase): later evaluations are left out",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.results_dir.is_dir():
        sys.exit(f"error: results_dir: no such directory {args.results_dir}")
    runs = collect(args.results_dir, args.up_to)
    if not runs:
        sys.exit(f"error: no logs/eval.csv with evaluations under {args.results_dir}")
    print(format_table(summarize(runs), args.format), end="")
    if args.chain:
        print("\n" + chain_verdict(runs), end="")
    if args.plot:
        files = plot_all(runs, args.plot)
        print(f"wrote {len(files)} plots to {args.plot}", file=sys.stderr)


if __name__ == "__main__":
    main()
