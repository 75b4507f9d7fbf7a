"""Flow Q-Learning (Park, Li & Levine, 2025, arXiv:2502.02538) in JAX, as its reference code
trains it, plus its POGO energy. Run with `python -m algorithms.offline.pogo_multi_jax`.

Three networks: a behaviour-cloning flow v(s, x_t, t) trained by flow matching (actions by 10
Euler steps from noise), a one-step policy mu(s, z) that distils the flow (weight `alpha`) while
maximising Q, and two critics (LayerNorm) whose target uses the one-step policy. Critic and
actors take one joint step on the same parameters (the actor's Q term sees the critic before the
step). Actor 0 is the one-step policy; actors i >= 1 are one-step policies minimising
`-Q(s, clip(mu_i(s, z)))` (normalised as FQL's `normalize_q_loss`), and the W2 term to the
previous one-step policy takes the distillation term's place: by default the shared-noise
coupling E_z ||mu_i(s, z) - mu_{i-1}(s, z)||^2, an upper bound of W2^2 (FQL's own distillation
term is this coupling, averaged rather than summed over action dimensions), or `sinkhorn`.
"""

from dataclasses import dataclass, field
from typing import Any, List

import jax
import jax.numpy as jnp
import optax

from algorithms.offline.config import ConfigError, PogoConfig
from algorithms.offline.pogo_policies_jax import FQL_INIT, EnsembleQ, FlowField, OneStepPolicy
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
Q_AGGREGATIONS = ("mean", "min")


@dataclass
class Config(PogoConfig):
    algorithm: str = "fql"
    # raw states, as FQL's reference
    normalize: bool = False
    # learning rate of the critics (FQL uses one rate, `lr`, for every network; actor_lr is the
    # flow's and the one-step policy's)
    critic_lr: float = 3e-4
    # hidden sizes of the flow and one-step policy, and of the critics
    actor_hidden_dims: List[int] = field(default_factory=lambda: [512, 512, 512, 512])
    value_hidden_dims: List[int] = field(default_factory=lambda: [512, 512, 512, 512])
    # LayerNorm in the critics / in the actor networks
    layer_norm: bool = True
    actor_layer_norm: bool = False
    # how the critic target combines the two critics: mean or min
    q_agg: str = "mean"
    # distillation weight of the one-step policy (FQL's BC coefficient)
    alpha: float = 10.0
    # Euler steps of the BC flow
    flow_steps: int = 10
    # divide the Q loss by mean|Q| (stop-gradient)
    normalize_q_loss: bool = False
    # chain W2: the shared-noise coupling (an upper bound of W2^2) between one-step policies
    w2_method: str = "shared_noise"

    @property
    def default_energy_normalize_q(self) -> bool:
        """`energy_normalize_q` when null: `normalize_q_loss`, as FQL's own Q loss."""
        return self.normalize_q_loss

    def check(self) -> None:
        super().check()
        _check_jax_config(self)
        if self.q_agg not in Q_AGGREGATIONS:
            raise ConfigError(f"q_agg: must be one of {Q_AGGREGATIONS}, got {self.q_agg!r}")
        if self.flow_steps < 1:
            raise ConfigError(f"flow_steps: must be >= 1, got {self.flow_steps}")
        if self.alpha < 0:
            raise ConfigError(f"alpha: must be >= 0, got {self.alpha}")
        for key in ("actor_hidden_dims", "value_hidden_dims"):
            dims = getattr(self, key)
            if not dims or any(d < 1 for d in dims):
                raise ConfigError(f"{key}: must be a non-empty list of sizes >= 1, got {dims}")


