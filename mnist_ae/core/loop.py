"""A whole epoch in one call: on-device shuffle, on-device batching, `lax.scan` over rounds.

The uint8 dataset stays resident on the device; each call gathers its batches by index, so the
host neither feeds nor waits on any single step.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from mnist_ae.core import augment, losses
from mnist_ae.core.steps import Metrics, Learner, train_round
from mnist_ae.core.state import TrainState


def rounds_per_epoch(learner: Learner, num_train: int, batch_size: int) -> int:
    """Whole rounds only: the remainder of the shuffled epoch is dropped (a fresh one each epoch)."""
    return num_train // (batch_size * learner.batches_per_round)


def epoch_indices(rng: jax.Array, epoch: jax.Array, num_train: int, num_rounds: int,
                  group: int, batch_size: int) -> jax.Array:
    """The epoch's data order: [rounds, group, batch] indices into the training set."""
    perm_n = jax.random.permutation(jax.random.fold_in(rng, epoch), num_train)
    return perm_n[: num_rounds * group * batch_size].reshape(num_rounds, group, batch_size)


def pool_indices(rng: jax.Array, epoch: jax.Array, pool_p: jax.Array, valid_p: jax.Array, num_rounds: int,
                 group: int, batch_size: int) -> jax.Array:
    """The epoch's data order drawn from a pool of training indices (its first `valid_p` entries real, the
    rest padding): a fresh random order of the real ones, cut to [rounds, group, batch]."""
    u_p = jnp.where(valid_p, jax.random.uniform(jax.random.fold_in(rng, epoch), pool_p.shape), 2.0)
    order_p = jnp.argsort(u_p)  # the real entries first, in random order
    return pool_p[order_p][: num_rounds * group * batch_size].reshape(num_rounds, group, batch_size)


def train_epoch(learner: Learner, state: TrainState, images_nhw: jax.Array, labels_n: jax.Array,
                batch_size: int, mask_l: jax.Array | None = None,
                batch_constraint: Callable[[jax.Array], jax.Array] | None = None,
                freeze_on_divergence: bool = False, beta: jax.Array | None = None,
                pool: tuple[jax.Array, jax.Array] | None = None,
                epoch_examples: int | None = None) -> tuple[TrainState, Metrics]:
    """One epoch; returns the new state and per-round metrics stacked along axis 0.

    `batch_constraint` (optional) is applied to every gathered batch, e.g. a sharding constraint
    that splits it over the `data` axis of a device mesh. With `freeze_on_divergence` (sweeps), the
    first round whose metrics are not finite is not applied and the state stays frozen from then on:
    its `step` stops advancing (so `step < epoch * rounds` marks a diverged state, also after a
    resume) and its later metrics are NaN, while the other members of a vmapped sweep train on. `beta`: a
    VAE sweep member's KL weight (`train_round`). `pool` (indices [P], real [P]): train on those training
    digits only (a one-class member's class), `epoch_examples` of them per epoch (the smallest pool's size,
    so that members with different pools run the same rounds).
    """
    num_train = images_nhw.shape[0]
    num_rounds = rounds_per_epoch(learner, epoch_examples or num_train, batch_size)
    if pool is None:
        idx_rgb = epoch_indices(state.rng, state.epoch, num_train, num_rounds, learner.batches_per_round, batch_size)
    else:
        idx_rgb = pool_indices(state.rng, state.epoch, *pool, num_rounds, learner.batches_per_round, batch_size)

    def body(state: TrainState, xs: tuple[jax.Array, jax.Array]) -> tuple[TrainState, Metrics]:
        idx_gb, round_index = xs
        x_gbhw = losses.to_unit_range(images_nhw[idx_gb])
        if learner.augment_shift:
            x_gbhw = augment.random_shift(augment.round_key(state.rng, state.epoch, round_index), x_gbhw,
                                          learner.augment_shift)
        y_gb = labels_n[idx_gb].astype(jnp.int32)
        if batch_constraint is not None:
            x_gbhw, y_gb = batch_constraint(x_gbhw), batch_constraint(y_gb)
        new_state, metrics = train_round(learner, state, x_gbhw, y_gb, mask_l, beta)
        if not freeze_on_divergence:
            return new_state, metrics
        alive = state.step == state.epoch * num_rounds + round_index
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(m)) for m in metrics.values()]))
        state = jax.tree.map(lambda new, old: jnp.where(alive & finite, new, old), new_state, state)
        return state, {k: jnp.where(alive, m, jnp.nan) for k, m in metrics.items()}

    state, metrics = jax.lax.scan(body, state, (idx_rgb, jnp.arange(num_rounds)))
    return state.replace(epoch=state.epoch + 1), metrics
