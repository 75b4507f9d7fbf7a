"""Parity with CORL: from CORL's initial weights, on the same batches, a few updates of this
project's trainers give the losses and parameters CORL's own code gives.

The reference (tests/data/corl_reference/) was made by scripts/corl_reference.py from CORL's
files at the commit named in reference.json (docs/parity.md: what it holds, how to remake it).
Tiny networks (4 states, 2 actions, 16 hidden units), batches of 6, 1 to 4 updates. Every
update of both sides starts with the same `torch.manual_seed`, and both draw their random numbers
in the same order, so the policies' samples, CQL's uniform actions and TD3+BC's target noise are
the same draws on both sides.

The tolerances are float32 rounding (RTOL, ATOL, PARAM_ATOL): on the machine that made the
reference, IQL's, TD3+BC's, CQL's and AWAC's losses and trained networks come out bit for bit and
their Polyak-averaged targets within an ulp (the project averages in place); another CPU, or JAX
jitting an update, may round its sums differently. Where the project departs from CORL, a test
says so by name ("Departure") and shows the difference; nothing is loosened to hide one. All
cases use max_action = 1 (every D4RL locomotion task): CORL ignores or hard-codes the bound in
places (IQL's and ReBRAC's actor outputs, AWAC's sample clip, the tanh policies' log-density)
where the project scales by it, so other bounds would differ, untested here.
"""

import functools
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Normal

from algorithms.networks import (
    DeterministicMLP,
    FullyConnectedQFunction,
    GaussianMLP,
    TanhGaussianMLP,
    TwinQ,
    ValueFunction,
)
from algorithms.offline import awac, cql, edac, iql, sac_n, td3_bc
from algorithms.offline.config import PogoConfig, parse_config
from algorithms.offline.interface import TrainerBase

DATA = Path(__file__).parent / "data" / "corl_reference"
REFERENCE = json.loads((DATA / "reference.json").read_text())
SIZES = REFERENCE["sizes"]
S, A, H = SIZES["state_dim"], SIZES["action_dim"], SIZES["hidden_dim"]
MAX_ACTION = SIZES["max_action"]
#: float32 rounding (a few ulps) of the losses
RTOL, ATOL = 1e-6, 1e-7
#: ... and of the parameters. Adam divides each gradient element by its own running size, so an
#: element whose gradient is a near-cancelling sum steps differently, by a small fraction of the
#: learning rate, when its rounding differs (2e-4 of it seen with ReBRAC's updates jitted or not):
#: 1e-6 is a few thousandths of one Adam step (lr 3e-4 to 1e-3); a real difference moves weights
#: by about a step.
PARAM_ATOL = 1e-6


def _arrays(case: str) -> dict[str, np.ndarray]:
    with np.load(DATA / f"{case}.npz") as npz:
        return dict(npz)


def test_reference_is_small_and_pinned():
    """The stored reference stays small and names the CORL commit it came from."""
    assert REFERENCE["corl_commit"] == "eeeeef2671235fcce3a3eb255576a207d78840e6"
    assert sum(p.stat().st_size for p in DATA.iterdir()) < 1_000_000
    expected = {"iql", "iql_deterministic", "td3_bc", "cql", "cql_branches", "cql_bc", "awac"}
    assert set(REFERENCE["cases"]) == expected | {"sac_n", "edac", "rebrac"}


# --------------------------------------------------------------------------------------------
# PyTorch: the project's trainer with CORL's weights


class Case:
    """How one reference case maps onto the project.

    `argv`: the project's config for CORL's hyperparameters; `same_hp`: project config key ->
    CORL hyperparameter name, checked equal; `rename`: CORL `<network>/<prefix>` -> the project's
    `<trainer attribute>/<prefix>` (first match wins); `concat`: project parameters made of
    several CORL ones stacked along dim 0; `narrow`: classes whose 256 units build() gives (as
    CORL hard-codes) and the test narrows to the reference's width; `corl_only_logs`: diagnostics
    CORL logs and the project does not.
    """

    def __init__(
        self,
        module: types.ModuleType,
        argv: list[str],
        same_hp: dict[str, str],
        rename: list[tuple[str, str]],
        concat: dict[str, list[str]] | None = None,
        narrow: tuple[str, ...] = (),
        corl_only_logs: tuple[str, ...] = (),
    ):
        self.module, self.argv, self.same_hp = module, argv, same_hp
        self.rename, self.concat = rename, concat or {}
        self.narrow, self.corl_only_logs = narrow, corl_only_logs


