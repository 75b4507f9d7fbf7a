"""Flax networks of the JAX chain: the policy types (ReBRAC's deterministic actor, FQL's
one-step policy mu(s, z) and BC flow field) and the critic ensembles.

Every policy offers the same two calls the chain needs, each a pure function of its parameters:
`mean_actions(states) -> [B, A]` (the action at the noise's centre) and
`actions_from_noise(states, noise [B, K, Z]) -> [B, K, A]`, plus the type flags
(`is_gaussian`, `is_stochastic`, `exact_shared_noise`) that `w2.resolve_w2_method` reads, so the
JAX chain picks its W2 estimator by the same rule as the PyTorch one.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]


def torch_uniform_init() -> Initializer:
    """PyTorch's default Linear init U(-1/sqrt(fan_in), 1/sqrt(fan_in)): ReBRAC's hidden layers."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        bound = 1.0 / float(shape[0]) ** 0.5  # kernel [fan_in, fan_out]
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def uniform_init(bound: float) -> Initializer:
    """U(-bound, bound): ReBRAC's small output layers."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


#: FQL's default init: variance scaling 1, fan_avg, uniform (Glorot uniform); zero biases
fql_kernel_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class InitScheme:
    """How an MLP initialises its hidden and output layers (one per reference implementation)."""

    def __init__(self, name: str, hidden_kernel, hidden_bias, out_kernel, out_bias):
        self.name = name
        self.hidden_kernel, self.hidden_bias = hidden_kernel, hidden_bias
        self.out_kernel, self.out_bias = out_kernel, out_bias

    def __repr__(self) -> str:
        return f"InitScheme({self.name})"


def rebrac_init(out_bound: float) -> InitScheme:
    """ReBRAC: PyTorch-uniform kernels, biases 0.1, output layer U(-out_bound, out_bound)."""
    return InitScheme(
        f"rebrac{out_bound}",
        torch_uniform_init(),
        nn.initializers.constant(0.1),
        uniform_init(out_bound),
        uniform_init(out_bound),
    )


FQL_INIT = InitScheme(
    "fql", fql_kernel_init, nn.initializers.zeros, fql_kernel_init, nn.initializers.zeros
)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {"relu": nn.relu, "gelu": nn.gelu}


class MLP(nn.Module):
    """Dense -> activation -> (LayerNorm) per hidden layer, then a linear output layer."""

    hidden_dims: Sequence[int]
    out_dim: int
    activation: str = "relu"
    layer_norm: bool = False
    weights_init: InitScheme = FQL_INIT

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_dims:
            x = nn.Dense(
                size,
                kernel_init=self.weights_init.hidden_kernel,
                bias_init=self.weights_init.hidden_bias,
            )(x)
            x = act(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(
            self.out_dim,
            kernel_init=self.weights_init.out_kernel,
            bias_init=self.weights_init.out_bias,
        )(x)


class DeterministicActor(nn.Module):
    """ReBRAC's actor: a = max_action * tanh(MLP(s)); a Dirac policy (W2 to it is L2)."""

    action_dim: int
    hidden_dims: Sequence[int] = (256, 256, 256)
    layer_norm: bool = False
    max_action: float = 1.0
    activation: str = "relu"
    weights_init: InitScheme = rebrac_init(1e-3)

    is_gaussian = False
    is_stochastic = False
    exact_shared_noise = False
    noise_dim = 0

    def setup(self) -> None:
        self.net = MLP(
            self.hidden_dims, self.action_dim, self.activation, self.layer_norm, self.weights_init
        )

    def __call__(self, states: jax.Array) -> jax.Array:
        return self.max_action * jnp.tanh(self.net(states))  # [B, A]

    def mean_actions(self, states: jax.Array) -> jax.Array:
        return self(states)  # [B, A]

    def actions_from_noise(self, states: jax.Array, noise: jax.Array) -> jax.Array:
        actions = self(states)  # [B, A]
        return jnp.broadcast_to(actions[:, None], (*noise.shape[:2], actions.shape[-1]))


class OneStepPolicy(nn.Module):
    """FQL's one-step policy a = mu(s, z), z ~ N(0, I): a general noise-to-action map.

    Outputs are not clipped here; FQL clips to [-1, 1] where the action is used (the critic,
    the environment), and distils the unclipped map, as the chain's W2 term does.
    """

    action_dim: int
    hidden_dims: Sequence[int] = (512, 512, 512, 512)
    layer_norm: bool = False
    activation: str = "gelu"
    weights_init: InitScheme = FQL_INIT

    is_gaussian = False
    is_stochastic = True
    # the shared-noise coupling is only an upper bound of W2^2 for a general map
    exact_shared_noise = False

    @property
    def noise_dim(self) -> int:
        return self.action_dim

    def setup(self) -> None:
        self.net = MLP(
            self.hidden_dims, self.action_dim, self.activation, self.layer_norm, self.weights_init
        )

    def __call__(self, states: jax.Array, noise: jax.Array) -> jax.Array:
        """states [..., S], noise [..., A] -> actions [..., A]."""
        return self.net(jnp.concatenate([states, noise], axis=-1))

    def mean_actions(self, states: jax.Array) -> jax.Array:
        return self(states, jnp.zeros((*states.shape[:-1], self.action_dim), states.dtype))

    def actions_from_noise(self, states: jax.Array, noise: jax.Array) -> jax.Array:
        tiled = jnp.broadcast_to(states[:, None], (*noise.shape[:2], states.shape[-1]))
        return self(tiled, noise)  # [B, K, A]


class FlowField(nn.Module):
    """FQL's behaviour-cloning flow: the velocity v(s, x_t, t) of the noise-to-action path."""

    action_dim: int
    hidden_dims: Sequence[int] = (512, 512, 512, 512)
    layer_norm: bool = False
    activation: str = "gelu"
    weights_init: InitScheme = FQL_INIT

    @nn.compact
    def __call__(self, states: jax.Array, actions: jax.Array, times: jax.Array) -> jax.Array:
        """states [B, S], actions [B, A], times [B, 1] -> velocities [B, A]."""
        inputs = jnp.concatenate([states, actions, times], axis=-1)
        return MLP(
            self.hidden_dims, self.action_dim, self.activation, self.layer_norm, self.weights_init
        )(inputs)


class QNetwork(nn.Module):
    """Q(s, a) -> [B]."""

    hidden_dims: Sequence[int]
    activation: str = "relu"
    layer_norm: bool = True
    weights_init: InitScheme = rebrac_init(3e-3)

    @nn.compact
    def __call__(self, states: jax.Array, actions: jax.Array) -> jax.Array:
        inputs = jnp.concatenate([states, actions], axis=-1)
        return MLP(self.hidden_dims, 1, self.activation, self.layer_norm, self.weights_init)(
            inputs
        )[..., 0]


class EnsembleQ(nn.Module):
    """`n_critics` independent Q networks evaluated at once: (s [B, S], a [B, A]) -> [N, B]."""

    hidden_dims: Sequence[int]
    n_critics: int = 2
    activation: str = "relu"
    layer_norm: bool = True
    weights_init: InitScheme = rebrac_init(3e-3)

    @nn.compact
    def __call__(self, states: jax.Array, actions: jax.Array) -> jax.Array:
        ensemble = nn.vmap(
            QNetwork,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.n_critics,
        )
        return ensemble(self.hidden_dims, self.activation, self.layer_norm, self.weights_init)(
            states, actions
        )
