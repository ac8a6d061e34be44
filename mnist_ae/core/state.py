"""The train state: one pytree holding everything a resume needs."""

from __future__ import annotations

from collections.abc import Callable
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


Schedule = Callable[[jax.Array], jax.Array]


def make_optimizer(learning_rate: float, weight_decay: float,
                   lr_multiplier: Schedule | None = None, b2: float = 0.999) -> optax.GradientTransformation:
    """AdamW with the learning rate kept in the optimizer state.

    Injected hyperparameters are arrays in the state, so a sweep can vmap over learning rates
    and the logger can read the rate actually used. With `lr_multiplier` (a schedule of the step
    peaking at 1), the step's rate is `learning_rate * lr_multiplier(step)`: the peak stays a value
    in the state (vmappable) and only the schedule's shape is static. `b2` (the second-moment decay)
    is in the state of the constant rate's optimizer, as it always was, and static in the scheduled
    one, which never held it: either way earlier checkpoints keep their structure.
    """
    if lr_multiplier is None:
        return optax.inject_hyperparams(optax.adamw)(learning_rate=learning_rate, weight_decay=weight_decay, b2=b2)
    return optax.inject_hyperparams(_scheduled_adamw, static_args="b2")(
        learning_rate=learning_rate, weight_decay=weight_decay, lr_multiplier=lr_multiplier, b2=b2)


def _scheduled_adamw(learning_rate: jax.Array, weight_decay: jax.Array,
                     lr_multiplier: jax.Array, b2: float) -> optax.GradientTransformation:
    return optax.adamw(learning_rate * lr_multiplier, b2=b2, weight_decay=weight_decay)


def warmup_cosine(warmup_steps: int, total_steps: int, end_factor: float) -> Schedule:
    """0 -> 1 linearly over `warmup_steps`, then a cosine down to `end_factor` at `total_steps`."""
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps, total_steps, end_factor)


def learning_rate(opt_state: optax.OptState) -> jax.Array:
    """The rate of the last update (the schedule's first value before any)."""
    hyperparams = opt_state.hyperparams
    if "lr_multiplier" in hyperparams:
        return hyperparams["learning_rate"] * hyperparams["lr_multiplier"]
    return hyperparams["learning_rate"]


def new_state(params: dict[str, Params], optimizers: dict[str, optax.GradientTransformation],
              data_rng: jax.Array) -> TrainState:
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        epoch=jnp.zeros((), jnp.int32),
        params=params,
        opt_states={k: optimizers[k].init(p) for k, p in params.items()},
        rng=data_rng,
    )
