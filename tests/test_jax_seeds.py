"""`--seeds`: several seeds of the JAX main in one process, vmapped over seeds, each in its own
run directory with the numbers of a separate run with that seed; checkpoints, SIGTERM, --resume,
a NaN in one seed and bad input, as for a single run.

Exactness. vmap gives a seed a separate run's numbers bit for bit only where XLA compiles each
operation of the batched update as it compiles it for one seed, and on the CPU (jaxlib 0.10.2)
it does not always: an operation with fewer than 4096 elements in one seed but at least 4096
over all seeds goes to YNNPACK, which sums (and takes tanh, exp) in another order. (The
optimisers' step counts would be another cause, Adam's bias correction compiled otherwise for a
per-seed count; they stay unbatched, `utils_jax.seed_axes`.) The runs here keep every operation
on one side of that line (batch 16, 2 seeds) and are tested bit for bit: any slip of keys,
data, counters, slices, evaluation or checkpoints shows. With 4 seeds the chain's LayerNorms
cross it: float rounding, tested to a tolerance. docs/jax.md says what that means for real runs.
"""

import json
import os
import shutil
import signal
from pathlib import Path

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import yaml

from algorithms.offline import pogo_multi_jax
from algorithms.offline.config import parse_config
from algorithms.offline.run_io import EXIT_STOPPED, RESUMABLE_CHANGES, RunLogger
from algorithms.offline.utils_jax import host_tree, seed_slice
from tests.conftest import tiny_argv, write_synthetic_d4rl

pytestmark = pytest.mark.usefixtures("xla_cache")  # one persistent XLA cache (conftest)

SEEDS = (0, 1)
STEPS = 30  # the clean runs' length; a stopped run is resumed to it
TINY = {  # tiny networks: each program compiles in a few seconds
    "rebrac": "--hidden_dim 16 --actor_n_hiddens 1 --critic_n_hiddens 1".split(),
    "fql": "--actor_hidden_dims [16] --value_hidden_dims [16] --flow_steps 2 --num_actors 2 "
    "--sinkhorn_K 4".split(),
}


def _argv(dataset: Path, out: Path, *extra: str, algorithm: str = "rebrac") -> list[str]:
    """A tiny chain of 3 actors (FQL: 2), evaluated and checkpointed every 10 updates; batch 16
    keeps the operations of 2 seeds on one side of XLA's 4096-element line (see above)."""
    return tiny_argv(
        dataset,
        out,
        algorithm,
        3,
        *TINY[algorithm],
        *extra,
        "--quiet",
        max_timesteps=STEPS,
        batch_size=16,
    )


def _seeds(*seeds: int) -> list[str]:
    return ["--seeds", *map(str, seeds)]


def _run(out: Path, seed: int) -> Path:
    return out / "rebrac" / "hopper" / "medium-v2" / f"seed_{seed}"


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _latest(root: Path) -> Path:
    return root / "checkpoints" / (root / "checkpoints" / "latest").read_text().strip()


def _assert_same_run(root: Path, separate: Path) -> None:
    """A seed's run directory holds a separate run's logs, config (up to the keys a resumed run
    may change, the output_dir among them) and final carry, bit for bit."""
    for name in ("eval.csv", "train.jsonl"):
        assert (root / "logs" / name).read_text() == (separate / "logs" / name).read_text(), name
    config, expected = (
        yaml.safe_load((r / "logs" / "config.yaml").read_text()) for r in (root, separate)
    )
    ignored = dict.fromkeys(RESUMABLE_CHANGES)
    assert {**config, **ignored} == {**expected, **ignored}
    a, b = (torch.load(_latest(r), weights_only=False) for r in (root, separate))
    assert a["step"] == b["step"] == STEPS
    for part in pogo_multi_jax.CHECKPOINT_PARTS:
        assert a[part].keys() == b[part].keys(), part
        for name in a[part]:
            assert np.array_equal(a[part][name], b[part][name]), f"{part}.{name}"


@pytest.fixture(scope="module")
def runs(synthetic_dataset, tmp_path_factory) -> dict[str, Path]:
    """Seeds 0 and 1 of one ReBRAC chain run separately ("separate") and together ("seeds")."""
    separate, together = tmp_path_factory.mktemp("separate"), tmp_path_factory.mktemp("seeds")
    for seed in SEEDS:
        pogo_multi_jax.main(_argv(synthetic_dataset, separate, "--seed", str(seed)))
    roots = pogo_multi_jax.main(_argv(synthetic_dataset, together, *_seeds(*SEEDS)))
    assert roots == [_run(together, seed) for seed in SEEDS]
    return {"separate": separate, "seeds": together}


