"""The train state: one pytree holding everything a resume needs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

Params = Any


@struct.dataclass
class TrainState:
    """Parameters and optimizer states per part ("ae" and "probe", or "classifier").

    Each part has its own optimizer state so that updating one part leaves the other
    bit-identical (Adam moments and weight decay would move a "frozen" part otherwise).
    `rng` is a raw uint32 key (saveable by orbax); the data order of epoch e is
    `fold_in(rng, e)`, so a resumed run sees exactly the batches it would have seen.
    """

    step: jax.Array  # int32 [], optimizer rounds done
    epoch: jax.Array  # int32 [], epochs done
    params: dict[str, Params]
    opt_states: dict[str, optax.OptState]
    rng: jax.Array  # uint32 [2]


def make_optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    """AdamW with the learning rate kept in the optimizer state.

    Injected hyperparameters are arrays in the state, so a sweep can vmap over learning rates
    and the logger can read the rate actually used.
    """
    return optax.inject_hyperparams(optax.adamw)(learning_rate=learning_rate,
                                                 weight_decay=weight_decay)


def learning_rate(opt_state: optax.OptState) -> jax.Array:
    return opt_state.hyperparams["learning_rate"]


def new_state(params: dict[str, Params], optimizers: dict[str, optax.GradientTransformation],
              data_rng: jax.Array) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        epoch=jnp.zeros((), jnp.int32),
        params=params,
        opt_states={k: optimizers[k].init(p) for k, p in params.items()},
        rng=data_rng,
    )
