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
from mnist_ae.core.models import Autoencoder
from mnist_ae.core.steps import evaluate, init_state, train_round, update_part

from helpers import tiny


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
    @chex.variants(with_jit=True)
    def test_round_updates_each_part_the_scheduled_number_of_times(self):
        self._check_counts()

    @chex.variants(with_device=True)
    @pytest.mark.slow  # second check: the same round op by op (5 s on 2 cores); the product always jits it
    def test_round_run_eagerly_updates_each_part_the_scheduled_number_of_times(self):
        self._check_counts()

    def _check_counts(self):
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


def test_round_is_the_documented_schedule_and_probe_steps_never_move_the_autoencoder(slice_):
    """`train_round` with ae_steps=2, probe_steps=3 against the schedule written out by hand with
    `update_part`: AE updates on batches 0 and 1 (probe frozen), then probe updates on the
    stop-gradient codes of batches 0, 1, 0 (j mod 2) from the updated AE (AE frozen)."""
    task = build.learner(tiny(ae_steps=2, probe_steps=3))
    ae, head = task.autoencoder, task.head
    state = init_state(task, 0)
    x = losses.to_unit_range(slice_[0][:128]).reshape(2, 64, 28, 28)
    y = slice_[1][:128].astype(jnp.int32).reshape(2, 64)

    def recon_loss(x_bhw):
        return lambda p: (losses.mse(ae.apply(p, x_bhw)[0], x_bhw), jnp.zeros(()))

    def probe_loss(z_bl, y_b):
        def loss(p):
            logits = head.apply(p, z_bl)
            return losses.cross_entropy(logits, y_b), losses.accuracy(logits, y_b)

        return loss

    @jax.jit
    def by_hand(state):
        after_ae = state
        for g in range(2):
            after_ae, _ = update_part(task, after_ae, "ae", recon_loss(x[g]))
        codes = [jax.lax.stop_gradient(ae.apply(after_ae.params["ae"], x[g], method=Autoencoder.encode))
                 for g in range(2)]
        done = after_ae
        for j in range(3):
            done, _ = update_part(task, done, "probe", probe_loss(codes[j % 2], y[j % 2]))
        return after_ae, done.replace(step=done.step + 1)

    after_ae, expected = by_hand(state)
    new, _ = jax.jit(functools.partial(train_round, task))(state, x, y)
    chex.assert_trees_all_equal(new, expected)  # bit for bit, every leaf
    # The probe steps leave the AE exactly where its own updates put it ...
    chex.assert_trees_all_equal(new.params["ae"], after_ae.params["ae"])
    chex.assert_trees_all_equal(new.opt_states["ae"], after_ae.opt_states["ae"])
    # ... and the AE updates leave the probe exactly at its initial state.
    chex.assert_trees_all_equal(after_ae.params["probe"], state.params["probe"])
    chex.assert_trees_all_equal(after_ae.opt_states["probe"], state.opt_states["probe"])
    # The order is observable: the same five updates with the probe first (codes of the initial AE)
    # give another probe, so the comparison above pins the order, not only the counts.
    probe_first = state
    for j in range(3):
        z = jax.lax.stop_gradient(ae.apply(state.params["ae"], x[j % 2], method=Autoencoder.encode))
        probe_first, _ = update_part(task, probe_first, "probe", probe_loss(z, y[j % 2]))
    assert not np.allclose(probe_first.params["probe"]["params"]["Dense_0"]["kernel"],
                           new.params["probe"]["params"]["Dense_0"]["kernel"])


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


