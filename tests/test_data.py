"""Data loading, D4RL semantics, CORL's normalisations, clear errors, and dataset making."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium
import h5py
import numpy as np
import pytest

from algorithms.datasets import d4rl as data_mod
from algorithms.datasets.d4rl import (
    D4RL_URL_ROOT,
    DatasetError,
    check_dims,
    compute_mean_std,
    find_d4rl_file,
    load_hdf5,
    modify_reward,
    normalize_states,
    qlearning_dataset,
    return_reward_range,
)
from algorithms.datasets.envs import (
    D4RLName,
    eval_env_id,
    make_env,
    normalized_score,
    parse_d4rl_name,
)
from algorithms.datasets.make_dataset import main as make_dataset_main
from algorithms.datasets.make_dataset import make_random_dataset
from algorithms.datasets.training_data import load_dataset


def tiny_raw(n: int = 8) -> dict[str, np.ndarray]:
    """8 rows, obs [i, 10 i], a terminal at row 2 and a timeout at row 5."""
    i = np.arange(n, dtype=np.float32)
    terminals = np.zeros(n, dtype=bool)
    terminals[2] = True
    timeouts = np.zeros(n, dtype=bool)
    timeouts[5] = True
    return {
        "observations": np.stack([i, 10 * i], axis=1),  # [8, 2]
        "actions": (0.1 * i)[:, None],  # [8, 1]
        "rewards": i + 1,  # [8]
        "next_observations": np.stack([i + 100, i + 100], axis=1),  # [8, 2], deliberately wrong
        "terminals": terminals,
        "timeouts": timeouts,
    }


def write_raw(path: Path, raw: dict[str, np.ndarray]) -> Path:
    with h5py.File(path, "w") as f:
        for k, v in raw.items():
            f.create_dataset(k, data=v)
        f.create_dataset("infos/qpos", data=np.zeros((len(raw["rewards"]), 3)))
        f.create_dataset("metadata/algorithm", data="SAC")
    return path


# ---------------------------------------------------------------- D4RL semantics


def test_qlearning_dataset_drops_timeouts_and_last_row(tmp_path: Path) -> None:
    raw = load_hdf5(write_raw(tmp_path / "tiny.hdf5", tiny_raw()))
    assert "infos" not in raw and "metadata" not in raw
    ds = qlearning_dataset(raw)
    kept = np.array([0, 1, 2, 3, 4, 6])  # 5 is a timeout, 7 is the last row
    np.testing.assert_array_equal(ds["observations"][:, 0], kept)
    np.testing.assert_array_equal(ds["next_observations"][:, 0], kept + 1)
    np.testing.assert_array_equal(ds["next_observations"][:, 1], 10 * (kept + 1))
    np.testing.assert_array_equal(ds["actions"][:, 0], np.float32(0.1) * kept.astype(np.float32))
    np.testing.assert_array_equal(ds["rewards"], kept + 1)
    np.testing.assert_array_equal(ds["terminals"], [0, 0, 1, 0, 0, 0])
    for k in ("observations", "actions", "rewards", "next_observations", "terminals"):
        assert ds[k].dtype == np.float32, k


def test_load_dataset_from_path(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "tiny.hdf5", tiny_raw())
    ds = load_dataset("hopper-medium-v2", dataset_path=str(path))
    assert ds["observations"].shape == (6, 2)


def test_return_reward_range_and_modify_reward() -> None:
    # Terminal at row 1; max 3 steps: episodes rows 0-1 (3), 2-4 (12), 5-7 (21); row 8 unfinished.
    rewards = np.array([1, 2, 3, 4, 5, 6, 7, 8, 100], dtype=np.float32)
    terminals = np.zeros(9, dtype=np.float32)
    terminals[1] = 1
    ds = {"rewards": rewards.copy(), "terminals": terminals}
    assert return_reward_range(ds, max_episode_steps=3) == (3.0, 21.0)
    modify_reward(ds, "hopper-medium-v2", max_episode_steps=3)
    np.testing.assert_allclose(ds["rewards"], rewards * 3 / 18, rtol=1e-6)

    ant = {"rewards": rewards.copy(), "terminals": terminals}
    modify_reward(ant, "antmaze-umaze-v2")
    np.testing.assert_array_equal(ant["rewards"], rewards - 1)

    other = {"rewards": rewards.copy(), "terminals": terminals}
    modify_reward(other, "pen-human-v1")
    np.testing.assert_array_equal(other["rewards"], rewards)


def test_compute_mean_std_and_normalize() -> None:
    states = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    mean, std = compute_mean_std(states, eps=1e-3)
    np.testing.assert_allclose(mean, [2.0, 1.0])
    np.testing.assert_allclose(std, [np.sqrt(8 / 3) + 1e-3, 1e-3])
    norm = normalize_states(states, mean, std)
    np.testing.assert_allclose(norm[:, 0], np.array([-2.0, 0.0, 2.0]) / (np.sqrt(8 / 3) + 1e-3))
    np.testing.assert_allclose(norm[:, 1], 0.0)


# ---------------------------------------------------------------- clear errors


def test_missing_file_names_file_and_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nope\.hdf5 does not exist.*make_dataset"):
        load_hdf5(tmp_path / "nope.hdf5")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "text.hdf5"
    path.write_text("hello")
    with pytest.raises(DatasetError, match=r"text\.hdf5 is not a readable HDF5 file"):
        load_hdf5(path)


def test_missing_key(tmp_path: Path) -> None:
    raw = tiny_raw()
    del raw["timeouts"]
    path = write_raw(tmp_path / "nokey.hdf5", raw)
    with pytest.raises(DatasetError, match=r"nokey\.hdf5: missing required key 'timeouts'"):
        load_hdf5(path)


def test_mismatched_lengths(tmp_path: Path) -> None:
    raw = tiny_raw()
    raw["actions"] = raw["actions"][:7]
    path = write_raw(tmp_path / "len.hdf5", raw)
    with pytest.raises(DatasetError, match=r"len\.hdf5: 'actions' has 7 rows but 'rewards' has 8"):
        load_hdf5(path)


def test_nan_values(tmp_path: Path) -> None:
    raw = tiny_raw()
    raw["observations"][3, 1] = np.nan
    path = write_raw(tmp_path / "nan.hdf5", raw)
    with pytest.raises(DatasetError, match=r"nan\.hdf5: 'observations' has NaN/Inf.*row 3"):
        load_hdf5(path)


def test_observations_not_2d(tmp_path: Path) -> None:
    raw = tiny_raw()
    raw["observations"] = raw["observations"][:, 0]
    path = write_raw(tmp_path / "flat.hdf5", raw)
    with pytest.raises(DatasetError, match=r"flat\.hdf5: 'observations' must be 2-D"):
        load_hdf5(path)


def test_check_dims_wrong_observation_size() -> None:
    ds = qlearning_dataset(tiny_raw())
    check_dims(ds, obs_dim=2, action_dim=1, source="tiny.hdf5")  # matches: no error
    pattern = r"tiny\.hdf5: observations have 2 columns.*Hopper-v4.*11"
    with pytest.raises(DatasetError, match=pattern):
        check_dims(ds, obs_dim=11, action_dim=1, source="tiny.hdf5", env_id="Hopper-v4")
    with pytest.raises(DatasetError, match=r"tiny\.hdf5: actions have 1 columns.*size 3"):
        check_dims(ds, obs_dim=2, action_dim=3, source="tiny.hdf5")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("cartpole-medium-v2", "unknown family 'cartpole'.*halfcheetah, hopper, walker2d"),
        ("hopper-meduim-v2", "unknown kind 'meduim'.*medium-replay"),
        ("hopper-medium", "lacks a '-vN' version"),
        ("hopper-medium-v0", "unsupported version 'v0'"),
    ],
)
def test_unknown_d4rl_name(name: str, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        parse_d4rl_name(name)


# ---------------------------------------------------------------- names, envs, scores


def test_parse_d4rl_name_and_file_name() -> None:
    name = parse_d4rl_name("hopper-medium-replay-v2")
    assert name == D4RLName("hopper", "medium-replay", "v2")
    assert name.task == "medium-replay-v2"
    assert name.file_name == "hopper_medium_replay-v2.hdf5"
    assert parse_d4rl_name("halfcheetah-full-replay-v2").file_name == (
        "halfcheetah_full_replay-v2.hdf5"
    )
    assert eval_env_id("walker2d-expert-v2", None) == "Walker2d-v4"
    assert eval_env_id("walker2d-expert-v2", "Walker2d-v5") == "Walker2d-v5"


def test_normalized_score() -> None:
    scores = normalized_score("hopper", np.array([-20.272305, 3234.3, 1607.013995]))
    np.testing.assert_allclose(scores, [0.0, 100.0, 50.0], atol=1e-6)


def test_make_env_silences_the_v4_deprecation() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium.make("Hopper-v4").close()  # control: gymnasium does warn
        assert any("out of date" in str(w.message) for w in caught)
        caught.clear()
        env = make_env("Hopper-v4")
        assert env.observation_space.shape == (11,)
        env.close()
    assert not [w for w in caught if "out of date" in str(w.message)]


# ---------------------------------------------------------------- D4RL file lookup


def test_find_d4rl_file_in_env_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    write_raw(tmp_path / "hopper_medium-v2.hdf5", tiny_raw())
    assert find_d4rl_file("hopper-medium-v2", download=False) == tmp_path / "hopper_medium-v2.hdf5"


def test_find_d4rl_file_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    url = f"{D4RL_URL_ROOT}/walker2d_medium_expert-v2.hdf5"
    with pytest.raises(DatasetError) as err:
        find_d4rl_file("walker2d-medium-expert-v2", download=False)
    msg = str(err.value)
    assert "\n" not in msg
    for part in ("walker2d_medium_expert-v2.hdf5", url, str(tmp_path), "dataset_path:"):
        assert part in msg


def test_find_d4rl_file_download_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))

    def fail(url: str, dest: Path, timeout: float = 0.0) -> None:
        raise OSError("no network")

    monkeypatch.setattr(data_mod, "_download", fail)
    with pytest.raises(DatasetError, match=r"hopper_expert-v2\.hdf5.*download failed.*no network"):
        find_d4rl_file("hopper-expert-v2")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- make_dataset


def hopper_unhealthy(obs: np.ndarray) -> np.ndarray:
    """Hopper-v4's termination rule on observations [N, 11] (height, angle, then the rest)."""
    height, angle = obs[:, 0], obs[:, 1]
    healthy = (height > 0.7) & (np.abs(angle) < 0.2) & (np.abs(obs[:, 1:]) < 100).all(axis=1)
    return ~healthy


