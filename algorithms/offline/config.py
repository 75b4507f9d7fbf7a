"""The common config of every POGO run, and the parser that turns YAML + CLI into it.

The parser reads `algorithm` first, then decodes the whole file and command line into that
algorithm's `Config` (a subclass of `PogoConfig`): an unknown key is an error, not a no-op.
Then two separate steps: `check()` validates the config and changes nothing; `resolve()` fills
in, once, what the config leaves to the run (a single W2 weight for every chain actor, the
algorithm's default `energy_normalize_q`). The resolved config is what a run records.
"""

import dataclasses
import difflib
import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Dict, List, Optional  # pyrallis decodes typing forms only

import pyrallis
import yaml

from algorithms.errors import ConfigError
from algorithms.networks.actors import ACTOR_TYPES
from algorithms.networks.policy_call import EVAL_MODES
from algorithms.offline.w2 import W2_METHODS

#: algorithm name -> module; each module exposes `Config` and `build(...)` (see interface.py);
#: rebrac and fql are JAX (`BACKEND = "jax"`, run by pogo_multi_jax; see utils_jax.py)
ALGORITHMS: dict[str, str] = {
    name: f"algorithms.offline.{name}"
    for name in ("iql", "td3_bc", "cql", "awac", "sac_n", "edac", "rebrac", "fql")
}
ENERGY_FUNCTION_TYPES = ("q", "advantage")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
SETTLE_LR_SCHEDULES = ("constant", "cosine")
#: flags that take no value on the command line, and the config key each one sets
CLI_FLAGS = {
    "--no_wandb": ("use_wandb", False),
    "--overwrite": ("overwrite", True),
    "--resume": ("resume", True),
    "--quiet": ("quiet", True),
}


