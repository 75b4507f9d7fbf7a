"""SAC-N and EDAC: energies and EDAC's diversity term against hand computations, training, state."""

import io
import math

import pytest
import torch
import torch.nn as nn

from algorithms.networks import VectorizedLinear
from algorithms.offline import edac, sac_n
from algorithms.offline.config import ConfigError, parse_config

S, A, B, E, H = 4, 2, 6, 3, 8
ACTIONS = torch.zeros(B, A)  # dataset actions: unused by these energies
MODULES = {"sac_n": sac_n, "edac": edac}


def _trainer(algorithm, *argv, seed=0):
    argv = ["--algorithm", algorithm, "--num_critics", str(E), "--hidden_dim", str(H), *argv]
    config = parse_config(argv)
    torch.manual_seed(seed)
    return MODULES[algorithm].build(config, S, A, 1.0, "cpu")


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(B, S, generator=g),
        torch.rand(B, A, generator=g) * 2 - 1,
        torch.randn(B, generator=g),
        torch.randn(B, S, generator=g),
        (torch.rand(B, generator=g) < 0.3).float(),
    ]


def _member_q(critic, states, actions, e):
    """Member e of the ensemble by hand: its layers' weights [in, out] and biases [1, out]."""
    x = torch.cat([states, actions], dim=-1)
    layers = [m for m in critic.net if isinstance(m, VectorizedLinear)]
    for i, layer in enumerate(layers):
        x = x @ layer.weight[e] + layer.bias[e]
        if i < len(layers) - 1:
            x = torch.relu(x)
    return x.squeeze(-1)  # [B]


def _hand_energy(trainer, states, alpha, normalize):
    """alpha * log pi(a|s) - min_j Q_j(s, a) from the weights, the noise drawn as randn(B, A)."""
    x = states
    linears = [m for m in trainer.actor.net if isinstance(m, nn.Linear)]
    for layer in linears[:-1]:
        x = torch.relu(x @ layer.weight.T + layer.bias)
    out = x @ linears[-1].weight.T + linears[-1].bias
    mean, log_std = out[:, :A], out[:, A:].clamp(-5.0, 2.0)
    z = torch.randn(B, A)
    u = mean + log_std.exp() * z
    gauss = (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_prob = gauss - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
    q = torch.stack([_member_q(trainer.critic, states, torch.tanh(u), e) for e in range(E)])
    min_q = q.min(0).values
    q_part = -min_q / min_q.abs().mean() if normalize else -min_q
    return alpha * log_prob + q_part


@pytest.mark.parametrize("algorithm", ["sac_n", "edac"])
def test_networks_follow_corls_sizes_and_edac_initialisation(algorithm):
    trainer = _trainer(algorithm)
    actor = trainer.actor
    linears = [m for m in actor.net if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [H, H, H, 2 * A]  # 3 hidden layers, mean/log-std
    assert (actor.log_std_min, actor.log_std_max) == (-5.0, 2.0)
    assert all(torch.all(m.bias == 0.1) for m in linears[:-1])
    assert linears[-1].weight.abs().max() <= 1e-3 and linears[-1].bias.abs().max() <= 1e-3
    layers = [m for m in trainer.critic.net if isinstance(m, VectorizedLinear)]
    shapes = [(E, S + A, H), (E, H, H), (E, H, H), (E, H, 1)]
    assert [tuple(m.weight.shape) for m in layers] == shapes
    assert all(torch.all(m.bias == 0.1) for m in layers[:-1])
    assert layers[0].weight.abs().max() <= 1 / math.sqrt(H)  # CORL's fan: the output width
    assert layers[-1].weight.abs().max() <= 3e-3 and layers[-1].bias.abs().max() <= 3e-3
    assert trainer.policy_freq == 1 and trainer.alpha.item() == 1.0
    assert trainer.target_entropy == -A


@pytest.mark.parametrize("algorithm", ["sac_n", "edac"])
@pytest.mark.parametrize("normalize", [False, True])
def test_energy_is_alpha_log_pi_minus_min_q(algorithm, normalize):
    argv = ["--energy_normalize_q", "true"] if normalize else []
    trainer = _trainer(algorithm, *argv)
    assert trainer.config.energy_normalize_q is normalize  # null resolves to False
    with torch.no_grad():
        trainer.log_alpha.fill_(math.log(0.3))
        for layer in trainer.actor.net:  # a visible mean and std, not the near-zero head init
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, 0.5)
    states = torch.randn(B, S)
    torch.manual_seed(7)
    energy = trainer.compute_energy_function(trainer.actor, states, ACTIONS)
    torch.manual_seed(7)
    expected = _hand_energy(trainer, states, 0.3, normalize)
    assert energy.shape == (B,)
    assert torch.allclose(energy, expected, atol=1e-5)
    energy.sum().backward()  # differentiable in the actor, alpha detached
    assert trainer.actor.net[0].weight.grad.abs().sum() > 0
    assert trainer.log_alpha.grad is None


@pytest.mark.parametrize("algorithm", ["sac_n", "edac"])
def test_energy_config_errors(algorithm):
    with pytest.raises(ConfigError, match=f"energy_function_type: {algorithm} has no V function"):
        parse_config(["--algorithm", algorithm, "--energy_function_type", "advantage"])
    argv = ["--algorithm", algorithm, "--num_actors", "2", "--actor_configs"]
    with pytest.raises(ConfigError, match="actor_configs: .* needs log pi"):
        parse_config([*argv, "[{type: deterministic}]"])
    with pytest.raises(ConfigError, match="num_critics"):
        parse_config(["--algorithm", algorithm, "--num_critics", "0"])


def test_edac_needs_two_critics():
    with pytest.raises(ConfigError, match="num_critics: EDAC's diversity term compares pairs"):
        parse_config(["--algorithm", "edac", "--num_critics", "1"])


def test_edac_diversity_is_mean_pairwise_cosine_of_action_gradients():
    trainer = _trainer("edac")
    states, actions = _batch()[:2]
    grads = []
    for e in range(E):
        a = actions.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_member_q(trainer.critic, states, a, e).sum(), a)
        grads.append(g / g.norm(dim=1, keepdim=True))  # [B, A]
    pairs = [(j, k) for j in range(E) for k in range(E) if j != k]
    expected = sum((grads[j] * grads[k]).sum(1) for j, k in pairs).mean() / (E - 1)
    diversity = trainer.diversity_loss(states, actions)
    assert diversity.item() == pytest.approx(expected.item(), abs=1e-6)
    diversity.backward()  # it trains the critics
    assert trainer.critic.net[0].weight.grad.abs().sum() > 0

    with torch.no_grad():  # identical members: every cosine is 1, the loss E (E - 1) / (E - 1)
        for layer in trainer.critic.net:
            if isinstance(layer, VectorizedLinear):
                layer.weight.copy_(layer.weight[:1].expand_as(layer.weight))
                layer.bias.copy_(layer.bias[:1].expand_as(layer.bias))
    assert trainer.diversity_loss(states, actions).item() == pytest.approx(E, abs=1e-5)