def test_each_seed_writes_a_separate_runs_directory_and_numbers(runs):
    """eval.csv, train.jsonl, config.yaml (its seed: N, as `--seed N` records it) and the final
    checkpoint of each seed, bit for bit those of a separate run with that seed."""
    for seed in SEEDS:
        root = _run(runs["seeds"], seed)
        assert yaml.safe_load((root / "logs" / "config.yaml").read_text())["seed"] == seed
        names = sorted(p.name for p in (root / "checkpoints").iterdir())
        assert names == sorted(
            p.name for p in (_run(runs["separate"], seed) / "checkpoints").iterdir()
        )
        _assert_same_run(root, _run(runs["separate"], seed))
    # the seeds really differ
    logs = [(_run(runs["seeds"], s) / "logs" / "train.jsonl").read_text() for s in SEEDS]
    assert logs[0] != logs[1]


def test_fql_seeds_update_as_separate_runs_bit_for_bit(synthetic_dataset, tmp_path):
    """FQL (one-step policy, BC flow, shared-noise W2): 20 updates of 2 seeds at once give each
    seed's carry exactly as its own unbatched updates, a separate run's program, do."""
    configs = [
        parse_config(_argv(synthetic_dataset, tmp_path, "--seed", str(s), algorithm="fql"))
        for s in SEEDS
    ]
    seeds = pogo_multi_jax.setup_seeds(configs)
    n = jnp.asarray(20, jnp.int32)
    together = seeds.run_updates(seeds.carry, seeds.runs[0].data, n)
    for i, run in enumerate(seeds.runs):
        alone = host_tree(run.run_updates(run.carry, run.data, n))
        mine = host_tree(seed_slice(together, i))
        assert alone.keys() == mine.keys()
        for name in alone:
            assert np.array_equal(alone[name], mine[name]), name


def test_seeds_settle_as_separate_runs_bit_for_bit(synthetic_dataset, tmp_path):
    """20 joint updates, then a 10-update settle phase from copies of actor 0 at a cosine
    learning rate: each seed of a --seeds run ends as a separate run with its seed does."""
    settle = "--max_timesteps 20 --settle_steps 10 --settle_w2_weights [0.5] "
    settle += "--settle_lr_schedule cosine --settle_from_predecessor true"
    separate, together = tmp_path / "separate", tmp_path / "seeds"
    for seed in SEEDS:
        pogo_multi_jax.main(
            _argv(synthetic_dataset, separate, "--seed", str(seed), *settle.split())
        )
    pogo_multi_jax.main(_argv(synthetic_dataset, together, *_seeds(*SEEDS), *settle.split()))
    for seed in SEEDS:
        _assert_same_run(_run(together, seed), _run(separate, seed))


def test_four_seeds_cross_xla_kernels_and_differ_by_rounding_only(synthetic_dataset, tmp_path):
    """With 4 seeds the chain's LayerNorm reductions (2 actors x 2 critics x 16 states x 16
    units = 1024 elements a seed) reach 4096 elements and run on another XLA kernel: each seed's
    carry after 20 updates is then within float rounding of its own updates', not equal."""
    seeds_ = (0, 1, 2, 3)
    configs = [parse_config(_argv(synthetic_dataset, tmp_path, "--seed", str(s))) for s in seeds_]
    seeds = pogo_multi_jax.setup_seeds(configs)
    n = jnp.asarray(20, jnp.int32)
    together = seeds.run_updates(seeds.carry, seeds.runs[0].data, n)
    worst = 0.0
    for i, run in enumerate(seeds.runs):
        alone = host_tree(run.run_updates(run.carry, run.data, n))
        mine = host_tree(seed_slice(together, i))
        for name in alone:
            if alone[name].dtype.kind == "f":
                scale = max(float(np.abs(alone[name]).max()), 1e-30)
                worst = max(worst, float(np.abs(alone[name] - mine[name]).max()) / scale)
            else:  # counters, random keys
                assert np.array_equal(alone[name], mine[name]), name
    assert 0.0 < worst < 5e-6, worst  # measured: 7.3e-7


def test_sigterm_checkpoints_every_seed_and_resume_continues_them_all(
    synthetic_dataset, tmp_path, runs, monkeypatch, capsys
):
    """A --seeds run gets SIGTERM (sent to this process as it logs update 15, between two
    evaluations): every seed checkpoints update 15 and the run exits 75 in one line naming
    them; --resume --seeds then ends each seed where a separate run ends. (A real process
    stopped by SIGTERM and SIGKILL: tests/test_jax_resume.py, through the same loop.)"""
    log_train = RunLogger.log_train

    def log_and_signal(logger: RunLogger, step: int, values: dict[str, float]) -> None:
        log_train(logger, step, values)
        if step == 15:
            os.kill(os.getpid(), signal.SIGTERM)

    argv = _argv(synthetic_dataset, tmp_path, *_seeds(*SEEDS))
    with monkeypatch.context() as patch:
        patch.setattr(RunLogger, "log_train", log_and_signal)
        with pytest.raises(SystemExit) as err:
            pogo_multi_jax.main(argv)
    assert err.value.code == EXIT_STOPPED
    for seed in SEEDS:
        assert _latest(_run(tmp_path, seed)).name == "checkpoint_0000000015.pt"
    saved = _run(tmp_path, 0).parent / "seed_{0,1}" / "checkpoints" / "checkpoint_0000000015.pt"
    stderr = capsys.readouterr().err.splitlines()
    assert f"stopped: SIGTERM after update 15: saved {saved}; --resume continues" in stderr

    assert pogo_multi_jax.main([*argv, "--resume"]) == [_run(tmp_path, s) for s in SEEDS]
    for seed in SEEDS:
        _assert_same_run(_run(tmp_path, seed), _run(runs["separate"], seed))