IQL_HP = {"discount": "discount", "tau": "tau", "beta": "beta", "iql_tau": "iql_tau"}
IQL_HP |= {"vf_lr": "vf_lr", "qf_lr": "qf_lr", "actor_lr": "actor_lr"}
IQL_HP |= {"max_timesteps": "max_timesteps", "iql_deterministic": "iql_deterministic"}
IQL_RENAME = [
    ("qf/", "qf/"),
    ("q_target/", "q_target/"),
    ("vf/v.net.", "vf/net."),
    ("actor/net.net.", "actor/net."),
    ("actor/log_std", "actor/log_std"),
]
IQL_NARROW = ("TwinQ", "ValueFunction", "GaussianMLP", "DeterministicMLP")
TD3_NETS = ("actor", "actor_target", "critic_1", "critic_1_target", "critic_2", "critic_2_target")
TD3_RENAME = [(f"{n}/", f"{n}/") for n in TD3_NETS]  # the same names on both sides
CQL_HP = {
    "discount": "discount",
    "tau": "soft_target_update_rate",
    "actor_lr": "policy_lr",
    "qf_lr": "qf_lr",
    "alpha_multiplier": "alpha_multiplier",
    "use_automatic_entropy_tuning": "use_automatic_entropy_tuning",
    "backup_entropy": "backup_entropy",
    "bc_steps": "bc_steps",
    "target_update_period": "target_update_period",
    "cql_n_actions": "cql_n_actions",
    "cql_importance_sample": "cql_importance_sample",
    "cql_lagrange": "cql_lagrange",
    "cql_target_action_gap": "cql_target_action_gap",
    "cql_temp": "cql_temp",
    "cql_alpha": "cql_alpha",
    "cql_max_target_backup": "cql_max_target_backup",
    "orthogonal_init": "orthogonal_init",
    "q_n_hidden_layers": "q_n_hidden_layers",
    "policy_log_std_multiplier": "policy_log_std_multiplier",
}
CQL_RENAME = [
    ("actor/base_network.", "actor/net."),
    ("actor/log_std_multiplier.constant", "actor/log_std_multiplier"),
    ("actor/log_std_offset.constant", "actor/log_std_offset"),
    ("critic_1/network.", "critic_1/net."),
    ("critic_2/network.", "critic_2/net."),
    ("target_critic_1/network.", "critic_1_target/net."),
    ("target_critic_2/network.", "critic_2_target/net."),
    ("log_alpha/constant", "log_alpha/value"),
    ("log_alpha_prime/constant", "log_alpha_prime/value"),
]
CQL_ARGV = ["--cql_n_actions", "10"]
CQL_NARROW = ("FullyConnectedQFunction", "TanhGaussianMLP")
#: CORL's spread of the penalty's Q samples, a diagnostic the project does not log
CQL_CORL_ONLY = ("cql_std_q1", "cql_std_q2")
AWAC_HP = {"discount": "gamma", "tau": "tau", "actor_lr": "learning_rate"}
AWAC_HP |= {"critic_lr": "learning_rate", "awac_lambda": "awac_lambda", "hidden_dim": "hidden_dim"}
AWAC_RENAME = [
    ("_actor/_mlp.", "actor/net."),
    ("_actor/_log_std", "actor/log_std"),
    ("_critic_1/_mlp.", "critic_1/net."),
    ("_critic_2/_mlp.", "critic_2/net."),
    ("_target_critic_1/_mlp.", "critic_1_target/net."),
    ("_target_critic_2/_mlp.", "critic_2_target/net."),
]
ENSEMBLE_HP = {"discount": "gamma", "tau": "tau", "actor_lr": "actor_learning_rate"}
ENSEMBLE_HP |= {"critic_lr": "critic_learning_rate", "alpha_lr": "alpha_learning_rate"}
ENSEMBLE_HP |= {"hidden_dim": "hidden_dim", "num_critics": "num_critics"}
ENSEMBLE_RENAME = [
    ("actor/trunk.", "actor/net."),
    ("critic/critic.", "critic/net."),
    ("target_critic/critic.", "critic_target/net."),
    ("log_alpha/value", "log_alpha/value"),
]
# CORL's actor has two heads, Linear(H, A) each for the mean and the log-std; the project's one
# Linear(H, 2A) holds them stacked, mean first (TanhGaussianMLP chunks its output in that order)
ENSEMBLE_CONCAT = {
    "actor/net.6.weight": ["actor/mu.weight", "actor/log_sigma.weight"],
    "actor/net.6.bias": ["actor/mu.bias", "actor/log_sigma.bias"],
}
ENSEMBLE_ARGV = ["--hidden_dim", str(H), "--num_critics", str(SIZES["num_critics"])]

