"""The results command: known eval.csv numbers in, known table out; plots written."""

import csv
import json

import numpy as np
import pytest

from algorithms.offline import pogo_multi_main, results
from algorithms.offline.run_io import EVAL_COLUMNS

# (algorithm, env, task, seed) -> {step: [score of actor 0, actor 1]}
RUNS = {
    ("iql", "hopper", "medium-v2", 0): {10: [10.0, 40.0], 20: [30.0, 20.0]},
    ("iql", "hopper", "medium-v2", 1): {10: [20.0, 10.0], 20: [50.0, 60.0]},
    ("iql", "hopper", "medium-expert-v2", 0): {10: [100.0, 110.0]},
    ("td3_bc", "walker2d", "medium-replay-v2", 0): {5: [1.0, 2.0]},
}


@pytest.fixture
def results_dir(tmp_path):
    for (algorithm, env, task, seed), evals in RUNS.items():
        logs = tmp_path / algorithm / env / task / f"seed_{seed}" / "logs"
        logs.mkdir(parents=True)
        with (logs / "eval.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(EVAL_COLUMNS)
            for step, scores in evals.items():
                for actor, score in enumerate(scores):
                    writer.writerow([step, actor, 10 * score, 1.0, score, 0.5])
        chain = [{"step": s, "chain/w2_1": 0.1 / s, "chain/energy_1": -s} for s in (5, 10, 20)]
        (logs / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chain))
    return tmp_path


def test_markdown_table_last_best_and_averages(results_dir):
    table = results.format_table(results.summarize(results.collect(results_dir)))
    assert table.splitlines() == [
        "| algorithm | dataset | seeds | actor 0 last | actor 1 last | actor 0 best | actor 1 best |",
        "|---|---|---|---|---|---|---|",
        "| iql | hopper-medium-expert-v2 | 1 | 100.0 ± 0.0 | 110.0 ± 0.0 | 100.0 ± 0.0 | 110.0 ± 0.0 |",
        "| iql | hopper-medium-v2 | 2 | 40.0 ± 10.0 | 40.0 ± 20.0 | 40.0 ± 10.0 | 50.0 ± 10.0 |",
        "| td3_bc | walker2d-medium-replay-v2 | 1 | 1.0 ± 0.0 | 2.0 ± 0.0 | 1.0 ± 0.0 | 2.0 ± 0.0 |",
        "| iql | average |  | 70.0 ± 5.0 | 75.0 ± 10.0 | 70.0 ± 5.0 | 80.0 ± 5.0 |",
        "| td3_bc | average |  | 1.0 ± 0.0 | 2.0 ± 0.0 | 1.0 ± 0.0 | 2.0 ± 0.0 |",
    ]


def test_chain_verdict_pairs_seeds_against_actor_0s_spread(results_dir):
    table = results.chain_verdict(results.collect(results_dir)).splitlines()
    assert table[2:6] == [
        "| iql | hopper-medium-expert-v2 | 0 | 10 | 100.0 | 110.0 | +10.0 |",
        "| iql | hopper-medium-v2 | 0 | 20 | 30.0 | 20.0 | -10.0 |",
        "| iql | hopper-medium-v2 | 1 | 20 | 50.0 | 60.0 | +10.0 |",
        "| td3_bc | walker2d-medium-replay-v2 | 0 | 5 | 1.0 | 2.0 | +1.0 |",
    ]
    # hopper-medium: differences -10 and +10 (mean 0, not > 0), actor 0's spread std(30, 50) = 10;
    # a dataset of one seed has no spread: its gain is shown, not judged
    assert table[9:] == [
        "| iql | hopper-medium-expert-v2 | 1 | 100.0 ± 0.0 | 110.0 ± 0.0 | +10.0 ± 0.0 | +10.0 (seed 0) "
        "| 0.0 | not judged (1 seed) |",
        "| iql | hopper-medium-v2 | 2 | 40.0 ± 10.0 | 40.0 ± 20.0 | +0.0 ± 10.0 | -10.0 (seed 0) "
        "| 10.0 | level |",
        "| td3_bc | walker2d-medium-replay-v2 | 1 | 1.0 ± 0.0 | 2.0 ± 0.0 | +1.0 ± 0.0 | +1.0 (seed 0) "
        "| 0.0 | not judged (1 seed) |",
        "| iql | average |  | 70.0 | 75.0 | +5.0 |  |  | passes |",
        "| td3_bc | average |  | 1.0 | 2.0 | +1.0 |  |  | passes |",
    ]


