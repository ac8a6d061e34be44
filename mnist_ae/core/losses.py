"""Losses and metrics: pure functions of arrays, shared by training and evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def to_unit_range(x_u8: jax.Array) -> jax.Array:
    """uint8 pixels -> float32 in [-1, 1] (the tanh decoder's range); done on the device."""
    return x_u8.astype(jnp.float32) / 127.5 - 1.0


def to_image(logits_bhw: jax.Array, output: str) -> jax.Array:
    """Decoder logits -> images in [-1, 1]: tanh, or a sigmoid's [0, 1] stretched to [-1, 1]."""
    if output == "sigmoid":
        return 2.0 * jax.nn.sigmoid(logits_bhw) - 1.0
    return jnp.tanh(logits_bhw)


def recon_loss(logits_bhw: jax.Array, x_bhw: jax.Array, output: str) -> tuple[jax.Array, jax.Array]:
    """(training loss, MSE per pixel on [-1, 1]) of a batch; `x_bhw` in [-1, 1].

    tanh output: the loss is that MSE. sigmoid output: binary cross-entropy per pixel against the
    pixels in [0, 1], computed from the logits (stable where the sigmoid saturates).
    """
    mse_value = mse(to_image(logits_bhw, output), x_bhw)
    if output != "sigmoid":
        return mse_value, mse_value
    bce = jnp.mean(optax.sigmoid_binary_cross_entropy(logits_bhw, (x_bhw + 1.0) / 2.0))
    return bce, mse_value


def sse01_from_mse(mse: jax.Array | float, num_pixels: int) -> jax.Array | float:
    """Per-pixel MSE on [-1, 1] -> squared error summed over `num_pixels` pixels on [0, 1]
    (Hinton & Salakhutdinov's per-image measure for 784): halving a pixel error quarters its square."""
    return mse * (num_pixels / 4.0)


def per_example_mse(recon_bhw: jax.Array, x_bhw: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(recon_bhw - x_bhw), axis=(1, 2))


def mse(recon_bhw: jax.Array, x_bhw: jax.Array) -> jax.Array:
    return jnp.mean(per_example_mse(recon_bhw, x_bhw))


def cross_entropy(logits_bc: jax.Array, labels_b: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_bc, labels_b))


def accuracy(logits_bc: jax.Array, labels_b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(logits_bc, -1) == labels_b)


def confusion_counts(labels_b: jax.Array, preds_b: jax.Array, weights_b: jax.Array,
                     num_classes: int) -> jax.Array:
    """[true, predicted] counts; `weights_b` zeroes padding rows."""
    return jnp.zeros((num_classes, num_classes), jnp.int32).at[labels_b, preds_b].add(
        weights_b.astype(jnp.int32))


def per_class_accuracy(confusion_cc: jax.Array) -> jax.Array:
    return jnp.diag(confusion_cc) / jnp.maximum(confusion_cc.sum(axis=1), 1)