CASES = {
    "iql": Case(iql, ["--max_timesteps", "4"], IQL_HP, IQL_RENAME, narrow=IQL_NARROW),
    "iql_deterministic": Case(
        iql,
        ["--max_timesteps", "4", "--iql_deterministic", "true"],
        IQL_HP,
        IQL_RENAME,
        narrow=IQL_NARROW,
    ),
    "td3_bc": Case(
        td3_bc,
        [],
        {k: k for k in ("discount", "tau", "policy_noise", "noise_clip", "policy_freq", "alpha")}
        | {"actor_lr": "actor_lr", "critic_lr": "critic_lr"},
        TD3_RENAME,
        narrow=("DeterministicMLP", "FullyConnectedQFunction"),
    ),
    "cql": Case(cql, CQL_ARGV, CQL_HP, CQL_RENAME, narrow=CQL_NARROW, corl_only_logs=CQL_CORL_ONLY),
    "cql_branches": Case(
        cql,
        [
            *CQL_ARGV,
            *("--cql_lagrange", "true", "--cql_max_target_backup", "true"),
            *("--backup_entropy", "true", "--cql_importance_sample", "false"),
            *("--target_update_period", "2", "--cql_target_action_gap", "0.5"),
        ],
        CQL_HP,
        CQL_RENAME,
        narrow=CQL_NARROW,
        corl_only_logs=CQL_CORL_ONLY,
    ),
    "cql_bc": Case(
        cql,
        [*CQL_ARGV, "--bc_steps", "1"],
        CQL_HP,
        CQL_RENAME,
        narrow=CQL_NARROW,
        corl_only_logs=CQL_CORL_ONLY,
    ),
    "awac": Case(awac, ["--hidden_dim", str(H)], AWAC_HP, AWAC_RENAME),
    "sac_n": Case(sac_n, ENSEMBLE_ARGV, ENSEMBLE_HP, ENSEMBLE_RENAME, ENSEMBLE_CONCAT),
    "edac": Case(
        edac,
        ENSEMBLE_ARGV,
        ENSEMBLE_HP | {"eta": "eta"},
        ENSEMBLE_RENAME,
        ENSEMBLE_CONCAT,
    ),
}
NARROWABLE = {
    "TwinQ": TwinQ,
    "ValueFunction": ValueFunction,
    "GaussianMLP": GaussianMLP,
    "DeterministicMLP": DeterministicMLP,
    "FullyConnectedQFunction": FullyConnectedQFunction,
    "TanhGaussianMLP": TanhGaussianMLP,
}


def _project_config(name: str, *extra: str) -> PogoConfig:
    """The project's config for a case, its hyperparameters checked against CORL's."""
    case = CASES[name]
    algorithm = case.module.__name__.rsplit(".", 1)[-1]
    config = parse_config(["--algorithm", algorithm, *case.argv, *extra])
    corl_hp = REFERENCE["cases"][name]["hyperparameters"]
    for key, corl_key in case.same_hp.items():  # the same hyperparameters on both sides
        assert getattr(config, key) == corl_hp[corl_key], (key, corl_key)
    return config


