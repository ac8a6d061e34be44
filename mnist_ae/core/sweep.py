"""Vmapped sweeps: many latent sizes, seeds and learning rates as one stacked train state.

Pure. Latent width changes shapes, so every member is built at the widest latent size and its
code is multiplied by a mask (`arange(L_max) < latent_dim`). A member starts as the *unpadded*
model of its width (same seed, same init) zero-padded to the widest shapes; padded weights get
no gradient and AdamW leaves zeros at zero, so slicing a member back to its width gives the
unpadded model exactly. Seeds and learning rates are values in the state, so they vmap as is.
"""

from __future__ import annotations

from typing import Any

from collections.abc import Callable

import jax
import jax.numpy as jnp

from mnist_ae.core.loop import train_epoch
from mnist_ae.core.state import TrainState
from mnist_ae.core.steps import Metrics, Learner, evaluate


def latent_mask(latent_dim: int, width: int) -> jax.Array:
    return (jnp.arange(width) < latent_dim).astype(jnp.float32)


def pad_to(tree: Any, template: Any) -> Any:
    """Zero-pad every leaf at the end of each axis to the template leaf's shape."""
    def pad(a: jax.Array, t: Any) -> jax.Array:
        return jnp.pad(a, [(0, T - s) for s, T in zip(a.shape, t.shape)]) if a.ndim else a

    return jax.tree.map(pad, tree, template)


def slice_to(tree: Any, template: Any) -> Any:
    """Cut every leaf to the template leaf's shape (the inverse of `pad_to`)."""
    return jax.tree.map(lambda a, t: a[tuple(slice(0, s) for s in t.shape)], tree, template)


def stack(trees: list[Any]) -> Any:
    """Stacked pytrees: every leaf gets a leading member axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack(tree: Any, index: int) -> Any:
    return jax.tree.map(lambda a: a[index], tree)


def sweep_epoch(learner: Learner, states: TrainState, images_nhw: jax.Array, labels_n: jax.Array,
                masks_ml: jax.Array, betas_m: jax.Array | None = None,
                pools: tuple[jax.Array, jax.Array] | None = None, *, batch_size: int,
                batch_constraint: Callable[[jax.Array], jax.Array] | None = None,
                member_axis: str | None = None, epoch_examples: int | None = None) -> tuple[TrainState, Metrics]:
    """One epoch of every member at once; metrics are [members, rounds]. A member whose metrics stop
    being finite is frozen from that round (see `train_epoch`); the others train on. `betas_m`: a VAE
    sweep's KL weight per member; `pools` ([M, P] indices, [M, P] real): a one-class sweep's training digits
    per member, `epoch_examples` of them each epoch. `member_axis`: the device-mesh axis the member
    dimension is split over (the batch constraint then keeps it there)."""
    return jax.vmap(lambda s, m, b, p: train_epoch(learner, s, images_nhw, labels_n, batch_size, m, batch_constraint,
                                                   freeze_on_divergence=True, beta=b, pool=p,
                                                   epoch_examples=epoch_examples),
                    spmd_axis_name=member_axis)(states, masks_ml, betas_m, pools)  # None has no leaves to map


def sweep_evaluate(learner: Learner, params: Any, images_nhw: jax.Array, labels_n: jax.Array,
                   masks_ml: jax.Array) -> Metrics:
    return jax.vmap(lambda p, m: evaluate(learner, p, images_nhw, labels_n, m))(params, masks_ml)
