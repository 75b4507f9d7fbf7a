"""Sweep scripts: the dry run lists algorithms x datasets x seeds; bad options fail clearly."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sweep(env: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / f"scripts/sweep_{env}.sh"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


@pytest.mark.parametrize("env", ["halfcheetah", "hopper", "walker2d"])
def test_dry_run_lists_every_run_by_default(env):
    out = _sweep(env, "--dry-run")
    assert out.returncode == 0, out.stderr
    header, *commands = out.stdout.strip().splitlines()
    assert len(commands) == 6 * 3 * 3  # algorithms x datasets x seeds
    assert header.startswith(f"# {len(commands)} runs, 1 at a time")
    for algorithm in ("iql", "td3_bc", "cql", "awac", "sac_n", "edac"):
        config = f"configs/offline/pogo_multi/{env}/medium_expert_v2_{algorithm}.yaml --seed 2"
        assert any(config in c for c in commands)


def test_dry_run_with_choices_jobs_and_extra_args():
    out = _sweep(
        "hopper",
        "--dry-run",
        "--algorithms",
        "iql td3_bc",
        "--datasets",
        "medium",
        "--seeds",
        "0 1",
        "--jobs",
        "2",
        "--",
        "--max_timesteps",
        "100",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "# 4 runs, 2 at a time, OMP_NUM_THREADS=1"
    assert lines[1].endswith(
        "-m algorithms.offline.pogo_multi_main --config_path "
        "configs/offline/pogo_multi/hopper/medium_v2_iql.yaml --seed 0 --max_timesteps 100"
    )
    assert len(lines) == 5


def test_the_paper_protocol_sweeps_from_its_own_configs():
    out = _sweep("walker2d", "--dry-run", "--configs", "configs/offline/pogo_paper/")
    assert out.returncode == 2  # the paper's protocol is TD3+BC only: the first IQL file is missing
    assert "sweep: no config configs/offline/pogo_paper/walker2d/medium_v2_iql.yaml" in out.stderr
    out = _sweep(
        "walker2d", "--dry-run", "--configs", "configs/offline/pogo_paper", "--algorithms", "td3_bc"
    )
    assert out.returncode == 0, out.stderr
    commands = out.stdout.strip().splitlines()[1:]
    assert len(commands) == 3 * 3  # datasets x seeds
    assert all("configs/offline/pogo_paper/walker2d/" in c for c in commands)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bogus"], "sweep: unknown option --bogus"),
        (["--jobs", "0"], "sweep: --jobs must be a positive integer"),
        (["--datasets", "mediocre", "--dry-run"], "sweep: no config"),
    ],
)
def test_bad_options_fail_with_a_message(args, message):
    out = _sweep("walker2d", *args)
    assert out.returncode == 2
    assert message in out.stderr
