"""The settle phase: after max_timesteps only actors i >= 1 train, at the settle W2 weights."""

import json
import math

import pytest
import torch

from algorithms.offline import pogo_multi_main
from algorithms.offline.config import ConfigError, parse_config
from algorithms.offline.utils_pytorch import named_tensors


def _checkpoint(root, step: int) -> dict:
    return torch.load(root / "checkpoints" / f"checkpoint_{step:010d}.pt", weights_only=False)


def _tensors(tree) -> dict[str, torch.Tensor]:
    return dict(named_tensors(tree))


def test_settle_trains_only_the_chain_with_its_own_weights(tiny_run_args):
    argv = tiny_run_args("iql", 3, max_timesteps=20, keep_checkpoints=5)
    root = pogo_multi_main.main(argv + ["--settle_steps", "10", "--settle_w2_weights", "[0.5]"])
    steps = [line.split(",")[0] for line in (root / "logs/eval.csv").read_text().splitlines()[1:]]
    assert steps == ["10"] * 3 + ["20"] * 3 + ["30"] * 3  # the joint phase's end is evaluated
    joint, settled = _checkpoint(root, 20), _checkpoint(root, 30)
    assert settled["step"] == 30
    # actor 0, the critics and their optimisers: exactly as the joint phase left them
    before, after = _tensors(joint["trainer"]), _tensors(settled["trainer"])
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the chain moved, at IQL's initial learning rate (its cosine schedule ended at step 20)
    before, after = _tensors(joint["chain"]["actors"]), _tensors(settled["chain"]["actors"])
    assert any(not torch.equal(before[k], after[k]) for k in before)
    for opt in settled["chain"]["optimizers"]:
        assert [g["lr"] for g in opt["param_groups"]] == [3e-4]
    # losses logged in the settle phase use the settle weights: loss = energy + 0.5 * W2^2
    logs = [json.loads(line) for line in (root / "logs/train.jsonl").read_text().splitlines()]
    settle_logs = [r for r in logs if r["step"] > 20]
    assert [r["step"] for r in settle_logs] == [25, 30]
    assert all("q_loss" not in r for r in settle_logs)  # the trainer is not called
    for r in settle_logs:
        for i in (1, 2):
            expected = r[f"chain/energy_{i}"] + 0.5 * r[f"chain/w2_{i}"]
            assert abs(r[f"chain/loss_{i}"] - expected) < 1e-5


@pytest.mark.parametrize(
    "schedule, from_predecessor", [("constant", False), ("cosine", False), ("cosine", True)]
)
def test_a_finished_run_settles_on_resume_as_in_one_go(
    tiny_run_args, tmp_path, schedule, from_predecessor
):
    settle = ["--settle_steps", "10", "--settle_w2_weights", "[0.5]"]
    settle += ["--settle_lr_schedule", schedule]
    settle += ["--settle_from_predecessor", str(from_predecessor).lower()]
    argv = tiny_run_args("td3_bc", 3, max_timesteps=20)
    one_go = pogo_multi_main.main(argv + settle + ["--output_dir", str(tmp_path / "a")])
    later = argv + ["--output_dir", str(tmp_path / "b")]
    pogo_multi_main.main(later)  # a finished run, then its settle phase
    resumed = pogo_multi_main.main(later + settle + ["--resume"])
    a, b = (_checkpoint(root, 30) for root in (one_go, resumed))
    a, b = (_tensors({"trainer": c["trainer"], "chain": c["chain"]}) for c in (a, b))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (one_go / "logs/eval.csv").read_text() == (resumed / "logs/eval.csv").read_text()
    # the learning rate of the settle phase's last update (k = 9 of 10)
    lr = 3e-4 * (0.5 * (1 + math.cos(math.pi * 9 / 10)) if schedule == "cosine" else 1.0)
    for opt in _checkpoint(resumed, 30)["chain"]["optimizers"]:
        assert [g["lr"] for g in opt["param_groups"]] == [pytest.approx(lr, rel=1e-12)]


def test_the_joint_phase_checkpoint_is_kept_to_settle_again(tiny_run_args):
    """keep_checkpoints rotates every checkpoint but the one at max_timesteps; --resume_step
    redoes the settle phase from it, replacing what came after."""
    argv = tiny_run_args("iql", 3, max_timesteps=20, keep_checkpoints=1)
    settle = ["--settle_steps", "10", "--settle_w2_weights", "[0.5]"]
    root = pogo_multi_main.main(argv + settle)
    kept = sorted(p.name for p in (root / "checkpoints").glob("checkpoint_*.pt"))
    assert kept == ["checkpoint_0000000020.pt", "checkpoint_0000000030.pt"]
    first = _checkpoint(root, 30)
    eval_csv = (root / "logs/eval.csv").read_text()

    again = ["--resume", "--resume_step", "20"]
    pogo_multi_main.main(argv + settle + again)  # the same settle phase: the same numbers
    redone = _checkpoint(root, 30)
    for part in ("trainer", "chain"):
        a, b = _tensors(first[part]), _tensors(redone[part])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (root / "logs/eval.csv").read_text() == eval_csv

    pogo_multi_main.main(argv + ["--settle_steps", "10", "--settle_w2_weights", "[5]"] + again)
    other = _checkpoint(root, 30)
    a, b = _tensors(first["trainer"]), _tensors(other["trainer"])
    assert all(torch.equal(a[k], b[k]) for k in a)  # actor 0 and the critics: as at step 20
    a, b = _tensors(first["chain"]["actors"]), _tensors(other["chain"]["actors"])
    assert any(not torch.equal(a[k], b[k]) for k in a)  # another weight, another chain
    rows = (root / "logs/eval.csv").read_text().splitlines()
    assert rows[:7] == eval_csv.splitlines()[:7]  # header, steps 10 and 20 as they were
    assert [r.split(",")[0] for r in rows[7:]] == ["30"] * 3  # one settle phase, the new one


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--resume_step", "20"], "resume_step: needs --resume"),
        (["--resume", "--resume_step", "15"], "resume_step: no checkpoint of step 15 in "),
    ],
)
def test_resume_step_errors_name_the_key(tiny_run_args, extra, message):
    argv = tiny_run_args("td3_bc", 3, max_timesteps=20)
    pogo_multi_main.main(argv)
    with pytest.raises(SystemExit, match=message):
        pogo_multi_main.main(argv + extra)


