"""ReBRAC (Tarasov et al., 2023, arXiv:2305.09836) in JAX, as its reference code trains it, plus
its POGO energy. Run with `python -m algorithms.offline.pogo_multi_jax`.

TD3+BC revisited: a deterministic tanh actor (3x256, no LayerNorm), two critics with LayerNorm,
batch 1024, lr 1e-3, and behaviour cloning in both losses. The critic's target subtracts
`critic_bc_coef * ||a' - a'_data||^2` from min Q at the noisy target action; actor 0 minimises
`actor_bc_coef * ||pi(s) - a||^2 - min Q(s, pi(s)) / mean|min Q|` every `policy_freq` updates.
Actors i >= 1 minimise `-min Q(s, pi(s)) / mean|min Q|` (stop-gradient on the scale): the W2 term
to the previous actor takes the BC term's place. All actors are deterministic, so W2^2 is L2.
"""

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from algorithms.offline.config import ConfigError, PogoConfig
from algorithms.offline.pogo_policies_jax import DeterministicActor, EnsembleQ
from algorithms.offline.utils_jax import (
    AlgorithmInterface,
    Batch,
    Log,
    Params,
    q_energy,
)
from algorithms.offline.utils_jax import check_jax_config as _check_jax_config

#: run by pogo_multi_jax, not pogo_multi_main
BACKEND = "jax"


