"""The reconstruction options of the deep-autoencoder recipe: sigmoid output with binary
cross-entropy, the paper's per-image squared error, and the warmup + cosine learning-rate schedule.
Expected values come from numpy formulas written out here or from plain optax, never from the code
under test."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnist_ae import build
from mnist_ae.config import total_rounds
from mnist_ae.core import losses
from mnist_ae.core.loop import train_epoch
from mnist_ae.core.models import Autoencoder
from mnist_ae.core.state import make_optimizer, warmup_cosine
from mnist_ae.core.steps import evaluate, init_state, train_round

from helpers import tiny


def _numpy_sigmoid(l):
    return 1.0 / (1.0 + np.exp(-l))


def test_bce_is_binary_cross_entropy_on_unit_pixels_and_stable_at_saturation():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4, 28, 28)).astype(np.float32)
    x = rng.uniform(-1, 1, (4, 28, 28)).astype(np.float32)
    t, p = (x.astype(np.float64) + 1) / 2, _numpy_sigmoid(logits.astype(np.float64))
    want_bce = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
    want_mse = np.mean((2 * p - 1 - x) ** 2)
    bce, mse = losses.recon_loss(jnp.asarray(logits), jnp.asarray(x), "sigmoid")
    assert float(bce) == pytest.approx(want_bce, rel=1e-5)
    assert float(mse) == pytest.approx(want_mse, rel=1e-5)
    # tanh output: the loss is the MSE of tanh(logits) on [-1, 1]
    loss, mse = losses.recon_loss(jnp.asarray(logits), jnp.asarray(x), "tanh")
    assert float(loss) == float(mse) == pytest.approx(np.mean((np.tanh(logits.astype(np.float64)) - x) ** 2), rel=1e-5)
    # A logit of +-100 saturates a float32 sigmoid at exactly 1 or 0: log(1 - p) would be -inf.
    # From the logits the loss stays the exact softplus: -l*t + log(1 + e^l) = 100 * (1 - t) for l = 100.
    big = jnp.full((1, 28, 28), 100.0)
    target = jnp.zeros((1, 28, 28))  # pixel 0.5 on [0, 1]
    bce, _ = losses.recon_loss(big, target, "sigmoid")
    assert float(bce) == pytest.approx(50.0, rel=1e-6)
    grads = jax.grad(lambda l: losses.recon_loss(l, target, "sigmoid")[0])(big)
    chex.assert_tree_all_finite(grads)


def test_per_image_squared_error_by_hand(mnist):
    """A decoder whose last layer is zeroed draws every image mid-grey (0 on [-1, 1], 0.5 on [0, 1],
    tanh and sigmoid alike), so the paper's error per image is sum((pixel / 255 - 0.5)^2); an all-black
    image scores 784 x 0.25 = 196."""
    images = np.concatenate([np.zeros((1, 28, 28), np.uint8), mnist.test_images[:99]])
    labels = jnp.zeros((100,), jnp.int32)
    want = np.mean(np.sum((images / 255.0 - 0.5) ** 2, axis=(1, 2)))
    assert np.sum((images[0] / 255.0 - 0.5) ** 2) == 196.0
    for loss in ("mse", "bce"):
        learner = build.learner(tiny(recon_loss=loss))
        params = init_state(learner, 0).params
        params["ae"] = jax.tree_util.tree_map_with_path(
            lambda path, a: jnp.zeros_like(a) if "decoder" in str(path) and "Dense_2" in str(path) else a, params["ae"])
        metrics = evaluate(learner, params, jnp.asarray(images), labels)
        assert float(metrics["test/recon_sse01"]) == pytest.approx(want, rel=1e-5)
        assert float(metrics["test/recon_mse01"]) == pytest.approx(want / 784, rel=1e-5)
        assert float(metrics["test/recon_mse"]) == pytest.approx(4 * want / 784, rel=1e-5)


def test_evaluation_reports_the_error_in_both_scales_and_per_image(mnist):
    config = tiny(recon_loss="bce")
    learner = build.learner(config)
    params = init_state(learner, 0).params
    images, labels = jnp.asarray(mnist.test_images[:300]), jnp.asarray(mnist.test_labels[:300])
    metrics = jax.jit(functools.partial(evaluate, learner))(params, images, labels)
    # The model's own reconstructions, then every error in numpy from the raw uint8 pixels.
    logits = learner.autoencoder.apply(params["ae"], losses.to_unit_range(images), method=Autoencoder.logits)[0]
    recon01 = _numpy_sigmoid(np.asarray(logits, np.float64))
    x01 = np.asarray(mnist.test_images[:300], np.float64) / 255.0
    sse01 = np.mean(np.sum((recon01 - x01) ** 2, axis=(1, 2)))
    assert float(metrics["test/recon_sse01"]) == pytest.approx(sse01, rel=1e-5)
    assert float(metrics["test/recon_mse01"]) == pytest.approx(sse01 / 784, rel=1e-5)
    assert float(metrics["test/recon_mse"]) == pytest.approx(np.mean((2 * recon01 - 1 - (2 * x01 - 1)) ** 2), rel=1e-5)
    # decode() gives the same images on [-1, 1]
    z = learner.autoencoder.apply(params["ae"], losses.to_unit_range(images), method=Autoencoder.encode)
    decoded = learner.autoencoder.apply(params["ae"], z, method=Autoencoder.decode)
    np.testing.assert_allclose(np.asarray(decoded), 2 * recon01 - 1, atol=1e-6)


def test_a_round_logs_the_binary_cross_entropy_it_trained_on_only_for_a_sigmoid_decoder(mnist):
    """train/recon_bce is the loss of the round's AE step, on the parameters before the update
    (numpy BCE of the model's own logits); a tanh decoder's loss is its MSE, so it logs no BCE."""
    x_u8 = jnp.asarray(mnist.train_images[:64])
    x = losses.to_unit_range(x_u8)[None]  # [group of 1, batch, 28, 28]
    y = jnp.asarray(mnist.train_labels[:64])[None]
    for loss in ("bce", "mse"):
        learner = build.learner(tiny(recon_loss=loss))
        state = init_state(learner, 0)
        _, metrics = jax.jit(functools.partial(train_round, learner))(state, x, y)
        if loss == "mse":
            assert "train/recon_bce" not in metrics
            continue
        logits = learner.autoencoder.apply(state.params["ae"], x[0], method=Autoencoder.logits)[0]
        l64, t = np.asarray(logits, np.float64), np.asarray(x_u8, np.float64) / 255.0
        want = np.mean(np.logaddexp(0, l64) - l64 * t)  # -t log p - (1 - t) log(1 - p), p = sigmoid(l)
        assert float(metrics["train/recon_bce"]) == pytest.approx(want, rel=1e-5)
        assert float(metrics["train/recon_mse"]) == pytest.approx(np.mean((2 * _numpy_sigmoid(l64) - 1 - (2 * t - 1)) ** 2), rel=1e-5)


def _numpy_warmup_cosine(step, peak, warmup, total, end):
    if step < warmup:
        return peak * step / warmup
    progress = (step - warmup) / (total - warmup)
    return peak * (end + (1 - end) * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0))))


def test_the_schedule_is_linear_warmup_then_cosine_and_the_default_is_constant(mnist):
    """Two epochs of 32 rounds, warmup 8: the rate each round used (logged) against the formula."""
    data = jnp.asarray(mnist.train_images[:2048]), jnp.asarray(mnist.train_labels[:2048])
    config = tiny(lr_schedule="warmup_cosine", lr_warmup_steps=8, lr_end_factor=0.1)
    learner = build.learner(config)
    epoch = jax.jit(functools.partial(train_epoch, learner, batch_size=config.batch_size))
    state = init_state(learner, 0)
    rates = []
    for _ in range(config.epochs):
        state, metrics = epoch(state, *data)
        rates += list(np.asarray(metrics["train/learning_rate"]))
    want = [_numpy_warmup_cosine(t, 1e-2, 8, 64, 0.1) for t in range(64)]
    np.testing.assert_allclose(rates, want, rtol=1e-5, atol=1e-9)
    # the reference recipe keeps the constant rate (and the optimizer state it always had)
    constant = build.learner(tiny())
    state = init_state(constant, 0)
    assert "lr_multiplier" not in state.opt_states["ae"].hyperparams
    _, metrics = jax.jit(functools.partial(train_epoch, constant, batch_size=64))(state, *data)
    np.testing.assert_array_equal(metrics["train/learning_rate"], np.full(32, 1e-2, np.float32))


def test_scheduled_optimizer_is_adamw_with_the_scheduled_rate():
    """Against optax's own AdamW given the schedule as its learning rate: the same updates."""
    peak, wd = 3e-3, 1e-2
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)}
    ours = make_optimizer(peak, wd, warmup_cosine(3, 10, 0.2))
    theirs = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, peak, 3, 10, 0.2 * peak), weight_decay=wd)
    a, b = params, params
    sa, sb = ours.init(params), theirs.init(params)
    for i in range(10):
        grads = {"w": jnp.sin(jnp.arange(12.0).reshape(3, 4) + i)}
        ua, sa = ours.update(grads, sa, a)
        ub, sb = theirs.update(grads, sb, b)
        a, b = optax.apply_updates(a, ua), optax.apply_updates(b, ub)
        chex.assert_trees_all_close(a, b, rtol=1e-6)
    assert not np.allclose(a["w"], params["w"])


