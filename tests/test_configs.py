"""The shipped configs parse, name a known algorithm, and match the generator's table."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from algorithms.networks.actors import DeterministicMLP
from algorithms.offline.config import ALGORITHMS, parse_config
from algorithms.offline.w2 import w2_squared

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def _generator():
    spec = importlib.util.spec_from_file_location("make_configs", ROOT / "scripts/make_configs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_parses(path):
    config = parse_config(["--config_path", str(path)])
    assert config.algorithm in ALGORITHMS
    assert len(config.w2_weights) == config.num_actors - 1


def test_every_env_dataset_algorithm_has_a_config_matching_the_table(tmp_path):
    generator = _generator()
    written = generator.write_all(tmp_path / "pogo_multi", tmp_path / "pogo_paper")
    assert len(written) == 3 * 5 * len(ALGORITHMS) + 3 * 5  # and the paper's, TD3+BC only
    for path in written:
        shipped = ROOT / "configs/offline" / path.relative_to(tmp_path)
        assert shipped.read_text() == path.read_text(), f"{shipped}: run scripts/make_configs.py"


@pytest.mark.parametrize(("env", "action_dim"), [("hopper", 3), ("walker2d", 6)])
def test_the_paper_protocol_is_td3_bc_with_two_actors_and_its_own_bc_strength(env, action_dim):
    """The paper's configs: 2 actors, equal joint and settle phases at one weight, which is
    TD3+BC's BC term on the chain's scale: w * W2^2 (summed over action dims) at w = 1 / A is
    TD3+BC's mean squared error to the previous actor's action."""
    path = ROOT / f"configs/offline/pogo_paper/{env}/medium_v2_td3_bc.yaml"
    config = parse_config(["--config_path", str(path)])
    assert (config.algorithm, config.num_actors, config.joint_chain) == ("td3_bc", 2, True)
    assert config.max_timesteps == config.settle_steps == 500_000
    assert config.settle_lr_schedule == "constant" and not config.settle_from_predecessor
    assert config.w2_weights == config.settle_w2_weights == [round(1 / action_dim, 4)]
    shipped = parse_config(
        ["--config_path", str(ROOT / f"configs/offline/pogo_multi/{env}/medium_v2_td3_bc.yaml")]
    )
    assert (config.alpha, config.policy_freq, config.tau) == (
        shipped.alpha,
        shipped.policy_freq,
        shipped.tau,
    )
    torch.manual_seed(0)
    state_dim = 11 if env == "hopper" else 17
    actor, previous = (DeterministicMLP(state_dim, action_dim, 1.0) for _ in range(2))
    states = torch.randn(64, state_dim)
    w2 = w2_squared(actor, previous, states, "l2").mean()
    mse = F.mse_loss(actor(states), previous(states).detach())
    torch.testing.assert_close(config.w2_weights[0] * w2, mse, rtol=1e-3, atol=0)


def test_corl_per_dataset_values_are_in_the_configs():
    hopper = parse_config(
        ["--config_path", str(ROOT / "configs/offline/pogo_multi/hopper/medium_v2_iql.yaml")]
    )
    assert (hopper.iql_deterministic, hopper.normalize_reward, hopper.tau) == (True, True, 0.001)
    me = parse_config(
        ["--config_path", str(ROOT / "configs/offline/pogo_multi/hopper/medium_expert_v2_iql.yaml")]
    )
    assert (me.beta, me.iql_tau, me.iql_deterministic) == (6.0, 0.5, False)
