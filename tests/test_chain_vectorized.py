"""The vectorised chain (stacked actors, vmap) against the plain per-actor loop."""

import json

import numpy as np
import pytest
import torch

from algorithms.networks.actors import DeterministicMLP, GaussianMLP
from algorithms.networks.ensemble import StackedModules, same_architecture
from algorithms.offline import pogo_multi_main
from algorithms.offline.config import parse_config
from algorithms.offline.utils_pytorch import named_tensors


def _run(argv, steps: int):
    """A trained run, and its chain actors' weights as they were before the first update."""
    run = pogo_multi_main.setup(parse_config([*argv, "--max_timesteps", str(steps)]))
    initial = [{k: v.clone() for k, v in a.state_dict().items()} for a in run.chain.chain]
    pogo_multi_main.train(run)
    return run, initial


def _moved(actor, initial: dict) -> list[str]:
    """The names of the actor's tensors that differ from `initial` (its weights at the start)."""
    return [
        name for name, value in actor.state_dict().items() if not torch.equal(value, initial[name])
    ]


@pytest.mark.parametrize("algorithm", ["iql", "awac", "td3_bc"])
def test_vectorized_chain_equals_the_loop(algorithm, tiny_run_args, tmp_path):
    # Gaussian chains (closed-form W2, mean-action energies) and a deterministic one (L2): no
    # noise, so both layouts must give the same numbers up to float rounding. (Over many steps
    # Adam, which divides by the gradient's size, lets rounding grow: after 12 steps a few
    # weights of AWAC's normalised-energy chain differ by ~2e-6, most by ~1e-7.)
    common = dict(num_actors=4, w2_weights="[1.0, 5.0, 20.0]", eval_freq=12, log_freq=1)
    vec, vec_start = _run(tiny_run_args(algorithm, output_dir=tmp_path / "v", **common), 12)
    loop, loop_start = _run(
        tiny_run_args(algorithm, output_dir=tmp_path / "l", vectorize_chain=False, **common), 12
    )
    assert vec.chain.vectorized and not loop.chain.vectorized
    for i in range(1, 4):
        a, b = vec.chain.actors[i].state_dict(), loop.chain.actors[i].state_dict()
        assert a.keys() == b.keys()
        for name in a:
            torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=5e-6, msg=name)
        # and the chain trained: every tensor of every chain actor left its initial value
        # (the same start in both layouts: copies of actor 0's initial weights)
        for name in a:
            assert torch.equal(vec_start[i - 1][name], loop_start[i - 1][name]), name
        assert _moved(vec.chain.actors[i], vec_start[i - 1]) == list(a), i
        assert _moved(loop.chain.actors[i], loop_start[i - 1]) == list(b), i
    # actor 0 and the critics do not see the layout at all: every tensor of the trainer
    # (networks, targets, optimiser moments), bit for bit
    tensors_vec = dict(named_tensors(vec.trainer.state_dict()))
    tensors_loop = dict(named_tensors(loop.trainer.state_dict()))
    assert tensors_vec.keys() == tensors_loop.keys()
    assert any(k.startswith(".actor.") for k in tensors_vec)  # actor 0's weights
    assert any(k.startswith(".actor_optimizer.state.") for k in tensors_vec)  # its Adam moments
    assert any(k.startswith((".qf.", ".critic_1.")) for k in tensors_vec)  # a critic
    for name, x in tensors_vec.items():
        assert torch.equal(x, tensors_loop[name]), name
    assert vec.trainer.total_it == loop.trainer.total_it == 12

    def chain_logs(run):
        lines = (run.root / "logs" / "train.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(x).items() if k.startswith("chain/")} for x in lines]

    for v_line, l_line in zip(chain_logs(vec), chain_logs(loop)):
        assert v_line.keys() == l_line.keys()
        for key in v_line:
            assert v_line[key] == pytest.approx(l_line[key], rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize(
    "algorithm, extra",
    [
        ("sac_n", {}),  # tanh-Gaussian chain: shared-noise W2, sampled energy with log pi
        ("iql", {"w2_method": "sinkhorn", "sinkhorn_K": 4}),  # Sinkhorn outside vmap
    ],
)
def test_vectorized_noisy_terms_match_the_loop_on_average(algorithm, extra, tiny_run_args):
    # Noise is drawn in another order by the two layouts, so compare expectations: the mean of
    # each actor's energy and W2^2 over many draws, at the same parameters.
    run = pogo_multi_main.setup(parse_config(tiny_run_args(algorithm, 3, **extra)))
    chain = run.chain
    assert chain.vectorized
    with torch.no_grad():  # spread the actors apart so the W2 terms are not ~0
        for actor in chain.chain:
            for p in actor.parameters():
                p.add_(0.05 * torch.randn_like(p))
    states, actions = run.buffer.sample(64)[:2]
    draws = 200
    vec = torch.stack([torch.stack(chain.terms_vectorized(states, actions)) for _ in range(draws)])
    loop = torch.stack([torch.stack(chain.terms(states, actions)) for _ in range(draws)])
    vec, loop = vec.detach(), loop.detach()  # [draws, 2 (energy, w2), E]
    assert (loop[:, 1] > 1e-4).all()
    spread = (vec.std(0) + loop.std(0)) / draws**0.5
    assert ((vec.mean(0) - loop.mean(0)).abs() <= 5 * spread + 1e-4).all()


def test_stacked_members_are_views_of_the_ensemble():
    members = [GaussianMLP(5, 2) for _ in range(3)]
    ensemble = StackedModules(members)
    weight = ensemble.stacked()["net.0.weight"]  # [3, 256, 5]
    torch.testing.assert_close(weight[1], members[1].net[0].weight)
    with torch.no_grad():
        weight[2].add_(1.0)  # an optimiser step on the stacked tensor shows in member 2
    assert torch.equal(members[2].net[0].weight, weight[2])
    members[0].load_state_dict(members[1].state_dict())  # and loading writes through
    assert torch.equal(ensemble.stacked()["log_std"][0], ensemble.stacked()["log_std"][1])
    assert not any(p.requires_grad for p in members[0].parameters())


def test_mixed_chain_types_fall_back_to_the_loop(tiny_run_args):
    argv = tiny_run_args(
        "td3_bc",
        3,
        actor_configs='[{"type": "deterministic"}, {"type": "gaussian"}]',
    )
    run = pogo_multi_main.setup(parse_config(argv))
    assert not run.chain.vectorized
    assert not same_architecture([DeterministicMLP(5, 2), GaussianMLP(5, 2)])
    pogo_multi_main.train(run)  # and it trains


def test_compiled_updates_give_the_eager_losses(tiny_run_args, tmp_path):
    # aot_eager traces the updates as torch.compile does (Dynamo + AOTAutograd) without
    # generating kernels, so the test takes seconds; `compile_backend: inductor` is the default.
    def losses(**extra):
        argv = tiny_run_args("iql", 3, max_timesteps=4, log_freq=1, eval_freq=4, **extra)
        root = pogo_multi_main.main(argv)
        lines = (root / "logs" / "train.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    eager = losses(output_dir=tmp_path / "eager")
    compiled = losses(output_dir=tmp_path / "compiled", compile=True, compile_backend="aot_eager")
    assert len(eager) == len(compiled) == 4
    for e, c in zip(eager, compiled):
        assert e.keys() == c.keys()
        for key in e:
            assert c[key] == pytest.approx(e[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("vectorize", [False, True])
def test_each_actor_network_runs_once_per_chain_update(vectorize, tiny_run_args):
    """A link reads its actor's network for energy and W2 alike, and its predecessor's output
    from the previous link: per update, actor 0's network runs once (no grad) and the chain's
    members once each (one batched forward when vectorised)."""
    argv = tiny_run_args("iql", 4, vectorize_chain=vectorize)
    run = pogo_multi_main.setup(parse_config(argv))
    chain = run.chain
    nets = [a.net for a in chain.actors]
    if vectorize:  # the members run through the ensemble's functional modules
        links = chain.stacked_links
        nets += [links.outputs.actor.net, links.pair.actor.net, links.pair.previous.net]
    calls = [0] * len(nets)
    for k, net in enumerate(nets):
        net.register_forward_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
    states, actions = run.buffer.sample(8)[:2]
    chain.update(states, actions)
    # vectorised: members' own modules idle; the features module runs once for all of them
    assert calls == ([1, 0, 0, 0, 1, 0, 0] if vectorize else [1, 1, 1, 1])


@pytest.mark.parametrize("vectorize", [True, False])
def test_chain_with_actor_dropout_trains_in_both_layouts(vectorize, tiny_run_args, tmp_path):
    """Dropout draws a mask per member under vmap (and one mask per link in either layout)."""
    argv = tiny_run_args(
        "iql", 3, vectorize_chain=vectorize, actor_dropout=0.1, output_dir=tmp_path, log_freq=1
    )
    run, start = _run(argv, 4)
    assert run.chain.vectorized == vectorize
    last = json.loads((run.root / "logs" / "train.jsonl").read_text().splitlines()[-1])
    assert all(torch.isfinite(torch.tensor(last[f"chain/loss_{i}"])) for i in (1, 2))
    for i in (1, 2):  # each chain actor trained: every tensor left its initial value
        assert _moved(run.chain.actors[i], start[i - 1]) == list(start[i - 1]), i


@pytest.mark.parametrize(
    "setting",
    [{"tanh_mean": False}, {"log_std_max": 0.5}, {"log_std_min": -1.0}, {"dropout": 0.1}],
)
def test_same_architecture_compares_every_setting_of_the_forward(setting):
    torch.manual_seed(0)
    assert same_architecture([GaussianMLP(5, 2), GaussianMLP(5, 2)])
    assert not same_architecture([GaussianMLP(5, 2), GaussianMLP(5, 2, **setting)])
    assert not same_architecture([GaussianMLP(5, 2), GaussianMLP(5, 2, max_action=2.0)])


def test_a_chain_whose_settings_differ_from_actor_0_trains_with_its_own(tiny_run_args):
    """IQL's actor 0 squashes its mean (tanh_mean); chain actors that do not have the same
    parameters. The chain must run as the loop, so link 1's W2^2 is the closed form between the
    actors as they are: the unsquashed mean of actor 1 against actor 0's squashed one."""
    argv = tiny_run_args(
        "iql", 3, actor_configs='[{"type": "gaussian", "tanh_mean": false}, {"type": "gaussian"}]'
    )
    run = pogo_multi_main.setup(parse_config(argv))
    assert not run.chain.vectorized
    states, actions = run.buffer.sample(32)[:2]
    actor0, actor1 = run.chain.actors[:2]
    with torch.no_grad():
        mean1, std1 = actor1.get_mean_std(states)
        mean0, std0 = actor0.get_mean_std(states)
        expected = (((mean1 - mean0) ** 2).sum(-1) + ((std1 - std0) ** 2).sum(-1)).mean()
        squashed = ((torch.tanh(mean1) - mean0) ** 2).sum(-1) + ((std1 - std0) ** 2).sum(-1)
    assert not torch.allclose(squashed.mean(), expected)  # the settings change the number
    log = run.chain.update(states, actions)
    assert log["chain/w2_1"] == pytest.approx(expected.item(), rel=1e-6)


# pre-tanh output-layer biases (one row per actor 0..3, one column per Hopper action) and
# Gaussian log-stds: with the output layer's weights at zero every actor acts the same at
# every state, so W2^2 between any two of them is known in closed form
BIASES = np.array(
    [[0.0, 0.2, -0.1], [0.5, -0.3, 0.0], [-0.4, 0.1, 0.6], [0.9, 0.9, -0.8]], dtype=np.float32
)
LOG_STDS = np.array(
    [[0.0, -1.0, 0.5], [-0.5, -0.2, 0.0], [0.3, -1.5, -0.4], [-1.0, 0.4, 0.2]], dtype=np.float32
)


@pytest.mark.parametrize("vectorize", [True, False])
@pytest.mark.parametrize("algorithm, method", [("iql", "closed_form"), ("td3_bc", "l2")])
def test_link_i_measures_w2_to_actor_i_minus_1_with_the_ith_weight(
    algorithm, method, vectorize, tiny_run_args
):
    """Actors set by hand to constant policies: the logged w2_i is W2^2(pi_i, pi_{i-1}) (not to
    actor 0), and loss_i = energy_i + w_i * w2_i with w2_weights [1, 5, 20] for actors 1, 2, 3."""
    # energies not divided by mean|Q|: each actor's own -Q(s, a_i), a different number per actor
    argv = tiny_run_args(
        algorithm,
        4,
        w2_weights="[1.0, 5.0, 20.0]",
        vectorize_chain=vectorize,
        energy_normalize_q=False,
    )
    run = pogo_multi_main.setup(parse_config(argv))
    chain = run.chain
    assert chain.vectorized == vectorize and chain.w2_methods == [method] * 3
    gaussian = algorithm == "iql"
    with torch.no_grad():  # in the stacked layout these write through into the ensemble
        for actor, bias, log_std in zip(chain.actors, BIASES, LOG_STDS):
            last = [m for m in actor.net.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.zero_()
            last.bias.copy_(torch.from_numpy(bias))
            if gaussian:
                actor.log_std.copy_(torch.from_numpy(log_std))
    # the policies in float64, from the numbers above alone: a mean action and a std per actor
    max_action = chain.actors[0].max_action
    means = max_action * np.tanh(BIASES.astype(np.float64))  # [4, A]
    stds = np.exp(LOG_STDS.astype(np.float64)) if gaussian else np.zeros_like(means)

    def w2(i: int, j: int) -> float:
        return float(((means[i] - means[j]) ** 2).sum() + ((stds[i] - stds[j]) ** 2).sum())

    to_previous = [w2(i, i - 1) for i in (1, 2, 3)]
    to_actor_0 = [w2(i, 0) for i in (1, 2, 3)]
    assert min(abs(a - b) for a, b in zip(to_previous[1:], to_actor_0[1:])) > 0.1

    states, actions = run.buffer.sample(32)[:2]
    with torch.no_grad():
        assert torch.allclose(
            chain.actors[2].mean_actions(states), torch.tensor(means[2], dtype=torch.float32)
        )
        energies = [
            run.trainer.compute_energy_function(a, states, actions).mean().item()
            for a in chain.chain
        ]
    assert min(abs(a - b) for a, b in zip(energies, energies[1:])) > 1e-4
    log = chain.update(states, actions)
    for i, weight in zip((1, 2, 3), (1.0, 5.0, 20.0)):
        assert log[f"chain/w2_{i}"] == pytest.approx(to_previous[i - 1], rel=1e-5), i
        assert log[f"chain/energy_{i}"] == pytest.approx(energies[i - 1], rel=1e-5), i
        expected_loss = energies[i - 1] + weight * to_previous[i - 1]
        assert log[f"chain/loss_{i}"] == pytest.approx(expected_loss, rel=1e-5), i