@pytest.mark.parametrize(
    "finals, row, average",
    [
        # differences -3 and -2: mean -2.5, below minus actor 0's spread (std(40, 42) = 1)
        (
            [(40.0, 37.0), (42.0, 40.0)],
            "41.0 ± 1.0 | 38.5 ± 1.5 | -2.5 ± 0.5 | -3.0 (seed 0) | 1.0 | loses |",
            "41.0 | 38.5 | -2.5 |  |  | fails |",
        ),
        # differences +1 and +2: mean +1.5, inside actor 0's spread (std(40, 44) = 2), so not a
        # win; nothing loses and the average is >= 0, so the algorithm still passes
        (
            [(40.0, 41.0), (44.0, 46.0)],
            "42.0 ± 2.0 | 43.5 ± 2.5 | +1.5 ± 0.5 | +1.0 (seed 0) | 2.0 | level |",
            "42.0 | 43.5 | +1.5 |  |  | passes |",
        ),
    ],
    ids=["a loss beyond the spread fails", "a gain inside the spread is level"],
)
def test_chain_verdict_judges_the_mean_against_the_spread(finals, row, average, tmp_path, capsys):
    for seed, (first, last) in enumerate(finals):
        logs = tmp_path / "td3_bc" / "hopper" / "medium-v2" / f"seed_{seed}" / "logs"
        logs.mkdir(parents=True)
        rows = [",".join(EVAL_COLUMNS)] + [f"50,{i},0,0,{x},0" for i, x in enumerate((first, last))]
        (logs / "eval.csv").write_text("\n".join(rows) + "\n")
    results.main([str(tmp_path), "--chain"])
    out = capsys.readouterr().out.splitlines()
    assert f"| td3_bc | hopper-medium-v2 | 2 | {row}" in out
    assert out[-1] == f"| td3_bc | average |  | {average}"


def test_up_to_tabulates_runs_as_they_were_at_that_update(results_dir, capsys):
    results.main([str(results_dir), "--up_to", "10"])
    table = capsys.readouterr().out
    # hopper-medium at step 10: seeds (10, 40) and (20, 10); walker's only evaluation is at 5
    assert "| iql | hopper-medium-v2 | 2 | 15.0 ± 5.0 | 25.0 ± 15.0 |" in table
    assert "| td3_bc | walker2d-medium-replay-v2 | 1 | 1.0 ± 0.0 |" in table
    with pytest.raises(SystemExit, match="no logs/eval.csv with evaluations"):
        results.main([str(results_dir), "--up_to", "4"])


def test_chain_verdict_judges_only_the_seeds_that_got_furthest(results_dir):
    # a third hopper-medium seed stopped at step 10: shown per seed, left out of the verdict
    logs = results_dir / "iql" / "hopper" / "medium-v2" / "seed_2" / "logs"
    logs.mkdir(parents=True)
    (logs / "eval.csv").write_text(",".join(EVAL_COLUMNS) + "\n10,0,0,0,5.0,0\n10,1,0,0,0.0,0\n")
    table = results.chain_verdict(results.collect(results_dir)).splitlines()
    assert "| iql | hopper-medium-v2 | 2 | 10 | 5.0 | 0.0 | -5.0 |" in table
    assert (
        "| iql | hopper-medium-v2 | 2 (+1 unfinished) | 40.0 ± 10.0 | 40.0 ± 20.0 | +0.0 ± 10.0 "
        "| -10.0 (seed 0) | 10.0 | level |"
    ) in table


