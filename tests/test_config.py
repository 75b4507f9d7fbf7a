"""Config parsing: YAML + CLI, and a one-line error naming the key for every bad input;
checking changes nothing, resolving is one step of its own."""

import dataclasses
from pathlib import Path

import pytest

from algorithms.errors import WandbError
from algorithms.offline.config import ALGORITHMS, ConfigError, load_algorithm, parse_config
from algorithms.offline.run_io import init_wandb

ROOT = Path(__file__).resolve().parents[1]
#: every shipped config: the generated ones and the quickstarts
SHIPPED_CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
#: `energy_normalize_q` when null: what each algorithm's own actor loss does
ENERGY_NORMALIZE_Q_DEFAULTS = {
    "iql": True,  # the chain study's pilot (IQL's loss has no Q scale)
    "td3_bc": True,
    "cql": False,
    "awac": True,  # as IQL
    "sac_n": False,
    "edac": False,
    "rebrac": True,  # its normalize_q
    "fql": False,  # its normalize_q_loss
}


def _yaml(tmp_path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_then_cli_override(tmp_path):
    path = _yaml(tmp_path, "algorithm: td3_bc\nenv: hopper-medium-v2\nalpha: 5.0\nseed: 3\n")
    config = parse_config(["--config_path", path, "--seed", "7", "--w2_weights", "[1, 2]"])
    assert type(config).__module__ == "algorithms.offline.td3_bc"
    assert (config.alpha, config.seed, config.w2_weights) == (5.0, 7, [1.0, 2.0])
    assert config.use_wandb is True
    assert parse_config(["--config_path", path, "--no_wandb"]).use_wandb is False


def test_scalar_w2_weight_applies_to_every_chain_actor():
    config = parse_config(["--num_actors", "4", "--w2_weights", "50"])
    assert config.w2_weights == [50.0, 50.0, 50.0]


def test_actor_configs_from_cli():
    config = parse_config(["--actor_configs", "[{type: stochastic}, {type: gaussian}]"])
    assert config.actor_configs == [{"type": "stochastic"}, {"type": "gaussian"}]


@pytest.mark.parametrize(
    "text,match",
    [
        ("algorithm: iql\nbetta: 3.0\n", r"unknown config key 'betta'.*did you mean 'beta'"),
        ("algorithm: iql\nalpha: 2.5\n", r"unknown config key 'alpha'"),  # a td3_bc key
        (
            "algorithm: sac\n",
            r"algorithm: unknown 'sac'; known: \['awac', 'cql', 'edac', 'fql', 'iql', 'rebrac', 'sac_n', 'td3_bc'\]",
        ),
        ("seed: abc\n", r"seed: cannot read 'abc' as"),
        ("num_actors: 3\nw2_weights: [1, 2, 3]\n", r"w2_weights: 3 values for num_actors=3"),
        ("num_actors: 0\n", r"num_actors: must be >= 1"),
        ("w2_weights: [-1.0]\n", r"w2_weights: must be finite and >= 0"),
        ("w2_weights: [.nan]\n", r"w2_weights: must be finite and >= 0"),
        ("resume: true\noverwrite: true\n", r"resume: --resume continues a run.*pick one"),
        ("keep_checkpoints: 0\n", r"keep_checkpoints: must be >= 1"),
        ("sinkhorn_K: 0\n", r"sinkhorn_K: must be >= 1"),
        ("w2_method: emd\n", r"w2_method: must be one of"),
        ("eval_mode: greedy\n", r"eval_mode: must be one of"),
        ("num_actors: 3\nactor_configs: [{type: gaussian}]\n", r"actor_configs: 1 entries"),
        ("settle_steps: -5\n", r"settle_steps: must be >= 0, got -5"),
        ("num_actors: 1\nsettle_steps: 10\n", r"settle_steps: it trains actors i >= 1"),
        (
            "num_actors: 3\nsettle_steps: 10\nsettle_w2_weights: [1, 2, 3]\n",
            r"settle_w2_weights: 3 values",
        ),
        (
            "settle_steps: 10\nsettle_w2_weights: [.inf]\n",
            r"settle_w2_weights: must be finite and >= 0",
        ),
        ("settle_lr_schedule: linear\n", r"settle_lr_schedule: must be one of \('constant', "),
        ("settle_from_predecessor: true\n", r"settle_from_predecessor: needs a settle phase"),
        ("resume_step: 5\n", r"resume_step: needs --resume"),
        ("- a\n- b\n", r"must be a mapping of config keys"),
    ],
)
def test_bad_config_fails_with_the_key_named(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match) as err:
        parse_config(["--config_path", _yaml(tmp_path, text)])
    assert "\n" not in str(err.value)


def test_bad_cli_key_and_missing_file():
    with pytest.raises(
        ConfigError, match=r"command line: unknown config key 'num_actor'.*'num_actors'"
    ):
        parse_config(["--num_actor", "3"])
    with pytest.raises(ConfigError, match=r"config_path: no such file nowhere.yaml"):
        parse_config(["--config_path", "nowhere.yaml"])


def test_wandb_without_account_names_the_ways_out(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(WandbError, match=r"use_wandb: .*--no_wandb.*WANDB_MODE=offline"):
        init_wandb(parse_config([]), tmp_path)


def test_settle_weights_are_not_checked_without_a_settle_phase(tmp_path):
    """A list for a phase that does not run is not checked (a single value is still resolved)."""
    cases = {"[1, 2, 3]": [1.0, 2.0, 3.0], "[.inf]": [float("inf")] * 2, "[-1.0]": [-1.0] * 2}
    for weights, resolved in cases.items():
        path = _yaml(tmp_path, f"num_actors: 3\nsettle_steps: 0\nsettle_w2_weights: {weights}\n")
        assert parse_config(["--config_path", path]).settle_w2_weights == resolved
        with pytest.raises(ConfigError, match="settle_w2_weights: "):  # checked once it runs
            parse_config(["--config_path", path, "--settle_steps", "5"])


def test_scalar_settle_w2_weight_applies_to_every_chain_actor():
    argv = ["--num_actors", "4", "--settle_steps", "5", "--settle_w2_weights", "0.5"]
    assert parse_config(argv).settle_w2_weights == [0.5, 0.5, 0.5]
    argv = ["--num_actors", "4", "--settle_steps", "5", "--settle_w2_weights", "[0.5]"]
    assert parse_config(argv).settle_w2_weights == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_check_leaves_the_config_unchanged(algorithm):
    cls = load_algorithm(algorithm).Config
    settle = 0 if getattr(load_algorithm(algorithm), "BACKEND", "") == "jax" else 3  # no settle
    config = cls(num_actors=4, w2_weights=[5.0], settle_steps=settle, settle_w2_weights=[0.5])
    assert config.energy_normalize_q is None
    before = dataclasses.asdict(config)
    config.check()
    config.check_energy()
    assert dataclasses.asdict(config) == before


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_resolve_broadcasts_single_weights_and_fills_the_energy_default(algorithm):
    cls = load_algorithm(algorithm).Config
    config = cls(num_actors=4, w2_weights=[5.0], settle_w2_weights=[0.5])
    config.resolve()
    assert config.w2_weights == [5.0, 5.0, 5.0]
    assert config.settle_w2_weights == [0.5, 0.5, 0.5]
    assert config.energy_normalize_q is ENERGY_NORMALIZE_Q_DEFAULTS[algorithm]
    resolved = dataclasses.asdict(config)
    config.resolve()  # once resolved, resolving again changes nothing
    assert dataclasses.asdict(config) == resolved

    explicit = cls(num_actors=3, w2_weights=[1.0, 2.0], energy_normalize_q=False)
    explicit.resolve()  # a full list and a set switch stay as given
    assert (explicit.w2_weights, explicit.energy_normalize_q) == ([1.0, 2.0], False)
    assert explicit.settle_w2_weights is None
    single = cls(num_actors=1, w2_weights=[5.0])
    single.resolve()
    assert single.w2_weights == [5.0]  # no chain actor to give it to


def test_jax_energy_defaults_follow_their_own_q_switches():
    rebrac = parse_config(["--algorithm", "rebrac", "--normalize_q", "false"])
    fql = parse_config(["--algorithm", "fql", "--normalize_q_loss", "true"])
    assert (rebrac.energy_normalize_q, fql.energy_normalize_q) == (False, True)


def test_parse_config_returns_the_resolved_config():
    config = parse_config(["--algorithm", "td3_bc", "--num_actors", "3", "--w2_weights", "[7]"])
    assert (config.w2_weights, config.energy_normalize_q) == ([7.0, 7.0], True)


@pytest.mark.parametrize("algorithm", ["iql", "td3_bc", "cql", "awac", "sac_n", "edac"])
def test_build_writes_nothing_into_the_config(algorithm):
    argv = ["--algorithm", algorithm, "--num_actors", "3"]
    if algorithm in ("sac_n", "edac"):
        argv += ["--num_critics", "2", "--hidden_dim", "8"]
    config = parse_config(argv)
    before = dataclasses.asdict(config)
    load_algorithm(algorithm).build(config, 4, 2, 1.0, "cpu")
    assert dataclasses.asdict(config) == before


@pytest.mark.parametrize(
    "path", SHIPPED_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs"))
)
def test_shipped_config_takes_num_actors_alone(path):
    """`--num_actors N` with no other override: per-actor lists hold one value for all."""
    config = parse_config(["--config_path", str(path), "--num_actors", "5"])
    assert config.num_actors == 5 and len(config.w2_weights) == 4
    if config.settle_w2_weights is not None:
        assert len(config.settle_w2_weights) == 4
