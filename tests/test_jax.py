"""The JAX chain (ReBRAC, FQL) end to end on tiny synthetic data; JAX W2^2 against w2.py."""

import csv
import json
import math
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from algorithms.datasets.d4rl import qlearning_dataset
from algorithms.offline import fql, pogo_multi_jax, pogo_multi_main, rebrac, results, w2
from algorithms.offline import utils_jax as uj
from algorithms.offline.config import parse_config
from algorithms.offline.interface import Trainer
from algorithms.offline.pogo_policies_jax import DeterministicActor, OneStepPolicy
from algorithms.offline.run_io import EVAL_COLUMNS
from tests.conftest import tiny_argv, write_synthetic_d4rl

ROOT = Path(__file__).resolve().parents[1]
#: tiny networks: a run compiles and trains in seconds
TINY = {
    "rebrac": ["--hidden_dim", "16"],
    "fql": ["--actor_hidden_dims", "[16, 16]", "--value_hidden_dims", "[16, 16]"],
}


def _argv(dataset: Path, out: Path, algorithm: str, num_actors: int, *extra: str) -> list[str]:
    return tiny_argv(dataset, out, algorithm, num_actors, *TINY.get(algorithm, []), *extra)


# the runs several tests read: (algorithm, num_actors, extra CLI arguments)
RUNS = {
    "rebrac-1": ("rebrac", 1, ()),
    "rebrac-3": ("rebrac", 3, ()),
    "fql-1": ("fql", 1, ()),
    "fql-3": ("fql", 3, ()),
    "fql-3-sinkhorn": ("fql", 3, ("--w2_method", "sinkhorn")),
}


@pytest.fixture(scope="module")
def runs(synthetic_dataset, tmp_path_factory):
    """Each run of RUNS trained once (20 updates, evaluations at 10 and 20), in its own dir."""
    done = {}
    for name, (algorithm, n, extra) in RUNS.items():
        out = tmp_path_factory.mktemp(name)
        run = pogo_multi_jax.setup(
            parse_config(_argv(synthetic_dataset, out, algorithm, n, *extra))
        )
        pogo_multi_jax.train(run)
        done[name] = run
    return done