def _build(name: str, config: PogoConfig, monkeypatch: pytest.MonkeyPatch) -> TrainerBase:
    """The project's build(), its 256-unit classes narrowed to the reference's width."""
    case = CASES[name]
    with monkeypatch.context() as patch:
        for cls_name in case.narrow:
            narrowed = functools.partial(NARROWABLE[cls_name], hidden_dim=H)
            patch.setattr(case.module, cls_name, narrowed)
        return case.module.build(config, S, A, MAX_ACTION, "cpu")


def _project_tensors(trainer: TrainerBase, names: set[str]) -> dict[str, torch.Tensor]:
    """`<attribute>/<parameter>` -> the trainer's tensor (a bare tensor: `<attribute>/value`)."""
    out = {}
    for attr in sorted(names):
        obj = getattr(trainer, attr)
        if isinstance(obj, torch.Tensor):
            out[f"{attr}/value"] = obj
        else:
            out.update({f"{attr}/{k}": v for k, v in obj.state_dict().items()})
    return out


def _corl_sources(name: str, arrays: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Project parameter -> the CORL parameter(s) it holds, by the case's explicit map."""
    case = CASES[name]
    corl_names = sorted({k.split("/", 1)[1] for k in arrays if k.startswith("init/")})
    sources: dict[str, list[str]] = {p: list(c) for p, c in case.concat.items()}
    used = {c for cs in case.concat.values() for c in cs}
    for corl_name in corl_names:
        if corl_name in used:
            continue
        prefix, target = next((p, t) for p, t in case.rename if corl_name.startswith(p))
        sources[target + corl_name[len(prefix) :]] = [corl_name]
    return sources


def _corl_value(arrays: dict[str, np.ndarray], stage: str, corl_names: list[str]) -> torch.Tensor:
    """CORL's `<stage>` value of a project parameter (stacked, for SAC-N's one head)."""
    parts = [torch.from_numpy(arrays[f"{stage}/{n}"]) for n in corl_names]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)


def _load_corl_init(
    name: str, trainer: TrainerBase, arrays: dict[str, np.ndarray]
) -> dict[str, list[str]]:
    """CORL's initial weights into the project's trainer, every parameter accounted for."""
    sources = _corl_sources(name, arrays)
    attrs = {p.split("/", 1)[0] for p in sources}
    tensors = _project_tensors(trainer, attrs)
    assert set(tensors) == set(sources), set(tensors) ^ set(sources)  # nothing left unmapped
    with torch.no_grad():
        for project_name, corl_names in sources.items():
            value = _corl_value(arrays, "init", corl_names)
            tensors[project_name].copy_(value.reshape(tensors[project_name].shape))
    return sources


def _assert_logs_match(name: str, project_log: dict, corl_log: dict, step: int) -> None:
    """Every loss CORL logs (bar its named diagnostics), the project logs too, with its value."""
    case = CASES[name]
    missing = set(corl_log) - set(project_log) - set(case.corl_only_logs)
    assert not missing, f"update {step}: CORL logs {missing}, the project does not"
    for key in set(corl_log) - set(case.corl_only_logs):
        assert project_log[key] == pytest.approx(corl_log[key], rel=RTOL, abs=ATOL), (step, key)


def _run_parity(
    name: str, monkeypatch: pytest.MonkeyPatch, *extra: str
) -> tuple[TrainerBase, dict[str, list[str]], dict[str, np.ndarray], list[dict]]:
    """The project's trainer, from CORL's weights, through the reference's updates."""
    arrays = _arrays(name)
    meta = REFERENCE["cases"][name]
    config = _project_config(name, *extra)
    trainer = _build(name, config, monkeypatch)
    sources = _load_corl_init(name, trainer, arrays)
    logs = []
    for step, seed in enumerate(meta["step_seeds"]):
        batch = [
            torch.from_numpy(arrays[f"batch/{step}/{k}"])
            for k in ("states", "actions", "rewards", "next_states", "dones")
        ]
        torch.manual_seed(seed)  # as the generator, right before CORL's update
        logs.append(trainer.train(batch))
    return trainer, sources, arrays, logs


