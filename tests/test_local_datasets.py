"""Datasets made here: behaviour actors, the collector's kinds, first-use making, and Minari."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from algorithms.datasets import behavior_policy, minari_io
from algorithms.datasets import make_dataset as make_dataset_module
from algorithms.datasets.behavior_policy import (
    ACTORS_DIR,
    BehaviorPolicyError,
    available_levels,
    load_behavior_actor,
    rollout_returns,
    sb3_to_actor,
)
from algorithms.datasets.d4rl import DatasetError, load_hdf5, write_hdf5
from algorithms.datasets.envs import ENV_IDS, make_env
from algorithms.datasets.make_dataset import (
    actor_policy,
    episode_returns,
    make_dataset,
    rollout,
)
from algorithms.datasets.make_dataset import main as make_dataset_main
from algorithms.datasets.training_data import load_dataset
from algorithms.networks.actors import TanhGaussianMLP
from algorithms.offline import pogo_multi_main
from algorithms.offline.config import ConfigError, parse_config

from .test_data import hopper_unhealthy

ROOT = Path(__file__).resolve().parents[1]
# Families whose medium actor ships in algorithms/datasets/behavior_actors/ (what docs/datasets.md says).
SHIPPED_MEDIUM = ("halfcheetah", "hopper", "walker2d")


# ---------------------------------------------------------------- shipped behaviour actors


@pytest.mark.parametrize("family", SHIPPED_MEDIUM)
def test_shipped_medium_actors_and_their_records(family: str) -> None:
    assert "medium" in available_levels(family)
    actor, record = load_behavior_actor(family, "medium")
    assert record["family"] == family and record["level"] == "medium"
    # "medium": between a third and (about) a half of D4RL's expert return, as recorded
    assert record["target_return"] <= record["sb3_eval_return"]
    assert 25.0 <= record["normalized_score"] <= 70.0
    assert record["env_steps"] > 0 and isinstance(record["seed"], int)
    size = (ACTORS_DIR / f"{family}_medium.pt").stat().st_size
    assert size < 1_000_000  # an actor's state dict, no critics or optimiser
    env = make_env(ENV_IDS[family])
    assert actor.state_dim == env.observation_space.shape[0]
    assert actor.action_dim == env.action_space.shape[0]


@pytest.mark.parametrize("family", SHIPPED_MEDIUM)
def test_shipped_medium_actor_is_far_better_than_random_on_a_short_episode(family: str) -> None:
    actor, _ = load_behavior_actor(family, "medium")
    medium = rollout_returns(actor, family, episodes=1, seed=0, max_steps=200)[0]
    random = rollout(family, 400, 0, None, max_episode_steps=200)
    random_best = episode_returns(random).max()  # the best of the random episodes
    # hopper: a random policy falls within a few dozen steps (return ~20); halfcheetah: it
    # goes nowhere (return ~ -60 in 200 steps); a medium policy runs
    assert medium > 150.0 and medium > random_best + 100.0


def test_medium_dataset_from_the_shipped_actor_with_the_default_folder(tmp_path: Path) -> None:
    """docs/datasets.md's command as a user types it (no --actors_dir), with few rows: every
    action is the shipped hopper actor's sample, a_t = tanh(mu(o_t) + sigma(o_t) z_t), with z_t
    the seed's t-th draw; the actor is read here from its files, not through the code that ran."""
    out = tmp_path / "data" / "hopper_medium-v2.hdf5"
    cmd = [sys.executable, "-m", "algorithms.datasets.make_dataset", "--env", "hopper-medium-v2"]
    cmd += ["--size", "60", "--seed", "0", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}: 60 rows, ")
    made = load_hdf5(out)
    record = json.loads((ACTORS_DIR / "hopper_medium.json").read_text())
    with h5py.File(out, "r") as f:
        assert f.attrs["kind"] == "medium" and f.attrs["seed"] == 0 and f.attrs["size"] == 60
        assert f.attrs["policy"] == "medium behaviour actor, sampled"
        assert json.loads(f.attrs["behavior"]) == {"medium": record}
    arch = record["architecture"]
    actor = TanhGaussianMLP(
        arch["state_dim"],
        arch["action_dim"],
        hidden_dim=arch["hidden_dim"],
        n_hidden=arch["n_hidden"],
        log_std_min=arch["log_std_min"],
        log_std_max=arch["log_std_max"],
    )
    actor.load_state_dict(torch.load(ACTORS_DIR / "hopper_medium.pt", weights_only=True))
    generator = torch.Generator().manual_seed(0)
    noise = torch.cat([torch.randn((1, 3), generator=generator) for _ in range(60)])  # [60, 3]
    with torch.no_grad():
        mean, std = actor.get_mean_std(torch.as_tensor(made["observations"]))  # [60, 3] x 2
    expected = arch["max_action"] * torch.tanh(mean + std * noise)
    np.testing.assert_allclose(made["actions"], expected.numpy(), atol=1e-6)
    assert np.abs(made["actions"] - torch.tanh(mean).numpy()).mean() > 1e-2  # sampled
    env = make_env("Hopper-v4")
    np.testing.assert_array_equal(made["observations"][0], env.reset(seed=0)[0].astype(np.float32))


