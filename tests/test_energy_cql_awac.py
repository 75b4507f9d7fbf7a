"""CQL and AWAC: energies against hand computations, a few updates, checkpoint round trips."""

import io
import math

import pytest
import torch
from torch.distributions import Normal

from algorithms.networks import TanhGaussianMLP
from algorithms.offline import awac, cql
from algorithms.offline.config import ConfigError, parse_config

S, A, B = 4, 2, 6


def _trainer(module, *argv, seed=0):
    config = parse_config(["--algorithm", module.__name__.rsplit(".", 1)[-1], *argv])
    torch.manual_seed(seed)
    return module.build(config, S, A, 1.0, "cpu"), config


def _q(critic, states, actions):
    return critic.net(torch.cat([states, actions], -1)).squeeze(-1)


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(B, S, generator=g),
        torch.rand(B, A, generator=g) * 1.8 - 0.9,  # inside the action box, away from its edge
        torch.randn(B, generator=g),
        torch.randn(B, S, generator=g),
        (torch.rand(B, generator=g) < 0.2).float(),
    ]


def _cql_pre_tanh(trainer, states):
    """CORL's policy by hand: mean and std of the pre-tanh Gaussian (learned log-std affine)."""
    actor = trainer.actor
    mean, raw_log_std = actor.net(states).chunk(2, -1)
    log_std = actor.log_std_multiplier * raw_log_std + actor.log_std_offset
    return mean, log_std.clamp(-20.0, 2.0).exp()


def _tanh_log_prob(mean, std, pre_tanh):
    return (Normal(mean, std).log_prob(pre_tanh) - torch.log1p(-(torch.tanh(pre_tanh) ** 2))).sum(
        -1
    )


# ---------------------------------------------------------------------------------------------
# CQL


def test_cql_networks_follow_corl():
    trainer, config = _trainer(cql)
    actor = trainer.actor
    assert isinstance(actor, TanhGaussianMLP) and actor.n_hidden == 3
    assert config.actor_lr == 3e-5 and config.energy_normalize_q is False
    # the learned log-std multiplier (1) and offset (-1) are actor parameters, so chain actors
    # (copies of actor 0) and their optimisers get them too
    assert actor.log_std_multiplier.item() == 1.0 and actor.log_std_offset.item() == -1.0
    names = {n for n, _ in actor.named_parameters()}
    assert {"log_std_multiplier", "log_std_offset"} <= names
    assert actor.net[-1].weight.abs().max() < 0.05 and actor.net[-1].bias.abs().max() == 0
    critic_linears = [m for m in trainer.critic_1.net if isinstance(m, torch.nn.Linear)]
    assert len(critic_linears) == 4  # q_n_hidden_layers = 3
    w = critic_linears[1].weight  # orthogonal with gain sqrt(2)
    assert torch.allclose(w @ w.T, 2.0 * torch.eye(256), atol=1e-4)
    # today's TanhGaussianMLP is unchanged without the new options
    plain = TanhGaussianMLP(S, A)
    assert not plain.learned_log_std_affine and len(list(plain.parameters())) == 6


def test_cql_energy_is_its_actor_loss_after_bc():
    trainer, _ = _trainer(cql)
    trainer.total_it = 1  # past bc_steps = 0
    with torch.no_grad():
        trainer.log_alpha.fill_(math.log(0.3))
    states, actions = _batch()[:2]
    torch.manual_seed(7)
    energy = trainer.compute_energy_function(trainer.actor, states, actions)
    with torch.no_grad():
        torch.manual_seed(7)
        mean, std = _cql_pre_tanh(trainer, states)
        pre_tanh = mean + std * torch.randn(B, A)
        pi = torch.tanh(pre_tanh)
        q = torch.min(_q(trainer.critic_1, states, pi), _q(trainer.critic_2, states, pi))
        expected = 0.3 * _tanh_log_prob(mean, std, pre_tanh) - q
    assert energy.shape == (B,)
    assert torch.allclose(energy, expected, atol=1e-5)
    energy.sum().backward()  # differentiable in the actor, alpha is a constant
    assert trainer.actor.net[0].weight.grad is not None
    assert trainer.actor.log_std_offset.grad is not None
    assert trainer.log_alpha.grad is None  # (the chain steps only its own actors' parameters)


def test_cql_energy_during_bc_steps_is_the_bc_loss():
    trainer, _ = _trainer(cql, "--bc_steps", "5")
    states, actions = _batch()[:2]
    trainer.total_it = 5  # CORL's condition: total_it <= bc_steps
    torch.manual_seed(3)
    energy = trainer.compute_energy_function(trainer.actor, states, actions)
    with torch.no_grad():
        torch.manual_seed(3)
        mean, std = _cql_pre_tanh(trainer, states)
        pre_tanh = mean + std * torch.randn(B, A)
        log_pi_data = _tanh_log_prob(mean, std, torch.atanh(actions))
        expected = 1.0 * _tanh_log_prob(mean, std, pre_tanh) - log_pi_data
    assert torch.allclose(energy, expected, atol=1e-5)

    trainer.total_it = 6  # after: -Q replaces the data's log-likelihood
    torch.manual_seed(3)
    after = trainer.compute_energy_function(trainer.actor, states, actions)
    with torch.no_grad():
        pi = torch.tanh(pre_tanh)
        q = torch.min(_q(trainer.critic_1, states, pi), _q(trainer.critic_2, states, pi))
    assert torch.allclose(after, expected + log_pi_data - q, atol=1e-5)