@dataclass
class Config(PogoConfig):
    algorithm: str = "rebrac"
    # ReBRAC's batch size and learning rates
    batch_size: int = 1024
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    # raw states, as ReBRAC's D4RL configs (normalize_states: false)
    normalize: bool = False
    # width and depth of the actor and critic MLPs
    hidden_dim: int = 256
    actor_n_hiddens: int = 3
    critic_n_hiddens: int = 3
    # weight of ||pi(s) - a||^2 in actor 0's loss (per dataset in the configs)
    actor_bc_coef: float = 1.0
    # weight of ||a' - a'_data||^2 in the critic target (per dataset in the configs)
    critic_bc_coef: float = 1.0
    # LayerNorm after each hidden layer of the actor / critics
    actor_ln: bool = False
    critic_ln: bool = True
    # std and clip of the target policy's smoothing noise
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    # actor (and target) update every policy_freq critic updates
    policy_freq: int = 2
    # divide Q in actor 0's loss by mean|Q| (stop-gradient)
    normalize_q: bool = True

    @property
    def default_energy_normalize_q(self) -> bool:
        """`energy_normalize_q` when null: `normalize_q`, as ReBRAC's own actor loss."""
        return self.normalize_q

    def check(self) -> None:
        super().check()
        _check_jax_config(self)
        for key in ("actor_n_hiddens", "critic_n_hiddens", "hidden_dim", "policy_freq"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("actor_bc_coef", "critic_bc_coef", "policy_noise", "noise_clip"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0, got {getattr(self, key)}")


class ReBRAC(AlgorithmInterface):
    actor_sees_critic_before_update = False  # TD3-style: the actor sees the updated critic
    needs_next_actions = True  # the critic target's BC penalty

    def __init__(
        self,
        config: Config,
        state_dim: int,
        action_dim: int,
        max_action: float,
        device: jax.Device | None = None,
    ):
        super().__init__(config, state_dim, action_dim, max_action, device)
        self.policy_freq = config.policy_freq
        self.actor = DeterministicActor(
            action_dim,
            (config.hidden_dim,) * config.actor_n_hiddens,
            layer_norm=config.actor_ln,
            max_action=max_action,
        )
        self.critic = EnsembleQ(
            (config.hidden_dim,) * config.critic_n_hiddens, 2, "relu", config.critic_ln
        )
        self.actor_tx = optax.adam(config.actor_lr)
        self.critic_tx = optax.adam(config.critic_lr)

    def init(self, key: jax.Array) -> dict[str, Any]:
        actor_key, critic_key = jax.random.split(key)
        states = jnp.zeros((1, self.state_dim))  # [1, S]
        actions = jnp.zeros((1, self.action_dim))  # [1, A]
        actor = self.actor.init(actor_key, states)
        critic = self.critic.init(critic_key, states, actions)
        return {
            "actor": actor,
            "actor_target": actor,  # targets start as copies, as in the reference
            "actor_opt": self.actor_tx.init(actor),
            "critic": critic,
            "critic_target": critic,
            "critic_opt": self.critic_tx.init(critic),
        }

    def actor_params(self, state: dict[str, Any]) -> Params:
        return state["actor"]

    def make_actor_optimizer(self) -> optax.GradientTransformation:
        return self.actor_tx

    def update_critic(
        self, state: dict[str, Any], batch: Batch, key: jax.Array
    ) -> tuple[dict[str, Any], Log]:
        c = self.config
        next_actions = self.actor.apply(state["actor_target"], batch["next_states"])  # [B, A]
        noise = jnp.clip(
            jax.random.normal(key, next_actions.shape) * c.policy_noise, -c.noise_clip, c.noise_clip
        )
        next_actions = jnp.clip(next_actions + noise, -self.max_action, self.max_action)
        bc_penalty = ((next_actions - batch["next_actions"]) ** 2).sum(-1)  # [B]
        next_q = self.critic.apply(state["critic_target"], batch["next_states"], next_actions)
        next_q = next_q.min(0) - c.critic_bc_coef * bc_penalty  # [B]
        target_q = batch["rewards"] + (1.0 - batch["dones"]) * c.discount * next_q  # [B]

        def loss_fn(params: Params) -> tuple[jax.Array, jax.Array]:
            q = self.critic.apply(params, batch["states"], batch["actions"])  # [2, B]
            return ((q - target_q[None]) ** 2).mean(1).sum(0), q.min(0).mean()

        (loss, q_min), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["critic"])
        updates, opt = self.critic_tx.update(grads, state["critic_opt"], state["critic"])
        critic = optax.apply_updates(state["critic"], updates)
        return {**state, "critic": critic, "critic_opt": opt}, {
            "critic_loss": loss,
            "q_min": q_min,
        }

    def update_actor(
        self, state: dict[str, Any], batch: Batch, key: jax.Array, critic: Params
    ) -> tuple[dict[str, Any], Log]:
        c = self.config

        def loss_fn(params: Params) -> tuple[jax.Array, jax.Array]:
            actions = self.actor.apply(params, batch["states"])  # [B, A]
            bc_penalty = ((actions - batch["actions"]) ** 2).sum(-1)  # [B]
            q = self.critic.apply(critic, batch["states"], actions).min(0)  # [B]
            lmbda = jax.lax.stop_gradient(1.0 / jnp.abs(q).mean()) if c.normalize_q else 1.0
            return (c.actor_bc_coef * bc_penalty - lmbda * q).mean(), bc_penalty.mean()

        (loss, bc_mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["actor"])
        updates, opt = self.actor_tx.update(grads, state["actor_opt"], state["actor"])
        actor = optax.apply_updates(state["actor"], updates)
        return {
            **state,
            "actor": actor,
            "actor_opt": opt,
            # the reference averages the actor target towards the actor as it was before this
            # step, and the critic target towards the critic after its step
            "actor_target": optax.incremental_update(state["actor"], state["actor_target"], c.tau),
            "critic_target": optax.incremental_update(
                state["critic"], state["critic_target"], c.tau
            ),
        }, {"actor_loss": loss, "bc_mse_policy": bc_mse}

    def compute_energy_function(
        self, state: dict[str, Any], actor_params: Params, states: jax.Array, key: jax.Array
    ) -> jax.Array:
        """`-min Q(s, pi(s)) / mean|min Q|` per state [B] (`-min Q` if not normalised)."""
        actions = self.actor.apply(actor_params, states)  # [B, A]
        q = self.q_value(state, states, actions)  # [B]
        return q_energy(q, normalize=bool(self.config.energy_normalize_q))

    def q_value(self, state: dict[str, Any], states: jax.Array, actions: jax.Array) -> jax.Array:
        return self.critic.apply(state["critic"], states, actions).min(0)  # [B]: the minimum


def build(
    config: Config,
    state_dim: int,
    action_dim: int,
    max_action: float,
    device: jax.Device | None = None,
) -> ReBRAC:
    """The JAX trainer (`utils_jax.AlgorithmInterface`), run by pogo_multi_jax; `device`: where
    its state lives (None: JAX's default)."""
    return ReBRAC(config, state_dim, action_dim, max_action, device)