def test_missing_level_names_the_file_and_the_training_command(tmp_path: Path) -> None:
    with pytest.raises(BehaviorPolicyError, match="no expert behaviour actor for hopper") as e:
        load_behavior_actor("hopper", "expert", actors_dir=tmp_path)
    assert "python -m algorithms.datasets.behavior_policy --env hopper" in str(e.value)


def test_sb3_actor_converts_exactly() -> None:
    import stable_baselines3 as sb3  # requirements_behavior.txt; CI installs it

    env = make_env("Hopper-v4")
    model = sb3.SAC("MlpPolicy", env, seed=0, device="cpu")
    actor = sb3_to_actor(model.actor, 11, 3)
    states = torch.randn(64, 11)
    with torch.no_grad():
        sb3_mean, sb3_log_std, _ = model.actor.get_action_dist_params(states)
        mean, std = actor.get_mean_std(states)
        torch.testing.assert_close(mean, sb3_mean)
        torch.testing.assert_close(std.log(), sb3_log_std.clamp(-20, 2))
        torch.testing.assert_close(
            actor.mean_actions(states), model.actor(states, deterministic=True)
        )


def test_behavior_training_saves_actor_and_replay_that_make_datasets(
    tiny_behavior, tmp_path: Path
) -> None:
    actors, replay = tiny_behavior
    actor, record = load_behavior_actor("hopper", "medium", actors_dir=actors)
    assert record["env_steps"] == 200 and record["replay_buffer_rows"] == 199
    assert record["architecture"]["log_std_min"] == -20.0

    # medium-replay: the buffer's rows as D4RL's layout, the last `size` of them
    out = tmp_path / "mr.hdf5"
    argv = ["--env", "hopper-medium-replay-v2", "--size", "150", "--out", str(out)]
    make_dataset_main([*argv, "--replay_dir", str(replay)])
    buffer = load_hdf5(behavior_policy.replay_path("hopper", replay))
    made = load_hdf5(out)
    assert len(buffer["rewards"]) == 199 and len(made["rewards"]) == 150
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_array_equal(made[key], buffer[key][-150:], err_msg=key)
    np.testing.assert_array_equal(made["terminals"], hopper_unhealthy(made["next_observations"]))
    assert made["timeouts"][-1] != made["terminals"][-1]
    with h5py.File(out, "r") as f:
        assert f.attrs["kind"] == "medium-replay"
        assert json.loads(f.attrs["behavior"])["medium-replay"]["env_steps"] == 200

    # D4RL's size: the whole buffer, as D4RL's medium-replay files hold; more than it is refused
    whole = tmp_path / "whole.hdf5"
    make_dataset_main(
        ["--env", "hopper-medium-replay-v2", "--size", "d4rl", "--out", str(whole)]
        + ["--replay_dir", str(replay)]
    )
    made = load_hdf5(whole)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_array_equal(made[key], buffer[key], err_msg=key)
    with h5py.File(whole, "r") as f:
        assert f.attrs["size"] == 199
    with pytest.raises(DatasetError, match=r"holds 199 rows, fewer than the 200 asked for"):
        make_dataset("hopper-medium-replay-v2", 200, 0, replay_dir=replay)