def test_cql_normalised_energy_and_config_errors():
    trainer, _ = _trainer(cql, "--energy_normalize_q", "true")
    trainer.total_it = 1
    states, actions = _batch()[:2]
    torch.manual_seed(5)
    energy = trainer.compute_energy_function(trainer.actor, states, actions)
    torch.manual_seed(5)
    pi, log_pi = trainer.actor(states)
    q = torch.min(trainer.critic_1(states, pi), trainer.critic_2(states, pi))
    assert torch.allclose(energy, log_pi - q / q.abs().mean(), atol=1e-5)

    with pytest.raises(ConfigError, match="energy_function_type: cql has no V function"):
        parse_config(["--algorithm", "cql", "--energy_function_type", "advantage"])
    with pytest.raises(ConfigError, match="actor_configs: cql's energy needs log pi"):
        parse_config(
            [
                "--algorithm",
                "cql",
                "--num_actors",
                "2",
                "--actor_configs",
                "[{type: deterministic}]",
            ]
        )
    with pytest.raises(ConfigError, match="cql_n_actions"):
        parse_config(["--algorithm", "cql", "--cql_n_actions", "0"])


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--cql_lagrange", "true", "--cql_max_target_backup", "true", "--backup_entropy", "true"],
        ["--cql_importance_sample", "false", "--use_automatic_entropy_tuning", "false"],
        ["--bc_steps", "2", "--normalize_reward", "true", "--cql_clip_diff_max", "1.0"],
    ],
)
def test_cql_train_updates_critics_alpha_and_targets(argv):
    trainer, config = _trainer(cql, *argv)
    before = {
        name: [p.detach().clone() for p in getattr(trainer, name).parameters()]
        for name in ("critic_1", "critic_2", "critic_1_target", "actor")
    }
    log_alpha, log_alpha_prime = trainer.log_alpha.item(), trainer.log_alpha_prime.item()
    for seed in range(3):
        log = trainer.train(_batch(seed))
        assert all(math.isfinite(v) for v in log.values()), log
    assert trainer.total_it == 3
    for name, params in before.items():
        after = list(getattr(trainer, name).parameters())
        assert any(not torch.equal(a, b) for a, b in zip(after, params)), name
    assert (trainer.log_alpha.item() != log_alpha) == config.use_automatic_entropy_tuning
    assert (trainer.log_alpha_prime.item() != log_alpha_prime) == config.cql_lagrange
    assert {"policy_loss", "qf1_loss", "cql_qf1_diff", "alpha"} <= set(log)


def test_cql_state_dict_round_trip():
    trainer, _ = _trainer(cql, "--cql_lagrange", "true")
    for seed in range(2):
        trainer.train(_batch(seed))
    fresh, _ = _trainer(cql, "--cql_lagrange", "true", seed=123)
    fresh.load_state_dict(_saved_and_loaded(trainer.state_dict()))
    _assert_same_trainer(trainer, fresh, ("actor", "critic_1", "critic_2", "critic_1_target"))
    assert fresh.log_alpha.item() == trainer.log_alpha.item()
    assert fresh.log_alpha_prime.item() == trainer.log_alpha_prime.item()
    assert fresh.total_it == 2
    _assert_same_next_update(trainer, fresh, ("actor", "critic_1", "critic_2"))
    assert fresh.log_alpha.item() == trainer.log_alpha.item()


# ---------------------------------------------------------------------------------------------
# AWAC


def test_awac_networks_follow_corl():
    trainer, config = _trainer(awac)
    actor = trainer.actor
    assert actor.is_gaussian and not actor.tanh_mean and not actor.state_dependent_std
    assert (actor.n_hidden, actor.log_std_min, actor.log_std_max) == (3, -20.0, 2.0)
    assert len([m for m in trainer.critic_1.net if isinstance(m, torch.nn.Linear)]) == 4
    assert config.energy_normalize_q is True  # AWAC's default (the chain study's pilot)