def _assert_final_params_match(
    trainer: TrainerBase, sources: dict[str, list[str]], arrays: dict[str, np.ndarray]
) -> None:
    """Every parameter the map names, targets included, against CORL's after the updates."""
    tensors = _project_tensors(trainer, {p.split("/", 1)[0] for p in sources})
    for project_name, corl_names in sources.items():
        expected = _corl_value(arrays, "final", corl_names)
        actual = tensors[project_name].detach().reshape(expected.shape)
        torch.testing.assert_close(actual, expected, rtol=RTOL, atol=PARAM_ATOL, msg=project_name)


def _fresh_trainer(name: str, monkeypatch: pytest.MonkeyPatch, *extra: str) -> TrainerBase:
    """The project's trainer holding CORL's initial weights, before any update."""
    trainer = _build(name, _project_config(name, *extra), monkeypatch)
    _load_corl_init(name, trainer, _arrays(name))
    return trainer


@pytest.mark.parametrize("name", ["td3_bc", "cql", "cql_branches", "awac"])
def test_pytorch_trainer_matches_corl(name, monkeypatch):
    trainer, sources, arrays, logs = _run_parity(name, monkeypatch)
    for step, (log, corl_log) in enumerate(zip(logs, REFERENCE["cases"][name]["losses"])):
        _assert_logs_match(name, log, corl_log, step)
    _assert_final_params_match(trainer, sources, arrays)


@pytest.mark.parametrize("single_backward", ["true", "false"])
@pytest.mark.parametrize("name", ["iql", "iql_deterministic"])
def test_iql_matches_corl_in_one_backward_and_in_three(name, single_backward, monkeypatch):
    """Both forms of IQL's update give CORL's numbers: `single_backward: false` is CORL's three
    passes, true the one backward pass over the three losses (test_energy.py: the two forms
    agree bit for bit). The cosine schedule runs over 4 updates, so its steps show."""
    trainer, sources, arrays, logs = _run_parity(
        name, monkeypatch, "--single_backward", single_backward
    )
    for step, (log, corl_log) in enumerate(zip(logs, REFERENCE["cases"][name]["losses"])):
        _assert_logs_match(name, log, corl_log, step)
    _assert_final_params_match(trainer, sources, arrays)


def _corl_log_prob_pre_tanh(
    self: TanhGaussianMLP, mean: torch.Tensor, std: torch.Tensor, pre_tanh: torch.Tensor
) -> torch.Tensor:
    """SAC-N's and EDAC's log-density as CORL computes it: the tanh's log-det as
    log(1 - tanh(u)^2 + 1e-6), the 1e-6 keeping it finite where tanh saturates."""
    log_prob = Normal(mean, std).log_prob(pre_tanh).sum(-1)
    return log_prob - torch.log(1 - torch.tanh(pre_tanh).pow(2) + 1e-6).sum(-1)


@pytest.mark.parametrize("name", ["sac_n", "edac"])
def test_sac_n_edac_match_corl_given_corls_log_det(name, monkeypatch):
    """With CORL's log-det put in place of the project's (the departure below), everything else
    of SAC-N's and EDAC's update (alpha, actor, critics in EDAC's order, the ensemble's TD loss,
    EDAC's diversity term, the target) gives CORL's numbers."""
    monkeypatch.setattr(TanhGaussianMLP, "_log_prob_pre_tanh", _corl_log_prob_pre_tanh)
    trainer, sources, arrays, logs = _run_parity(name, monkeypatch)
    for step, (log, corl_log) in enumerate(zip(logs, REFERENCE["cases"][name]["losses"])):
        _assert_logs_match(name, log, corl_log, step)
    _assert_final_params_match(trainer, sources, arrays)


