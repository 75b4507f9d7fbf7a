"""The chain end to end through pogo_multi_main, on tiny synthetic data."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from algorithms.offline import pogo_multi_main
from algorithms.offline.config import parse_config
from algorithms.offline.run_io import EVAL_COLUMNS
from algorithms.offline.utils_pytorch import log_values, named_tensors

ALGORITHMS = ("iql", "td3_bc", "cql", "awac", "sac_n", "edac")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_an_update_leaves_its_log_on_the_device(algorithm, tiny_run_args):
    """No host read inside an update: every value the trainer and the chain log is a detached
    0-dim tensor (read when logged, all at once), and reads as the float it holds."""
    run = pogo_multi_main.setup(parse_config(tiny_run_args(algorithm, 3)))
    for _ in range(2):  # a delayed actor (TD3+BC) steps on the second update
        batch = run.buffer.sample(32)
        log = run.trainer.train(batch)
    log.update(run.chain.update(batch[0], batch[1]))
    assert all(
        isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in log.values()
    ), {k: type(v) for k, v in log.items()}
    values = log_values(log)
    assert list(values) == list(log)
    assert all(type(v) is float and v == log[k].item() for k, v in values.items())


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("num_actors", [1, 3])
def test_smoke_run_writes_outputs(algorithm, num_actors, tiny_run_args):
    root = pogo_multi_main.main(tiny_run_args(algorithm, num_actors))
    assert root.parts[-4:] == (algorithm, "hopper", "medium-v2", "seed_0")

    with (root / "logs" / "eval.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == EVAL_COLUMNS
    # evaluations at steps 10 and 20, one row per actor
    assert [(int(r["step"]), int(r["actor"])) for r in rows] == [
        (step, actor) for step in (10, 20) for actor in range(num_actors)
    ]
    assert all(math.isfinite(float(v)) for r in rows for v in r.values())

    lines = [json.loads(line) for line in (root / "logs" / "train.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [5, 10, 15, 20]
    assert all(math.isfinite(v) for line in lines for v in line.values())
    chain_keys = {k for line in lines for k in line if k.startswith("chain/")}
    names = ("energy", "w2", "loss", "q_gain")
    expected = {f"chain/{n}_{i}" for n in names for i in range(1, num_actors)}
    assert chain_keys == expected

    # one checkpoint per evaluation, both kept (keep_checkpoints: 2), `latest` names the last
    names = sorted(p.name for p in (root / "checkpoints").iterdir())
    assert names == ["checkpoint_0000000010.pt", "checkpoint_0000000020.pt", "latest"]
    assert (root / "checkpoints" / "latest").read_text().strip() == "checkpoint_0000000020.pt"
    ckpt = torch.load(root / "checkpoints" / "checkpoint_0000000020.pt", weights_only=False)
    assert ckpt["step"] == 20
    assert ckpt["trainer"]["total_it"] == 20
    assert len(ckpt["chain"]["actors"]) == num_actors - 1
    # the vectorised chain: one optimiser over the stacked parameters of actors 1..N-1
    assert len(ckpt["chain"]["optimizers"]) == (1 if num_actors > 1 else 0)

    # the resolved config reads back into the same config
    again = parse_config(["--config_path", str(root / "logs" / "config.yaml")])
    assert again.num_actors == num_actors and again.algorithm == algorithm


def _train(argv):
    run = pogo_multi_main.setup(parse_config(argv))
    pogo_multi_main.train(run)
    return run


# chain actors that draw random numbers (new networks, sampled actions, Sinkhorn) test that
# the chain's stream is its own
RANDOM_CHAIN = "[{type: stochastic, hidden_dim: 32}, {type: tanh_gaussian, hidden_dim: 32}]"


@pytest.mark.parametrize(
    "algorithm,chain_args",
    [(a, {}) for a in ALGORITHMS]
    + [("td3_bc", {"actor_configs": RANDOM_CHAIN}), ("sac_n", {"w2_method": "sinkhorn"})],
)
def test_chain_leaves_actor0_and_critics_bit_identical(
    algorithm, chain_args, tiny_run_args, tmp_path
):
    """Actor 0, critics, targets and optimisers do not depend on num_actors (same seed)."""
    single = _train(tiny_run_args(algorithm, 1, output_dir=tmp_path / "one"))
    chain = _train(tiny_run_args(algorithm, 3, output_dir=tmp_path / "three", **chain_args))
    a, b = single.trainer.state_dict(), chain.trainer.state_dict()
    assert a.keys() == b.keys()
    assert a["total_it"] == b["total_it"]
    flat_a, flat_b = dict(named_tensors(a)), dict(named_tensors(b))
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        assert torch.equal(flat_a[key], flat_b[key]), key

    # actor 0's evaluation does not depend on the actors evaluated beside it
    def actor0_rows(run):
        text = (run.root / "logs" / "eval.csv").read_text().splitlines()[1:]
        return [row for row in text if row.split(",")[1] == "0"]

    assert actor0_rows(single) == actor0_rows(chain)

    # ... while the chain actors did train: they moved away from their Polyak targets' start
    for actor, target in zip(chain.chain.chain, chain.chain.targets):
        assert any(not torch.equal(p, q) for p, q in zip(actor.parameters(), target.parameters()))


def test_rerun_refuses_to_overwrite_unless_asked(tiny_run_args):
    argv = tiny_run_args("iql", 1, max_timesteps=10)
    root = pogo_multi_main.main(argv)
    before = (root / "logs" / "eval.csv").read_text()
    with pytest.raises(SystemExit, match="already holds a run; pass --resume .*--overwrite"):
        pogo_multi_main.main(argv)
    assert (root / "logs" / "eval.csv").read_text() == before
    pogo_multi_main.main(argv + ["--overwrite"])


def test_dataset_with_wrong_observation_size_fails_before_training(tiny_run_args, tmp_path):
    argv = tiny_run_args("iql", 3, env="halfcheetah-medium-v2")  # data has Hopper's 11 dims
    with pytest.raises(SystemExit, match="observation"):
        pogo_multi_main.main(argv)
    assert not (tmp_path / "results").exists()


def test_checkpoint_round_trip_restores_every_state(tiny_run_args, tmp_path):
    """A fresh run loaded from a checkpoint holds the same parameters and optimiser states."""
    done = _train(tiny_run_args("td3_bc", 3, output_dir=tmp_path / "a"))
    ckpt, _ = done.checkpoints.load_latest()
    fresh = pogo_multi_main.setup(
        parse_config(tiny_run_args("td3_bc", 3, output_dir=tmp_path / "b", seed=5))
    )
    assert not torch.equal(fresh.trainer.actor.net[0].weight, done.trainer.actor.net[0].weight)
    fresh.load_state_dict(ckpt, Path("checkpoint"))
    assert fresh.step == 20
    for name, (a, b) in {
        "trainer": (fresh.trainer.state_dict(), done.trainer.state_dict()),
        "chain": (fresh.chain.state_dict(), done.chain.state_dict()),
    }.items():
        flat_a, flat_b = dict(named_tensors(a)), dict(named_tensors(b))
        assert flat_a.keys() == flat_b.keys()
        for key in flat_a:
            assert torch.equal(flat_a[key], flat_b[key]), (name, key)
    # the restored buffer draws the batches the finished run would draw next
    assert torch.equal(fresh.buffer.sample(8)[0], done.buffer.sample(8)[0])
