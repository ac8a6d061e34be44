"""Corrupted inputs for denoising autoencoders (Vincent et al. 2008), drawn on the device from a key.

Images are on the project's [-1, 1] scale; noise levels are given on [0, 1] pixels, as the literature
gives them: `gaussian:0.5` adds N(0, 0.5^2) to each [0, 1] pixel and clips to [0, 1]; `masking:0.3`
sets each pixel to black (0) with probability 0.3. Pure and keyed: the same key corrupts the same way,
so a resumed run sees the noise it would have seen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NOISE_STREAM = 0xD15E  # folded into the run's key: the noise never reuses the data order's or the VAE's key
EVAL_SEED = 7  # the test set's noise at each level: the same digits for every run
EVAL_LEVELS = (0.1, 0.3, 0.5)  # on [0, 1] pixels: gaussian sigmas and masking probabilities


def corrupt(key: jax.Array, x_bhw: jax.Array, kind: str, level: float) -> jax.Array:
    """`x_bhw` in [-1, 1] corrupted by `kind` at `level` (on [0, 1] pixels), still in [-1, 1]."""
    if kind == "gaussian":  # sigma on [0, 1] is 2 sigma on [-1, 1]
        return jnp.clip(x_bhw + 2.0 * level * jax.random.normal(key, x_bhw.shape), -1.0, 1.0)
    return jnp.where(jax.random.bernoulli(key, level, x_bhw.shape), -1.0, x_bhw)


def round_key(rng: jax.Array, step: jax.Array) -> jax.Array:
    """A training round's noise key: a function of the run's key and the round only."""
    return jax.random.fold_in(jax.random.fold_in(rng, NOISE_STREAM), step)


def psnr01(recon_bhw: jax.Array, clean_bhw: jax.Array) -> jax.Array:
    """Each image's peak signal-to-noise ratio in dB on [0, 1] pixels: 10 log10(1 / MSE), [b]; an exact
    copy is capped at 100 dB."""
    mse01_b = jnp.mean(jnp.square((recon_bhw - clean_bhw) / 2.0), axis=(1, 2))
    return jnp.minimum(10.0 * jnp.log10(1.0 / jnp.maximum(mse01_b, 1e-10)), 100.0)