@pytest.mark.parametrize("name", ["sac_n", "edac"])
def test_departure_sac_n_edac_exact_tanh_log_det(name, monkeypatch):
    """Departure: the tanh-Gaussian's log-density. CORL's SAC-N and EDAC subtract
    log(1 - tanh(u)^2 + 1e-6); the project subtracts the exact log(1 - tanh(u)^2), in the stable
    form 2 (log 2 - u - softplus(-2u)) that CORL's own CQL uses (TanhTransform). The project's
    log pi is larger by about 1e-6 / (1 - tanh(u)^2) per action dimension: a relative change of
    ~1e-5 in the losses here, growing where the policy saturates."""
    trainer = _fresh_trainer(name, monkeypatch)
    states = torch.from_numpy(_arrays(name)["batch/0/states"])
    with torch.no_grad():
        mean, std = trainer.actor.get_mean_std(states)
        pre_tanh = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(0))
        exact = trainer.actor._log_prob_pre_tanh(mean, std, pre_tanh)
        corl = _corl_log_prob_pre_tanh(trainer.actor, mean, std, pre_tanh)
    assert ((exact - corl) > 0).all() and ((exact - corl) < 1e-4).all()

    _, sources, arrays, logs = _run_parity(name, monkeypatch)
    corl_logs = REFERENCE["cases"][name]["losses"]
    # beyond the rounding the parity tests allow: that is why they put CORL's log-det in place
    assert any(
        log["actor_loss"] != pytest.approx(corl_log["actor_loss"], rel=RTOL, abs=ATOL)
        for log, corl_log in zip(logs, corl_logs)
    )
    for log, corl_log in zip(logs, corl_logs):  # ... and it stays small
        for key in ("alpha_loss", "actor_loss", "critic_loss", "batch_entropy"):
            assert log[key] == pytest.approx(corl_log[key], rel=1e-4, abs=1e-6), key


def test_departure_cql_bc_stage_scores_the_data_actions(monkeypatch):
    """Departure: CQL's behaviour-cloning stage (the first `bc_steps` updates; 0 in CORL's and
    this project's configs). CORL's `TanhGaussianPolicy.log_prob(observations, actions)` never
    reads `actions`: it draws a new action and returns that draw's log-density, so CORL's BC loss
    is `alpha * log pi(a1|s) - log pi(a2|s)` with a1, a2 both sampled from pi, which clones no
    behaviour. The project's BC loss scores the dataset's action, `alpha * log pi(a1|s) -
    log pi(a_data|s)`. The extra draw also shifts CORL's later random numbers, so past the policy
    loss the two updates are not compared."""
    name = "cql_bc"
    _, _, arrays, logs = _run_parity(name, monkeypatch)
    project, corl = logs[0], REFERENCE["cases"][name]["losses"][0]
    for key in ("log_pi", "alpha", "alpha_loss"):  # the same draw before the policy loss
        assert project[key] == pytest.approx(corl[key], rel=RTOL, abs=ATOL), key
    assert project["policy_loss"] != pytest.approx(corl["policy_loss"], rel=1e-2)

    trainer = _fresh_trainer(name, monkeypatch)
    states = torch.from_numpy(arrays["batch/0/states"])
    actions = torch.from_numpy(arrays["batch/0/actions"])
    alpha = corl["alpha"]
    with torch.no_grad():
        torch.manual_seed(REFERENCE["cases"][name]["step_seeds"][0])
        _, log_pi = trainer.actor(states)  # the update's first draw, a1
        _, log_pi_fresh = trainer.actor(states)  # CORL's log_prob's own draw, a2
        corl_form = (alpha * log_pi - log_pi_fresh).mean().item()
        data_form = (alpha * log_pi - trainer.actor.log_prob_actions(states, actions)).mean().item()
    assert corl["policy_loss"] == pytest.approx(corl_form, rel=RTOL, abs=ATOL)
    assert project["policy_loss"] == pytest.approx(data_form, rel=RTOL, abs=ATOL)


@pytest.mark.parametrize("name", ["iql", "iql_deterministic", "td3_bc", "cql", "awac"])
def test_build_from_corls_seed_gives_corls_initial_weights(name, monkeypatch):
    """build() makes CORL's networks in CORL's order with CORL's initialisation, so the seed
    CORL's networks were built from gives the project the same initial weights."""
    torch.manual_seed(REFERENCE["init_seed"])
    trainer = _build(name, _project_config(name), monkeypatch)
    arrays = _arrays(name)
    sources = _corl_sources(name, arrays)
    tensors = _project_tensors(trainer, {p.split("/", 1)[0] for p in sources})
    for project_name, corl_names in sources.items():
        expected = _corl_value(arrays, "init", corl_names)
        actual = tensors[project_name].detach().reshape(expected.shape)
        torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=project_name)