def _leaves(tree) -> dict[str, np.ndarray]:
    return {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _eval_rows(run) -> list[dict[str, str]]:
    with (run.root / "logs" / "eval.csv").open() as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------
# Runs


@pytest.mark.parametrize("name", ["rebrac-1", "rebrac-3", "fql-1", "fql-3"])
def test_smoke_run_writes_outputs(runs, name):
    run = runs[name]
    algorithm, num_actors, _ = RUNS[name]
    assert run.root.parts[-4:] == (algorithm, "hopper", "medium-v2", "seed_0")

    rows = _eval_rows(run)
    assert tuple(rows[0]) == EVAL_COLUMNS
    assert [(int(r["step"]), int(r["actor"])) for r in rows] == [
        (step, actor) for step in (10, 20) for actor in range(num_actors)
    ]
    assert all(math.isfinite(float(v)) for r in rows for v in r.values())
    assert all(float(r["return_mean"]) != 0.0 for r in rows)  # episodes were played

    lines = [
        json.loads(line) for line in (run.root / "logs" / "train.jsonl").read_text().splitlines()
    ]
    assert [line["step"] for line in lines] == [5, 10, 15, 20]
    assert all(math.isfinite(v) for line in lines for v in line.values())
    assert {"critic_loss", "actor_loss"} <= set(lines[-1])
    chain_keys = {k for line in lines for k in line if k.startswith("chain/")}
    names = ("energy", "w2", "loss", "q_gain")
    expected = {f"chain/{n}_{i}" for n in names for i in range(1, num_actors)}
    assert chain_keys == expected  # every line: the chain steps on every logged update
    for line in lines:  # the logged chain loss is its energy plus w * W2^2 (w2_weights: 10)
        for i in range(1, num_actors):
            loss = line[f"chain/energy_{i}"] + 10.0 * line[f"chain/w2_{i}"]
            assert line[f"chain/loss_{i}"] == pytest.approx(loss, rel=1e-5, abs=1e-6)
            assert line[f"chain/w2_{i}"] > 0.0

    # a checkpoint at each evaluation (tests/test_jax_resume.py resumes from them)
    assert sorted(p.name for p in (run.root / "checkpoints").iterdir()) == [
        "checkpoint_0000000010.pt",
        "checkpoint_0000000020.pt",
        "latest",
    ]
    again = parse_config(["--config_path", str(run.root / "logs" / "config.yaml")])
    assert (again.algorithm, again.num_actors) == (algorithm, num_actors)
    assert again.energy_normalize_q is (algorithm == "rebrac")  # resolved, as the base loss


def test_results_table_reads_jax_runs(runs, capsys):
    results.main([str(runs["fql-3"].root.parents[3])])
    table = capsys.readouterr().out
    assert "| fql | hopper-medium-v2 | 1 |" in table and "actor 2 best" in table


@pytest.mark.parametrize(
    "single,chain", [("rebrac-1", "rebrac-3"), ("fql-1", "fql-3"), ("fql-1", "fql-3-sinkhorn")]
)
def test_chain_leaves_actor0_and_critics_bit_identical(runs, single, chain):
    """Actor 0, critics, targets, the BC flow and optimiser states do not depend on the chain."""
    a, b = _leaves(runs[single].carry["base"]), _leaves(runs[chain].carry["base"])
    assert a.keys() == b.keys() and len(a) > 10
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert int(runs[single].carry["step"]) == int(runs[chain].carry["step"]) == 20

    def actor0_rows(run):
        return [row for row in _eval_rows(run) if row["actor"] == "0"]

    assert actor0_rows(runs[single]) == actor0_rows(runs[chain])

    # ... while the chain actors trained: away from actor 0 and from their Polyak targets
    links = runs[chain].carry["chain"]
    actor0 = _leaves(runs[chain].algo.actor_params(runs[chain].carry["base"]))
    for i in (1, 2):
        actor = _leaves(runs[chain].chain.actor(links, i))
        assert any(not np.array_equal(actor[k], actor0[k]) for k in actor0)
    params, targets = _leaves(links["params"]), _leaves(links["targets"])
    assert any(not np.array_equal(params[k], targets[k]) for k in params)


def test_actor_and_chain_step_every_policy_freq_updates(runs):
    """ReBRAC: actor 0 and the chain step on updates 1, 3, 5, ...; the critic on every one."""
    run = runs["rebrac-3"]  # after 20 updates: 21 and 23 step the actors, 22 does not
    start = run.carry
    one = run.run_updates(start, run.data, jnp.asarray(1, jnp.int32))
    two = run.run_updates(one, run.data, jnp.asarray(1, jnp.int32))
    three = run.run_updates(two, run.data, jnp.asarray(1, jnp.int32))

    def same(x, y, key):
        a, b = _leaves(x[key]), _leaves(y[key])
        return all(np.array_equal(a[k], b[k]) for k in a)

    def base(carry, key):
        return {key: carry["base"][key]}

    assert not same(base(start, "critic"), base(one, "critic"), "critic")
    assert not same(base(one, "critic"), base(two, "critic"), "critic")
    assert not same(base(start, "actor"), base(one, "actor"), "actor")
    assert same(base(one, "actor"), base(two, "actor"), "actor")  # update 2: no actor step
    assert not same(base(two, "actor"), base(three, "actor"), "actor")
    assert not same(start, one, "chain") and same(one, two, "chain")
    assert not same(two, three, "chain")
    # the log keeps the actor's last loss on updates where it does not step
    assert float(two["log"]["actor_loss"]) == float(one["log"]["actor_loss"])
    assert float(two["log"]["critic_loss"]) != float(one["log"]["critic_loss"])


# --------------------------------------------------------------------------------------------
# Energies and data


def _batch_states(run, n: int = 16) -> jax.Array:
    return jnp.asarray(np.random.default_rng(0).normal(size=(n, run.algo.state_dim)), jnp.float32)


def test_rebrac_energy_is_normalised_min_q(runs):
    run = runs["rebrac-3"]
    algo, base = run.algo, run.carry["base"]
    states = _batch_states(run)  # [B, S]
    params = run.chain.actor(run.carry["chain"], 1)
    energy = algo.compute_energy_function(base, params, states, jax.random.PRNGKey(0))
    actions = algo.actor.apply(params, states)  # [B, A]
    q = np.asarray(algo.critic.apply(base["critic"], states, actions)).min(0)  # [B]
    np.testing.assert_allclose(np.asarray(energy), -q / np.abs(q).mean(), rtol=1e-5)


@pytest.mark.parametrize("name", ["rebrac-3", "fql-3"])
def test_q_gain_is_the_critics_q_at_each_mean_action_minus_actor_0s(runs, name):
    run = runs[name]
    algo, base, links = run.algo, run.carry["base"], run.carry["chain"]
    states = _batch_states(run)  # [B, S]
    gains = run.chain.q_gains(base, links, states)
    q = []
    for params in [algo.actor_params(base), *(run.chain.actor(links, i) for i in (1, 2))]:
        actions = np.clip(
            np.asarray(algo.actor.apply(params, states, method="mean_actions")), -1, 1
        )
        critics = np.asarray(algo.critic.apply(base["critic"], states, jnp.asarray(actions)))
        q.append((critics.min(0) if name == "rebrac-3" else critics.mean(0)).mean())
    for i in (1, 2):
        assert float(gains[f"chain/q_gain_{i}"]) == pytest.approx(q[i] - q[0], rel=1e-4, abs=1e-5)
    assert float(gains["chain/q_gain_1"]) != 0.0  # 20 updates moved actor 1 off actor 0


@pytest.mark.parametrize("normalize", [True, False])
def test_fql_energy_is_mean_q_at_the_clipped_one_step_action(runs, normalize):
    run = runs["fql-3"]
    algo, base = run.algo, run.carry["base"]
    algo.config.energy_normalize_q = normalize
    try:
        states = _batch_states(run)
        key = jax.random.PRNGKey(3)
        energy = algo.compute_energy_function(base, algo.actor_params(base), states, key)
        energy = np.asarray(energy)
    finally:
        algo.config.energy_normalize_q = True
    noise = jax.random.normal(key, (states.shape[0], algo.action_dim))  # [B, A]
    actions = np.clip(np.asarray(algo.actor.apply(base["actor"], states, noise)), -1, 1)
    q = np.asarray(algo.critic.apply(base["critic"], states, jnp.asarray(actions))).mean(0)
    expected = -q / np.abs(q).mean() if normalize else -q
    np.testing.assert_allclose(energy, expected, rtol=1e-5)


def test_next_actions_follow_d4rl_semantics(synthetic_dataset):
    """The next action is the raw file's action one row on, for every kept transition whose next
    row is kept too (ReBRAC's buffer); the rest are counted as missing."""
    with h5py.File(synthetic_dataset, "r") as f:
        raw = {k: f[k][()] for k in f}
    dataset = qlearning_dataset(dict(raw))
    nxt, missing = uj.next_actions(dataset)
    n = len(raw["rewards"])
    idx = np.flatnonzero(~raw["timeouts"][: n - 1])  # the kept rows, as qlearning_dataset
    known = np.isin(idx + 1, idx)  # [M] the next row is a kept transition
    np.testing.assert_array_equal(nxt[known], raw["actions"][idx[known] + 1])
    np.testing.assert_array_equal(nxt[~known], dataset["actions"][~known])
    assert missing == int((~known).sum()) == 6  # 5 rows before a timeout, and the last one


# --------------------------------------------------------------------------------------------
# W2^2: the JAX estimators on w2.py's scale


def _arrays(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, size=s).astype(np.float32) for s in shapes]