@dataclass
class PogoConfig:
    #: what the algorithm's energy can do, read by `check_energy` (class attributes, not keys):
    #: it has a V function (`energy_function_type: advantage`) ...
    has_value_function: ClassVar[bool] = False
    #: ... its energy needs log pi(a|s) of every chain actor (entropy-regularised energies)
    energy_needs_log_prob: ClassVar[bool] = False
    #: `energy_normalize_q` when the config leaves it null: what the base algorithm's own actor
    #: loss does (an algorithm whose loss has a switch for it reads the switch: a property)
    default_energy_normalize_q: ClassVar[bool] = False

    # base algorithm of actor 0 and the critics: one of ALGORITHMS
    algorithm: str = "iql"
    # D4RL-style dataset name: picks the evaluation env, reference returns and output path
    env: str = "halfcheetah-medium-v2"
    # D4RL-format HDF5 file to train on (default: look `env` up in D4RL's dataset dirs)
    dataset_path: Optional[str] = None
    # Minari dataset id to train on instead, read from $MINARI_DATASETS_PATH (never downloaded)
    minari_id: Optional[str] = None
    # make a missing dataset_path file on first use, with this many rows (make_dataset, from `env`)
    make_dataset_size: Optional[int] = None
    # seed of that locally made dataset
    make_dataset_seed: int = 0
    # gymnasium env id for evaluation (default: from `env`, e.g. Hopper-v4)
    eval_env: Optional[str] = None
    # random seed of the run (batches, networks, evaluation episodes)
    seed: int = 0
    # torch device; "auto" picks cuda when available
    device: str = "auto"
    # torch CPU threads (torch.set_num_threads); null: torch's default, from OMP_NUM_THREADS
    threads: Optional[int] = None
    # torch.compile the base update and the chain update (for GPUs; slower on a small CPU)
    compile: bool = False
    # torch.compile backend: inductor (generated kernels), aot_eager (traced, no codegen)
    compile_backend: str = "inductor"
    # total gradient updates
    max_timesteps: int = 1_000_000
    # evaluate every actor (and checkpoint) every eval_freq updates
    eval_freq: int = 5000
    # evaluation episodes per actor
    n_episodes: int = 10
    # training batch size
    batch_size: int = 256
    # discount factor
    discount: float = 0.99
    # Polyak coefficient of the target networks (critics in the trainer, chain actors in the main)
    tau: float = 0.005
    # learning rate of every actor (actor 0 and the chain)
    actor_lr: float = 3e-4
    # normalise states with the dataset's mean and std
    normalize: bool = True
    # CORL's reward scaling for locomotion (1000 / return range)
    normalize_reward: bool = False
    # number of actors in the chain pi_0 -> ... -> pi_{N-1}; 1 is the base algorithm
    num_actors: int = 3
    # W2 weight of each actor i >= 1 (one per actor, or one value for all)
    w2_weights: List[float] = field(default_factory=lambda: [10.0])
    # W2^2 estimator: auto (from the policy types), closed_form, shared_noise, sinkhorn, l2
    w2_method: str = "auto"
    # samples per state for the sample-based W2 estimators
    sinkhorn_K: int = 8
    # Sinkhorn blur (entropic scale, in action units)
    sinkhorn_blur: float = 0.05
    # energy of actors i >= 1: q (-Q) or advantage (-(Q - V)), where the algorithm has a V
    energy_function_type: str = "q"
    # divide Q in the energy by mean|Q| (null: the algorithm's default: yes for TD3+BC, ReBRAC,
    # IQL and AWAC (the chain study's pilot), no for CQL, SAC-N, EDAC; FQL: its normalize_q_loss)
    energy_normalize_q: Optional[bool] = None
    # after max_timesteps, this many more updates of actors i >= 1 alone, against the final
    # actor 0 and critics (frozen), at the chain's initial learning rate (no schedule): each link
    # then takes its JKO step from a fixed predecessor (docs/chain_study.md); 0: no such phase
    settle_steps: int = 0
    # W2 weights of those updates (one per actor i >= 1, or one value; null: w2_weights);
    # not checked while settle_steps is 0
    settle_w2_weights: Optional[List[float]] = None
    # the chain's learning rate over those updates: constant (its initial one) or cosine (from
    # it to 0, so each link ends at its proximal point instead of jittering around it)
    settle_lr_schedule: str = "constant"
    # start the settle phase with every actor i >= 1 a copy of actor 0 (with a fresh optimiser):
    # each JKO step then starts at its predecessor, as a proximal step does, instead of where the
    # joint phase left it, whose distance to actor 0 Adam does not shrink whatever the weight
    # (docs/chain_study.md); the chain then has actor 0's architecture (no actor_configs)
    settle_from_predecessor: bool = False
    # train actors i >= 1 in the joint phase too; false: they train in the settle phase only,
    # from copies of actor 0 (as settle_from_predecessor), so the joint phase costs what the
    # base algorithm costs (the joint chain trails actor 0 anyway: docs/chain_study.md)
    joint_chain: bool = True
    # actors i >= 1 as one stacked ensemble (vmap: one forward/backward, one optimiser step) when
    # they share actor 0's architecture; false: a Python loop over them (the same numbers)
    vectorize_chain: bool = True
    # per chain actor {type: gaussian|tanh_gaussian|stochastic|deterministic, ...} (null: actor 0's)
    actor_configs: Optional[List[Dict[str, Any]]] = None
    # evaluation actions: auto (stochastic actors sample) or mean (CORL's convention)
    eval_mode: str = "auto"
    # log to Weights & Biases (local logs are written either way)
    use_wandb: bool = True
    # wandb project, group and run name
    project: str = "POGO"
    group: str = "pogo-multi"
    name: str = "pogo"
    # run outputs go to <output_dir>/<algorithm>/<env>/<task>/seed_<seed>/
    output_dir: str = "results"
    # write the training losses every log_freq updates
    log_freq: int = 1000
    # replace the outputs of an earlier run in the same directory
    overwrite: bool = False
    # continue the run in the output directory from its latest readable checkpoint
    resume: bool = False
    # with resume: continue from the checkpoint of this update instead of the latest (the one at
    # max_timesteps is always kept, e.g. to settle again at other settle_w2_weights); the run's
    # logs and checkpoints after it are replaced
    resume_step: Optional[int] = None
    # checkpoints kept on disk (the newest ones; one is written at every evaluation)
    keep_checkpoints: int = 2
    # no progress bar, one line per evaluation (also when the output is not a terminal)
    quiet: bool = False

    def check(self) -> None:
        """Range and consistency checks; each failure names its key. Changes nothing."""
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm: unknown {self.algorithm!r}; known: {sorted(ALGORITHMS)}")
        positive = ("max_timesteps", "eval_freq", "n_episodes", "batch_size", "num_actors")
        positive += ("sinkhorn_K", "log_freq", "keep_checkpoints")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("tau", "discount"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key}: must be in [0, 1], got {getattr(self, key)}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads: must be >= 1 (or null), got {self.threads}")
        if self.minari_id is not None and self.dataset_path is not None:
            raise ConfigError("minari_id: set either minari_id or dataset_path, not both")
        if self.make_dataset_size is not None:
            if self.dataset_path is None:
                raise ConfigError("make_dataset_size: needs dataset_path, the file to make")
            if self.make_dataset_size < 2:
                raise ConfigError(f"make_dataset_size: must be >= 2, got {self.make_dataset_size}")
        if self.resume and self.overwrite:
            raise ConfigError("resume: --resume continues a run, --overwrite replaces it; pick one")
        if self.resume_step is not None and not self.resume:
            raise ConfigError("resume_step: needs --resume (it picks the checkpoint to resume)")
        if self.resume_step is not None and self.resume_step < 1:
            raise ConfigError(f"resume_step: must be >= 1, got {self.resume_step}")
        if self.sinkhorn_blur <= 0:
            raise ConfigError(f"sinkhorn_blur: must be > 0, got {self.sinkhorn_blur}")
        n_chain = self.num_actors - 1
        self._check_chain_weights("w2_weights", n_chain)
        if self.settle_steps < 0:
            raise ConfigError(f"settle_steps: must be >= 0, got {self.settle_steps}")
        if self.settle_steps and n_chain < 1:
            raise ConfigError("settle_steps: it trains actors i >= 1, and num_actors is 1")
        if self.settle_steps and self.settle_w2_weights is not None:
            self._check_chain_weights("settle_w2_weights", n_chain)
        if self.settle_from_predecessor and not self.settle_steps:
            raise ConfigError("settle_from_predecessor: needs a settle phase (settle_steps > 0)")
        if not self.joint_chain and not self.settle_steps:
            raise ConfigError(
                "joint_chain: false trains the chain in the settle phase only; set settle_steps > 0"
            )
        if not self.joint_chain and self.actor_configs is not None:
            raise ConfigError(
                "joint_chain: false starts the chain as copies of actor 0, so it takes actor 0's "
                "architecture; drop actor_configs"
            )
        if self.settle_from_predecessor and self.actor_configs is not None:
            raise ConfigError(
                "settle_from_predecessor: the chain starts as copies of actor 0, so it takes "
                "actor 0's architecture; drop actor_configs"
            )
        if self.actor_configs is not None and len(self.actor_configs) != n_chain:
            raise ConfigError(
                f"actor_configs: {len(self.actor_configs)} entries for num_actors="
                f"{self.num_actors}; give {n_chain} (one per actor i >= 1) or null"
            )
        choices = {
            "w2_method": W2_METHODS,
            "energy_function_type": ENERGY_FUNCTION_TYPES,
            "eval_mode": EVAL_MODES,
            "compile_backend": COMPILE_BACKENDS,
            "settle_lr_schedule": SETTLE_LR_SCHEDULES,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"{key}: must be one of {allowed}, got {getattr(self, key)!r}")
        self.check_energy()

    def _check_chain_weights(self, key: str, n_chain: int) -> None:
        """One W2 weight per actor i >= 1 (or a single value, for all), finite and >= 0."""
        weights = getattr(self, key)
        if n_chain > 0 and len(weights) not in (1, n_chain):
            raise ConfigError(
                f"{key}: {len(weights)} values for num_actors={self.num_actors}; "
                f"give {n_chain} (one per actor i >= 1) or a single value"
            )
        if any(not 0 <= w < float("inf") for w in weights):
            raise ConfigError(f"{key}: must be finite and >= 0, got {weights}")

    def check_energy(self) -> None:
        """The energy keys against what the algorithm's energy can evaluate (its class
        attributes above); each failure names its key. Changes nothing. Part of `check()`."""
        if self.energy_function_type == "advantage" and not self.has_value_function:
            raise ConfigError(f"energy_function_type: {self.algorithm} has no V function; use 'q'")
        if self.energy_needs_log_prob:
            for spec in self.actor_configs or []:
                cls = ACTOR_TYPES.get(spec.get("type"))
                if cls is not None and not cls.has_log_prob:
                    usable = sorted(name for name, c in ACTOR_TYPES.items() if c.has_log_prob)
                    raise ConfigError(
                        f"actor_configs: {self.algorithm}'s energy needs log pi(a|s); actor type "
                        f"{spec['type']!r} has none (use one of {usable})"
                    )

    def resolve(self) -> None:
        """Fill in what the config leaves to the run, in place, once, after `check()`: a single
        W2 weight (`w2_weights`, `settle_w2_weights`) becomes one per actor i >= 1, and a null
        `energy_normalize_q` the algorithm's default (`default_energy_normalize_q`). Resolving
        a resolved config changes nothing."""
        n_chain = self.num_actors - 1
        self.w2_weights = _one_per_chain_actor(self.w2_weights, n_chain)
        if self.settle_w2_weights is not None:
            self.settle_w2_weights = _one_per_chain_actor(self.settle_w2_weights, n_chain)
        if self.energy_normalize_q is None:
            self.energy_normalize_q = bool(self.default_energy_normalize_q)

    @property
    def total_steps(self) -> int:
        """Updates of the whole run: the joint phase, then the chain's settle phase."""
        return self.max_timesteps + self.settle_steps


