"""Sweeps: the masks, member = single run, stacked shapes, one compilation, resume."""

from __future__ import annotations

import functools
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from mnist_ae import build, parallel, tasks
from mnist_ae.core import sweep
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.core.loop import train_epoch
from mnist_ae.core.models import Autoencoder
from mnist_ae.workdir import RunDir
from mnist_ae.core.steps import init_state
from mnist_ae.run import program

from helpers import read_jsonl, tiny_sweep as sweep_config


@pytest.fixture(scope="module")
def slice_(mnist):
    return jnp.asarray(mnist.train_images[:2048]), jnp.asarray(mnist.train_labels[:2048])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished 2-epoch sweep with its member analysis, shared by the tests that read a sweep's
    outputs: (config, workdir, finals)."""
    config = sweep_config(epochs=2, test_limit=300, analyze_at_end=True)
    workdir = tmp_path_factory.mktemp("sweep")
    return config, workdir, tasks.train_sweep(config, workdir, log_framework="none", quiet=True)


def test_members_are_the_product_and_states_are_stacked():
    config = sweep_config(learning_rates=(1e-2, 3e-3))
    members = build.members(config)
    assert [(m.latent_dim, m.seed, m.learning_rate) for m in members][:3] == [(2, 0, 1e-2), (2, 0, 3e-3), (2, 1, 1e-2)]
    assert len(members) == 8
    setup = build.sweep_setup(config)
    states = jax.jit(lambda: setup.initial_states(config))()
    kernel = states.params["ae"]["params"]["encoder"]["Dense_2"]["kernel"]
    chex.assert_shape(kernel, (8, 32, 5))
    chex.assert_shape(states.rng, (8, 2))
    lrs = states.opt_states["ae"].hyperparams["learning_rate"]
    chex.assert_trees_all_close(lrs, jnp.array([m.learning_rate for m in members]))
    # padded code units start at exactly zero
    chex.assert_trees_all_equal(kernel[0, :, 2:], jnp.zeros((32, 3)))


@pytest.mark.slow  # second check: a trained member equals its single run from the same start
def test_each_members_initial_state_is_its_single_runs_padded():
    """Members initialised per group (a latent size and rate, vmapped over seeds) come back in member
    order, each bit for bit the state its own single run starts from (seeds past 2**31 included).
    Seeds before rates in member order, so the two groups interleave."""
    config = sweep_config(latent_dims=(5,), seeds=(0, 2**31 + 7), learning_rates=(1e-2, 3e-3))
    setup = build.sweep_setup(config)
    states = jax.jit(lambda: setup.initial_states(config))()
    for i, member in enumerate(setup.members):
        single = jax.jit(lambda member=member: build.initial_state(build.member_config(config, member)))()
        chex.assert_trees_all_equal(sweep.slice_to(sweep.unstack(states, i), single), single)


@pytest.mark.slow
def test_the_programs_start_each_run_and_sweep_member_from_its_seeds_init_state():
    """What runs really start from (run/program.py compiles the init on its own options, with the seed
    as its argument): a single run's state is bit for bit `init_state` of its Python seed, past 2**31
    too, and each sweep member's is its single run's."""
    config = sweep_config(latent_dims=(5,), seeds=(0, 2**31 + 7), learning_rates=(1e-2,))
    mesh = parallel.make_mesh(1)
    _, stacked = program.sweep_program(config, mesh)
    for i, member in enumerate(build.members(config)):
        single_config = build.member_config(config, member)
        _, single = program.single_program(single_config, mesh)
        chex.assert_trees_all_equal(single, jax.jit(lambda: init_state(build.learner(single_config), member.seed))())
        chex.assert_trees_all_equal(sweep.unstack(stacked, i), single)


@pytest.mark.slow  # second check: the masked member equals its single run
def test_sliced_member_is_the_unpadded_model(slice_):
    config = sweep_config()
    member = build.Member(2, 1, 1e-2)
    wide_task = build.learner(config, latent_dim=5)
    setup = build.sweep_setup(config)
    wide = sweep.unstack(jax.jit(lambda: setup.initial_states(config))(), setup.members.index(member))
    small_task = build.learner(build.member_config(config, member))
    small = sweep.slice_to(wide, init_state(small_task, 0))
    x = slice_[0][:16].astype(jnp.float32) / 127.5 - 1
    recon_wide, z_wide = wide_task.autoencoder.apply(wide.params["ae"], x, sweep.latent_mask(2, 5))
    recon_small, z_small = small_task.autoencoder.apply(small.params["ae"], x)
    chex.assert_trees_all_close(recon_wide, recon_small, atol=1e-6)
    chex.assert_trees_all_close(z_wide[:, :2], z_small, atol=1e-6)
    chex.assert_trees_all_close(wide_task.head.apply(wide.params["probe"], z_wide),
                                small_task.head.apply(small.params["probe"], z_small), atol=1e-6)


def test_latent_masks_are_the_first_latent_dim_units():
    """Written out by hand: a member of latent size l keeps code units 0..l-1 of the widest code."""
    np.testing.assert_array_equal(sweep.latent_mask(2, 5), [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(sweep.latent_mask(5, 5), [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(sweep.latent_mask(1, 3), [1, 0, 0])
    assert sweep.latent_mask(2, 5).dtype == jnp.float32
    setup = build.sweep_setup(sweep_config())  # members (2, s0), (2, s1), (5, s0), (5, s1)
    assert setup.width == 5
    np.testing.assert_array_equal(setup.masks_ml, [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]])


# Sweep member vs its single run, compared in float64 (both programs traced under
# `jax.enable_x64` from the same float64-cast initial states). The two are the same function of
# the data but not the same program: XLA sums in another order in the vmapped one (batched dots
# over members) and at the widest latent size (a 5-wide dot with zeros for a 2-wide one). In
# float32 that reordering costs ~1 ulp per round, and training can amplify it without bound: Adam's
# m / sqrt(v) turns a rounding-sized gradient into a learning-rate-sized step, and a latent-2
# bottleneck or a ReLU at its kink turns it into another trajectory. How far it grows depends on
# the data order, the resolved XLA version and the compiler flags (one clean machine measured 1e-7
# for one slice and 2e-2 for the next), so no float32 tolerance holds on every machine. In float64
# the same reordering is ~1e-16 per operation (these four tests measured 3e-16 to 1e-14), and even
# amplified a million-fold it stays below REL_L2, while what must fail is far above it: the
# autoencoder's learning rate 1% off moves a leaf by 0.04 to 0.5 in these tests, a mask one unit
# short trains another model altogether.
REL_L2 = 1e-7


def _assert_leaves_close(member, single, rel_l2: float = REL_L2) -> None:
    flat = lambda tree: {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(tree)}
    a, b = flat(member), flat(single)
    assert a.keys() == b.keys()
    rel = {k: float(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(b[k]), 1e-30)) for k in a}
    worst = max(rel, key=rel.get)
    assert rel[worst] <= rel_l2, f"{worst}: relative L2 difference {rel[worst]:.3g} > {rel_l2:g}"


def _floats_as(tree, dtype):
    """Every floating leaf as `dtype`, but the optimizer's hyperparameters: optax's schedules return
    float32 whatever the mode, and scan wants the carry's types kept (keys, counters and steps keep
    their integer types too)."""
    def cast(path, a):
        floating = jnp.issubdtype(a.dtype, jnp.floating) and "hyperparams" not in jax.tree_util.keystr(path)
        return a.astype(dtype) if floating else a

    return jax.tree_util.tree_map_with_path(cast, tree)


def _sweep_and_single(config, slice_, i: int):
    """Two epochs of the whole sweep (compiled once, with the program's masks) and of member i's
    single run, same data order, both in float64 (see REL_L2); returns the sweep's states in float32."""
    with jax.enable_x64(True):
        setup = build.sweep_setup(config)
        classes = [m.normal_class for m in setup.members]
        pools, per_epoch = None, None
        if classes[0] is not None:  # one-class members: each its class's digits (`build.class_pools`)
            index_mp, valid_mp, per_epoch = build.class_pools(np.asarray(slice_[1]), classes)
            pools = (jnp.asarray(index_mp), jnp.asarray(valid_mp))

        @jax.jit
        @chex.assert_max_traces(n=1)
        def epoch(states):
            return sweep.sweep_epoch(setup.learner, states, *slice_, setup.masks_ml, setup.betas_m, pools,
                                     batch_size=config.batch_size, epoch_examples=per_epoch)

        states = _floats_as(jax.jit(lambda: setup.initial_states(config))(), jnp.float64)
        for _ in range(2):
            states, per_round = epoch(states)
        chex.assert_shape(per_round["train/recon_mse"], (len(setup.members), (per_epoch or slice_[0].shape[0]) // config.batch_size))
        member = setup.members[i]
        single_task = build.learner(build.member_config(config, member))
        single = _floats_as(init_state(single_task, member.seed), jnp.float64)
        pool = None if pools is None else jax.tree.map(lambda a: a[i], pools)
        single_epoch = jax.jit(functools.partial(train_epoch, single_task, batch_size=config.batch_size, pool=pool,
                                                 epoch_examples=per_epoch))
        for _ in range(2):
            single, single_rounds = single_epoch(single, *slice_)
        trained = sweep.slice_to(sweep.unstack(states, i), single)
        assert {a.dtype for a in jax.tree.leaves(trained.params)} == {jnp.dtype(jnp.float64)}  # really compared in float64
        assert (int(trained.step), int(trained.epoch)) == (int(single.step), int(single.epoch))
        _assert_leaves_close(trained.params, single.params)
        _assert_leaves_close(trained.opt_states, single.opt_states)
        chex.assert_trees_all_close(per_round["train/recon_mse"][i], single_rounds["train/recon_mse"], rtol=1e-9)
        return _floats_as(states, jnp.float32)


@pytest.mark.slow
def test_member_trained_in_the_sweep_matches_the_single_run(slice_):
    _sweep_and_single(sweep_config(), slice_, i=2)  # latent 5 (the widest), seed 0: 64 rounds


def test_masked_member_matches_its_single_run_and_its_masked_units_stay_zero(slice_):
    config = sweep_config()
    states = _sweep_and_single(config, (slice_[0][:256], slice_[1][:256]), i=1)  # latent 2, seed 1: 8 rounds
    wide = sweep.unstack(states, 1)
    kernel = wide.params["ae"]["params"]["encoder"]["Dense_2"]["kernel"]
    chex.assert_trees_all_equal(kernel[:, 2:], jnp.zeros((32, 3)))  # the padded units never moved
    # Masked units carry nothing, whatever weights they have: with the padding made nonzero the
    # member's mask still gives exactly zero codes there (and the live units are untouched).
    setup = build.sweep_setup(config)
    x = slice_[0][:16].astype(jnp.float32) / 127.5 - 1
    params = jax.tree.map(lambda a: a, wide.params["ae"])
    params["params"]["encoder"]["Dense_2"]["kernel"] = kernel.at[:, 2:].set(0.5)
    params["params"]["encoder"]["Dense_2"]["bias"] = params["params"]["encoder"]["Dense_2"]["bias"].at[2:].set(1.0)
    z = setup.learner.autoencoder.apply(params, x, setup.masks_ml[1], method=Autoencoder.encode)
    unmasked = setup.learner.autoencoder.apply(params, x, method=Autoencoder.encode)
    assert float(jnp.min(jnp.abs(unmasked[:, 2:]))) > 0  # the padding would speak without the mask
    chex.assert_trees_all_equal(z[:, 2:], jnp.zeros((16, 3)))
    chex.assert_trees_all_equal(z[:, :2], unmasked[:, :2])


@pytest.mark.slow
def test_members_with_a_learning_rate_schedule_match_their_single_runs(slice_):
    """Warmup + cosine under vmap: each member's peak is its own rate in the state, the schedule's
    shape is shared; member (latent 5, seed 0, lr 3e-3) against its single run."""
    config = sweep_config(learning_rates=(1e-2, 3e-3), lr_schedule="warmup_cosine", lr_warmup_steps=8)
    states = _sweep_and_single(config, slice_, i=5)
    hyper = states.opt_states["ae"].hyperparams
    chex.assert_trees_all_close(hyper["learning_rate"], jnp.array([1e-2, 3e-3] * 4))
    # every member's last update (round 63 of 64, warmup 8) used the shared cosine's value there
    chex.assert_trees_all_close(hyper["lr_multiplier"], jnp.full(8, 0.5 * (1 + np.cos(np.pi * 55 / 56))), atol=1e-7)


def test_vae_members_of_a_beta_sweep_match_their_single_runs(slice_):
    """Each member's KL weight is its own (a vmapped value, the single run's a constant) and a narrower
    member's padded units draw no noise: member (latent 2, beta 4) of latents 2 and 3 against its single
    run, over the ELBO's binarisations and samples."""
    config = sweep_config(model="vae", latent_dims=(2, 3), seeds=(0,), betas=(1.0, 4.0), kl_warmup_steps=4)
    _sweep_and_single(config, (slice_[0][:512], slice_[1][:512]), i=1)


@pytest.mark.slow  # second check: the VAE and masked members are quick; pools: test_anomaly
def test_one_class_members_match_their_single_runs(slice_):
    """Each member draws its epoch from its own class's digits (classes of different sizes: the smallest
    sets the rounds): member (latent 3, class 7) against its single run with normal_class=7."""
    config = sweep_config(latent_dims=(2, 3), seeds=(0,), normal_classes=(1, 7), batch_size=32)
    _sweep_and_single(config, slice_, i=3)


@pytest.mark.slow
def test_conv_members_vmapped_over_seeds_match_their_single_runs(slice_):
    """Vmapped conv layers are batched matmuls here (conv_layers.py), not grouped convolutions."""
    config = sweep_config(model="conv", init="flax", latent_dims=(256,), learning_rates=(2e-3,))
    _sweep_and_single(config, (slice_[0][:512], slice_[1][:512]), i=1)  # seed 1


def test_the_results_table_gives_mean_and_spread_over_healthy_seeds_and_draws_the_curves(tmp_path, monkeypatch):
    """Per latent size: the seeds, how many diverged, mean +- std over the others ('diverged' when none
    is left, no spread for one), PCA's number once; and the curves figure beside the table, with PCA's
    curve over the code sizes (no spread) on a log axis."""
    from mnist_ae.analysis import figures as plots
    from mnist_ae.analysis.baselines import PCA_KEY
    from mnist_ae.run.sweep_outputs import results_table

    members = [build.Member(2, s, 1e-2) for s in (0, 1)] + [build.Member(5, s, 1e-2) for s in (0, 1)]
    finals = [{"test/recon_mse": 0.1, "test/probe_accuracy": 0.5, PCA_KEY: 0.2},
              {"test/recon_mse": 0.3, "test/probe_accuracy": 0.7, PCA_KEY: 0.2},
              {"test/recon_mse": 0.05, "test/probe_accuracy": 0.9, PCA_KEY: 0.1},
              {"test/recon_mse": float("nan"), "diverged": 1.0, PCA_KEY: 0.1}]

    def table_rows() -> list[list[str]]:
        return [[c.strip() for c in line.strip("|").split("|")] for line in
                (tmp_path / "sweep_results.md").read_text().splitlines()[2:]]

    results_table(members, finals, tmp_path)
    assert table_rows() == [["2", "0.01", "2", "0", "0.2000 +- 0.1000", "0.2000", "0.6000 +- 0.1000"],
                            ["5", "0.01", "2", "1", "0.0500", "0.1000", "0.9000"]]
    header = ["latent", "learning rate", "seeds", "diverged", "test MSE", "PCA test MSE", "probe accuracy"]
    assert [c.strip() for c in (tmp_path / "sweep_results.md").read_text().splitlines()[0].strip("|").split("|")] \
        == header
    saved = json.loads((tmp_path / "sweep_results.json").read_text())  # the same numbers, for programs
    assert saved["table"] == {"header": header, "rows": table_rows()}
    assert [(g["latent_dim"], g["seeds"], g["diverged"], g["values"]["test/recon_mse"]) for g in saved["groups"]] == \
        [(2, 2, 0, [0.1, 0.3]), (5, 2, 1, [0.05])]
    assert [m["member"] for m in saved["members"]] == [m.name for m in members]
    assert saved["members"][3]["test/recon_mse"] is None and saved["members"][3]["diverged"] == 1.0
    with Image.open(tmp_path / "sweep_results.png") as png:
        assert png.size[0] > 100 and png.size[1] > 100
    results_table(members[2:], finals[3:] * 2, tmp_path)  # every seed of the size diverged
    assert table_rows()[0][4] == "diverged"
    results_table([members[0], members[2]], [finals[0], finals[2]], tmp_path)  # one seed per size
    assert [row[4:6] for row in table_rows()] == [["0.1000", "0.2000"], ["0.0500", "0.1000"]]
    drawn = []
    monkeypatch.setattr(plots, "line_plot", lambda *args, **kwargs: drawn.append((args, kwargs)))
    results_table(members, finals, tmp_path)
    (latents, series, *_), kwargs = drawn[0]
    assert latents == [2, 5] and series["PCA test MSE"] == ([0.2, 0.1], [0.0, 0.0]) and kwargs["logx"] is True
    assert series["test MSE (lr 0.01)"][0] == pytest.approx([0.2, 0.05])


def test_a_beta_sweeps_table_sorts_by_beta_and_shows_the_bound_with_the_most_samples(tmp_path):
    """Rows sorted by latent size, rate, then beta (0 before 0.5 though the config listed 0.5 first); the
    bound column is the final one with the most importance samples (8 < 50 < 5000 as numbers, not text)."""
    from mnist_ae.run.sweep_outputs import results_table

    members = [build.Member(2, 0, 1e-2, beta) for beta in (0.5, 0.0)]
    finals = [{"test/recon_mse": mse, "test/elbo": -elbo, "test/nll_iw8": elbo - 1, "test/nll_iw50": elbo - 2,
               "test/nll_iw5000": elbo - 3, "test/active_units": units, "test/probe_accuracy": 0.5}
              for mse, elbo, units in ((0.2, 100.0, 3.0), (0.1, 90.0, 4.0))]
    results_table(members, finals, tmp_path)
    header, _, *rows = [[c.strip() for c in line.strip("|").split("|")]
                        for line in (tmp_path / "sweep_results.md").read_text().splitlines()]
    assert header == ["latent", "learning rate", "beta", "seeds", "diverged", "test MSE", "PCA test MSE",
                      "test ELBO (nats)", "test NLL, k=5000 (nats)", "active units", "probe accuracy"]
    assert [row[2] for row in rows] == ["0", "0.5"]
    assert [row[7:10] for row in rows] == [["-90.0000", "87.0000", "4.0000"], ["-100.0000", "97.0000", "3.0000"]]


def test_the_comparison_rows_name_seed_and_rate_only_when_members_differ_in_them(monkeypatch):
    from mnist_ae.analysis import digit_figures
    from mnist_ae.run.sweep_outputs import comparison_figure

    labels = []
    monkeypatch.setattr(digit_figures, "digit_rows", lambda rows, path: labels.append([r[0] for r in rows]))
    digits = np.zeros((3, 28, 28), np.uint8)
    comparison_figure(digits, np.zeros((1, 3, 28, 28)), [build.Member(2, 0, 1e-2)], None)
    comparison_figure(digits, np.zeros((2, 3, 28, 28)), [build.Member(2, 0, 1e-2), build.Member(5, 1, 1e-3)], None)
    assert labels == [["input", "latent 2"], ["input", "latent 2 s0 lr0.01", "latent 5 s1 lr0.001"]]


@pytest.mark.slow
def test_a_sweep_of_one_member_trains_and_resumes(tmp_path):
    """One latent size, seed and rate is still a sweep (a stacked state of one): it trains, reports its
    epochs and continues on a rerun with more epochs."""
    config = sweep_config(latent_dims=(2,), seeds=(0,), test_limit=256)
    finals = tasks.train_sweep(config, tmp_path, log_framework="none", quiet=True)
    assert len(finals) == 1 and np.isfinite(finals[0]["test/recon_mse"])
    more = tasks.train_sweep(sweep_config(latent_dims=(2,), seeds=(0,), test_limit=256, epochs=3), tmp_path,
                             log_framework="none", quiet=True)
    evals = [r for r in read_jsonl(tmp_path / "metrics.jsonl") if "test/recon_mse" in r]
    assert [r["epoch"] for r in evals] == [0, 1, 2, 3] and more[0]["test/recon_mse"] <= evals[0]["test/recon_mse"]
    # A member's records are its tagged lines in the sweep's one metrics.jsonl (trimmed on every resume), not a
    # copy in its folder that a resume would not trim: each eval once, as the sweep logged it.
    member = RunDir(tmp_path).member(build.members(config)[0].name)
    assert member.checkpoints.is_dir() and not member.metrics.exists()
    assert [r["epoch"] for r in member.records() if "test/recon_mse" in r] == [0, 1, 2, 3]


@pytest.mark.slow
def test_sweep_run_resumes_to_the_same_parameters_and_tags_every_record(tmp_path, finished):
    config, workdir, _ = finished  # straight through its 2 epochs
    tasks.train_sweep(sweep_config(epochs=1), tmp_path / "b", log_framework="none", quiet=True)
    tasks.train_sweep(sweep_config(epochs=2), tmp_path / "b", log_framework="none", quiet=True)
    template = jax.eval_shape(lambda: build.sweep_setup(config).initial_states(config))
    a = Checkpointer(workdir / "checkpoints", 3).restore(template)
    b = Checkpointer(tmp_path / "b" / "checkpoints", 3).restore(template)
    chex.assert_trees_all_close(a.params, b.params, atol=1e-6)
    np.testing.assert_array_equal(b.step, [64] * 4)  # 2 epochs x 32 rounds, every member, across the resume
    records = read_jsonl(workdir / "metrics.jsonl")
    evals = [r for r in records if "test/recon_mse" in r]
    assert {r["member"] for r in evals} == {m.name for m in build.members(config)}
    assert all({"latent_dim", "seed", "learning_rate", "step", "epoch"} <= r.keys() for r in evals)
    assert (workdir / "comparison.png").stat().st_size > 0
    table = (workdir / "sweep_results.md").read_text()
    assert "| 2 |" in table and "| 5 |" in table


@pytest.mark.slow
def test_exported_member_is_a_standalone_reconstruction_run(finished):
    config, workdir, finals = finished
    member = build.members(config)[0]  # latent 2, seed 0
    member_dir = workdir / "members" / member.name
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


@pytest.mark.slow
def test_each_members_pca_baseline_has_its_own_code_size(finished):
    """PCA beside each member at the member's latent size, not the config's `latent_dim` (8 here):
    a latent-2 member compared with PCA-8 would flatter PCA in the table, the summary and the report."""
    from mnist_ae.analysis import baselines
    from mnist_ae.data import load_dataset

    config, _, finals = finished
    ds = load_dataset("mnist")
    train, test = ds.train_images[: config.train_limit], ds.test_images[: config.test_limit]
    sizes = [m.latent_dim for m in build.members(config)]
    assert sorted(set(sizes)) == [2, 5] and config.latent_dim not in sizes
    expected = [baselines.pca_test_mse(train, test, size) for size in sizes]
    assert [f[baselines.PCA_KEY] for f in finals] == pytest.approx(expected, rel=1e-6)
    assert expected[sizes.index(5)] < expected[sizes.index(2)]  # more components, less error: the sizes differ


@pytest.mark.slow
def test_every_member_is_analysed_in_the_sweep_table(finished):
    """analyze_at_end in a sweep: each member's kNN, linear-probe, silhouette and trustworthiness numbers
    in its finals and in the results table, the kNN and silhouette equal to numpy's on the member's own
    codes (encoded again from its exported checkpoint), and all members' 2-D maps in one figure."""
    from mnist_ae.api import load
    from mnist_ae.data import load_dataset
    from test_analysis import knn5_accuracy_numpy, silhouette_numpy

    config, workdir, finals = finished
    ds = load_dataset("mnist")
    images, labels = ds.test_images[:300], ds.test_labels[:300].astype(np.int64)
    table = (workdir / "sweep_results.md").read_text().splitlines()
    assert table[0].endswith("| kNN accuracy | linear-probe accuracy | silhouette | trustworthiness | precision@10 "
                             "| retrieval mAP |")
    for member, final in zip(build.members(config), finals):
        codes = load(workdir / "members" / member.name).encode(images)
        chex.assert_shape(codes, (300, member.latent_dim))
        assert final["analysis/knn5_accuracy"] == pytest.approx(knn5_accuracy_numpy(codes, labels, 0), abs=1e-6)
        assert final["analysis/silhouette"] == pytest.approx(silhouette_numpy(codes, labels), abs=1e-4)
        assert 0.5 < final["analysis/trustworthiness"] <= 1 and 0 < final["analysis/logreg_accuracy"] <= 1
    keys = [f"analysis/{k}" for k in ("knn5_accuracy", "logreg_accuracy", "silhouette", "trustworthiness")]
    for latent in config.latent_dims:  # a row per latent size: mean +- std over its two seeds
        row = next(line for line in table if line.startswith(f"| {latent} |"))
        seeds = [f for m, f in zip(build.members(config), finals) if m.latent_dim == latent]
        assert [cell.strip() for cell in row.strip("|").split("|")][-6:-2] == [  # then retrieval's two
            f"{np.mean([f[k] for f in seeds]):.4f} +- {np.std([f[k] for f in seeds]):.4f}" for k in keys]
    assert (workdir / "analysis" / "member_maps.png").stat().st_size > 0
    record = json.loads((workdir / "analysis" / "members.json").read_text())
    assert record["members"] == {m.name: {k.removeprefix("analysis/"): v for k, v in f.items() if k.startswith("analysis/")}
                                 for m, f in zip(build.members(config), finals)}
    half_the_cpus = max(1, len(os.sched_getaffinity(0)) // 2)  # the documented thread policy
    assert record["settings"] == {"n_points": 300, "map_points": 300, "tsne_backend": "exact", "seed": config.seed,
                                  "threads": half_the_cpus}
    times = record["timings_s"]
    assert 0 < times["tsne_2d"] and 0 < times["quality"] and times["tsne_2d"] + times["quality"] <= times["total"] < 600


def test_a_diverging_member_is_frozen_while_the_others_train_on_untouched(slice_):
    """Member 0 gets an infinite learning rate: its first update is refused (step stays 0, parameters
    as they were, metrics NaN after round 0); the three others take all 4 rounds and end bit for bit
    as in the same epoch without the sick member (nothing of its NaNs leaks through the vmap)."""
    config = sweep_config()
    setup = build.sweep_setup(config)
    states = jax.jit(lambda: setup.initial_states(config))()
    opt = states.opt_states["ae"]
    lr = opt.hyperparams["learning_rate"].at[0].set(jnp.inf)
    sick = states.replace(opt_states={**states.opt_states,
                                      "ae": opt._replace(hyperparams={**opt.hyperparams, "learning_rate": lr})})
    epoch = jax.jit(lambda s: sweep.sweep_epoch(setup.learner, s, slice_[0][:256], slice_[1][:256], setup.masks_ml,
                                                batch_size=config.batch_size))
    after, m = epoch(sick)
    healthy, healthy_m = epoch(states)
    np.testing.assert_array_equal(after.step, [0, 4, 4, 4])
    chex.assert_trees_all_equal(sweep.unstack(after.params, 0), sweep.unstack(states.params, 0))
    assert np.isnan(np.asarray(m["train/recon_mse"][0, 1:])).all()
    others = lambda tree: jax.tree.map(lambda a: a[1:], tree)  # noqa: E731
    chex.assert_tree_all_finite(others(m))
    chex.assert_trees_all_equal(others(after.params), others(healthy.params))
    chex.assert_trees_all_equal(others(after.opt_states), others(healthy.opt_states))
    chex.assert_trees_all_equal(others(m), others(healthy_m))


def test_members_json_is_written_when_every_member_diverged(tmp_path):
    """No member healthy: no map and no figure (whose save would make the folder), yet members.json, with
    empty numbers, in a folder made for it or one that is already there."""
    from mnist_ae.analysis.members import analyze_members

    codes = np.full((2, 30, 3), np.nan, np.float32)
    for outdir in (tmp_path / "new" / "analysis", tmp_path):
        numbers = analyze_members(codes, np.arange(30) % 10, [3, 2], ["a", "b"], [str(d) for d in range(10)], outdir)
        assert numbers == [{}, {}]
        assert json.loads((outdir / "members.json").read_text())["members"] == {"a": {}, "b": {}}
        assert not (outdir / "member_maps.png").exists()