def test_closed_form_matches_pytorch():
    m1, s1, m2, s2 = _arrays((5, 3), (5, 3), (5, 3), (5, 3))
    s1, s2 = np.abs(s1) + 0.1, np.abs(s2) + 0.1
    expected = w2.gaussian_w2_squared(*map(torch.from_numpy, (m1, s1, m2, s2))).numpy()
    got = np.asarray(uj.gaussian_w2_squared(m1, s1, m2, s2))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_coupled_samples_match_pytorch():
    """The shared-noise and l2 estimators (E over paired samples of ||x - y||^2)."""
    x, y = _arrays((4, 8, 3), (4, 8, 3))
    expected = w2.coupled_w2_squared(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(np.asarray(uj.coupled_w2_squared(x, y)), expected, rtol=1e-6)


@pytest.mark.parametrize("blur,K,shift", [(0.05, 16, 0.3), (0.2, 8, 1.0)])
def test_sinkhorn_matches_geomloss_value_and_gradient(blur, K, shift):
    """The same numbers as w2.py's GeomLoss estimate, and the same gradient (one-sided costs)."""
    x, y = _arrays((3, K, 3), (3, K, 3), seed=K)
    y = 0.5 * y + shift
    xt = torch.from_numpy(x).requires_grad_(True)
    expected = w2.sinkhorn_w2_squared(xt, torch.from_numpy(y), blur)  # [3]
    expected.sum().backward()

    @jax.jit
    def value_and_grad(a):
        values, vjp = jax.vjp(lambda u: uj.sinkhorn_w2_squared(u, y, blur), a)
        return values, vjp(jnp.ones_like(values))[0]

    values, grad = value_and_grad(x)
    assert values.shape == (3,)
    np.testing.assert_allclose(np.asarray(values), expected.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad), xt.grad.numpy(), rtol=1e-3, atol=1e-5)


