"""Writes configs/offline/pogo_multi/<env>/<dataset>_v2_<algo>.yaml from one table, and the
POGO paper's protocol, configs/offline/pogo_paper/<env>/<dataset>_v2_td3_bc.yaml (PAPER below).

Every value comes from the algorithm's `Config` defaults (CORL's defaults, in the algorithm file)
except the values of CORL's YAML files (corl-team/CORL, configs/offline/<algo>/<env>/...) that
differ from them, listed in ALL_DATASETS and OVERRIDES below, and the chain settings in CHAIN.
The JAX algorithms take their reference implementations' values instead (ReBRAC: its per-dataset
BC coefficients; FQL: see ALL_DATASETS).
Run `python scripts/make_configs.py` after changing either; a test checks the files match.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from algorithms.datasets.envs import ENV_IDS, env_dims  # noqa: E402
from algorithms.offline.config import ALGORITHMS, PogoConfig, load_algorithm  # noqa: E402

ROOT = REPO / "configs" / "offline" / "pogo_multi"
PAPER_ROOT = REPO / "configs" / "offline" / "pogo_paper"
ENVS = ("halfcheetah", "hopper", "walker2d")
DATASETS = ("random", "medium", "medium-replay", "medium-expert", "expert")

#: common keys every config spells out (values: the algorithm's Config defaults)
COMMON_KEYS = (
    "seed",
    "device",
    "max_timesteps",
    "eval_freq",
    "n_episodes",
    "batch_size",
    "discount",
    "tau",
    "actor_lr",
    "normalize",
    "normalize_reward",
    "w2_method",
    "energy_function_type",
    "eval_mode",
    "settle_steps",
    "settle_w2_weights",
    "settle_lr_schedule",
    "use_wandb",
    "project",
)
#: the chain: a starting point, not tuned values. Per-actor lists (w2_weights,
#: settle_w2_weights) hold one value, every chain actor's, so `--num_actors N` alone works.
CHAIN: dict[str, Any] = {"num_actors": 3, "w2_weights": [10.0]}
#: settings the chain study chose (docs/chain_study.md), per algorithm. The settle phase: 10k
#: updates of the chain alone after the joint phase. By default at the joint phase's weight with
#: a cosine learning rate ("anchor"): each link converges onto its predecessor plus a small step
#: on Q. It lost less than the large step where Q does not hold off the data (IQL on
#: halfcheetah-medium-replay, TD3+BC on hopper-medium), where the chain had fallen behind actor 0
#: during the joint phase. Evaluation at the mean action:
#: IQL's sampled Gaussian actors scored ~10 points lower and made the comparison of actors noisy;
#: TD3+BC's actors are deterministic, so for it this only says what the study did.
STUDIED: dict[str, dict[str, Any]] = {
    algorithm: {
        "eval_mode": "mean",
        "settle_steps": 10_000,
        "settle_w2_weights": [10.0],
        "settle_lr_schedule": "cosine",
    }
    for algorithm in ("iql", "td3_bc")
}
#: the large settle step: a small W2 weight at a constant learning rate, so Q's pull beats the
#: optimiser's noise (TD3+BC's energy carries its alpha = 2.5, so its 0.25 is IQL's 0.1). It gains
#: most where Q holds off the data and loses where it does not.
LARGE_SETTLE_STEP: dict[str, dict[str, Any]] = {
    "iql": {"settle_w2_weights": [0.1], "settle_lr_schedule": "constant"},
    "td3_bc": {"settle_w2_weights": [0.25], "settle_lr_schedule": "constant"},
}
#: the firm anchor: ten times the anchor's weight, for where every step on Q lost (the chain
#: then stays closest to actor 0).
FIRM_ANCHOR: dict[str, Any] = {"settle_w2_weights": [100.0], "settle_lr_schedule": "cosine"}
#: the firm anchor with each chain actor starting the settle phase as a copy of actor 0: Adam
#: shrinks the distance the joint phase left at the same pace at weight 10 or 100, so only a start
#: at actor 0 brings the chain onto it (W2^2 ~1e-7 instead of ~1e-3 after the 10k updates).
FIRM_ANCHOR_FROM_ACTOR_0: dict[str, Any] = {**FIRM_ANCHOR, "settle_from_predecessor": True}
#: each dataset's settle setting where it is not the anchor, chosen per dataset (as the published
#: chain results chose w): the setting with the best mean over the study's 3 seeds of (last actor
#: - actor 0); on halfcheetah-medium, where the anchor ran on seed 0 only, the large step, which
#: won on every seed. The firm anchors ran only on IQL hopper-medium, where no other setting passed.
SETTLE_CHOICE: dict[tuple[str, str, str], str] = {
    ("iql", "halfcheetah", "medium"): "large step",
    ("iql", "hopper", "medium"): "firm anchor from actor 0",
    ("iql", "hopper", "medium-replay"): "large step",
    ("iql", "walker2d", "medium"): "large step",
    ("iql", "walker2d", "medium-replay"): "large step",
    ("td3_bc", "halfcheetah", "medium"): "large step",
    ("td3_bc", "halfcheetah", "medium-replay"): "large step",
    ("td3_bc", "hopper", "medium-replay"): "large step",
    ("td3_bc", "walker2d", "medium-replay"): "large step",
}


def settle_setting(algorithm: str, env: str, dataset: str) -> dict[str, Any]:
    """This dataset's settle keys beyond the anchor's (none where the anchor is its setting)."""
    choice = SETTLE_CHOICE.get((algorithm, env, dataset))
    if choice == "large step":
        return LARGE_SETTLE_STEP[algorithm]
    if choice == "firm anchor from actor 0":
        return FIRM_ANCHOR_FROM_ACTOR_0
    return FIRM_ANCHOR if choice == "firm anchor" else {}


#: values every CORL YAML of an algorithm uses where they differ from CORL's dataclass defaults
ALL_DATASETS: dict[str, dict[str, Any]] = {
    "cql": {"reward_scale": 1.0, "reward_bias": 0.0},
    "awac": {"awac_lambda": 0.3333},
    # FQL's reference (seohongpark/fql) has no D4RL locomotion settings; its D4RL runs take 500k
    # updates. normalize_q_loss is what its README advises for new environments; alpha = 0.3
    # (from its suggested grid) is this project's untuned choice, near the BC weight TD3+BC implies
    # on the same scale (1 / 2.5).
    "fql": {"max_timesteps": 500_000, "normalize_q_loss": True, "alpha": 0.3},
}

#: CORL's per-dataset departures from the algorithm's defaults: (algorithm, env, dataset) -> values.
#: CORL has no sac_n / edac configs for random and expert data: those use the defaults.
HOPPER_IQL = {"iql_deterministic": True, "normalize_reward": True, "tau": 1e-3}
OVERRIDES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("iql", "hopper", "medium"): HOPPER_IQL,
    ("iql", "hopper", "medium-replay"): HOPPER_IQL,
    ("iql", "hopper", "medium-expert"): {"beta": 6.0, "iql_tau": 0.5},
    ("cql", "hopper", "medium"): {"normalize_reward": True},
    ("sac_n", "hopper", "medium"): {"num_critics": 500},
    ("sac_n", "hopper", "medium-replay"): {"num_critics": 200},
    ("sac_n", "hopper", "medium-expert"): {"num_critics": 200},
    ("sac_n", "walker2d", "medium"): {"num_critics": 20},
    ("sac_n", "walker2d", "medium-replay"): {"num_critics": 20},
    ("sac_n", "walker2d", "medium-expert"): {"num_critics": 20},
    ("edac", "hopper", "medium"): {"num_critics": 50},
    ("edac", "hopper", "medium-replay"): {"num_critics": 50},
    ("edac", "hopper", "medium-expert"): {"num_critics": 50},
    ("edac", "halfcheetah", "medium-expert"): {"eta": 5.0},
    ("edac", "walker2d", "medium-expert"): {"eta": 5.0},
}
#: ReBRAC's (actor_bc_coef, critic_bc_coef) per dataset, from its reference configs
#: (tinkoff-ai/ReBRAC configs/rebrac/<env>/, the same in CORL's configs/offline/rebrac/)
REBRAC_BC_COEFS: dict[tuple[str, str], tuple[float, float]] = {
    ("halfcheetah", "random"): (0.001, 0.1),
    ("halfcheetah", "medium"): (0.001, 0.01),
    ("halfcheetah", "medium-replay"): (0.01, 0.001),
    ("halfcheetah", "medium-expert"): (0.01, 0.1),
    ("halfcheetah", "expert"): (0.01, 0.01),
    ("hopper", "random"): (0.001, 0.01),
    ("hopper", "medium"): (0.01, 0.001),  # the paper's table (its reference config says 0.01)
    ("hopper", "medium-replay"): (0.05, 0.5),
    ("hopper", "medium-expert"): (0.1, 0.01),
    ("hopper", "expert"): (0.1, 0.1),
    ("walker2d", "random"): (0.01, 0.0),
    ("walker2d", "medium"): (0.05, 0.1),
    ("walker2d", "medium-replay"): (0.05, 0.01),
    ("walker2d", "medium-expert"): (0.01, 0.01),
    ("walker2d", "expert"): (0.01, 0.5),
}
for (_env, _dataset), (_actor, _critic) in REBRAC_BC_COEFS.items():
    OVERRIDES[("rebrac", _env, _dataset)] = {"actor_bc_coef": _actor, "critic_bc_coef": _critic}


def make_config(algorithm: str, env: str, dataset: str) -> dict[str, Any]:
    defaults = load_algorithm(algorithm).Config()
    common = {f.name for f in dataclasses.fields(PogoConfig)}
    own = [f.name for f in dataclasses.fields(defaults) if f.name not in common]
    values: dict[str, Any] = {"algorithm": algorithm, "env": f"{env}-{dataset}-v2"}
    values.update({key: getattr(defaults, key) for key in COMMON_KEYS})
    values.update(CHAIN)
    values.update(STUDIED.get(algorithm, {}))
    values.update(settle_setting(algorithm, env, dataset))
    values["group"] = f"pogo-{algorithm}-{env}-{dataset}-v2"
    values["name"] = f"pogo-{algorithm}"
    values.update({key: getattr(defaults, key) for key in own})
    values.update(ALL_DATASETS.get(algorithm, {}))
    values.update(OVERRIDES.get((algorithm, env, dataset), {}))
    return values


def config_path(root: Path, algorithm: str, env: str, dataset: str) -> Path:
    return root / env / f"{dataset.replace('-', '_')}_v2_{algorithm}.yaml"


#: where an algorithm's hyperparameters come from, for the file header
SOURCES = {
    "rebrac": "ReBRAC's reference hyperparameters for this dataset.",
    "fql": "FQL's reference hyperparameters; alpha, normalize_q_loss: our choice.",
}


#: the datasets the chain study finished for IQL and TD3+BC (3 seeds, 50k + 10k updates): their
#: settle setting is the study's choice; on the others the anchor is the default, not yet studied
STUDIED_DATASETS = {(env, dataset) for env in ENVS for dataset in ("medium", "medium-replay")}


def chain_comment(algorithm: str, env: str, dataset: str) -> str:
    """Which chain setting this file ships, and where the chain study says why."""
    if algorithm not in STUDIED:
        return (
            "# Chain settings (num_actors, w2_weights) are a starting point, not tuned values:\n"
            "# the chain study (docs/chain_study.md) covered IQL and TD3+BC only.\n"
        )
    if (env, dataset) in STUDIED_DATASETS:
        setting = SETTLE_CHOICE.get((algorithm, env, dataset), "anchor") + ", the study's choice"
    else:
        setting = "anchor, the default; not studied on this dataset"
    return f"# settle: the {setting} (docs/chain_study.md)\n"


def render(algorithm: str, env: str, dataset: str) -> str:
    source = SOURCES.get(algorithm, "CORL's hyperparameters for this dataset.")
    header = f"# Generated by scripts/make_configs.py: {source}\n"
    header += chain_comment(algorithm, env, dataset)
    return header + yaml.safe_dump(make_config(algorithm, env, dataset), sort_keys=False)


#: The POGO paper's protocol: TD3+BC with 2 actors, 0.5M joint updates, then 0.5M with actor 0 and
#: the critics frozen (the settle phase, at the joint phase's weight and learning rate). The paper
#: chose the W2 weight per dataset; its values are not on this machine, so every dataset takes one
#: rule instead: TD3+BC's own BC strength on this project's scale. TD3+BC's actor loss is
#: -alpha Q / mean|Q| + the mean over the A action dims of (pi(s) - a)^2, the chain's energy is the
#: same -alpha Q / mean|Q| and its W2^2 sums over action dims (w2.py), so the weight is 1 / A. A
#: paper weight w_p on a per-dimension mean converts the same way (w_p / A); on a sum it stays w_p.
PAPER: dict[str, Any] = {
    "num_actors": 2,
    "max_timesteps": 500_000,
    "settle_steps": 500_000,
    "settle_lr_schedule": "constant",
    "settle_from_predecessor": False,
}


@functools.cache  # env_dims builds the environment: once per env
def paper_weight(env: str) -> float:
    """TD3+BC's BC weight on the chain's W2^2 scale: 1 / action dims (PAPER)."""
    return round(1.0 / env_dims(ENV_IDS[env])[1], 4)


def make_paper_config(env: str, dataset: str) -> dict[str, Any]:
    """The shipped TD3+BC config of this dataset with the paper's chain and phases (PAPER)."""
    values = make_config("td3_bc", env, dataset)
    weight = [paper_weight(env)]
    values.update(PAPER, w2_weights=weight, settle_w2_weights=list(weight))
    values["group"] = f"pogo-paper-td3_bc-{env}-{dataset}-v2"
    return values