class FQL(AlgorithmInterface):
    policy_freq = 1
    actor_sees_critic_before_update = True  # critic and actors take one joint step

    def __init__(
        self,
        config: Config,
        state_dim: int,
        action_dim: int,
        max_action: float,
        device: jax.Device | None = None,
    ):
        super().__init__(config, state_dim, action_dim, max_action, device)
        hidden = tuple(config.actor_hidden_dims)
        self.actor = OneStepPolicy(action_dim, hidden, config.actor_layer_norm, "gelu", FQL_INIT)
        self.flow = FlowField(action_dim, hidden, config.actor_layer_norm, "gelu", FQL_INIT)
        self.critic = EnsembleQ(
            tuple(config.value_hidden_dims), 2, "gelu", config.layer_norm, FQL_INIT
        )
        self.actor_tx = optax.adam(config.actor_lr)
        self.flow_tx = optax.adam(config.actor_lr)
        self.critic_tx = optax.adam(config.critic_lr)

    def init(self, key: jax.Array) -> dict[str, Any]:
        critic_key, flow_key, actor_key = jax.random.split(key, 3)
        states = jnp.zeros((1, self.state_dim))  # [1, S]
        actions = jnp.zeros((1, self.action_dim))  # [1, A]
        critic = self.critic.init(critic_key, states, actions)
        flow = self.flow.init(flow_key, states, actions, actions[:, :1])
        actor = self.actor.init(actor_key, states, actions)
        return {
            "critic": critic,
            "critic_target": critic,
            "critic_opt": self.critic_tx.init(critic),
            "flow": flow,
            "flow_opt": self.flow_tx.init(flow),
            "actor": actor,
            "actor_opt": self.actor_tx.init(actor),
        }

    def actor_params(self, state: dict[str, Any]) -> Params:
        return state["actor"]

    def make_actor_optimizer(self) -> optax.GradientTransformation:
        return self.actor_tx

    def one_step_actions(self, params: Params, states: jax.Array, key: jax.Array) -> jax.Array:
        """clip(mu(s, z)), z ~ N(0, I): [B, S] -> [B, A] (FQL's `sample_actions`)."""
        noise = jax.random.normal(key, (states.shape[0], self.action_dim))  # [B, A]
        return jnp.clip(self.actor.apply(params, states, noise), -self.max_action, self.max_action)

    def flow_actions(self, flow: Params, states: jax.Array, noise: jax.Array) -> jax.Array:
        """The BC flow's action for noise [B, A] by `flow_steps` Euler steps, clipped."""
        n = self.config.flow_steps
        actions = noise
        for i in range(n):
            times = jnp.full((states.shape[0], 1), i / n)  # [B, 1]
            actions = actions + self.flow.apply(flow, states, actions, times) / n
        return jnp.clip(actions, -self.max_action, self.max_action)  # [B, A]

    def aggregate(self, qs: jax.Array) -> jax.Array:
        return qs.min(0) if self.config.q_agg == "min" else qs.mean(0)  # [N, B] -> [B]

    def update_critic(
        self, state: dict[str, Any], batch: Batch, key: jax.Array
    ) -> tuple[dict[str, Any], Log]:
        c = self.config
        next_actions = self.one_step_actions(state["actor"], batch["next_states"], key)  # [B, A]
        next_q = self.aggregate(
            self.critic.apply(state["critic_target"], batch["next_states"], next_actions)
        )  # [B]
        target_q = batch["rewards"] + c.discount * (1.0 - batch["dones"]) * next_q  # [B]

        def loss_fn(params: Params) -> tuple[jax.Array, jax.Array]:
            q = self.critic.apply(params, batch["states"], batch["actions"])  # [2, B]
            return ((q - target_q[None]) ** 2).mean(), q.mean()

        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["critic"])
        updates, opt = self.critic_tx.update(grads, state["critic_opt"], state["critic"])
        critic = optax.apply_updates(state["critic"], updates)
        target = optax.incremental_update(critic, state["critic_target"], c.tau)
        return {**state, "critic": critic, "critic_target": target, "critic_opt": opt}, {
            "critic_loss": loss,
            "q_mean": q_mean,
        }

    def update_actor(
        self, state: dict[str, Any], batch: Batch, key: jax.Array, critic: Params
    ) -> tuple[dict[str, Any], Log]:
        c = self.config
        states, data_actions = batch["states"], batch["actions"]  # [B, S], [B, A]
        x_key, t_key, noise_key = jax.random.split(key, 3)
        x_0 = jax.random.normal(x_key, data_actions.shape)  # [B, A]
        times = jax.random.uniform(t_key, (states.shape[0], 1))  # [B, 1]
        x_t = (1.0 - times) * x_0 + times * data_actions
        velocity = data_actions - x_0  # [B, A]
        noise = jax.random.normal(noise_key, data_actions.shape)  # [B, A]
        # the distillation target: the flow as it is now, a constant for this step
        target_actions = self.flow_actions(state["flow"], states, noise)  # [B, A]

        def loss_fn(params: tuple[Params, Params]) -> tuple[jax.Array, Log]:
            flow, actor = params
            bc_flow_loss = ((self.flow.apply(flow, states, x_t, times) - velocity) ** 2).mean()
            actions = self.actor.apply(actor, states, noise)  # [B, A]
            distill_loss = ((actions - target_actions) ** 2).mean()
            actions = jnp.clip(actions, -self.max_action, self.max_action)
            q = self.critic.apply(critic, states, actions).mean(0)  # [B]
            q_loss = -q.mean()
            if c.normalize_q_loss:
                q_loss = jax.lax.stop_gradient(1.0 / jnp.abs(q).mean()) * q_loss
            loss = bc_flow_loss + c.alpha * distill_loss + q_loss
            return loss, {
                "actor_loss": loss,
                "bc_flow_loss": bc_flow_loss,
                "distill_loss": distill_loss,
                "q_loss": q_loss,
            }

        (_, log), (flow_grads, actor_grads) = jax.value_and_grad(loss_fn, has_aux=True)(
            (state["flow"], state["actor"])
        )
        flow_updates, flow_opt = self.flow_tx.update(flow_grads, state["flow_opt"], state["flow"])
        actor_updates, actor_opt = self.actor_tx.update(
            actor_grads, state["actor_opt"], state["actor"]
        )
        return {
            **state,
            "flow": optax.apply_updates(state["flow"], flow_updates),
            "flow_opt": flow_opt,
            "actor": optax.apply_updates(state["actor"], actor_updates),
            "actor_opt": actor_opt,
        }, log

    def compute_energy_function(
        self, state: dict[str, Any], actor_params: Params, states: jax.Array, key: jax.Array
    ) -> jax.Array:
        """`-Q(s, clip(mu(s, z)))` per state [B], Q the critics' mean (FQL's actor loss), divided
        by mean|Q| when `energy_normalize_q` (default: as `normalize_q_loss`)."""
        actions = self.one_step_actions(actor_params, states, key)  # [B, A]
        q = self.q_value(state, states, actions)  # [B]
        return q_energy(q, normalize=bool(self.config.energy_normalize_q))

    def q_value(self, state: dict[str, Any], states: jax.Array, actions: jax.Array) -> jax.Array:
        return self.critic.apply(state["critic"], states, actions).mean(0)  # [B]: the mean


def build(
    config: Config,
    state_dim: int,
    action_dim: int,
    max_action: float,
    device: jax.Device | None = None,
) -> FQL:
    """The JAX trainer (`utils_jax.AlgorithmInterface`), run by pogo_multi_jax; `device`: where
    its state lives (None: JAX's default)."""
    return FQL(config, state_dim, action_dim, max_action, device)