def test_a_seed_resumes_alone_and_seeds_at_different_steps_are_refused(
    synthetic_dataset, tmp_path, runs
):
    """A seed of a --seeds run is a run of its own (--seed 1 --resume continues it); --resume of
    seeds at different steps is refused in one line naming them, writing nothing."""
    shutil.copytree(runs["seeds"], tmp_path, dirs_exist_ok=True)
    longer = ["--max_timesteps", str(STEPS + 10), "--resume"]
    pogo_multi_jax.main(_argv(synthetic_dataset, tmp_path, "--seed", "1", *longer))
    assert _latest(_run(tmp_path, 1)).name == f"checkpoint_{STEPS + 10:010d}.pt"
    before = _files(tmp_path)
    with pytest.raises(SystemExit) as err:
        pogo_multi_jax.main(_argv(synthetic_dataset, tmp_path, *_seeds(*SEEDS), *longer))
    assert str(err.value) == (
        f"error: resume: the seeds' checkpoints are at different steps (seed 0 at step {STEPS}, "
        f"seed 1 at step {STEPS + 10}); resume them separately, or all from one step with "
        "--resume_step"
    )
    assert _files(tmp_path) == before


def test_a_non_finite_loss_in_one_seed_stops_the_run_naming_the_seed(tmp_path):
    """Rewards of 3e38 in three rows: a seed whose batch draws one overflows its critic (seed 1
    at update 15, seed 0 only at 30). The --seeds run stops at seed 1's update with the message
    a separate run of seed 1 gives, prefixed by the seed, and logs no row of it for any seed."""
    data = tmp_path / "huge_rewards.hdf5"
    write_synthetic_d4rl(data)
    with h5py.File(data, "r+") as f:
        rewards = f["rewards"][...]
        rewards[[100, 300, 500]] = np.float32(3e38)
        f["rewards"][...] = rewards
    with pytest.raises(SystemExit) as err:
        pogo_multi_jax.main(_argv(data, tmp_path / "seeds", *_seeds(*SEEDS), "--log_freq", "1"))
    message = str(err.value.code)
    assert message.startswith("error: seed 1: step ")
    step = int(message.split("step ", 1)[1].split(":")[0])
    for seed in SEEDS:
        lines = (_run(tmp_path / "seeds", seed) / "logs" / "train.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == list(range(1, step))
    with pytest.raises(SystemExit) as err:
        pogo_multi_jax.main(_argv(data, tmp_path / "alone", "--seed", "1", "--log_freq", "1"))
    alone = str(err.value.code).replace(str(tmp_path / "alone"), str(tmp_path / "seeds"))
    assert message == alone.replace("error: ", "error: seed 1: ", 1)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--seeds", "0", "1", "0"], "--seeds: seed 0 is given twice"),
        (["--seeds", "0", "1", "--seed", "2"], "--seeds: pass either --seed or --seeds, not both"),
        (["--seed=2", "--seeds", "0", "1"], "--seeds: pass either --seed or --seeds, not both"),
        (["--seeds"], "--seeds: needs one or more integer seeds, e.g. --seeds 0 1 2"),
        (["--seeds", "0", "one"], "--seeds: seeds are integers, got 0 one"),
        (["--seeds=0,1"], "--seeds: give the seeds as separate values, e.g. --seeds 0 1 2"),
        (["--seeds", "0", "--seeds", "1"], "--seeds: given twice"),
        (["--seeds", "0", "1", "--use_wandb", "true"], "--seeds: wandb keeps one run per process"),
        (["--seeds", "0", "1", "--batch_size", "0"], "batch_size: must be >= 1"),
    ],
)
def test_bad_seeds_fail_in_one_line_before_writing(synthetic_dataset, tmp_path, extra, message):
    argv = _argv(synthetic_dataset, tmp_path / "res", *extra)
    if "--use_wandb" in extra:
        argv.remove("--no_wandb")
    with pytest.raises(SystemExit) as err:
        pogo_multi_jax.main(argv)
    assert str(err.value.code).startswith(f"error: {message}")
    assert "\n" not in str(err.value.code)
    assert not (tmp_path / "res").exists()


def test_a_seed_whose_directory_is_held_fails_before_any_seed_writes(
    synthetic_dataset, tmp_path, runs
):
    """Seed 1's directory holds a run: refused before seed 0's directory is made."""
    shutil.copytree(_run(runs["seeds"], 1), _run(tmp_path, 1))
    with pytest.raises(SystemExit, match=r"error: output_dir: .*seed_1 already holds a run"):
        pogo_multi_jax.main(_argv(synthetic_dataset, tmp_path, *_seeds(*SEEDS)))
    assert not _run(tmp_path, 0).exists()
