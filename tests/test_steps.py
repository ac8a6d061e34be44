"""The train round, the scanned epoch and the evaluation, on small slices of the real MNIST."""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mnist_ae import build
from mnist_ae.core import losses
from mnist_ae.core.loop import train_epoch
from mnist_ae.core.steps import evaluate, init_state, train_round, update_part

from conftest import tiny


@pytest.fixture(scope="module")
def slice_(mnist):
    return (jnp.asarray(mnist.train_images[:2048]), jnp.asarray(mnist.train_labels[:2048]),
            jnp.asarray(mnist.test_images[:512]), jnp.asarray(mnist.test_labels[:512]))


def _batch(slice_, n=64):
    x = losses.to_unit_range(slice_[0][:n])
    return x, slice_[1][:n].astype(jnp.int32)


def test_ae_update_leaves_probe_bit_identical_and_vice_versa(slice_):
    task = build.learner(tiny())
    state = init_state(task, 0)
    x, y = _batch(slice_)
    ae = task.autoencoder

    after_ae, _ = jax.jit(lambda s: update_part(
        task, s, "ae", lambda p: (losses.mse(ae.apply(p, x)[0], x), jnp.zeros(()))))(state)
    chex.assert_trees_all_equal(after_ae.params["probe"], state.params["probe"])
    chex.assert_trees_all_equal(after_ae.opt_states["probe"], state.opt_states["probe"])
    assert not np.allclose(after_ae.params["ae"]["params"]["encoder"]["Dense_0"]["kernel"],
                           state.params["ae"]["params"]["encoder"]["Dense_0"]["kernel"])

    z = jax.lax.stop_gradient(ae.apply(state.params["ae"], x)[1])
    after_probe, _ = jax.jit(lambda s: update_part(
        task, s, "probe", lambda p: (losses.cross_entropy(task.head.apply(p, z), y), jnp.zeros(()))))(state)
    chex.assert_trees_all_equal(after_probe.params["ae"], state.params["ae"])
    chex.assert_trees_all_equal(after_probe.opt_states["ae"], state.opt_states["ae"])


class TrainRoundTest(chex.TestCase):
    @chex.variants(with_jit=True, with_device=True)
    def test_round_updates_both_parts_in_order(self):
        from mnist_ae.data import load_dataset

        ds = load_dataset("mnist")
        task = build.learner(tiny(ae_steps=2, probe_steps=3))
        state = init_state(task, 0)
        x = losses.to_unit_range(jnp.asarray(ds.train_images[:128]).reshape(2, 64, 28, 28))
        y = jnp.asarray(ds.train_labels[:128], jnp.int32).reshape(2, 64)
        new, metrics = self.variant(functools.partial(train_round, task))(state, x, y)
        assert int(new.step) == 1
        # AdamW's step count tells how many updates each part took
        assert int(new.opt_states["ae"].inner_state[0].count) == 2
        assert int(new.opt_states["probe"].inner_state[0].count) == 3
        chex.assert_tree_all_finite(metrics)
        chex.assert_shape(metrics["train/recon_mse"], ())


