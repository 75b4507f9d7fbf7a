"""scripts/chain_study.py: the plan, resumability, and a tiny study end to end."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import chain_study  # noqa: E402

from algorithms.datasets.make_dataset import main as make_dataset_main  # noqa: E402
from algorithms.offline import pogo_multi_main  # noqa: E402
from algorithms.offline.run_io import EXIT_STOPPED  # noqa: E402


def test_dry_run_plans_every_combination(tmp_path, capsys):
    argv = ["--dry-run", "--envs", "hopper", "walker2d", "--seeds", "0", "1"]
    argv += ["--w2_weights", "10", "100", "--out", str(tmp_path / "out")]
    assert (
        chain_study.main([*argv, "--data_dir", str(tmp_path / "data"), "--", "--log_freq", "7"])
        == 0
    )
    header, *lines = capsys.readouterr().out.strip().splitlines()
    makes = [line for line in lines if "make_dataset" in line]
    runs = [line for line in lines if "pogo_multi_main" in line]
    assert header == "# 4 datasets to make, 32 runs to go (0 done)"
    assert len(makes) == 4  # 2 envs x (medium, medium-replay)
    assert len(runs) == 2 * 2 * 2 * 2 * 2  # algorithms x envs x datasets x weights x seeds
    assert sum("medium_replay_v2_td3_bc.yaml --seed 1" in r and "[100]" in r for r in runs) == 2
    assert all(r.endswith("--log_freq 7") for r in runs)
    assert all(" --size 100000 " in m for m in makes)
    chain_study.main([*argv, "--data_dir", str(tmp_path / "d4rl"), "--dataset_size", "d4rl"])
    assert sum(" --size d4rl " in m for m in capsys.readouterr().out.splitlines()) == 4
    with pytest.raises(SystemExit):
        chain_study.main([*argv, "--dataset_size", "1M"])
    assert "not a row count or d4rl: '1M'" in capsys.readouterr().err


def test_run_state_tells_done_partial_stale_and_new(tiny_run_args, tmp_path):
    root = pogo_multi_main.main(tiny_run_args("iql", 2, output_dir=tmp_path))
    assert chain_study.run_state(root, 20) == "done"
    assert chain_study.run_state(root, 40) == "partial"  # resumable from its checkpoint
    with (root / "logs" / "eval.csv").open("a") as f:
        f.write("40")  # a row torn by a kill mid-write: not an evaluation at step 40
    assert chain_study.run_state(root, 40) == "partial"
    shutil.rmtree(root / "checkpoints")
    assert chain_study.run_state(root, 40) == "stale"
    assert chain_study.run_state(tmp_path / "nothing", 40) == "new"


def test_tiny_study_runs_resumes_and_tabulates(tiny_behavior, tmp_path, capsys):
    # the dataset the study would make, made first from a tiny behaviour actor
    made = tmp_path / "data" / "hopper_medium-v2.hdf5"
    make_dataset_main(
        ["--env", "hopper-medium-v2", "--size", "300", "--out", str(made)]
        + ["--actors_dir", str(tiny_behavior[0])]
    )
    argv = ["--algorithms", "td3_bc", "--envs", "hopper", "--datasets", "medium"]
    argv += ["--seeds", "0", "--w2_weights", "1", "50", "--max_timesteps", "20"]
    argv += ["--dataset_size", "300", "--n_episodes", "1", "--jobs", "2", "--settle_steps", "0"]
    argv += ["--out", str(tmp_path / "out"), "--data_dir", str(tmp_path / "data")]
    argv += ["--", "--eval_freq", "10", "--batch_size", "32", "--device", "cpu"]
    assert chain_study.main(argv) == 0
    for weight in ("1", "50"):
        eval_csv = tmp_path / "out" / f"w{weight}" / "td3_bc/hopper/medium-v2/seed_0/logs/eval.csv"
        with eval_csv.open() as f:
            rows = list(csv.DictReader(f))
        assert [(r["step"], r["actor"]) for r in rows][-3:] == [
            ("20", "0"),
            ("20", "1"),
            ("20", "2"),
        ]
        table = (tmp_path / "out" / f"w{weight}.md").read_text()
        assert "| td3_bc | hopper-medium-v2 | 1 |" in table
        assert "| td3_bc | hopper-medium-v2 | 0 | 20 |" in table  # the chain's verdict, per seed
        # the verdict from the run's own scores: one seed, so no seed spread to judge the
        # dataset against; the last actor minus actor 0 at step 20 decides the average
        first, last = (float(r["normalized_score_mean"]) for r in (rows[-3], rows[-1]))
        diff = last - first
        verdict = "passes" if diff >= 0 else "fails"
        lines = table.rstrip().splitlines()
        assert lines[-2].endswith(
            f"| {diff:+.1f} ± 0.0 | {diff:+.1f} (seed 0) | 0.0 | not judged (1 seed) |"
        )
        assert lines[-1] == (
            f"| td3_bc | average |  | {first:.1f} | {last:.1f} | {diff:+.1f} |  |  | {verdict} |"
        )
    capsys.readouterr()
    # a second call finds everything done and only tabulates
    assert chain_study.main(argv) == 0
    assert "chain study: 0 runs, 0 failed, 2 done before" in capsys.readouterr().out
    # a settle phase later: both finished runs are resumed into it
    settle = [
        "--settle_steps",
        "10",
        "--settle_w2_weight",
        "0.5",
        "--settle_lr_schedule",
        "constant",
    ]
    assert chain_study.main(argv[:-7] + settle + argv[-7:]) == 0
    assert "chain study: 2 runs, 0 failed, 0 done before" in capsys.readouterr().out
    for weight in ("1", "50"):
        root = tmp_path / "out" / f"w{weight}" / "td3_bc/hopper/medium-v2/seed_0"
        assert (root / "logs/eval.csv").read_text().splitlines()[-1].startswith("30,2,")
        assert "settle_w2_weights:\n- 0.5\n- 0.5\n" in (root / "logs/config.yaml").read_text()
    # a settle sweep: copies of each run settle again from its joint phase's end (step 20)
    sweep = [
        "--settle_steps",
        "10",
        "--settle_sweep",
        "0.5",
        "4",
        "--settle_lr_schedule",
        "constant",
    ]
    assert chain_study.main(argv[:-7] + sweep + argv[-7:]) == 0
    assert "chain study: 4 runs, 0 failed, 2 done before" in capsys.readouterr().out
    for weight in ("1", "50"):
        base = tmp_path / "out" / f"w{weight}" / "td3_bc/hopper/medium-v2/seed_0"
        same, other = (
            tmp_path / "out" / f"w{weight}_settle{s}" / "td3_bc/hopper/medium-v2/seed_0"
            for s in ("0.5", "4")
        )
        base_rows = (base / "logs/eval.csv").read_text().splitlines()
        # at the base's own settle weight the copy ends where the base ends, number for number
        assert (same / "logs/eval.csv").read_text().splitlines() == base_rows
        other_rows = (other / "logs/eval.csv").read_text().splitlines()
        assert other_rows[:7] == base_rows[:7]  # the shared joint phase (steps 10 and 20)
        assert other_rows[7].startswith("30,0,") and other_rows[7] == base_rows[7]  # actor 0
        assert other_rows[8:] != base_rows[8:]  # the chain settled elsewhere
        assert "settle_w2_weights:\n- 4.0\n- 4.0\n" in (other / "logs/config.yaml").read_text()
        assert (
            "| td3_bc | hopper-medium-v2 | 0 | 30 |"
            in (tmp_path / "out" / f"w{weight}_settle4.md").read_text()
        )
    assert chain_study.main(argv[:-7] + sweep + argv[-7:]) == 0  # all done: only tables
    assert "chain study: 0 runs, 0 failed, 6 done before" in capsys.readouterr().out
    # a copy made but not run yet (an interrupted study) is not taken for a finished run
    queued = tmp_path / "out" / "w1_settle4_cosine" / "td3_bc/hopper/medium-v2/seed_0"
    argv_queued = argv[:-7] + ["--settle_steps", "10", "--settle_sweep", "4"]
    argv_queued += ["--settle_lr_schedule", "cosine"] + argv[-7:]
    runs, _, _ = chain_study.plan_settle_sweep(chain_study.parse_args(argv_queued))
    assert len(runs) == 2 and chain_study.run_state(queued, 30) == "partial"
    assert (queued / "logs/eval.csv").read_text().splitlines()[-1].startswith("20,2,")
    # the same sweep with a cosine settle schedule goes to its own directories
    cosine = ["--settle_steps", "10", "--settle_sweep", "4", "--settle_lr_schedule", "cosine"]
    assert chain_study.main(argv[:-7] + cosine + argv[-7:]) == 0
    assert "chain study: 2 runs, 0 failed, 2 done before" in capsys.readouterr().out
    root = tmp_path / "out" / "w1_settle4_cosine" / "td3_bc/hopper/medium-v2/seed_0"
    assert "settle_lr_schedule: cosine\n" in (root / "logs/config.yaml").read_text()
    assert (tmp_path / "out" / "w50_settle4_cosine.md").is_file()
    # a longer settle phase (--settle_sweep_steps) goes to its own directories and leaves the
    # joint runs as they were; with a constant schedule its first 10 settle updates are those
    # of the 10-update sweep, so one long run gives every shorter length too
    longer = ["--settle_steps", "10", "--settle_sweep", "4", "--settle_lr_schedule", "constant"]
    longer += ["--settle_sweep_steps", "20"]
    assert chain_study.main(argv[:-7] + longer + argv[-7:]) == 0
    assert "chain study: 2 runs, 0 failed, 2 done before" in capsys.readouterr().out
    for weight in ("1", "50"):
        base = tmp_path / "out" / f"w{weight}" / "td3_bc/hopper/medium-v2/seed_0"
        assert (base / "logs/eval.csv").read_text().splitlines()[-1].startswith("30,2,")
        short, long = (
            tmp_path / "out" / name / "td3_bc/hopper/medium-v2/seed_0" / "logs/eval.csv"
            for name in (f"w{weight}_settle4", f"w{weight}_settle4_steps20")
        )
        long_rows = long.read_text().splitlines()
        assert long_rows[-1].startswith("40,2,")
        assert long_rows[:10] == short.read_text().splitlines()
    assert (tmp_path / "out" / "w1_settle4_steps20.md").is_file()


@pytest.mark.parametrize("how", ["SIGTERM to the study", "Ctrl-C to the terminal"])
def test_a_stopped_study_checkpoints_its_runs_and_starts_no_more(tiny_behavior, tmp_path, how):
    """The study forwards SIGTERM to its runs; after a Ctrl-C, which reached the runs as well,
    the forwarded SIGTERM changes nothing, so each run still checkpoints where it stood."""
    data = tmp_path / "data"
    make_dataset_main(
        ["--env", "hopper-medium-v2", "--size", "300", "--out", str(data / "hopper_medium-v2.hdf5")]
        + ["--actors_dir", str(tiny_behavior[0])]
    )
    argv = ["--algorithms", "td3_bc", "--envs", "hopper", "--datasets", "medium", "--seeds", "0"]
    argv += ["1", "--w2_weights", "10", "--max_timesteps", "100000", "--jobs", "1"]
    argv += ["--out", str(tmp_path / "out"), "--data_dir", str(data), "--n_episodes", "1"]
    argv += ["--", "--eval_freq", "10", "--batch_size", "8", "--device", "cpu"]
    study = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "chain_study.py"), *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    root = tmp_path / "out" / "w10" / "td3_bc/hopper/medium-v2"
    latest = root / "seed_0" / "checkpoints" / "latest"
    deadline = time.time() + 120
    while not latest.exists() and time.time() < deadline and study.poll() is None:
        time.sleep(0.05)
    if how == "SIGTERM to the study":
        study.send_signal(signal.SIGTERM)
    else:
        os.killpg(study.pid, signal.SIGINT)
    out, _ = study.communicate(timeout=120)
    name = signal.SIGTERM.name if how == "SIGTERM to the study" else signal.SIGINT.name
    assert study.returncode == 75 == EXIT_STOPPED, out  # the status docs/runs.md promises
    assert "stopped: w10_td3_bc_hopper_medium-v2_seed0 (checkpointed)" in out
    assert f"chain study stopped ({name}): 1 runs checkpointed, 1 not started, 0 failed" in out
    log = (tmp_path / "out" / "logs" / "w10_td3_bc_hopper_medium-v2_seed0.log").read_text()
    assert f"stopped: {name} after update " in log
    step = int(log.split(f"stopped: {name} after update ")[1].split(":")[0])
    assert latest.read_text().strip() == f"checkpoint_{step:010d}.pt"
    assert not (root / "seed_1").exists()
    # the same command goes on: the stopped run resumes, the other starts
    plan = chain_study.plan(chain_study.parse_args(argv))[1]
    assert [cmd[-1] for cmd in plan] == ["--resume", "cpu"]


@pytest.mark.parametrize(
    "bad", [["--envs", "antmaze"], ["--datasets", "full-replay"], ["--algorithms", "bc"]]
)
def test_unknown_choices_fail_before_running(bad, tmp_path, capsys):
    with pytest.raises(SystemExit):
        chain_study.main(["--dry-run", *bad, "--data_dir", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err


def test_shipped_gathers_each_datasets_runs_of_its_config_settings(tiny_behavior, tmp_path, capsys):
    """--shipped judges the study on the shipped defaults: it takes a run only where its recorded
    config is the shipped config (with the study's overrides), from whichever directory."""
    data = tmp_path / "data"
    make_dataset_main(
        ["--env", "hopper-medium-v2", "--size", "300", "--out", str(data / "hopper_medium-v2.hdf5")]
        + ["--actors_dir", str(tiny_behavior[0])]
    )
    shipped_config = yaml.safe_load(
        (ROOT / "configs/offline/pogo_multi/hopper/medium_v2_td3_bc.yaml").read_text()
    )
    settle_weight = shipped_config["settle_w2_weights"][0]
    schedule = shipped_config["settle_lr_schedule"]
    argv = ["--algorithms", "td3_bc", "--envs", "hopper", "--datasets", "medium", "--seeds", "0"]
    argv += ["--w2_weights", "10", "--max_timesteps", "20", "--settle_steps", "10", "--jobs", "1"]
    argv += ["--out", str(tmp_path / "out"), "--data_dir", str(data), "--n_episodes", "1"]
    extra = ["--", "--eval_freq", "10", "--batch_size", "32", "--device", "cpu"]
    # the study's own runs settle elsewhere than the config: not the shipped setting
    other = ["--settle_w2_weight", str(settle_weight * 7), "--settle_lr_schedule", "constant"]
    assert chain_study.main(argv + other + extra) == 0
    capsys.readouterr()
    assert chain_study.main([*argv, "--shipped", *extra]) == 1
    out = capsys.readouterr().out
    assert "shipped: not finished with the shipped setting: td3_bc hopper-medium-v2 seed 0" in out
    assert not (tmp_path / "out" / "shipped").exists()
    # settled again at the config's own weight and schedule: that copy is the shipped run
    sweep = ["--settle_sweep", f"{settle_weight:g}", "--settle_lr_schedule", schedule]
    assert chain_study.main(argv + sweep + extra) == 0
    capsys.readouterr()
    assert chain_study.main([*argv, "--shipped", *extra]) == 0
    home = chain_study.sweep_dir(tmp_path / "out", 10, settle_weight, schedule)
    out = capsys.readouterr().out
    assert f"shipped: td3_bc hopper-medium-v2: seed_0 from {home.name}" in out
    run = "td3_bc/hopper/medium-v2/seed_0/logs/eval.csv"
    copied = (tmp_path / "out" / "shipped" / run).read_text()
    assert copied == (home / run).read_text()
    assert copied != (tmp_path / "out" / "w10" / run).read_text()
    table = (tmp_path / "out" / "shipped.md").read_text()
    assert "| td3_bc | hopper-medium-v2 | 0 | 30 |" in table
    with pytest.raises(SystemExit):
        chain_study.main([*argv, "--shipped", "--settle_w2_weight", "1"])
    assert "--shipped takes each config's settle settings" in capsys.readouterr().err


def test_settle_from_predecessor_goes_to_every_run_and_its_own_sweep_directory(tmp_path):
    argv = ["--settle_from_predecessor", "--settle_sweep", "100", "--settle_lr_schedule", "cosine"]
    args = chain_study.parse_args([*argv, "--out", str(tmp_path)])
    config = "configs/offline/pogo_multi/hopper/medium_v2_iql.yaml"
    cmd = chain_study.run_command(args, config, tmp_path / "d.hdf5", 10, 0, tmp_path / "w10")
    assert cmd[cmd.index("--settle_from_predecessor") + 1] == "true"
    assert (
        chain_study.sweep_dir(tmp_path, 10, 100, "cosine", True).name == "w10_settle100_cosine_pred"
    )
    assert chain_study.sweep_dir(tmp_path, 10, 100, "cosine").name == "w10_settle100_cosine"


def test_shipped_judges_fresh_seeds_beside_the_seeds_that_chose(tiny_behavior, tmp_path, capsys):
    """--shipped --fresh_seeds: the shipped settings' verdict on the seeds that chose them and on
    others, each from its own runs, and the chain's gain on both side by side."""
    data = tmp_path / "data"
    make_dataset_main(
        ["--env", "hopper-medium-v2", "--size", "300", "--out", str(data / "hopper_medium-v2.hdf5")]
        + ["--actors_dir", str(tiny_behavior[0])]
    )
    argv = ["--algorithms", "td3_bc", "--envs", "hopper", "--datasets", "medium"]
    argv += ["--w2_weights", "10", "--max_timesteps", "20", "--settle_steps", "10", "--jobs", "1"]
    argv += ["--out", str(tmp_path / "out"), "--data_dir", str(data), "--n_episodes", "1"]
    extra = ["--", "--eval_freq", "10", "--batch_size", "32", "--device", "cpu"]
    assert chain_study.main([*argv, "--seeds", "0", "1", "2", *extra]) == 0  # 0: chose, 1 2 fresh
    capsys.readouterr()
    shipped = [*argv, "--shipped", "--seeds", "0", "--fresh_seeds", "1", "2", *extra]
    assert chain_study.main(shipped) == 0
    out = capsys.readouterr().out
    assert "shipped: td3_bc hopper-medium-v2: seed_0 from w10" in out
    assert "shipped_fresh: td3_bc hopper-medium-v2: seed_1 from w10, seed_2 from w10" in out
    runs = tmp_path / "out" / "shipped_fresh" / "td3_bc/hopper/medium-v2"
    assert sorted(p.name for p in runs.iterdir()) == ["seed_1", "seed_2"]

    def final(seed: int) -> tuple[float, float]:
        """(actor 0, last actor) at the run's last evaluation, read from its eval.csv."""
        csv_path = tmp_path / "out" / f"w10/td3_bc/hopper/medium-v2/seed_{seed}/logs/eval.csv"
        rows = [r.split(",") for r in csv_path.read_text().splitlines()[-3:]]  # its 3 actors
        return float(rows[0][4]), float(rows[2][4])

    def verdict(gain: float, spread: float) -> str:
        return "wins" if gain > spread else "loses" if gain < -spread else "level"

    chosen = final(0)[1] - final(0)[0]
    first = np.array([final(s)[0] for s in (1, 2)])
    fresh = np.array([final(s)[1] for s in (1, 2)]) - first
    side = (tmp_path / "out" / "shipped.md").read_text().split("## the chain's gain")[1]
    row = (
        f"| td3_bc | hopper-medium-v2 | 0 | {chosen:+.1f} ± 0.0 | not judged (1 seed) "
        f"| 1,2 | {fresh.mean():+.1f} ± {fresh.std():.1f} | {verdict(fresh.mean(), first.std())} |"
    )
    assert row in side
    report = (tmp_path / "out" / "shipped.md").read_text()
    assert "## shipped (seeds 0)" in report and "## shipped_fresh (seeds 1 2)" in report
    with pytest.raises(SystemExit):
        chain_study.main([*argv, "--fresh_seeds", "3"])
    assert "--fresh_seeds: only with --shipped" in capsys.readouterr().err


def test_a_dataset_that_cannot_be_made_stops_the_study_in_one_line(tmp_path, capsys):
    """medium-replay needs the behaviour agent's replay buffer; without it nothing runs (an
    empty --replay_dir, whatever buffers this machine's data/behavior holds)."""
    argv = ["--algorithms", "td3_bc", "--envs", "hopper", "--datasets", "medium-replay"]
    argv += ["--seeds", "0", "--out", str(tmp_path / "out"), "--data_dir", str(tmp_path / "d")]
    argv += ["--replay_dir", str(tmp_path / "no_buffers")]
    assert chain_study.main(argv) == 2
    err = capsys.readouterr().err
    made = tmp_path / "d" / "hopper_medium_replay-v2.hdf5"
    assert err.strip().splitlines()[-1] == (
        f"error: chain study: could not make {made}; no run started"
    )
    assert not (tmp_path / "out").exists()