def render_paper(env: str, dataset: str) -> str:
    header = (
        "# Generated by scripts/make_configs.py: the POGO paper's protocol (TD3+BC, 2 actors,\n"
        "# 0.5M joint + 0.5M settle updates at one W2 weight, TD3+BC's BC strength: 1 / action\n"
        "# dims; the paper's per-dataset weights are not available here). docs/chain_study.md\n"
    )
    return header + yaml.safe_dump(make_paper_config(env, dataset), sort_keys=False)


def all_configs(root: Path, paper_root: Path):
    """(path, text) of every generated config: each algorithm's, then the paper's protocol."""
    for algorithm in ALGORITHMS:
        for env in ENVS:
            for dataset in DATASETS:
                yield config_path(root, algorithm, env, dataset), render(algorithm, env, dataset)
    for env in ENVS:
        for dataset in DATASETS:
            yield config_path(paper_root, "td3_bc", env, dataset), render_paper(env, dataset)


def write_all(root: Path = ROOT, paper_root: Path = PAPER_ROOT) -> list[Path]:
    paths = []
    for path, text in all_configs(root, paper_root):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="where to write the configs")
    parser.add_argument("--paper_root", type=Path, default=PAPER_ROOT, help="the paper's configs")
    args = parser.parse_args()
    print(f"wrote {len(write_all(args.root, args.paper_root))} configs")