@pytest.mark.parametrize("vectorize", [True, False])
def test_settle_from_predecessor_starts_every_chain_actor_as_actor_0(tiny_run_args, vectorize):
    argv = tiny_run_args("td3_bc", 3, max_timesteps=20, vectorize_chain=vectorize)
    argv += ["--settle_steps", "10", "--settle_from_predecessor", "true"]
    run = pogo_multi_main.setup(parse_config(argv))
    for _ in range(3):  # the chain and its optimisers away from actor 0
        batch = run.buffer.sample(32)
        run.trainer.train(batch)
        run.chain.update(batch[0], batch[1])
    actor0 = _tensors(run.chain.actors[0].state_dict())
    assert any(
        not torch.equal(_tensors(a.state_dict())[k], actor0[k])
        for a in run.chain.chain
        for k in actor0
    )
    run.chain.start_from_predecessors()
    for actor in run.chain.chain:
        mine = _tensors(actor.state_dict())
        assert all(torch.equal(mine[k], actor0[k]) for k in actor0)
    for target, module in zip(run.chain.targets, run.chain.trainables):
        a, b = _tensors(target.state_dict()), _tensors(module.state_dict())
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(not opt.state for opt in run.chain.optimizers)  # fresh Adam moments
    # the first update from there: W2 is 0 (to rounding: the stack's vmapped arithmetic)
    batch = run.buffer.sample(32)
    log = run.chain.update(batch[0], batch[1])
    assert abs(log["chain/w2_1"]) < 1e-12 and abs(log["chain/w2_2"]) < 1e-12


def test_settle_from_predecessor_needs_actor_0s_architecture(tiny_run_args):
    argv = tiny_run_args("td3_bc", 3, actor_configs='[{"type": "gaussian"}, {"type": "gaussian"}]')
    argv += ["--settle_steps", "10", "--settle_from_predecessor", "true"]
    with pytest.raises(ConfigError, match="settle_from_predecessor: the chain starts as copies"):
        parse_config(argv)


@pytest.mark.parametrize("algorithm", ["td3_bc", "iql"])
def test_a_settle_only_chain_is_the_base_algorithm_then_the_settle_phase(
    tiny_run_args, tmp_path, algorithm
):
    """joint_chain: false. The joint phase is the base algorithm alone (no chain update, the
    chain still its initial copy); the settle phase then starts from copies of actor 0 with
    fresh optimisers, exactly where a joint chain with settle_from_predecessor starts it: with
    noise-free links (l2, closed form) the two end with the same numbers."""
    settle = ["--settle_steps", "10", "--settle_w2_weights", "[0.5]"]
    argv = tiny_run_args(algorithm, 3, max_timesteps=20, keep_checkpoints=5, log_freq=1)
    lazy = pogo_multi_main.main(
        argv + settle + ["--joint_chain", "false", "--output_dir", str(tmp_path / "lazy")]
    )
    joint = pogo_multi_main.main(
        argv + settle + ["--settle_from_predecessor", "true", "--output_dir", str(tmp_path / "j")]
    )
    logs = [json.loads(line) for line in (lazy / "logs/train.jsonl").read_text().splitlines()]
    assert not any(k.startswith("chain/") for r in logs if r["step"] <= 20 for k in r)
    assert all("chain/loss_1" in r for r in logs if r["step"] > 20)
    start, end_of_joint = _checkpoint(lazy, 10), _checkpoint(lazy, 20)
    # the chain is untouched through the joint phase: its initial weights, no optimiser moments
    chain_at_20 = _tensors(end_of_joint["chain"]["actors"])
    chain_at_10 = _tensors(start["chain"]["actors"])
    assert all(torch.equal(chain_at_10[k], chain_at_20[k]) for k in chain_at_10)
    assert all(not opt["state"] for opt in end_of_joint["chain"]["optimizers"])
    # actor 0 and the critics: as with a trained chain (the chain never touches them)
    a, b = _tensors(end_of_joint["trainer"]), _tensors(_checkpoint(joint, 20)["trainer"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the settle phase: the same start, the same steps
    a, b = _tensors(_checkpoint(lazy, 30)["chain"]), _tensors(_checkpoint(joint, 30)["chain"])
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7, msg=k)
    rows = lambda root: (root / "logs/eval.csv").read_text().splitlines()  # noqa: E731
    assert [r for r in rows(lazy) if r.startswith("30,")] == [
        r for r in rows(joint) if r.startswith("30,")
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "joint_chain: false trains the chain in the settle phase only; set settle_steps > 0"),
        (
            [
                "--settle_steps",
                "5",
                "--actor_configs",
                "[{type: deterministic}, {type: deterministic}]",
            ],
            "joint_chain: false starts the chain as copies of actor 0, so it takes actor 0's "
            "architecture; drop actor_configs",
        ),
    ],
)
def test_a_settle_only_chain_needs_a_settle_phase_and_actor_0s_architecture(extra, message):
    with pytest.raises(ConfigError) as err:
        parse_config(["--algorithm", "iql", "--num_actors", "3", "--joint_chain", "false", *extra])
    assert str(err.value) == message