@pytest.mark.slow
def test_conv_autoencoder_trains_on_real_slice(slice_):
    """The conv model through the same round and epoch: reconstruction improves, the probe moves.

    (Its codes are post-ReLU max-pools of size ~5, so its probe needs the default probe rate 1e-3
    and far more than these 96 steps to leave chance; the full run reaches 92%, see docs/classics.md.)
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


def test_data_order_is_the_documented_permutation_of_the_epoch_key():
    """TrainState's contract: epoch e's order is the permutation drawn with `fold_in(rng, e)`, cut to
    whole rounds and laid out [rounds, group, batch]; so it depends on the key and the epoch alone
    (a resumed run sees the batches it would have seen). Expected values from jax.random and numpy."""
    from mnist_ae.core.loop import epoch_indices

    rng = jax.random.split(jax.random.PRNGKey(7))[1]
    n, rounds, group, batch = 1000, 3, 2, 160  # 960 of 1000 used: the last 40 of the shuffle are dropped
    orders = [np.asarray(epoch_indices(rng, jnp.int32(e), n, rounds, group, batch)) for e in (0, 1, 5)]
    for e, order in zip((0, 1, 5), orders):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(rng, e), n))
        assert order.shape == (rounds, group, batch)
        np.testing.assert_array_equal(order.reshape(-1), perm[: rounds * group * batch])
        assert len(np.unique(order)) == rounds * group * batch  # no example twice in an epoch
        assert sorted(set(range(n)) - set(order.reshape(-1).tolist())) == sorted(perm[960:].tolist())
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])


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
    recon, z = task.autoencoder.apply(state.params["ae"], losses.to_unit_range(x))
    np.testing.assert_allclose(float(whole["test/recon_mse"]), float(losses.mse(recon, losses.to_unit_range(x))),
                               rtol=1e-5)
    logits = np.asarray(task.head.apply(state.params["probe"], z), np.float64)  # the mean CE, in numpy
    shifted = logits - logits.max(1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    np.testing.assert_allclose(float(whole["test/probe_loss"]), -log_p[np.arange(500), np.asarray(y)].mean(),
                               rtol=1e-5)


def test_classification_task_learns(slice_):
    config = tiny(task="classification", epochs=3, learning_rate=3e-3)
    task = build.learner(config)
    state = init_state(task, 0)
    epoch = jax.jit(functools.partial(train_epoch, task, batch_size=config.batch_size))
    for _ in range(3):
        state, _ = epoch(state, slice_[0], slice_[1])
    assert (int(state.step), int(state.epoch)) == (3 * 2048 // 64, 3)  # one step per round
    metrics = evaluate(task, state.params, slice_[2], slice_[3])
    assert float(metrics["test/accuracy"]) > 0.7  # 7x chance after 96 small steps
    assert "test/recon_mse" not in metrics


def test_encode_decode_and_reconstruct_are_the_model_applied_to_the_whole_set(slice_):
    """The chunked helpers (10 images in chunks of 4: the last is padded) against one unchunked apply."""
    from mnist_ae.core.steps import decode, encode, reconstruct

    task = build.learner(tiny(eval_batch_size=4))
    params = init_state(task, 0).params["ae"]
    x_u8 = slice_[2][:10]
    mask = (jnp.arange(8) < 5).astype(jnp.float32)
    recon, z = task.autoencoder.apply(params, losses.to_unit_range(x_u8), mask)
    chex.assert_shape(z, (10, 8))
    chex.assert_trees_all_close(encode(task, params, x_u8, mask), z, atol=1e-6)
    chex.assert_trees_all_equal(encode(task, params, x_u8, mask)[:, 5:], jnp.zeros((10, 3)))
    chex.assert_trees_all_close(decode(task, params, z), recon, atol=1e-6)
    chex.assert_trees_all_close(reconstruct(task, params, x_u8, mask), recon, atol=1e-6)
    chex.assert_shape(decode(task, params, z), (10, 28, 28))


def test_a_learner_is_immutable():
    """Closed over by jitted functions as a static value: a change after a trace would be silently
    ignored by the compiled program, so it is frozen."""
    import dataclasses

    task = build.learner(tiny())
    with pytest.raises(dataclasses.FrozenInstanceError):
        task.ae_steps = 2


@pytest.mark.slow
def test_freeze_on_divergence_stops_a_member_at_its_first_non_finite_round(slice_):
    """An infinite AE learning rate: round 0's update gives infinite parameter norms, so it is not
    applied, the state stays as it was (step 0) and the later rounds' metrics are NaN (round 0's loss,
    taken before the update, is finite). Without the flag every round is applied; a healthy state
    advances one step per round, epoch after epoch."""
    config = tiny()
    task = build.learner(config)
    x, y = slice_[0][:512], slice_[1][:512]  # 8 rounds of 64
    healthy = init_state(task, 0)
    opt = healthy.opt_states["ae"]
    hyper = {**opt.hyperparams, "learning_rate": jnp.asarray(jnp.inf, jnp.float32)}
    sick = healthy.replace(opt_states={**healthy.opt_states, "ae": opt._replace(hyperparams=hyper)})
    frozen, m = train_epoch(task, sick, x, y, config.batch_size, freeze_on_divergence=True)
    assert (int(frozen.step), int(frozen.epoch)) == (0, 1)
    chex.assert_trees_all_equal(frozen.params, sick.params)
    assert np.isfinite(float(m["train/recon_mse"][0])) and np.isnan(np.asarray(m["train/recon_mse"][1:])).all()
    again, _ = train_epoch(task, frozen, x, y, config.batch_size, freeze_on_divergence=True)
    chex.assert_trees_all_equal(again.params, frozen.params)
    assert (int(again.step), int(again.epoch)) == (0, 2)
    unfrozen, _ = train_epoch(task, sick, x, y, config.batch_size)
    assert int(unfrozen.step) == 8
    for epoch in (1, 2):
        healthy, m = train_epoch(task, healthy, x, y, config.batch_size, freeze_on_divergence=True)
        assert (int(healthy.step), int(healthy.epoch)) == (8 * epoch, epoch)
        chex.assert_tree_all_finite(m)