def test_sinkhorn_of_identical_clouds_is_zero():
    (x,) = _arrays((2, 16, 3))
    np.testing.assert_allclose(np.asarray(uj.sinkhorn_w2_squared(x, x, 0.05)), 0.0, atol=1e-5)


def test_w2_on_policies_and_gradients_reach_only_the_actor():
    states = jnp.asarray(_arrays((6, 4))[0])  # [B, S]
    det, policy = DeterministicActor(2, (8, 8)), OneStepPolicy(2, (8, 8))

    @jax.jit  # one compilation instead of op by op
    def compute(key):
        d1, d2 = det.init(jax.random.key(1), states), det.init(jax.random.key(2), states)
        l2 = uj.w2_squared(det, d1, d2, states, "l2", key)
        l2_hand = ((det.apply(d1, states) - det.apply(d2, states)) ** 2).sum(-1)

        zeros = jnp.zeros((6, 2))
        p, q = (
            policy.init(jax.random.key(1), states, zeros),
            policy.init(jax.random.key(2), states, zeros),
        )
        coupled = uj.w2_squared(policy, p, q, states, "shared_noise", key, K=4)
        noise = jax.random.normal(key, (6, 4, 2))  # [B, K, A], the draw w2_squared makes
        tiled = jnp.broadcast_to(states[:, None], (6, 4, 4))
        hand = uj.coupled_w2_squared(policy.apply(p, tiled, noise), policy.apply(q, tiled, noise))

        def total(a, b):
            return uj.w2_squared(policy, a, b, states, "shared_noise", key, K=4).mean()

        return l2, l2_hand, coupled, hand, jax.grad(total, argnums=(0, 1))(p, q)

    l2, l2_hand, coupled, hand, (grad_a, grad_b) = compute(jax.random.key(0))
    np.testing.assert_allclose(np.asarray(l2), np.asarray(l2_hand), rtol=1e-6)
    assert float(l2.min()) > 0
    np.testing.assert_allclose(np.asarray(coupled), np.asarray(hand), rtol=1e-6)
    assert float(coupled.min()) > 0
    assert any(np.abs(np.asarray(g)).max() > 0 for g in jax.tree_util.tree_leaves(grad_a))
    assert all(np.abs(np.asarray(g)).max() == 0 for g in jax.tree_util.tree_leaves(grad_b))


# --------------------------------------------------------------------------------------------
# Configuration


@pytest.mark.parametrize(
    "algorithm,extra,match",
    [
        ("rebrac", ["--w2_method", "sinkhorn"], r"w2_method: sinkhorn needs two stochastic actors"),
        ("rebrac", ["--w2_method", "closed_form"], r"w2_method: closed_form needs two Gaussian"),
        ("fql", ["--w2_method", "closed_form"], r"w2_method: closed_form needs two Gaussian"),
        (
            "fql",
            ["--actor_configs", "[{type: gaussian}, {type: gaussian}]"],
            r"actor_configs: the JAX chain",
        ),
        ("fql", ["--resume"], r"resume: .*/res/fql/hopper/medium-v2/seed_0 holds no run to resume"),
        (
            "rebrac",
            ["--settle_from_predecessor", "true"],
            r"settle_from_predecessor: needs a settle phase",
        ),
        ("fql", ["--q_agg", "max"], r"q_agg: must be one of \('mean', 'min'\)"),
        ("fql", ["--flow_steps", "0"], r"flow_steps: must be >= 1"),
        ("rebrac", ["--policy_noise", "-1"], r"policy_noise: must be >= 0"),
        (
            "rebrac",
            ["--energy_function_type", "advantage"],
            r"energy_function_type: rebrac has no V",
        ),
        ("rebrac", ["--device", "tpu"], r"device: must be auto, cpu, cuda"),
        ("rebrac", ["--critic_bc_coef", "abc"], r"critic_bc_coef: cannot read 'abc' as"),
        (
            "iql",
            [],
            r"algorithm: iql is a PyTorch algorithm; run python -m algorithms.offline.pogo_multi_main",
        ),
    ],
)
def test_bad_config_fails_in_one_line_before_writing(
    synthetic_dataset, tmp_path, algorithm, extra, match
):
    argv = _argv(synthetic_dataset, tmp_path / "res", algorithm, 3, *extra)
    with pytest.raises(SystemExit, match=match) as err:
        pogo_multi_jax.main(argv)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("log_freq", [1, 5])