@pytest.mark.parametrize("name", ["sac_n", "edac"])
def test_departure_sac_n_edac_initial_draws(name, monkeypatch):
    """Departure (the draws, not the rule): SAC-N's and EDAC's initial weights follow CORL's rule
    (hidden biases 0.1; actor head U(+-1e-3); critic hidden weights U(+-1/sqrt(out)), CORL's fan
    being each member's last dimension; critic output U(+-3e-3)) but with other draws: CORL's two
    actor heads draw the mean's weights and biases, then the log-std's, where the project's one
    head draws all weights, then all biases; and the project's critic draws PyTorch's default
    before drawing CORL's. From CORL's seed the actor's trunk is the same numbers; every other
    weight is checked against the rule, on both sides."""
    torch.manual_seed(REFERENCE["init_seed"])
    trainer = _build(name, _project_config(name), monkeypatch)
    arrays = _arrays(name)
    sources = _corl_sources(name, arrays)
    tensors = _project_tensors(trainer, {p.split("/", 1)[0] for p in sources})
    n_layers = 4  # 3 hidden layers and the output layer, at indices 0, 2, 4, 6
    for project_name, corl_names in sources.items():
        corl = _corl_value(arrays, "init", corl_names)
        project = tensors[project_name].detach().reshape(corl.shape)
        net, param = project_name.split("/")
        if net == "log_alpha":
            assert torch.equal(project, corl)
            continue
        layer = int(param.split(".")[1]) // 2
        if param.endswith("bias") and layer < n_layers - 1:
            assert (project == 0.1).all() and (corl == 0.1).all(), project_name
        elif net == "actor" and layer < n_layers - 1:
            torch.testing.assert_close(project, corl, rtol=RTOL, atol=ATOL, msg=project_name)
        else:
            if net == "actor":
                bound = 1e-3
            elif layer == n_layers - 1:
                bound = 3e-3
            else:
                bound = 1.0 / corl.shape[-1] ** 0.5
            for side in (project, corl):
                assert side.abs().max() <= bound, project_name
                if side.numel() >= 16:  # the draws fill the interval
                    assert side.abs().max() > 0.7 * bound, project_name
            assert not torch.equal(project, corl), project_name  # other draws


# --------------------------------------------------------------------------------------------
# ReBRAC (JAX): the project's AlgorithmInterface against CORL's JAX update functions

#: the project's parameter tree -> CORL's (its actor's MLP is a submodule `net`, its critic
#: ensemble vmaps a QNetwork holding an MLP)
REBRAC_RENAME = [
    ("params/net/", "params/"),
    ("params/VmapQNetwork_0/MLP_0/", "params/VmapCritic_0/"),
]
REBRAC_HP = {
    "discount": "gamma",
    "tau": "tau",
    "actor_lr": "actor_learning_rate",
    "critic_lr": "critic_learning_rate",
    "hidden_dim": "hidden_dim",
    "actor_n_hiddens": "actor_n_hiddens",
    "critic_n_hiddens": "critic_n_hiddens",
    "actor_ln": "actor_ln",
    "critic_ln": "critic_ln",
    "policy_noise": "policy_noise",
    "noise_clip": "noise_clip",
    "policy_freq": "policy_freq",
    "normalize_q": "normalize_q",
    "actor_bc_coef": "actor_bc_coef",
    "critic_bc_coef": "critic_bc_coef",
}
#: CORL's logging-only metrics (a random-action MSE, the per-dimension action MSE)
REBRAC_CORL_ONLY = ("bc_mse_random", "action_mse")


def _rebrac_tree(tree: dict, arrays: dict[str, np.ndarray], stage: str, net: str) -> dict:
    """The project's parameter tree `tree` filled with CORL's `<stage>/<net>/...` arrays."""
    import jax
    import jax.numpy as jnp

    def corl_leaf(path, leaf):
        name = "/".join(str(getattr(p, "key", p)) for p in path)
        prefix, corl_prefix = next((p, c) for p, c in REBRAC_RENAME if name.startswith(p))
        value = arrays[f"{stage}/{net}/{corl_prefix}{name[len(prefix) :]}"]
        assert value.shape == leaf.shape, name
        return jnp.asarray(value)

    return jax.tree_util.tree_map_with_path(corl_leaf, tree)


