"""Random digit shifts: each image moved by its own whole offset (checked against numpy), every
offset in range drawn, and the scanned epoch training on exactly the shifted batches."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from mnist_ae.core import augment, losses

from helpers import frozen_epoch


def _numpy_shift(x_hw: np.ndarray, dy: int, dx: int, fill: float) -> np.ndarray:
    out = np.full_like(x_hw, fill)
    h, w = x_hw.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = x_hw[max(-dy, 0):h - max(dy, 0),
                                                                      max(-dx, 0):w - max(dx, 0)]
    return out


def test_each_image_moves_by_one_offset_in_range_and_every_offset_is_drawn():
    """Random float images, so exactly one numpy shift can match each output; over 2,000 images all
    25 offsets of max_shift=2 occur, each of the 5 values of dy and of dx in a fifth of them (a
    binomial's 5 sigma), and nothing is moved further. Pixels moved in are the background of the
    [-1, 1] scale by default."""
    x_bhw = np.asarray(jax.random.uniform(jax.random.PRNGKey(0), (2000, 9, 7)), np.float32)
    out = np.asarray(augment.random_shift(jax.random.PRNGKey(1), jnp.asarray(x_bhw), 2))
    offsets = list(itertools.product(range(-3, 4), repeat=2))
    found = []
    for x_hw, o_hw in zip(x_bhw, out):
        matches = [d for d in offsets if np.array_equal(_numpy_shift(x_hw, *d, -1.0), o_hw)]
        assert len(matches) == 1 and max(map(abs, matches[0])) <= 2, matches
        found.append(matches[0])
    assert set(found) == set(itertools.product(range(-2, 3), repeat=2))
    for axis in (0, 1):
        shares = np.bincount(np.array(found)[:, axis] + 2, minlength=5) / len(found)
        np.testing.assert_allclose(shares, 0.2, atol=0.045)
    # the same key shifts the same way; leading axes are examples, as in a round's [g, b, h, w] batch
    again = augment.random_shift(jax.random.PRNGKey(1), jnp.asarray(x_bhw).reshape(4, 500, 9, 7), 2, fill=-1.0)
    np.testing.assert_array_equal(np.asarray(again).reshape(2000, 9, 7), out)


def test_the_epoch_trains_on_each_rounds_batch_shifted_by_its_round_key(mnist):
    """With a rate of 1e-30 the parameters never move, so each round's logged train MSE is the
    initial model's error on the batch it was given: the shuffled batch shifted with the key of
    (run key, epoch, round). Unshifted batches give other numbers, so the shift is not skipped."""
    metrics, state, learner, batches = frozen_epoch(mnist, 1024, epoch=4, augment_shift=2)
    ae, params = learner.autoencoder, state.params["ae"]
    shifted, plain = [], []
    for r, x_bhw in enumerate(batches):
        x_shifted = augment.random_shift(augment.round_key(state.rng, state.epoch, r), x_bhw, 2)
        shifted.append(float(losses.mse(ae.apply(params, x_shifted)[0], x_shifted)))
        plain.append(float(losses.mse(ae.apply(params, x_bhw)[0], x_bhw)))
    np.testing.assert_allclose(metrics["train/recon_mse"], shifted, rtol=1e-5)
    assert not np.allclose(metrics["train/recon_mse"], plain, rtol=1e-4)
    # rounds and epochs draw different shifts
    keys = {tuple(np.asarray(augment.round_key(state.rng, e, r))) for e in (4, 5) for r in range(3)}
    assert len(keys) == 6