def test_make_random_dataset_deterministic_and_correct() -> None:
    a = make_random_dataset("hopper-random-v2", size=300, seed=0)
    b = make_random_dataset("hopper-random-v2", size=300, seed=0)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a["observations"].shape == (300, 11) and a["next_observations"].shape == (300, 11)
    assert a["actions"].shape == (300, 3) and a["rewards"].shape == (300,)
    assert a["observations"].dtype == np.float32 and a["terminals"].dtype == bool
    assert np.abs(a["actions"]).max() <= 1.0

    # Random hopper falls within ~10-50 steps: several terminations, exactly where the env says.
    assert a["terminals"].sum() >= 3
    np.testing.assert_array_equal(a["terminals"], hopper_unhealthy(a["next_observations"]))
    # No 1000-step episode fits in 300 rows: the only timeout is the final cut (if not terminal).
    assert a["timeouts"][:-1].sum() == 0
    assert a["timeouts"][-1] != a["terminals"][-1]
    # Within an episode the next observation is the next row's observation.
    cont = ~(a["terminals"] | a["timeouts"])[:-1]
    np.testing.assert_array_equal(a["next_observations"][:-1][cont], a["observations"][1:][cont])

    c = make_random_dataset("hopper-random-v2", size=300, seed=1)
    assert not np.array_equal(a["actions"], c["actions"])


def test_make_dataset_main_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "hopper_random-v2.hdf5"
    args = ["--env", "hopper-random-v2", "--size", "120", "--seed", "3", "--out", str(out)]
    make_dataset_main(args)
    raw = load_hdf5(out)
    expected = make_random_dataset("hopper-random-v2", size=120, seed=3)
    for k in expected:
        np.testing.assert_array_equal(raw[k], expected[k], err_msg=k)
    ds = qlearning_dataset(raw)
    n_kept = 119 - int(raw["timeouts"][:119].sum())
    assert ds["observations"].shape == (n_kept, 11)
    with h5py.File(out, "r") as f:
        assert f.attrs["env_name"] == "hopper-random-v2"
        assert f.attrs["gymnasium_env_id"] == "Hopper-v4"
        assert f.attrs["policy"] == "uniform random"
        assert f.attrs["seed"] == 3 and f.attrs["size"] == 120
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left
