"""Actor types: shapes, flags, reparameterisation, densities, evaluation modes."""

import math

import pytest
import torch
from torch.distributions import Normal

from algorithms.networks import (
    ActorAPI,
    DeterministicMLP,
    EnsembleCritic,
    GaussianMLP,
    PolicyAdapter,
    StochasticMLP,
    TanhGaussianMLP,
    act_for_eval,
    build_actor,
    get_action,
    init_module_weights,
)

S, A, B, K = 5, 2, 4, 3
ACTORS = [GaussianMLP, TanhGaussianMLP, StochasticMLP, DeterministicMLP]


@pytest.mark.parametrize("cls", ACTORS)
def test_actor_api_shapes_and_gradients(cls):
    torch.manual_seed(0)
    actor = cls(S, A, max_action=2.0, hidden_dim=16)
    assert isinstance(actor, ActorAPI)
    states = torch.randn(B, S)
    det = actor.deterministic_actions(states)
    assert det.shape == (B, A) and not det.requires_grad
    samples = actor.sample_actions(states, K=K, seed=1)
    assert samples.shape == (B, K, A)
    samples.sum().backward()  # reparameterised: gradients reach the parameters
    assert all(p.grad is not None for p in actor.parameters())
    if cls is not GaussianMLP:  # bounded policies stay in the action box
        assert samples.abs().max() <= 2.0
    # the same seed gives the same samples; deterministic actors repeat their action
    assert torch.equal(samples, actor.sample_actions(states, K=K, seed=1))
    if not actor.is_stochastic:
        assert torch.equal(samples, det[:, None].expand(B, K, A))


def test_flags_follow_the_design_table():
    flags = {c.__name__: (c.is_gaussian, c.is_stochastic) for c in ACTORS}
    assert flags == {
        "GaussianMLP": (True, True),
        "TanhGaussianMLP": (False, True),
        "StochasticMLP": (False, True),
        "DeterministicMLP": (False, False),
    }


