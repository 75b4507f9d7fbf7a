"""Bad input becomes one line naming what to fix, each kind with its own error class; a bug in
the code keeps its traceback."""

import pytest

from algorithms import errors
from algorithms.offline import iql, pogo_multi_main


@pytest.mark.parametrize(
    "extra, kind, message",
    [
        ({"batch_sise": 32}, errors.ConfigError, "unknown config key 'batch_sise'"),
        ({"dataset_path": "/nonexistent.hdf5"}, errors.DatasetError, "/nonexistent.hdf5 does"),
        ({"env": "hopper-mediocre-v2"}, errors.EnvError, "unknown kind 'mediocre'"),
        ({"eval_env": "Hoppr-v4"}, errors.EnvError, "gymnasium env 'Hoppr-v4' cannot be made"),
        ({"resume": True}, errors.CheckpointError, "holds no run to resume"),
    ],
)
def test_bad_input_is_one_line_of_its_own_kind(extra, kind, message, tiny_run_args, tmp_path):
    argv = tiny_run_args("iql", 2)
    for key, value in extra.items():
        argv += ["--resume"] if key == "resume" else [f"--{key}", str(value)]
    with pytest.raises(SystemExit) as exit_info:
        pogo_multi_main.main(argv)
    text = str(exit_info.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text
    # the same failure, below main, is raised as its own class and no other project kind
    with pytest.raises(errors.PogoError) as raised:
        pogo_multi_main.setup(pogo_multi_main.parse_config(argv))
    assert type(raised.value) is kind
    assert not (tmp_path / "results").exists() or extra.get("resume")  # nothing written


def test_wandb_without_an_account_is_its_own_kind(tiny_run_args, monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    argv = [a for a in tiny_run_args("iql", 2) if a != "--no_wandb"]
    with pytest.raises(errors.WandbError, match="use_wandb: no wandb account"):
        pogo_multi_main.setup(pogo_multi_main.parse_config(argv))


def test_a_bug_in_an_algorithm_keeps_its_traceback(tiny_run_args, monkeypatch):
    """A ValueError from inside `build()` is a bug, not bad input: main must not swallow it
    into one line."""

    def broken_build(*args, **kwargs):
        raise ValueError("a bug in build")

    monkeypatch.setattr(iql, "build", broken_build)
    with pytest.raises(ValueError, match="a bug in build"):
        pogo_multi_main.main(tiny_run_args("iql", 2))


def test_error_kinds_are_distinct():
    kinds = [
        errors.ConfigError,
        errors.DatasetError,
        errors.EnvError,
        errors.CheckpointError,
        errors.WandbError,
        errors.NonFiniteError,
    ]
    for kind in kinds:
        assert issubclass(kind, errors.PogoError)
        assert [other for other in kinds if issubclass(kind, other)] == [kind]
