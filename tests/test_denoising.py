"""Denoising autoencoders: the corruptions, training on noisy inputs with clean targets, the noisy test
evaluation beside PCA and the noisy digits, and the config's refusals."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_ae import build, tasks
from mnist_ae.analysis import baselines
from mnist_ae.config import ConfigError
from mnist_ae.config_checks import validate
from mnist_ae.core import losses, noise
from mnist_ae.core.steps import denoising, init_state

from helpers import frozen_epoch, restore_state, tiny


def test_the_corruptions_have_their_levels_on_unit_pixels_and_follow_their_key():
    grey = jnp.zeros((200, 28, 28))  # 0.5 on [0, 1]: far from the clip at either end for sigma 0.1
    noisy = noise.corrupt(jax.random.PRNGKey(0), grey, "gaussian", 0.1)
    assert float(jnp.std(noisy / 2.0)) == pytest.approx(0.1, rel=0.01)  # [-1, 1] -> [0, 1] halves it
    assert float(jnp.abs(noise.corrupt(jax.random.PRNGKey(0), grey, "gaussian", 1.0)).max()) == 1.0  # clipped
    masked = noise.corrupt(jax.random.PRNGKey(1), jnp.ones((200, 28, 28)), "masking", 0.3)
    assert set(np.unique(np.asarray(masked))) == {-1.0, 1.0}
    assert float(jnp.mean(masked == -1.0)) == pytest.approx(0.3, abs=5 * np.sqrt(0.21 / masked.size))
    chex.assert_trees_all_equal(noise.corrupt(jax.random.PRNGKey(1), jnp.ones((200, 28, 28)), "masking", 0.3), masked)
    assert not np.array_equal(noise.corrupt(jax.random.PRNGKey(2), jnp.ones((200, 28, 28)), "masking", 0.3), masked)
    assert float(noise.psnr01(jnp.zeros((1, 2, 2)), jnp.full((1, 2, 2), 0.2))[0]) == pytest.approx(20.0)  # mse01 0.01
    assert float(noise.psnr01(jnp.ones((1, 2, 2)), jnp.ones((1, 2, 2)))[0]) == 100.0  # an exact copy: the cap


def test_the_epoch_trains_on_each_batch_corrupted_by_its_round_key_against_the_clean_batch(mnist):
    """A rate of 1e-30 keeps the parameters, so each round's logged train MSE is the initial model's
    reconstruction of the corrupted batch against the clean one, with the key of (run key, round)."""
    metrics, state, learner, batches = frozen_epoch(mnist, 512, input_noise="masking:0.5")
    ae, params = learner.autoencoder, state.params["ae"]
    expected, against_noisy = [], []
    for r, x_bhw in enumerate(batches):
        noisy = noise.corrupt(jax.random.fold_in(noise.round_key(state.rng, jnp.asarray(r)), 0), x_bhw, "masking", 0.5)
        expected.append(float(losses.mse(ae.apply(params, noisy)[0], x_bhw)))
        against_noisy.append(float(losses.mse(ae.apply(params, noisy)[0], noisy)))
    np.testing.assert_allclose(metrics["train/recon_mse"], expected, rtol=1e-5)
    assert not np.allclose(metrics["train/recon_mse"], against_noisy, rtol=1e-3)  # the target is the clean batch


def test_the_noisy_evaluation_scores_against_the_clean_digits_whatever_the_chunking(mnist):
    """The noisy digits' own numbers are numpy's on the same corruption; PCA with every axis gives the noisy
    digit back (its numbers are the noisy ones); chunks of 64 or all 300 give the same means."""
    x_u8 = jnp.asarray(mnist.test_images[:300])
    learner = build.learner(tiny())
    params = init_state(learner, 0).params["ae"]
    mean_p, axes_pk = (np.asarray(a, np.float32) for a in baselines.pca_axes(mnist.train_images[:2000], 784))
    whole = denoising(dataclasses.replace(learner, eval_batch_size=300), params, x_u8, "gaussian", 0.3, mean_p, axes_pk)
    chunked = denoising(dataclasses.replace(learner, eval_batch_size=64), params, x_u8, "gaussian", 0.3, mean_p, axes_pk)
    chex.assert_trees_all_close(chunked, whole, rtol=1e-5)
    clean = np.asarray(losses.to_unit_range(x_u8), np.float64)
    key = jax.random.PRNGKey(noise.EVAL_SEED)
    noisy = np.stack([np.asarray(noise.corrupt(jax.random.fold_in(key, i), jnp.asarray(clean[i], jnp.float32),
                                               "gaussian", 0.3)) for i in range(300)])
    mse01 = np.mean(((noisy - clean) / 2) ** 2, axis=(1, 2))
    assert float(whole["noisy_mse01"]) == pytest.approx(mse01.mean(), rel=1e-5)
    assert float(whole["noisy_psnr"]) == pytest.approx(np.mean(10 * np.log10(1 / mse01)), rel=1e-5)
    assert float(whole["pca_psnr"]) == pytest.approx(float(whole["noisy_psnr"]), rel=1e-4)  # float32 rotation


@pytest.mark.slow  # three runs; the quick tier resumes a plain run
def test_a_denoising_run_resumes_bit_identically(tmp_path):
    config = tiny(input_noise="gaussian:0.3")
    tasks.train_and_evaluate(config, tmp_path / "a", log_framework="none", quiet=True)
    tasks.train_and_evaluate(tiny(input_noise="gaussian:0.3", epochs=1), tmp_path / "b", log_framework="none",
                             quiet=True)
    tasks.train_and_evaluate(config, tmp_path / "b", log_framework="none", quiet=True)
    a, b = restore_state(tmp_path / "a", config), restore_state(tmp_path / "b", config)
    chex.assert_trees_all_equal(a.params, b.params)  # each round's noise comes from the state's key


@pytest.mark.parametrize("spec, message", [
    ("gauss:0.5", "input_noise='gauss:0.5': use gaussian:SIGMA or masking:P"),
    ("gaussian:abc", "use gaussian:SIGMA or masking:P"),
    ("masking:1.5", "the level must be in \\(0, 1\\) for masking"),
])
def test_a_bad_noise_is_refused_in_one_line(spec, message):
    with pytest.raises(ConfigError, match=message):
        validate(tiny(input_noise=spec))
    with pytest.raises(ConfigError, match="the vae's inputs are binarised digits"):
        validate(tiny(input_noise="gaussian:0.5", model="vae"))
