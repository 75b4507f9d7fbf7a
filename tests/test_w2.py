"""W2^2 estimators against analytic values, and on one scale."""

import math

import pytest
import torch

from algorithms.networks import DeterministicMLP, GaussianMLP, StochasticMLP, TanhGaussianMLP
from algorithms.offline.w2 import (
    coupled_w2_squared,
    gaussian_w2_squared,
    resolve_w2_method,
    sinkhorn_w2_squared,
    w2_squared,
)


def _normal_quantiles(n: int) -> torch.Tensor:
    """n evenly spaced standard-normal quantiles: a low-variance stand-in for n samples."""
    p = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return math.sqrt(2.0) * torch.erfinv(2 * p - 1)


def test_gaussian_closed_form_matches_hand_computation():
    mean1 = torch.tensor([[0.0, 1.0]])
    std1 = torch.tensor([[1.0, 0.5]])
    mean2 = torch.tensor([[2.0, -1.0]])
    std2 = torch.tensor([[3.0, 0.5]])
    # (0-2)^2 + (1+1)^2 + (1-3)^2 + 0 = 12
    assert gaussian_w2_squared(mean1, std1, mean2, std2).item() == pytest.approx(12.0)


def test_tanh_shared_noise_equals_sorted_sample_coupling_in_1d():
    """For 1-D tanh-Gaussians the optimal coupling is the quantile coupling (sort both samples)."""
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    mu1, s1, mu2, s2 = 0.3, 0.8, -0.5, 0.3
    x = torch.tanh(mu1 + s1 * torch.randn(n, generator=gen, dtype=torch.float64))
    y = torch.tanh(mu2 + s2 * torch.randn(n, generator=gen, dtype=torch.float64))
    sorted_w2 = ((x.sort().values - y.sort().values) ** 2).mean().item()

    z = torch.randn(1, n, 1, generator=gen, dtype=torch.float64)
    shared = coupled_w2_squared(torch.tanh(mu1 + s1 * z), torch.tanh(mu2 + s2 * z)).item()
    assert shared == pytest.approx(sorted_w2, rel=0.02)
    # an independent (wrong) coupling gives a clearly larger value
    z2 = torch.randn(1, n, 1, generator=gen, dtype=torch.float64)
    independent = coupled_w2_squared(torch.tanh(mu1 + s1 * z), torch.tanh(mu2 + s2 * z2)).item()
    assert independent > 1.3 * sorted_w2


def test_sinkhorn_rescaled_matches_gaussian_closed_form():
    K = 1000
    q = _normal_quantiles(K).float()  # [K]
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(1))
    # two independent coordinates per cloud: [1, K, 2]
    x = torch.stack([0.0 + 1.0 * q, 0.5 + 0.2 * q[perm]], dim=-1)[None]
    y = torch.stack([1.0 + 0.5 * q, -0.5 + 0.2 * q[perm]], dim=-1)[None]
    exact = gaussian_w2_squared(
        torch.tensor([[0.0, 0.5]]),
        torch.tensor([[1.0, 0.2]]),
        torch.tensor([[1.0, -0.5]]),
        torch.tensor([[0.5, 0.2]]),
    ).item()  # 1 + 1 + 0.25 + 0 = 2.25
    estimate = sinkhorn_w2_squared(x, y, blur=0.01).item()
    assert exact == pytest.approx(2.25)
    assert estimate == pytest.approx(exact, rel=0.03)


def test_sinkhorn_of_identical_clouds_is_zero_and_batched():
    x = torch.randn(4, 64, 3, generator=torch.Generator().manual_seed(0))
    out = sinkhorn_w2_squared(x, x.clone(), blur=0.05)
    assert out.shape == (4,)
    assert torch.allclose(out, torch.zeros(4), atol=1e-4)


def _gaussian_pair(S=3, A=2):
    torch.manual_seed(0)
    a = GaussianMLP(S, A, tanh_mean=False, state_dependent_std=True, hidden_dim=16)
    b = GaussianMLP(S, A, tanh_mean=False, state_dependent_std=True, hidden_dim=16)
    return a, b


def test_all_estimators_agree_on_one_scale_for_gaussians():
    """Closed form, shared noise and Sinkhorn give the same W2^2 for a Gaussian pair."""
    a, b = _gaussian_pair()
    states = torch.randn(3, 3, generator=torch.Generator().manual_seed(2))
    gen = torch.Generator().manual_seed(3)
    closed = w2_squared(a, b, states, "closed_form")
    shared = w2_squared(a, b, states, "shared_noise", K=100_000, generator=gen)
    sink = w2_squared(a, b, states, "sinkhorn", K=800, blur=0.02, generator=gen)
    assert torch.allclose(shared, closed, rtol=0.02)
    assert torch.allclose(sink, closed, rtol=0.15, atol=0.02)