def _one_per_chain_actor(weights: list[float], n_chain: int) -> list[float]:
    """A single weight given to each of `n_chain` actors (> 1); any other list as it is."""
    return weights * n_chain if len(weights) == 1 and n_chain > 1 else weights


#: each framework's main, for an algorithm run by the other one
MAINS = {"torch": "pogo_multi_main", "jax": "pogo_multi_jax"}


def load_algorithm(name: str, backend: str | None = None) -> ModuleType:
    """The module of a base algorithm (`Config`, `build`); with `backend` ("torch" or "jax":
    the calling main's), refuse an algorithm of the other framework, naming its main."""
    if name not in ALGORITHMS:
        raise ConfigError(f"algorithm: unknown {name!r}; known: {sorted(ALGORITHMS)}")
    module = importlib.import_module(ALGORITHMS[name])
    own = getattr(module, "BACKEND", "torch")
    if backend is not None and own != backend:
        kind = "JAX" if own == "jax" else "PyTorch"
        raise ConfigError(
            f"algorithm: {name} is a {kind} algorithm; run "
            f"python -m algorithms.offline.{MAINS[own]}"
        )
    return module


def _parse_cli(argv: list[str]) -> tuple[str | None, dict[str, Any]]:
    """`--config_path P --key value --key=value --no_wandb` -> (P, {key: value})."""
    config_path, values = None, {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in CLI_FLAGS:
            key, value = CLI_FLAGS[arg]
            values[key] = value
            i += 1
            continue
        if not arg.startswith("--"):
            raise ConfigError(f"command line: expected --key value, got {arg!r}")
        if "=" in arg:
            key, raw = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv):
                raise ConfigError(f"command line: {arg} needs a value")
            key, raw = arg[2:], argv[i + 1]
            i += 2
        if key == "config_path":
            config_path = raw
        else:
            values[key] = yaml.safe_load(raw) if raw != "" else ""
    return config_path, values


