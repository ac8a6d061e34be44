"""The losses and metrics against hand-computed values and numpy (no training, milliseconds)."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np

from mnist_ae.core import losses


def test_pixels_map_onto_minus_one_to_one():
    x = jnp.asarray([[0, 51, 255]], jnp.uint8)
    chex.assert_trees_all_close(losses.to_unit_range(x), jnp.asarray([[-1.0, -0.6, 1.0]]), atol=1e-6)
    chex.assert_type(losses.to_unit_range(x), jnp.float32)


def test_mse_is_the_mean_square_per_example_then_over_the_batch():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4, 5)).astype(np.float32), rng.normal(size=(3, 4, 5)).astype(np.float32)
    per_example = ((a - b) ** 2).reshape(3, -1).mean(1)
    chex.assert_trees_all_close(losses.per_example_mse(a, b), per_example, rtol=1e-6)
    chex.assert_trees_all_close(losses.mse(a, b), per_example.mean(), rtol=1e-6)


def test_cross_entropy_and_accuracy_by_hand():
    logits = np.asarray([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0], [0.5, 0.0, 4.0]], np.float32)
    labels = np.asarray([0, 2, 2])
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -(log_softmax[0, 0] + log_softmax[1, 2] + log_softmax[2, 2]) / 3
    chex.assert_trees_all_close(losses.cross_entropy(logits, labels), expected, rtol=1e-6)
    chex.assert_trees_all_close(losses.accuracy(logits, labels), 2 / 3)  # rows 0 and 2 are right


def test_confusion_counts_skip_padding_and_per_class_accuracy_survives_empty_classes():
    labels, preds = jnp.asarray([0, 0, 0, 1, 2, 2]), jnp.asarray([0, 0, 2, 1, 1, 2])
    weights = jnp.asarray([1, 1, 1, 1, 1, 0])  # the last row is padding
    confusion = losses.confusion_counts(labels, preds, weights, 4)
    expected = np.zeros((4, 4), np.int32)
    expected[0, 0], expected[0, 2], expected[1, 1], expected[2, 1] = 2, 1, 1, 1
    chex.assert_trees_all_equal(confusion, jnp.asarray(expected))
    # class 0: 2 of 3; class 1: 1 of its single example; class 2: 0 of 1; class 3: no examples -> 0
    chex.assert_trees_all_close(losses.per_class_accuracy(confusion), jnp.asarray([2 / 3, 1.0, 0.0, 0.0]))