def test_l2_is_the_gaussian_closed_form_at_zero_std():
    S, A = 3, 2
    torch.manual_seed(0)
    det1, det2 = DeterministicMLP(S, A, hidden_dim=16), DeterministicMLP(S, A, hidden_dim=16)
    states = torch.randn(6, S)
    l2 = w2_squared(det1, det2, states, "l2")
    a1, a2 = det1(states), det2(states)
    zeros = torch.zeros_like(a1)
    assert torch.allclose(l2, gaussian_w2_squared(a1, zeros, a2, zeros))
    assert torch.allclose(l2, ((a1 - a2) ** 2).sum(-1))


def test_l2_to_a_dirac_is_exact_for_a_gaussian():
    """W2^2(N(mu, s^2), delta_a) = ||mu - a||^2 + ||s||^2."""
    S, A = 3, 2
    torch.manual_seed(0)
    gauss = GaussianMLP(S, A, tanh_mean=False, state_dependent_std=True, hidden_dim=16)
    det = DeterministicMLP(S, A, hidden_dim=16)
    states = torch.randn(4, S)
    est = w2_squared(
        gauss, det, states, "l2", K=200_000, generator=torch.Generator().manual_seed(0)
    )
    mean, std = gauss.get_mean_std(states)
    expected = ((mean - det(states)) ** 2 + std**2).sum(-1)
    assert torch.allclose(est, expected, rtol=0.02)


def test_gradients_reach_only_the_current_actor():
    a, b = _gaussian_pair()
    states = torch.randn(5, 3)
    w2_squared(a, b, states, "closed_form").mean().backward()
    assert all(p.grad is not None for p in a.parameters())
    assert all(p.grad is None for p in b.parameters())


def test_auto_method_follows_policy_types():
    S, A = 3, 2
    g, t = GaussianMLP(S, A), TanhGaussianMLP(S, A)
    s, d = StochasticMLP(S, A), DeterministicMLP(S, A)
    assert resolve_w2_method(g, g) == "closed_form"
    assert resolve_w2_method(t, t) == "shared_noise"
    assert resolve_w2_method(s, s) == "sinkhorn"
    assert resolve_w2_method(t, s) == "sinkhorn"
    assert resolve_w2_method(d, d) == "l2"
    assert resolve_w2_method(g, d) == "l2"
    assert resolve_w2_method(t, t, "sinkhorn") == "sinkhorn"
    with pytest.raises(ValueError, match="closed_form needs two Gaussian"):
        resolve_w2_method(t, t, "closed_form")
    with pytest.raises(ValueError, match="w2_method must be one of"):
        resolve_w2_method(t, t, "emd")


def test_tanh_shared_noise_is_exact_in_three_dimensions_through_the_actor():
    """Two TanhGaussianMLP actors (3 action dims, max_action 2): each is a product of 1-D
    tanh-Gaussians per state, so the exact W2^2 is the sum over dimensions of the 1-D quantile
    couplings, integral_0^1 (F1^-1(u) - F2^-1(u))^2 du with F^-1(u) = 2 tanh(mu + sigma Phi^-1(u)).
    The shared-noise estimate (noise coordinate d drives action d of both actors) must give it;
    a high-K Sinkhorn, which knows nothing of the coupling, must agree."""
    torch.manual_seed(0)
    S = 4
    a = TanhGaussianMLP(S, 3, max_action=2.0, hidden_dim=16)
    b = TanhGaussianMLP(S, 3, max_action=2.0, hidden_dim=16)
    with torch.no_grad():  # pre-tanh means and log-stds near these, varying a little by state
        for actor, means, log_stds in (
            (a, [0.3, 0.0, -0.2], [0.0, -1.0, -0.3]),
            (b, [0.1, 0.5, -0.4], [-0.3, 0.2, 0.0]),
        ):
            actor.net[-1].weight.mul_(0.2)
            actor.net[-1].bias.copy_(torch.tensor(means + log_stds))
    states = torch.randn(2, S, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        mean_a, std_a = (t.double()[..., None] for t in a.get_mean_std(states))  # [B, A, 1]
        mean_b, std_b = (t.double()[..., None] for t in b.get_mean_std(states))
    z = _normal_quantiles(200_000)  # Phi^-1 at the midpoints of 200k equal slices of (0, 1)
    quantiles_a = 2.0 * torch.tanh(mean_a + std_a * z)  # [B, A, n]
    quantiles_b = 2.0 * torch.tanh(mean_b + std_b * z)
    exact = ((quantiles_a - quantiles_b) ** 2).mean(-1).sum(-1).float()  # [B]
    assert exact.tolist() == pytest.approx([0.9183, 0.9124], abs=1e-3)

    gen = torch.Generator().manual_seed(2)
    shared = w2_squared(a, b, states, "shared_noise", K=100_000, generator=gen)
    assert torch.allclose(shared, exact, rtol=0.01)
    sink = w2_squared(a, b, states, "sinkhorn", K=500, blur=0.01, generator=gen)
    assert torch.allclose(sink, exact, rtol=0.1)
