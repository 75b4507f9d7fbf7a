"""compute_energy_function of IQL and TD3+BC against hand computations on tiny networks."""

import pytest
import torch

from algorithms.offline import iql, td3_bc
from algorithms.offline.config import ConfigError, parse_config

S, A, B = 4, 2, 6
ACTIONS = torch.zeros(B, A)  # dataset actions: unused by these energies


def _trainer(module, *argv):
    config = parse_config(["--algorithm", module.__name__.rsplit(".", 1)[-1], *argv])
    torch.manual_seed(0)
    return module.build(config, S, A, 1.0, "cpu"), config


def test_iql_energy_is_minus_target_q_at_the_gaussian_mean_over_mean_abs_q():
    trainer, config = _trainer(iql)
    assert config.energy_normalize_q is True  # IQL's default (the chain study's pilot)
    states = torch.randn(B, S)
    actor = trainer.actor
    mean = actor.get_mean_std(states)[0]
    q1 = trainer.q_target.q1.net(torch.cat([states, mean], -1)).squeeze(-1)
    q2 = trainer.q_target.q2.net(torch.cat([states, mean], -1)).squeeze(-1)
    q = torch.min(q1, q2)
    energy = trainer.compute_energy_function(actor, states, ACTIONS)
    assert energy.shape == (B,)
    assert torch.allclose(energy, -q / q.abs().mean())
    energy.sum().backward()  # differentiable in the actor ...
    assert actor.net[0].weight.grad is not None
    assert all(p.grad is None for p in trainer.qf.parameters())  # ... not in the critic

    raw, _ = _trainer(iql, "--energy_normalize_q", "false")  # the user design's plain -Q
    assert torch.allclose(raw.compute_energy_function(raw.actor, states, ACTIONS), -q)


def test_iql_advantage_energy_subtracts_v_and_keeps_the_q_divisor():
    trainer, _ = _trainer(iql, "--energy_function_type", "advantage")
    states = torch.randn(B, S)
    q = trainer.q_target(states, trainer.actor.get_mean_std(states)[0])
    expected = -(q - trainer.vf(states)) / q.abs().mean()  # mean|Q|, as the q energy's
    assert torch.allclose(trainer.compute_energy_function(trainer.actor, states, ACTIONS), expected)


@pytest.mark.parametrize("normalize", ["true", "false"])
def test_advantage_and_q_energies_take_the_same_step(normalize):
    """V does not depend on the actor: with one divisor the two energies have one gradient, so
    a W2 weight means the same step in both modes (with mean|Q - V| it did not)."""
    grads = {}
    states = torch.randn(B, S)
    for kind in ("q", "advantage"):
        trainer, _ = _trainer(
            iql, "--energy_function_type", kind, "--energy_normalize_q", normalize
        )  # the same networks: one seed
        trainer.compute_energy_function(trainer.actor, states, ACTIONS).mean().backward()
        grads[kind] = [p.grad for p in trainer.actor.net.parameters()]  # the mean's network
    for g_q, g_adv in zip(grads["q"], grads["advantage"], strict=True):
        torch.testing.assert_close(g_adv, g_q, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in grads["q"])


def test_td3_bc_energy_is_normalised_like_its_actor_loss():
    trainer, config = _trainer(td3_bc)
    assert config.energy_normalize_q is True  # resolved from TD3+BC's own loss
    states = torch.randn(B, S)
    q = trainer.critic_1(states, trainer.actor(states))
    expected = -2.5 * q / q.abs().mean()
    assert torch.allclose(trainer.compute_energy_function(trainer.actor, states, ACTIONS), expected)
    # the normalised energy has mean |E| = alpha whatever the reward scale
    assert trainer.compute_energy_function(trainer.actor, states, ACTIONS).abs().mean().item() == (
        pytest.approx(2.5)
    )

    raw, _ = _trainer(td3_bc, "--energy_normalize_q", "false")
    q = raw.critic_1(states, raw.actor(states))
    assert torch.allclose(raw.compute_energy_function(raw.actor, states, ACTIONS), -q)


def test_td3_bc_has_no_advantage_energy():
    with pytest.raises(ConfigError, match="energy_function_type: td3_bc has no V function"):
        parse_config(["--algorithm", "td3_bc", "--energy_function_type", "advantage"])


@pytest.mark.parametrize("deterministic", ["false", "true"])
def test_iql_single_backward_equals_the_three_pass_form_bit_for_bit(deterministic):
    """One backward over IQL's V, Q and actor losses gives exactly the numbers of
    `single_backward: false`, the project's form with CORL's three passes in CORL's order. That
    both forms give CORL's own numbers is checked against CORL's code, at a pinned commit, by
    test_corl_parity.py::test_iql_matches_corl_in_one_backward_and_in_three."""
    runs = []
    for single in ("true", "false"):
        trainer, _ = _trainer(
            iql, "--single_backward", single, "--iql_deterministic", deterministic
        )
        gen = torch.Generator().manual_seed(1)
        logs = []
        for _ in range(5):
            batch = [torch.randn(B, S, generator=gen), torch.rand(B, A, generator=gen) * 2 - 1]
            batch += [torch.randn(B, generator=gen), torch.randn(B, S, generator=gen)]
            batch.append((torch.rand(B, generator=gen) < 0.2).float())
            logs.append(trainer.train(batch))
        runs.append((trainer.state_dict(), logs))
    (single_state, single_logs), (three_state, three_logs) = runs
    assert single_logs == three_logs
    assert set(single_logs[0]) == {"value_loss", "q_loss", "actor_loss"}
    for name in ("qf", "q_target", "vf", "actor"):
        for key, value in single_state[name].items():
            assert torch.equal(value, three_state[name][key]), f"{name}.{key}"