def test_edac_critic_loss_is_sac_n_plus_eta_diversity():
    base = _trainer("sac_n", seed=3)
    trainer = _trainer("edac", "--eta", "0", seed=3)
    for p, q in zip(base.critic.parameters(), trainer.critic.parameters()):
        assert torch.equal(p, q)  # same networks from the same seed
    batch = _batch()
    torch.manual_seed(5)
    sac_n_loss = base.critic_loss(*batch, log={})
    torch.manual_seed(5)
    assert torch.equal(trainer.critic_loss(*batch, log={}), sac_n_loss)  # eta = 0

    trainer.config.eta = 2.0
    torch.manual_seed(5)
    expected = sac_n_loss + 2.0 * trainer.diversity_loss(*batch[:2])
    assert torch.allclose(trainer.critic_loss(*batch, log={}), expected)


def test_sac_n_critic_loss_is_summed_member_mse_to_the_soft_min_target():
    trainer = _trainer("sac_n")
    with torch.no_grad():
        trainer.log_alpha.fill_(math.log(0.5))
    states, actions, rewards, next_states, dones = _batch()
    torch.manual_seed(2)
    loss = trainer.critic_loss(states, actions, rewards, next_states, dones, log={})
    torch.manual_seed(2)
    with torch.no_grad():
        next_actions, next_log_prob = trainer.actor(next_states)
        next_q = (
            torch.stack(
                [_member_q(trainer.critic_target, next_states, next_actions, e) for e in range(E)]
            )
            .min(0)
            .values
        )
        target = rewards + 0.99 * (1 - dones) * (next_q - 0.5 * next_log_prob)
        q = torch.stack([_member_q(trainer.critic, states, actions, e) for e in range(E)])
    expected = sum(((q[e] - target) ** 2).mean() for e in range(E))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("algorithm", ["sac_n", "edac"])
def test_train_gives_finite_losses_and_moves_every_part(algorithm):
    trainer = _trainer(algorithm)
    before = {
        name: [p.detach().clone() for p in getattr(trainer, name).parameters()]
        for name in ("actor", "critic", "critic_target")
    }
    log_alpha = trainer.log_alpha.item()
    for _ in range(3):
        log = trainer.train(_batch())
    keys = {"alpha_loss", "critic_loss", "actor_loss", "alpha", "batch_entropy", "q_policy_std"}
    keys |= {"q_random_std"} | ({"diversity_loss"} if algorithm == "edac" else set())
    assert set(log) == keys
    assert all(math.isfinite(v) for v in log.values())
    for name, params in before.items():
        now = list(getattr(trainer, name).parameters())
        assert all(not torch.equal(p, q) for p, q in zip(params, now)), name
    assert trainer.log_alpha.item() != log_alpha
    assert trainer.total_it == 3


@pytest.mark.parametrize("algorithm", ["sac_n", "edac"])
def test_state_dict_round_trip_restores_everything(algorithm):
    trainer = _trainer(algorithm)
    for _ in range(2):
        trainer.train(_batch())
    buffer = io.BytesIO()
    torch.save(trainer.state_dict(), buffer)
    buffer.seek(0)
    fresh = _trainer(algorithm, seed=11)
    fresh.load_state_dict(torch.load(buffer))
    for name in ("actor", "critic", "critic_target"):
        for p, q in zip(getattr(trainer, name).parameters(), getattr(fresh, name).parameters()):
            assert torch.equal(p, q), name
    assert torch.equal(trainer.log_alpha, fresh.log_alpha) and fresh.total_it == 2
    # the optimisers' state came along too: one more update is identical
    torch.manual_seed(4)
    log_a = trainer.train(_batch(seed=9))
    torch.manual_seed(4)
    log_b = fresh.train(_batch(seed=9))
    assert log_a == log_b
    for p, q in zip(trainer.actor.parameters(), fresh.actor.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(trainer.log_alpha, fresh.log_alpha)