@pytest.mark.parametrize("schedule", ["constant", "warmup_cosine"])
def test_adam_b2_sets_both_optimizers_second_moment_decay(schedule):
    """`adam_b2` against plain optax AdamW with that b2: the autoencoder's and the probe's updates
    equal it, and differ from the default b2's (so the key is not ignored)."""
    config = tiny(adam_b2=0.5, lr_schedule=schedule, lr_warmup_steps=2, weight_decay=1e-2)
    learner = build.learner(config)
    rate = (optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, 2, total_rounds(config), 0.0)
            if schedule == "warmup_cosine" else config.learning_rate)
    cases = {"ae": optax.adamw(rate, b2=0.5, weight_decay=1e-2),
             "probe": optax.adamw(config.probe_learning_rate, b2=0.5, weight_decay=1e-2)}
    default_b2 = optax.adamw(rate, weight_decay=1e-2)
    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)}
    for part, theirs in cases.items():
        ours = learner.optimizers[part]
        a, b, c = params, params, params
        sa, sb, sc = ours.init(params), theirs.init(params), default_b2.init(params)
        for i in range(6):
            grads = {"w": jnp.sin(jnp.arange(12.0).reshape(3, 4) * (i + 1))}
            (ua, sa), (ub, sb), (uc, sc) = ours.update(grads, sa, a), theirs.update(grads, sb, b), default_b2.update(grads, sc, c)
            a, b, c = optax.apply_updates(a, ua), optax.apply_updates(b, ub), optax.apply_updates(c, uc)
        chex.assert_trees_all_close(a, b, rtol=1e-6)
        if part == "ae":
            assert not np.allclose(a["w"], c["w"], rtol=1e-4)
