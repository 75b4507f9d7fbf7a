"""The chain's Q gain over actor 0 (`chain/q_gain_i`): what each actor trades against W2, in the
critic's units, logged where the chain trains, and read without touching any random stream."""

import json

import torch

from algorithms.offline import pogo_multi_main
from algorithms.offline.config import parse_config


def _logs(root) -> list[dict]:
    return [json.loads(line) for line in (root / "logs/train.jsonl").read_text().splitlines()]


def test_q_gain_is_the_critics_q_of_each_actor_minus_actor_0s(tiny_run_args):
    # a Gaussian actor with dropout: its deterministic action draws dropout masks
    argv = tiny_run_args("iql", 3, actor_dropout=0.5, iql_deterministic="false")
    run = pogo_multi_main.setup(parse_config(argv))
    chain, trainer = run.chain, run.trainer
    states = run.buffer.sample(32)[0]  # [B, S]
    with torch.no_grad():
        for p in chain.actors[1].parameters():
            p.add_(0.3 * torch.randn_like(p))
    rng = torch.get_rng_state()
    gains = chain.q_gains(states)
    assert torch.equal(torch.get_rng_state(), rng)  # no random stream moved
    assert set(gains) == {"chain/q_gain_1", "chain/q_gain_2"}
    with torch.no_grad():
        for actor in chain.actors:
            actor.eval()  # the same masks are not reproducible: compare without dropout
        q = [
            trainer.q_target(states, a.mean_actions(states).clamp(-1.0, 1.0)).mean().item()
            for a in chain.actors
        ]
        eval_gains = chain.q_gains(states)
    assert abs(eval_gains["chain/q_gain_1"] - (q[1] - q[0])) < 1e-5
    assert eval_gains["chain/q_gain_1"] != 0.0  # actor 1 was moved off actor 0
    assert eval_gains["chain/q_gain_2"] == 0.0  # actor 2 is still actor 0's copy


def test_q_gain_is_logged_where_the_chain_trains_and_changes_no_number(tiny_run_args, tmp_path):
    argv = tiny_run_args("iql", 3, actor_dropout=0.5, iql_deterministic="false")
    argv += ["--settle_steps", "10"]
    root = pogo_multi_main.main(argv + ["--output_dir", str(tmp_path / "a")])
    logs = _logs(root)
    assert [r["step"] for r in logs] == [5, 10, 15, 20, 25, 30]
    assert all({"chain/q_gain_1", "chain/q_gain_2"} <= r.keys() for r in logs)
    # reading the gains at other updates (log_freq) trains the same numbers: the dropout masks
    # drawn for the gains come from a forked stream, not actor 0's
    other = pogo_multi_main.main(argv + ["--output_dir", str(tmp_path / "b"), "--log_freq", "3"])
    a, b = (
        torch.load(r / "checkpoints/checkpoint_0000000030.pt", weights_only=False)
        for r in (root, other)
    )
    for key in ("trainer", "chain"):
        for x, y in zip(
            torch.utils._pytree.tree_leaves(a[key]), torch.utils._pytree.tree_leaves(b[key])
        ):
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
    assert (root / "logs/eval.csv").read_text() == (other / "logs/eval.csv").read_text()
    # joint_chain: false: the chain trains in the settle phase only, so only there is it logged
    late = pogo_multi_main.main(
        argv + ["--output_dir", str(tmp_path / "c"), "--joint_chain", "false"]
    )
    for r in _logs(late):
        assert ("chain/q_gain_1" in r) == (r["step"] > 20)


def test_one_actor_logs_no_q_gain(tiny_run_args):
    root = pogo_multi_main.main(tiny_run_args("td3_bc", 1))
    assert all(not any(k.startswith("chain/") for k in r) for r in _logs(root))