def _read_yaml(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config_path: no such file {path}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of config keys, got {type(data).__name__}")
    return data


def _check_keys(cls: type, values: dict[str, Any], source: str) -> None:
    known = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{source}: unknown config key {key!r} for {cls.__module__}{hint}")


def parse_config(argv: list[str] | None = None) -> PogoConfig:
    """YAML file (`--config_path`) overridden by `--key value` pairs -> the algorithm's Config,
    checked, then resolved."""
    argv = sys.argv[1:] if argv is None else list(argv)
    config_path, cli = _parse_cli(argv)
    from_file = _read_yaml(config_path) if config_path else {}
    algorithm = cli.get("algorithm", from_file.get("algorithm", PogoConfig.algorithm))
    cls = load_algorithm(algorithm).Config
    _check_keys(cls, from_file, config_path or "")
    _check_keys(cls, cli, "command line")
    values = {**from_file, **cli}
    for key in ("w2_weights", "settle_w2_weights"):  # a scalar: one weight for every actor
        if isinstance(values.get(key), (int, float)):
            values[key] = [values[key]]
    try:
        config = pyrallis.decode(cls, values)
    except Exception as err:  # pyrallis wraps the offending field and value in its message
        raise ConfigError(_decode_error_line(err)) from None
    config.check()
    config.resolve()
    return config


def _decode_error_line(err: Exception) -> str:
    text = str(err)
    head = text.splitlines()[0] if text else type(err).__name__
    if (
        'field "' in head
    ):  # pyrallis: Failed when parsing value='x' into field "<cls>.key" of type T
        key = head.split('field "', 1)[1].split('"', 1)[0].rsplit(".", 1)[-1]
        value = head.split("value=", 1)[1].split(" into", 1)[0] if "value=" in head else "?"
        type_ = head.rsplit("of type ", 1)[-1].rstrip(".")
        return f"{key}: cannot read {value} as {type_}"
    return f"config: {head}"


def dump_config(config: PogoConfig, path: Path) -> None:
    """The resolved config, as YAML that `--config_path` reads back."""
    path.write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
