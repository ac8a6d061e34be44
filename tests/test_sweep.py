"""Sweeps: mask equivalence, member = single run, stacked shapes, one compilation, resume."""

from __future__ import annotations

import functools
import json

import chex
import jax
import jax.numpy as jnp
import pytest

from mnist_ae import build
from mnist_ae.core import sweep
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.core.loop import train_epoch
from mnist_ae.core.models import Autoencoder
from mnist_ae.core.steps import init_state
from mnist_ae.sweep_train import run_sweep

from conftest import tiny


def sweep_config(**overrides):
    return tiny(**{"task": "sweep", "latent_dims": (2, 5), "seeds": (0, 1), "learning_rates": (1e-2,), **overrides})


@pytest.fixture(scope="module")
def slice_(mnist):
    return jnp.asarray(mnist.train_images[:2048]), jnp.asarray(mnist.train_labels[:2048])


def test_members_are_the_product_and_states_are_stacked():
    config = sweep_config(learning_rates=(1e-2, 3e-3))
    members = build.members(config)
    assert [(m.latent_dim, m.seed, m.learning_rate) for m in members][:3] == [(2, 0, 1e-2), (2, 0, 3e-3), (2, 1, 1e-2)]
    assert len(members) == 8
    states = build.sweep_setup(config).initial_states(config)
    kernel = states.params["ae"]["params"]["encoder"]["Dense_2"]["kernel"]
    chex.assert_shape(kernel, (8, 32, 5))
    chex.assert_shape(states.rng, (8, 2))
    lrs = states.opt_states["ae"].hyperparams["learning_rate"]
    chex.assert_trees_all_close(lrs, jnp.array([m.learning_rate for m in members]))
    # padded code units start at exactly zero
    chex.assert_trees_all_equal(kernel[0, :, 2:], jnp.zeros((32, 3)))


def test_sliced_member_is_the_unpadded_model(slice_):
    config = sweep_config()
    member = build.Member(2, 1, 1e-2)
    wide_task = build.learner(config, latent_dim=5)
    wide = build.sweep_setup(config).member_state(config, member)
    small_task = build.learner(build.member_config(config, member))
    small = sweep.slice_to(wide, init_state(small_task, 0))
    x = slice_[0][:16].astype(jnp.float32) / 127.5 - 1
    recon_wide, z_wide = wide_task.autoencoder.apply(wide.params["ae"], x, sweep.latent_mask(2, 5))
    recon_small, z_small = small_task.autoencoder.apply(small.params["ae"], x)
    chex.assert_trees_all_close(recon_wide, recon_small, atol=1e-6)
    chex.assert_trees_all_close(z_wide[:, :2], z_small, atol=1e-6)
    chex.assert_trees_all_close(wide_task.head.apply(wide.params["probe"], z_wide),
                                small_task.head.apply(small.params["probe"], z_small), atol=1e-6)


def _sweep_and_single(config, slice_, i: int):
    """Two epochs of the whole sweep (compiled once) and of member i's single run, same data order."""
    members = build.members(config)
    width = build.sweep_setup(config).width
    task = build.learner(config, latent_dim=width)
    masks = jnp.stack([sweep.latent_mask(m.latent_dim, width) for m in members])

    @jax.jit
    @chex.assert_max_traces(n=1)
    def epoch(states):
        return sweep.sweep_epoch(task, states, *slice_, masks, config.batch_size)

    states = build.sweep_setup(config).initial_states(config)
    for _ in range(2):
        states, per_round = epoch(states)
    chex.assert_shape(per_round["train/recon_mse"], (len(members), slice_[0].shape[0] // config.batch_size))
    single_task = build.learner(build.member_config(config, members[i]))
    single = init_state(single_task, members[i].seed)
    single_epoch = jax.jit(functools.partial(train_epoch, single_task, batch_size=config.batch_size))
    for _ in range(2):
        single, single_rounds = single_epoch(single, *slice_)
    member = sweep.slice_to(sweep.unstack(states, i), single)
    chex.assert_trees_all_close(member.params, single.params, atol=1e-5, rtol=1e-4)
    chex.assert_trees_all_close(per_round["train/recon_mse"][i], single_rounds["train/recon_mse"], rtol=1e-4)
    return states


def test_member_trained_in_the_sweep_matches_the_single_run(slice_):
    states = _sweep_and_single(sweep_config(), slice_, i=2)  # latent 5, seed 0
    # the padded units of the latent-2 members never moved
    wide_member = sweep.unstack(states, 0)
    chex.assert_trees_all_equal(wide_member.params["ae"]["params"]["encoder"]["Dense_2"]["kernel"][:, 2:],
                                jnp.zeros((32, 3)))


def test_conv_members_vmapped_over_seeds_match_their_single_runs(slice_):
    """Vmapped conv layers are batched matmuls here (conv_layers.py), not grouped convolutions."""
    config = sweep_config(model="conv", init="flax", latent_dims=(256,), learning_rates=(2e-3,))
    _sweep_and_single(config, (slice_[0][:512], slice_[1][:512]), i=1)  # seed 1


def test_sweep_run_resumes_to_the_same_parameters_and_tags_every_record(tmp_path):
    run_sweep(sweep_config(epochs=2), tmp_path / "a", "none")
    run_sweep(sweep_config(epochs=1), tmp_path / "b", "none")
    run_sweep(sweep_config(epochs=2), tmp_path / "b", "none")
    config = sweep_config()
    template = build.sweep_setup(config).initial_states(config)
    a = Checkpointer(tmp_path / "a" / "checkpoints", 3).restore(template)
    b = Checkpointer(tmp_path / "b" / "checkpoints", 3).restore(template)
    chex.assert_trees_all_close(a.params, b.params, atol=1e-6)
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "test/recon_mse" in r]
    assert {r["member"] for r in evals} == {m.name for m in build.members(config)}
    assert all({"latent_dim", "seed", "learning_rate", "step", "epoch"} <= r.keys() for r in evals)
    assert (tmp_path / "a" / "comparison.png").stat().st_size > 0
    table = (tmp_path / "a" / "sweep_results.md").read_text()
    assert "| 2 |" in table and "| 5 |" in table


def test_exported_member_is_a_standalone_reconstruction_run(tmp_path):
    config = sweep_config(epochs=1, test_limit=300)
    finals = run_sweep(config, tmp_path, "none")
    member = build.members(config)[0]  # latent 2, seed 0
    member_dir = tmp_path / "members" / member.name
    saved = Checkpointer(member_dir / "checkpoints", 1).saved_config()
    assert (saved["task"], saved["latent_dim"], saved["seed"]) == ("reconstruction", 2, 0)
    single_config = build.member_config(config, member)
    single_task = build.learner(single_config)
    state = Checkpointer(member_dir / "checkpoints", 1).restore(init_state(single_task, 0))
    chex.assert_shape(state.params["ae"]["params"]["encoder"]["Dense_2"]["kernel"], (32, 2))
    from mnist_ae.data import load_dataset
    from mnist_ae.core.steps import evaluate

    ds = load_dataset("mnist")
    metrics = evaluate(single_task, state.params, jnp.asarray(ds.test_images[:300]), jnp.asarray(ds.test_labels[:300]))
    assert float(metrics["test/recon_mse"]) == pytest.approx(finals[0]["test/recon_mse"], rel=1e-4)