def test_awac_energy_q_and_advantage():
    trainer, _ = _trainer(awac, "--energy_normalize_q", "false")  # raw -Q: the values by hand
    with torch.no_grad():
        trainer.actor.log_std.fill_(-0.5)
    states, actions = _batch()[:2]
    mean = trainer.actor.net(states)  # no tanh: AWAC's mean is unsquashed
    q = torch.min(_q(trainer.critic_1, states, mean), _q(trainer.critic_2, states, mean))
    energy = trainer.compute_energy_function(trainer.actor, states, actions)
    assert torch.allclose(energy, -q, atol=1e-6)
    energy.sum().backward()
    assert trainer.actor.net[0].weight.grad is not None and trainer.actor.log_std.grad is None

    default, _ = _trainer(awac)  # the same networks (same seed), Q divided by mean|Q|
    with torch.no_grad():
        default.actor.log_std.fill_(-0.5)
    normalised = default.compute_energy_function(default.actor, states, actions)
    assert torch.allclose(normalised, -q / q.abs().mean(), atol=1e-6)

    adv_trainer, _ = _trainer(
        awac, "--energy_function_type", "advantage", "--energy_normalize_q", "false"
    )
    with torch.no_grad():
        adv_trainer.actor.log_std.fill_(-0.5)
    torch.manual_seed(11)
    adv_energy = adv_trainer.compute_energy_function(adv_trainer.actor, states, actions)
    with torch.no_grad():  # V(s): min Q at a clipped sample of actor 0, as AWAC's own baseline
        torch.manual_seed(11)
        sample = (mean + math.exp(-0.5) * torch.randn(B, A)).clamp(-1.0, 1.0)
        v = torch.min(_q(trainer.critic_1, states, sample), _q(trainer.critic_2, states, sample))
    assert torch.allclose(adv_energy, -(q - v), atol=1e-5)
    assert torch.allclose(adv_energy - energy, v, atol=1e-5)  # same networks (same seed)


def test_awac_energy_plays_the_clipped_mean_and_steps_as_q_in_both_modes():
    """Q is read at the mean clipped to the action box (what evaluation plays): a mean outside
    the box gets the edge's Q and no push further out; advantage and q take the same step."""
    trainer, _ = _trainer(awac, "--energy_normalize_q", "false")
    states, actions = _batch()[:2]
    with torch.no_grad():
        trainer.actor.net[-1].bias[0] += 5.0  # action 0's mean far beyond max_action = 1
    mean = trainer.actor.net(states)
    assert (mean[:, 0] > 1.0).all()
    inside = mean.clamp(-1.0, 1.0)
    q = torch.min(_q(trainer.critic_1, states, inside), _q(trainer.critic_2, states, inside))
    energy = trainer.compute_energy_function(trainer.actor, states, actions)
    assert torch.allclose(energy, -q, atol=1e-6)
    energy.sum().backward()
    assert trainer.actor.net[-1].bias.grad[0] == 0  # the edge: Q pulls it no further out
    assert trainer.actor.net[-1].bias.grad[1] != 0

    grads = {}
    for kind in ("q", "advantage"):  # normalised (the default): one divisor, mean|Q|
        t, _ = _trainer(awac, "--energy_function_type", kind)
        t.compute_energy_function(t.actor, states, actions).mean().backward()
        grads[kind] = [p.grad for p in t.actor.net.parameters()]
    for g_q, g_adv in zip(grads["q"], grads["advantage"], strict=True):
        torch.testing.assert_close(g_adv, g_q, rtol=1e-5, atol=1e-7)


def test_awac_train_updates_critics_and_actor():
    trainer, _ = _trainer(awac, "--awac_lambda", "0.3333")
    before = {
        name: [p.detach().clone() for p in getattr(trainer, name).parameters()]
        for name in ("critic_1", "critic_2", "critic_2_target", "actor")
    }
    for seed in range(3):
        log = trainer.train(_batch(seed))
        assert set(log) == {"critic_loss", "actor_loss"}
        assert all(math.isfinite(v) for v in log.values())
    assert trainer.total_it == 3
    for name, params in before.items():
        after = list(getattr(trainer, name).parameters())
        assert any(not torch.equal(a, b) for a, b in zip(after, params)), name


def test_awac_state_dict_round_trip():
    trainer, _ = _trainer(awac)
    for seed in range(2):
        trainer.train(_batch(seed))
    fresh, _ = _trainer(awac, seed=123)
    fresh.load_state_dict(_saved_and_loaded(trainer.state_dict()))
    names = ("actor", "critic_1", "critic_2", "critic_1_target", "critic_2_target")
    _assert_same_trainer(trainer, fresh, names)
    assert fresh.total_it == 2
    _assert_same_next_update(trainer, fresh, ("actor", "critic_1", "critic_2"))


# ---------------------------------------------------------------------------------------------


def _saved_and_loaded(state):
    """Through torch.save / torch.load, as a checkpoint (and no tensor shared with the source)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def _assert_same_trainer(a, b, names):
    for name in names:
        for pa, pb in zip(getattr(a, name).parameters(), getattr(b, name).parameters()):
            assert torch.equal(pa, pb), name


def _assert_same_next_update(a, b, names):
    """Optimiser states came along too: one more identical update keeps the two identical."""
    for trainer in (a, b):
        torch.manual_seed(99)
        trainer.train(_batch(42))
    _assert_same_trainer(a, b, names)
