"""The shipped configs parse, name a known algorithm, and match the generator's table."""

import importlib.util
from pathlib import Path

import pytest

from algorithms.offline.config import ALGORITHMS, parse_config

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
    written = generator.write_all(tmp_path)
    assert len(written) == 3 * 5 * len(ALGORITHMS)
    for path in written:
        shipped = ROOT / "configs/offline/pogo_multi" / path.relative_to(tmp_path)
        assert shipped.read_text() == path.read_text(), f"{shipped}: run scripts/make_configs.py"


def test_corl_per_dataset_values_are_in_the_configs():
    hopper = parse_config(
        ["--config_path", str(ROOT / "configs/offline/pogo_multi/hopper/medium_v2_iql.yaml")]
    )
    assert (hopper.iql_deterministic, hopper.normalize_reward, hopper.tau) == (True, True, 0.001)
    me = parse_config(
        ["--config_path", str(ROOT / "configs/offline/pogo_multi/hopper/medium_expert_v2_iql.yaml")]
    )
    assert (me.beta, me.iql_tau, me.iql_deterministic) == (6.0, 0.5, False)