def test_chain_verdict_is_empty_without_a_chain(tmp_path):
    logs = tmp_path / "iql" / "hopper" / "medium-v2" / "seed_0" / "logs"
    logs.mkdir(parents=True)
    (logs / "eval.csv").write_text(",".join(EVAL_COLUMNS) + "\n10,0,0,0,5.0,0\n")
    assert results.chain_verdict(results.collect(tmp_path)) == ""


def test_csv_format(results_dir, capsys):
    results.main([str(results_dir), "--format", "csv"])
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    row = next(r for r in rows if r["dataset"] == "hopper-medium-v2" and r["actor"] == "1")
    assert row == {
        "algorithm": "iql",
        "dataset": "hopper-medium-v2",
        "seeds": "2",
        "actor": "1",
        "last_mean": "40.000",
        "last_std": "20.000",
        "best_mean": "50.000",
        "best_std": "10.000",
    }
    assert len(rows) == 5 * 2


def test_plots_are_written(results_dir, tmp_path):
    out = tmp_path / "plots"
    written = results.plot_all(results.collect(results_dir), out)
    names = {p.name for p in written}
    assert "curve_iql_hopper-medium-v2_seed1.png" in names
    assert "chain_iql_hopper-medium-v2_seed1.png" in names
    assert "final_iql_hopper-medium-v2.png" in names
    assert len(written) == 4 * 2 + 3  # per run: curve + chain; per dataset: final scores
    for path in written:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_the_chain_plot_shows_each_actors_q_gain_not_the_normalised_energy(results_dir):
    series = {
        "chain/w2_1": np.array([0.1, 0.05]),
        "chain/energy_1": np.array([-2.5, -2.5]),  # normalised: -scale on every update
        "chain/q_gain_1": np.array([0.4, 1.2]),
    }
    w2, (ylabel, gains) = results.chain_panels(series)
    assert list(w2) == ["W2^2(pi_1, pi_0)"] and ylabel.startswith("Q(s, pi_i(s)) - Q(s, pi_0(s))")
    assert list(gains) == ["actor 1"] and gains["actor 1"].tolist() == [0.4, 1.2]
    # a run logged before the gains existed: its energy
    _, old = results.read_chain_log(next(results_dir.rglob("seed_1")))
    _, (ylabel, gains) = results.chain_panels(old)
    assert ylabel == "energy" and gains["actor 1"].tolist() == [-5, -10, -20]


def test_missing_or_empty_directory_fails_clearly(tmp_path):
    with pytest.raises(SystemExit, match="no such directory"):
        results.main([str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="no logs/eval.csv with evaluations under"):
        results.main([str(tmp_path)])


def test_results_of_a_real_tiny_run(tiny_run_args, tmp_path, capsys):
    pogo_multi_main.main(tiny_run_args("td3_bc", 3, output_dir=tmp_path / "res", seed=4))
    out = capsys.readouterr().out
    # quiet output (not a terminal): one line per evaluation, with the speed
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert len(steps) == 2 and all("updates/s" in line and "actor 2:" in line for line in steps)
    results.main([str(tmp_path / "res")])
    table = capsys.readouterr().out
    assert "| td3_bc | hopper-medium-v2 | 1 |" in table
    assert "actor 2 best" in table


def test_wandb_offline_mode_logs_locally(tiny_run_args, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb").mkdir()
    argv = [a for a in tiny_run_args("iql", 3, max_timesteps=10) if a != "--no_wandb"]
    root = pogo_multi_main.main(argv)
    assert (root / "logs" / "wandb_id").read_text().strip()
    assert list((tmp_path / "wandb").rglob("*.wandb"))  # the offline run file