def test_size_none_is_d4rls_size_for_the_kind(monkeypatch) -> None:
    # D4RL's 1M rows take minutes to make: a smaller table entry checks that None reads it
    monkeypatch.setitem(make_dataset_module.D4RL_SIZES, "random", 37)
    data, attrs = make_dataset("hopper-random-v2", None, 0)
    assert len(data["rewards"]) == 37 and attrs["size"] == 37
    assert make_dataset_module.D4RL_SIZES["medium"] == 1_000_000


def test_medium_replay_without_a_buffer_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(BehaviorPolicyError, match="replay buffer") as e:
        make_dataset("hopper-medium-replay-v2", 100, 0, replay_dir=tmp_path)
    assert "--stop_after medium" in str(e.value)


# ---------------------------------------------------------------- the collector


def test_medium_collector_layout_episode_ends_and_seeds(tiny_behavior) -> None:
    actor, _ = load_behavior_actor("hopper", "medium", actors_dir=tiny_behavior[0])
    # a 12-step time limit, so a few hundred rows hold both cuts and (perhaps) falls
    a = rollout("hopper", 300, 0, actor_policy(actor, 0), max_episode_steps=12)
    b = rollout("hopper", 300, 0, actor_policy(actor, 0), max_episode_steps=12)
    c = rollout("hopper", 300, 1, actor_policy(actor, 1), max_episode_steps=12)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(a["actions"], c["actions"])
    assert a["observations"].shape == (300, 11) and a["actions"].shape == (300, 3)
    assert not (a["terminals"] & a["timeouts"]).any()
    np.testing.assert_array_equal(a["terminals"], hopper_unhealthy(a["next_observations"]))
    # every episode that does not fall is cut at exactly 12 steps (the last row: where size ends)
    ends = np.flatnonzero(a["terminals"] | a["timeouts"])
    lengths = np.diff(np.concatenate([[-1], ends]))
    assert (lengths[:-1][a["timeouts"][ends][:-1]] == 12).all()
    assert a["timeouts"].sum() >= 3
    # sampled, not the mean: actions differ from the deterministic ones
    means = actor.mean_actions(torch.as_tensor(a["observations"])).detach().numpy()
    assert np.abs(means - a["actions"]).mean() > 1e-3


def test_medium_expert_is_medium_then_expert(tiny_behavior, tmp_path: Path) -> None:
    # an "expert" that is a copy of the medium actor: the concatenation logic is what is tested
    for suffix in ("pt", "json"):
        source = tiny_behavior[0] / f"hopper_medium.{suffix}"
        shutil.copy(source, tmp_path / f"hopper_medium.{suffix}")
        shutil.copy(source, tmp_path / f"hopper_expert.{suffix}")
    both, attrs = make_dataset("hopper-medium-expert-v2", 201, 5, actors_dir=tmp_path)
    medium, _ = make_dataset("hopper-medium-v2", 100, 5, actors_dir=tmp_path)
    expert, _ = make_dataset("hopper-expert-v2", 101, 6, actors_dir=tmp_path)
    for key in both:
        np.testing.assert_array_equal(both[key], np.concatenate([medium[key], expert[key]]))
    assert attrs["kind"] == "medium-expert" and attrs["size"] == 201
    assert set(json.loads(attrs["behavior"])) == {"medium", "expert"}


def test_unmakeable_kind_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cannot make 'full-replay' datasets"):
        make_dataset_main(["--env", "hopper-full-replay-v2", "--out", str(tmp_path / "x.hdf5")])
    assert not (tmp_path / "x.hdf5").exists()


# ---------------------------------------------------------------- first use in the main


