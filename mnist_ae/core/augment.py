"""Random translations of training digits, drawn on the device inside the scanned epoch.

The deep autoencoder overfits its 60,000 digits (its test error stops falling while the training
error goes on down); a fresh shift of a pixel or two each epoch is the classic MNIST remedy, and it
costs one gather per batch. Pure and keyed: the same key shifts the same way, so resumes stay exact.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

AUGMENT_STREAM = 0x5A1F  # folded into the epoch's key: the shifts never reuse the data order's key


def random_shift(key: jax.Array, x_nhw: jax.Array, max_shift: int, fill: float = -1.0) -> jax.Array:
    """Shift each image by its own whole (dy, dx), each uniform in [-max_shift, max_shift]; pixels
    moved in from outside are `fill` (the background: -1 on the [-1, 1] scale). Leading axes of
    `x` (e.g. [g, b]) are all treated as examples."""
    lead, hw = x_nhw.shape[:-2], x_nhw.shape[-2:]
    x_bhw = x_nhw.reshape(-1, *hw)
    d_b2 = jax.random.randint(key, (x_bhw.shape[0], 2), -max_shift, max_shift + 1)
    pad = ((0, 0), (max_shift, max_shift), (max_shift, max_shift))
    padded_bhw = jnp.pad(x_bhw, pad, constant_values=fill)
    # out[i, j] = x[i - dy, j - dx]: the window starts max_shift - d into the padded image
    shifted = jax.vmap(lambda im, d: jax.lax.dynamic_slice(im, (max_shift - d[0], max_shift - d[1]), hw))(
        padded_bhw, d_b2)
    return shifted.reshape(*lead, *hw)


def round_key(rng: jax.Array, epoch: jax.Array, round_index: jax.Array) -> jax.Array:
    """The shifts' key for one round: a function of the run's key, the epoch and the round only."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(rng, epoch), AUGMENT_STREAM), round_index)
