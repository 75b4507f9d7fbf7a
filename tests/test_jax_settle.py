"""The JAX chain's settle phase: after max_timesteps only actors i >= 1 train, at the settle W2
weights, as in the PyTorch main (tests/test_settle.py)."""

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from algorithms.offline import pogo_multi_jax
from algorithms.offline.config import parse_config
from algorithms.offline.utils_jax import host_tree
from tests.conftest import tiny_argv

pytestmark = pytest.mark.usefixtures("xla_cache")  # one persistent XLA cache (conftest)

RUN = Path("rebrac", "hopper", "medium-v2", "seed_0")
SETTLE = ["--settle_steps", "10", "--settle_w2_weights", "[0.5]"]


def _argv(dataset: Path, out: Path, *extra: str) -> list[str]:
    """A tiny ReBRAC chain of 3 actors, 20 joint updates, evaluated every 10."""
    tiny = {"hidden_dim": 16, "actor_n_hiddens": 1, "critic_n_hiddens": 1}
    return tiny_argv(
        dataset, out, "rebrac", 3, *extra, "--quiet", batch_size=16, keep_checkpoints=5, **tiny
    )


def _checkpoint(root: Path, step: int) -> dict:
    return torch.load(root / "checkpoints" / f"checkpoint_{step:010d}.pt", weights_only=False)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _train_log(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "logs/train.jsonl").read_text().splitlines()]


def test_settle_trains_only_the_chain_with_its_own_weights(synthetic_dataset, tmp_path):
    root = pogo_multi_jax.main(_argv(synthetic_dataset, tmp_path, *SETTLE))
    steps = [line.split(",")[0] for line in (root / "logs/eval.csv").read_text().splitlines()[1:]]
    assert steps == ["10"] * 3 + ["20"] * 3 + ["30"] * 3  # the joint phase's end is evaluated
    joint, settled = _checkpoint(root, 20), _checkpoint(root, 30)
    assert settled["step"] == 30
    # actor 0, the critics, their optimisers and the base's random key: as the joint phase left them
    assert _same(joint["trainer"], settled["trainer"])
    assert np.array_equal(joint["keys"]["base"], settled["keys"]["base"])
    assert not _same(joint["chain"], settled["chain"])  # the chain moved
    logs = _train_log(root)
    settle_logs = [r for r in logs if r["step"] > 20]
    assert [r["step"] for r in settle_logs] == [25, 30]
    for r in settle_logs:  # the chain's losses and Q gains alone, at the settle weight 0.5
        assert sorted({k.rsplit("_", 1)[0] for k in r if k != "step"}) == [
            "chain/energy",
            "chain/loss",
            "chain/q_gain",
            "chain/w2",
        ]
        for i in (1, 2):
            expected = r[f"chain/energy_{i}"] + 0.5 * r[f"chain/w2_{i}"]
            assert r[f"chain/loss_{i}"] == pytest.approx(expected, abs=1e-5)
    assert all("critic_loss" in r for r in logs if r["step"] <= 20)


@pytest.mark.parametrize(
    "schedule, from_predecessor", [("constant", False), ("cosine", False), ("cosine", True)]
)
def test_a_finished_run_settles_on_resume_as_in_one_go(
    synthetic_dataset, tmp_path, schedule, from_predecessor
):
    settle = [*SETTLE, "--settle_lr_schedule", schedule]
    settle += ["--settle_from_predecessor", str(from_predecessor).lower()]
    one_go = pogo_multi_jax.main(_argv(synthetic_dataset, tmp_path / "a", *settle))
    later = _argv(synthetic_dataset, tmp_path / "b")
    pogo_multi_jax.main(later)  # a finished run, then its settle phase
    resumed = pogo_multi_jax.main(later + settle + ["--resume"])
    a, b = _checkpoint(one_go, 30), _checkpoint(resumed, 30)
    for part in pogo_multi_jax.CHECKPOINT_PARTS:
        assert _same(a[part], b[part]), part
    for name in ("eval.csv", "train.jsonl"):
        assert (one_go / "logs" / name).read_text() == (resumed / "logs" / name).read_text()