def test_loss_falls_and_probe_learns_on_real_slice(slice_):
    config = tiny(epochs=3)
    task = build.learner(config)
    state = init_state(task, 0)
    evaluate_fn = jax.jit(functools.partial(evaluate, task))
    before = evaluate_fn(state.params, slice_[2], slice_[3])
    epoch = jax.jit(functools.partial(train_epoch, task, batch_size=config.batch_size))
    for _ in range(config.epochs):
        state, per_round = epoch(state, slice_[0], slice_[1])
    after = evaluate_fn(state.params, slice_[2], slice_[3])
    chex.assert_shape(per_round["train/recon_mse"], (2048 // 64,))
    assert float(after["test/recon_mse"]) < 0.5 * float(before["test/recon_mse"])
    assert 0.0 <= float(before["test/probe_accuracy"]) <= 0.25  # chance at step 0
    assert float(after["test/probe_accuracy"]) > 0.4  # 4x chance after 96 small steps
    assert int(state.epoch) == 3 and int(state.step) == 3 * (2048 // 64)


def test_conv_autoencoder_trains_on_real_slice(slice_):
    """The conv model through the same round and epoch: reconstruction improves, the probe moves.

    (Its codes are post-ReLU max-pools of size ~5, so its probe needs the default probe rate 1e-3
    and far more than these 96 steps to leave chance; the full run reaches 92%, see the README.)
    """
    config = tiny(epochs=3, model="conv", init="flax", learning_rate=2e-3, probe_learning_rate=1e-3)
    task = build.learner(config)
    state = jax.jit(lambda: init_state(task, 0))()  # eagerly, the conv init is ~200 tiny compiled ops
    evaluate_fn = jax.jit(functools.partial(evaluate, task))
    before = evaluate_fn(state.params, slice_[2], slice_[3])
    epoch = jax.jit(functools.partial(train_epoch, task, batch_size=config.batch_size))
    probe0 = state.params["probe"]
    for _ in range(config.epochs):
        state, per_round = epoch(state, slice_[0], slice_[1])
    after = evaluate_fn(state.params, slice_[2], slice_[3])
    chex.assert_tree_all_finite((state.params, per_round))
    assert float(after["test/recon_mse"]) < 0.6 * float(before["test/recon_mse"])
    assert float(optax.tree.norm(jax.tree.map(jnp.subtract, state.params["probe"], probe0))) > 0


def test_epoch_compiles_once(slice_):
    config = tiny()
    task = build.learner(config)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def epoch(state, x, y):
        return train_epoch(task, state, x, y, config.batch_size)

    state = init_state(task, 0)
    for _ in range(3):
        state, _ = epoch(state, slice_[0], slice_[1])
    assert int(state.epoch) == 3


def test_an_epoch_needs_no_implicit_transfer_and_host_data_is_refused(slice_):
    """The dataset is device-resident and batches are gathered in jit: the guard that train.py
    puts around every epoch lets the call through, and catches host data passed by mistake."""
    config = tiny()
    task = build.learner(config)
    state = init_state(task, 0)
    epoch = jax.jit(functools.partial(train_epoch, task, batch_size=config.batch_size)).lower(
        state, slice_[0], slice_[1]).compile()
    with jax.transfer_guard("disallow"):
        state, metrics = epoch(state, slice_[0], slice_[1])
        with pytest.raises(Exception, match="[Dd]isallowed host-to-device transfer"):
            epoch(state, np.asarray(slice_[0]), slice_[1])
    chex.assert_tree_all_finite(metrics)


def test_data_order_differs_per_epoch_and_is_reproducible(slice_):
    from mnist_ae.core.loop import epoch_indices

    rng = jax.random.PRNGKey(0)
    a0, a1 = (epoch_indices(rng, jnp.int32(e), 2048, 16, 1, 128) for e in (0, 1))
    chex.assert_trees_all_equal(a0, epoch_indices(rng, jnp.int32(0), 2048, 16, 1, 128))
    assert not np.array_equal(a0, a1)
    assert len(np.unique(np.asarray(a0))) == 2048  # a permutation: every example once


def test_evaluate_counts_every_example_once_whatever_the_chunking(slice_):
    config = tiny()
    task = build.learner(config)
    state = init_state(task, 0)
    x, y = slice_[2][:500], slice_[3][:500]
    whole = evaluate(task, state.params, x, y)
    chunked = evaluate(build.learner(tiny(eval_batch_size=128)), state.params, x, y)  # 500 = 3*128 + 116
    assert int(whole["test/probe_confusion"].sum()) == 500
    chex.assert_trees_all_close(whole, chunked, rtol=1e-5)
    np.testing.assert_allclose(float(whole["test/probe_accuracy"]),
                               np.trace(np.asarray(whole["test/probe_confusion"])) / 500)
    recon, _ = task.autoencoder.apply(state.params["ae"], losses.to_unit_range(x))
    np.testing.assert_allclose(float(whole["test/recon_mse"]), float(losses.mse(recon, losses.to_unit_range(x))),
                               rtol=1e-5)


def test_classification_task_learns(slice_):
    config = tiny(task="classification", epochs=3, learning_rate=3e-3)
    task = build.learner(config)
    state = init_state(task, 0)
    epoch = jax.jit(functools.partial(train_epoch, task, batch_size=config.batch_size))
    for _ in range(3):
        state, _ = epoch(state, slice_[0], slice_[1])
    metrics = evaluate(task, state.params, slice_[2], slice_[3])
    assert float(metrics["test/accuracy"]) > 0.7  # 7x chance after 96 small steps
    assert "test/recon_mse" not in metrics