def test_gaussian_log_prob_is_the_normal_density():
    torch.manual_seed(0)
    actor = GaussianMLP(S, A, hidden_dim=16)
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([-1.0, 0.5]))
    states, actions = torch.randn(B, S), torch.rand(B, A) * 2 - 1
    mean, std = actor.get_mean_std(states)
    assert torch.allclose(std, torch.exp(torch.tensor([-1.0, 0.5])).expand(B, A))
    expected = Normal(mean, std).log_prob(actions).sum(-1)
    assert torch.allclose(actor.log_prob_actions(states, actions), expected)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    """log pi(a) = log N(u) - sum log(1 - tanh(u)^2) for a = tanh(u), checked in float64."""
    torch.manual_seed(0)
    actor = TanhGaussianMLP(S, A, hidden_dim=16).double()
    states = torch.randn(B, S, dtype=torch.float64)
    actions, log_prob = actor(states)
    mean, std = actor.get_mean_std(states)
    u = torch.atanh(actions)
    expected = (Normal(mean, std).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    assert torch.allclose(log_prob, expected, atol=1e-6)
    assert torch.allclose(actor.log_prob_actions(states, actions), expected, atol=1e-4)


def test_get_action_and_eval_modes():
    torch.manual_seed(0)
    states = torch.randn(B, S)
    gauss = GaussianMLP(S, A, hidden_dim=16)
    tanh = TanhGaussianMLP(S, A, hidden_dim=16)
    det = DeterministicMLP(S, A, hidden_dim=16)
    # losses: Gaussian mean, deterministic action, differentiable
    assert torch.equal(get_action(gauss, states), gauss.get_mean_std(states)[0])
    assert torch.equal(get_action(det, states), det(states))
    assert get_action(tanh, states).requires_grad
    # evaluation: auto samples stochastic policies, mean does not
    assert torch.equal(act_for_eval(det, states, "auto"), det(states).detach())
    assert torch.equal(act_for_eval(tanh, states, "mean"), tanh.deterministic_actions(states))
    assert not torch.equal(act_for_eval(tanh, states, "auto"), tanh.deterministic_actions(states))
    with pytest.raises(ValueError, match="eval_mode must be one of"):
        act_for_eval(det, states, "greedy")


def test_build_actor_from_config_and_errors():
    actor = build_actor({"type": "stochastic", "hidden_dim": 8, "noise_dim": 4}, S, A)
    assert isinstance(actor, StochasticMLP) and actor.noise_dim == 4
    assert actor.sample_actions(torch.randn(B, S), K=K).shape == (B, K, A)
    assert build_actor(actor.architecture(), S, A).architecture() == actor.architecture()
    with pytest.raises(ValueError, match="unknown actor type 'flow'"):
        build_actor({"type": "flow"}, S, A)
    with pytest.raises(ValueError, match="bad options"):
        build_actor({"type": "gaussian", "widht": 3}, S, A)


def test_policy_adapter_wraps_a_plain_module():
    module = torch.nn.Linear(S, A)
    adapter = PolicyAdapter(module)
    states = torch.randn(B, S)
    assert isinstance(adapter, ActorAPI)
    assert torch.equal(adapter.deterministic_actions(states), module(states).detach())
    assert adapter.sample_actions(states, K=K).shape == (B, K, A)


def test_ensemble_critic_equals_its_members():
    torch.manual_seed(0)
    critic = EnsembleCritic(S, A, num_critics=3, hidden_dim=8, n_hidden=2)
    states, actions = torch.randn(B, S), torch.randn(B, A)
    out = critic(states, actions)
    assert out.shape == (3, B)
    layers = [m for m in critic.net if hasattr(m, "weight")]
    x = torch.cat([states, actions], -1)
    for e in range(3):
        h = x
        for j, layer in enumerate(layers):
            h = h @ layer.weight[e] + layer.bias[e]
            if j < len(layers) - 1:
                h = torch.relu(h)
        assert torch.allclose(out[e], h.squeeze(-1), atol=1e-6)
    # each member starts as nn.Linear would: weights bounded by 1/sqrt(fan_in)
    assert layers[0].weight.abs().max() <= 1 / math.sqrt(S + A)


def test_init_module_weights_scales_the_last_layer_and_zeros_biases():
    torch.manual_seed(0)
    net = DeterministicMLP(S, A, hidden_dim=64).net
    init_module_weights(net, last_scale=1e-3)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert all(torch.count_nonzero(m.bias) == 0 for m in linears)
    # Xavier-uniform bound sqrt(6 / (fan_in + fan_out)) times the gain
    assert linears[0].weight.abs().max() <= math.sqrt(6 / (S + 64))
    assert linears[-1].weight.abs().max() <= 1e-3 * math.sqrt(6 / (64 + A))
    assert linears[0].weight.abs().max() > 0.5 * math.sqrt(6 / (S + 64))


@pytest.mark.parametrize("cls", ACTORS)
def test_at_states_shares_the_network_and_keeps_values_and_gradients(cls):
    """`at_states` with the network's output: an energy-like and a W2-like term read that one
    forward; the loss and every parameter's gradient equal those of separate forwards, and
    other states still run the network."""
    torch.manual_seed(0)
    actor = cls(S, A, hidden_dim=16)
    states, noise = torch.randn(B, S), torch.randn(B, K, actor.noise_dim)

    def loss(policy) -> torch.Tensor:
        torch.manual_seed(1)  # the same sample for get_action's stochastic actors
        return (
            get_action(policy, states).sum() + (policy.actions_from_noise(states, noise) ** 2).sum()
        )

    plain = loss(actor)
    plain_grads = torch.autograd.grad(plain, list(actor.parameters()))
    calls = []
    hook = actor.net.register_forward_hook(lambda *_: calls.append(1))
    view = actor.at_states(states, actor.network_output(states))
    shared = loss(view)
    view.mean_actions(states.clone())  # another tensor: the network runs
    hook.remove()
    shared_grads = torch.autograd.grad(shared, list(actor.parameters()))
    # StochasticMLP feeds (states, noise) to its network: nothing to share, `at_states` is itself
    expected_calls = 3 if cls is StochasticMLP else 2
    assert len(calls) == expected_calls
    assert (view is actor) == (cls is StochasticMLP) and actor._known_output is None
    assert torch.allclose(shared, plain, rtol=1e-6)
    for g_shared, g_plain in zip(shared_grads, plain_grads):
        assert torch.allclose(g_shared, g_plain, rtol=1e-5, atol=1e-7)