def test_non_finite_loss_stops_the_jax_run_naming_step_and_loss(tmp_path, log_freq):
    """Rewards of 3e38 are finite, but the critic's squared TD error overflows at update 1 and
    the actor's normalised Q (-Q / mean|Q|) turns NaN: the JAX main stops there, in one line
    naming the step, the base algorithm and the first non-finite loss (the log's keys in
    order), and logs no row of that update. With a stretch of 5 updates (log_freq 5) the
    device-side guard still names update 1, not the stretch's end. One compilation each:
    ReBRAC with one actor."""
    path = tmp_path / "huge_rewards.hdf5"
    write_synthetic_d4rl(path)
    with h5py.File(path, "r+") as f:
        f["rewards"][...] = np.float32(3e38)
    argv = _argv(path, tmp_path / "res", "rebrac", 1, "--log_freq", str(log_freq))
    with pytest.raises(SystemExit) as err:
        pogo_multi_jax.main(argv)
    assert str(err.value.code) == (
        "error: step 1: actor 0 / critics: loss actor_loss is nan; "
        "no checkpoint was written before it"
    )
    logs = tmp_path / "res" / "rebrac" / "hopper" / "medium-v2" / "seed_0" / "logs"
    assert not (logs / "train.jsonl").exists() or (logs / "train.jsonl").read_text() == ""


def test_pytorch_main_points_jax_algorithms_to_the_jax_main(synthetic_dataset, tmp_path):
    argv = _argv(synthetic_dataset, tmp_path / "res", "rebrac", 3)
    with pytest.raises(
        SystemExit,
        match=r"rebrac is a JAX algorithm; run python -m algorithms.offline.pogo_multi_jax",
    ):
        pogo_multi_main.main(argv)
    assert not (tmp_path / "res").exists()


@pytest.mark.parametrize("module", [rebrac, fql], ids=["rebrac", "fql"])
def test_jax_algorithms_present_the_pytorch_names(module):
    """One name per idea: `build` (no `make`), and the trainer's `train`,
    `compute_energy_function`, `make_actor_optimizer`, `policy_freq`, `actor`."""
    name = module.__name__.rsplit(".", 1)[-1]
    config = parse_config(["--algorithm", name, *TINY[name]])
    assert not hasattr(module, "make")
    algo = module.build(config, 3, 2, 1.0)
    assert isinstance(algo, uj.AlgorithmInterface) and algo.device is None
    trainer_names = {"train", "compute_energy_function", "make_actor_optimizer"}
    trainer_names |= {"policy_freq", "actor"}
    assert trainer_names <= set(dir(Trainer)) | set(Trainer.__annotations__)
    for attribute in trainer_names:
        assert hasattr(algo, attribute), attribute
    assert not hasattr(algo, "energy") and not hasattr(algo, "update")
    assert module.build(config, 3, 2, 1.0, jax.devices("cpu")[0]).device.platform == "cpu"
    before = dict(vars(config))
    module.build(config, 3, 2, 1.0)
    assert vars(config) == before  # build writes nothing into the config


def test_shipped_configs_carry_the_references_values():
    def config(name: str):
        return parse_config(["--config_path", str(ROOT / "configs/offline/pogo_multi" / name)])

    expected = {  # (actor_bc_coef, critic_bc_coef): ReBRAC's reference configs
        "halfcheetah/medium_v2_rebrac.yaml": (0.001, 0.01),
        "hopper/medium_replay_v2_rebrac.yaml": (0.05, 0.5),
        "walker2d/medium_v2_rebrac.yaml": (0.05, 0.1),
        "walker2d/medium_expert_v2_rebrac.yaml": (0.01, 0.01),
    }
    for name, coefs in expected.items():
        c = config(name)
        assert (c.actor_bc_coef, c.critic_bc_coef) == coefs, name
        assert (c.batch_size, c.actor_lr, c.critic_lr, c.normalize) == (1024, 1e-3, 1e-3, False)
        assert (c.policy_noise, c.noise_clip, c.policy_freq, c.discount, c.tau) == (
            0.2,
            0.5,
            2,
            0.99,
            5e-3,
        )
    fql = config("hopper/medium_expert_v2_fql.yaml")
    assert (fql.flow_steps, fql.w2_method, fql.q_agg, fql.batch_size) == (
        10,
        "shared_noise",
        "mean",
        256,
    )
    assert fql.actor_hidden_dims == fql.value_hidden_dims == [512, 512, 512, 512]