def test_rebrac_matches_corl():
    """ReBRAC's critic and actor steps give CORL's JAX ReBRAC's numbers, on CORL's schedule.

    Departure (random numbers only): `train(state, batch, key, actor_step)` splits its key into
    (critic, actor) keys and draws the target-policy noise from the critic key; CORL's
    update_critic splits the key it is given and draws the noise from the second half. The same
    distribution, other draws. So this test runs `train`'s two parts, update_critic with CORL's
    noise key and then (on CORL's actor updates) update_actor seeing the updated critic, and
    checks separately that `train` is exactly those two parts.
    """
    import jax
    import jax.numpy as jnp

    from algorithms.offline import rebrac

    name = "rebrac"
    meta, arrays = REFERENCE["cases"][name], _arrays(name)
    hp = meta["hyperparameters"]
    config = parse_config(
        ["--algorithm", "rebrac", "--hidden_dim", str(H)]
        + [
            "--actor_bc_coef",
            str(hp["actor_bc_coef"]),
            "--critic_bc_coef",
            str(hp["critic_bc_coef"]),
        ]
    )
    for key, corl_key in REBRAC_HP.items():
        assert getattr(config, key) == hp[corl_key], key
    # the JAX main steps actor 0 on updates t = 1, 2, ... with (t - 1) % policy_freq == 0
    n = len(meta["losses"])
    assert meta["actor_updates"] == [(t - 1) % config.policy_freq == 0 for t in range(1, n + 1)]

    trainer = rebrac.build(config, S, A, MAX_ACTION)
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(0))  # the layout alone: fast
    for net in ("actor", "actor_target", "critic", "critic_target"):
        state[net] = _rebrac_tree(state[net], arrays, "init", net)
    state["actor_opt"] = trainer.actor_tx.init(state["actor"])
    state["critic_opt"] = trainer.critic_tx.init(state["critic"])
    initial = state

    fields = ("states", "actions", "rewards", "next_states", "next_actions", "dones")
    batches = [{f: jnp.asarray(arrays[f"batch/{k}/{f}"]) for f in fields} for k in range(n)]
    update_critic, update_actor = jax.jit(trainer.update_critic), jax.jit(trainer.update_actor)
    for k, (batch, corl_log) in enumerate(zip(batches, meta["losses"])):
        noise_key = jax.random.split(jax.random.PRNGKey(meta["step_keys"][k]))[1]
        state, log = update_critic(state, batch, noise_key)
        if meta["actor_updates"][k]:
            state, actor_log = update_actor(state, batch, noise_key, state["critic"])
            log = {**log, **actor_log}
        log = {key: float(value) for key, value in log.items()}
        assert set(corl_log) - set(REBRAC_CORL_ONLY) == set(log), k
        for key, value in log.items():
            assert value == pytest.approx(corl_log[key], rel=RTOL, abs=ATOL), (k, key)

    for net in ("actor", "actor_target", "critic", "critic_target"):
        expected = _rebrac_tree(state[net], arrays, "final", net)
        for (path, got), want in zip(
            jax.tree_util.tree_flatten_with_path(state[net])[0], jax.tree_util.tree_leaves(expected)
        ):
            np.testing.assert_allclose(
                got, want, rtol=RTOL, atol=PARAM_ATOL, err_msg=f"{net} {path}"
            )

    # train() is update_critic on the first half of its key, then update_actor on the second
    key = jax.random.PRNGKey(5)
    trained, critic_log, actor_log = trainer.train(initial, batches[0], key, jnp.asarray(True))
    critic_key, actor_key = jax.random.split(key)
    by_parts, critic_parts = update_critic(initial, batches[0], critic_key)
    by_parts, actor_parts = update_actor(by_parts, batches[0], actor_key, by_parts["critic"])
    for got, want in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(by_parts)):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=PARAM_ATOL)
    for key_name, value in {**critic_parts, **actor_parts}.items():
        assert float({**critic_log, **actor_log}[key_name]) == pytest.approx(float(value), rel=RTOL)