def test_a_settle_phase_resumed_midway_continues_number_for_number(synthetic_dataset, tmp_path):
    """Lengthened from 10 to 20 settle updates on resume (a constant learning rate: the same
    steps): the copies of actor 0 are made once, at the settle phase's start, not again."""
    settle = ["--settle_w2_weights", "[0.5]", "--settle_from_predecessor", "true"]
    one_go = pogo_multi_jax.main(
        _argv(synthetic_dataset, tmp_path / "a", *settle, "--settle_steps", "20")
    )
    later = _argv(synthetic_dataset, tmp_path / "b", *settle)
    pogo_multi_jax.main(later + ["--settle_steps", "10"])
    resumed = pogo_multi_jax.main(later + ["--settle_steps", "20", "--resume"])
    a, b = _checkpoint(one_go, 40), _checkpoint(resumed, 40)
    for part in pogo_multi_jax.CHECKPOINT_PARTS:
        assert _same(a[part], b[part]), part
    assert (one_go / "logs/eval.csv").read_text() == (resumed / "logs/eval.csv").read_text()


def test_the_cosine_schedule_scales_each_settle_step_by_its_learning_rate(
    synthetic_dataset, tmp_path
):
    """Update k = 1 of a 4-update cosine settle phase moves the chain 0.5 (1 + cos(pi / 4))
    times as far as the same update at a constant learning rate (Adam's step is linear in it)."""
    moved = {}
    for schedule in ("constant", "cosine"):
        extra = ["--settle_steps", "4", "--settle_lr_schedule", schedule]
        run = pogo_multi_jax.setup(
            parse_config(_argv(synthetic_dataset, tmp_path / schedule, *extra))
        )
        carry = {**run.carry, "step": jnp.asarray(21, jnp.int32)}  # settle update k = 1 next
        after = run.run_settle_updates(carry, run.data, jnp.asarray(1, jnp.int32))
        before_p, after_p = (
            jax.tree_util.tree_leaves(c["chain"]["params"]) for c in (carry, after)
        )
        moved[schedule] = [np.asarray(b - a) for a, b in zip(before_p, after_p)]
    scale = 0.5 * (1 + math.cos(math.pi / 4))
    for constant, cosine in zip(moved["constant"], moved["cosine"]):
        assert np.abs(constant).max() > 0
        np.testing.assert_allclose(cosine, scale * constant, rtol=1e-4, atol=1e-9)


def test_settle_from_predecessor_is_the_settle_only_chain(synthetic_dataset, tmp_path):
    """Both start the settle phase from copies of actor 0 with fresh optimiser moments, so they
    end on the same numbers; the settle-only chain (`joint_chain: false`) does not train, and
    logs no chain losses, in the joint phase."""
    pred = pogo_multi_jax.main(
        _argv(synthetic_dataset, tmp_path / "a", *SETTLE, "--settle_from_predecessor", "true")
    )
    only = pogo_multi_jax.main(
        _argv(synthetic_dataset, tmp_path / "b", *SETTLE, "--joint_chain", "false")
    )
    a, b = _checkpoint(pred, 30), _checkpoint(only, 30)
    for part in pogo_multi_jax.CHECKPOINT_PARTS:
        assert _same(a[part], b[part]), part
    # at the joint phase's end: the settle-only chain is its two untrained, identical copies
    links = [_checkpoint(root, 20)["chain"] for root in (pred, only)]
    for name, value in links[1].items():
        if name.startswith("params"):
            assert np.array_equal(value[0], value[1]), name
    assert any(
        not np.array_equal(v[0], v[1]) for k, v in links[0].items() if k.startswith("params")
    )
    joint_rows = [r for r in _train_log(only) if r["step"] <= 20]
    assert joint_rows and all(not any(k.startswith("chain/") for k in r) for r in joint_rows)


def test_the_settle_start_copies_actor_0_with_fresh_optimiser_moments(synthetic_dataset, tmp_path):
    run = pogo_multi_jax.setup(
        parse_config(_argv(synthetic_dataset, tmp_path, *SETTLE, "--max_timesteps", "10"))
    )
    trained = run.run_updates(run.carry, run.data, jnp.asarray(10, jnp.int32))
    started = run.start_settle(trained)
    actor0 = jax.tree_util.tree_leaves(run.algo.actor_params(started["base"]))
    for part in ("params", "targets"):
        for stacked, leaf in zip(jax.tree_util.tree_leaves(started["chain"][part]), actor0):
            assert stacked.shape[0] == 2
            assert all(np.array_equal(stacked[i], leaf) for i in range(2))
    fresh = jax.vmap(run.chain.tx.init)(started["chain"]["params"])
    for a, b in zip(
        jax.tree_util.tree_leaves(started["chain"]["opt"]), jax.tree_util.tree_leaves(fresh)
    ):
        assert np.array_equal(a, b)
    assert _same(host_tree(started["base"]), host_tree(trained["base"]))  # actor 0 untouched