def test_main_makes_a_missing_dataset_then_reuses_it(tiny_run_args, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "hopper_random-v2.hdf5"
    argv = tiny_run_args(
        "iql",
        2,
        env="hopper-random-v2",
        dataset_path=path,
        make_dataset_size=400,
        make_dataset_seed=3,
    )
    root = pogo_multi_main.main(argv)
    with h5py.File(path, "r") as f:
        assert f.attrs["kind"] == "random" and f.attrs["size"] == 400 and f.attrs["seed"] == 3
    made = load_hdf5(path)
    expected, _ = make_dataset("hopper-random-v2", 400, 3)
    np.testing.assert_array_equal(made["actions"], expected["actions"])
    with (root / "logs" / "eval.csv").open() as f:
        assert {int(r["actor"]) for r in csv.DictReader(f)} == {0, 1}

    stamp = path.stat().st_mtime_ns
    pogo_multi_main.main([*argv, "--overwrite"])
    assert path.stat().st_mtime_ns == stamp  # the cache is reused, not remade


def test_make_dataset_size_needs_a_path_and_excludes_minari() -> None:
    with pytest.raises(ConfigError, match="make_dataset_size: needs dataset_path"):
        parse_config(["--algorithm", "iql", "--make_dataset_size", "100"])
    with pytest.raises(ConfigError, match="minari_id: set either minari_id or dataset_path"):
        parse_config(["--minari_id", "a/b-v0", "--dataset_path", "x.hdf5"])


# ---------------------------------------------------------------- Minari


@pytest.fixture
def minari_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def test_minari_round_trip_is_exact(minari_dir: Path, tmp_path: Path) -> None:
    data = rollout("hopper", 250, 0, None, max_episode_steps=40)  # falls and cuts
    path = tmp_path / "hopper_random.hdf5"
    write_hdf5(path, data, {})
    exported = minari_io.export_minari(path, "hopper-random-v2", "test/hopper/random-v0")
    assert exported.total_steps == 250
    assert exported.total_episodes == int((data["terminals"] | data["timeouts"]).sum())
    assert (minari_dir / "test" / "hopper" / "random-v0").is_dir()

    back = minari_io.load_minari("test/hopper/random-v0")
    for key in data:
        np.testing.assert_array_equal(back[key], data[key], err_msg=key)
    # the same transitions reach training as from the HDF5 file
    via_minari = load_dataset("hopper-random-v2", minari_id="test/hopper/random-v0")
    via_file = load_dataset("hopper-random-v2", dataset_path=str(path))
    for key in via_file:
        np.testing.assert_array_equal(via_minari[key], via_file[key], err_msg=key)


def test_minari_dataset_made_with_minaris_own_api_trains(
    minari_dir: Path, tiny_run_args, synthetic_dataset
) -> None:
    import minari
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(0)
    buffers = []
    for length, terminated in ((80, True), (120, False)):
        buffers.append(
            EpisodeBuffer(
                observations=rng.normal(size=(length + 1, 11)).astype(np.float32),
                actions=rng.uniform(-1, 1, size=(length, 3)).astype(np.float32),
                rewards=rng.normal(size=length).astype(np.float32).tolist(),
                terminations=[False] * (length - 1) + [terminated],
                truncations=[False] * (length - 1) + [not terminated],
                infos={},
            )
        )
    minari.create_dataset_from_buffers("test/hopper/tiny-v0", buffers, env=make_env("Hopper-v4"))
    raw = minari_io.load_minari("test/hopper/tiny-v0")
    assert len(raw["rewards"]) == 200
    assert np.flatnonzero(raw["terminals"]).tolist() == [79]
    assert np.flatnonzero(raw["timeouts"]).tolist() == [199]

    argv = tiny_run_args("td3_bc", 2)
    i = argv.index("--dataset_path")
    argv = argv[:i] + argv[i + 2 :] + ["--minari_id", "test/hopper/tiny-v0"]
    root = pogo_multi_main.main(argv)
    with (root / "logs" / "eval.csv").open() as f:
        assert {int(r["actor"]) for r in csv.DictReader(f)} == {0, 1}


def test_missing_minari_id_fails_clearly_without_download(minari_dir: Path) -> None:
    with pytest.raises(DatasetError, match="'mujoco/hopper/medium-v0' is not installed") as e:
        load_dataset("hopper-medium-v2", minari_id="mujoco/hopper/medium-v0")
    assert "no download is tried" in str(e.value) and str(minari_dir) in str(e.value)
