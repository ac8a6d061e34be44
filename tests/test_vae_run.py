"""The VAE as a run (`--config.model=vae`): its learner, evaluation, pictures, resume and config checks."""

from __future__ import annotations

import dataclasses
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_ae import build, tasks
from mnist_ae.config import ConfigError
from mnist_ae.config_checks import validate
from mnist_ae.core import vae
from mnist_ae.core.steps import evaluate, init_state, kl_weight
from mnist_ae.render import read_png
from mnist_ae.run import measures
from mnist_ae.workdir import RunDir

from helpers import eval_records, read_jsonl, record_digit_rows, restore_state, run_once, tb_accumulator, tiny

ROUNDS = 2048 // 64  # rounds per epoch of tiny()


def vae_config(**overrides):
    return tiny(**{"model": "vae", "latent_dim": 4, "iw_samples": 4, **overrides})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 1-epoch run with its end-of-run bound, latent pictures and report, trained as an IWAE (2 samples per
    digit): the ELBO-trained path runs in test_sweep's beta sweep and its single runs."""
    config = vae_config(epochs=1, iw_samples_final=8, latent_pictures=True, report_at_end=True, train_iw_samples=2)
    return run_once(tmp_path_factory, "vae", lambda workdir: tasks.train_and_evaluate(
        config, workdir, log_framework="tensorboard", quiet=True))


def test_a_run_logs_its_bounds_at_each_eval_and_the_final_bound_after_training(finished):
    workdir, finals = finished
    evals = eval_records(workdir)
    assert [r["step"] for r in evals] == [0, ROUNDS]
    for r in evals:
        assert {"test/elbo", "test/nll_iw4", "test/kl", "test/active_units", "test/probe_accuracy"} <= r.keys()
        assert r["test/kl"] == pytest.approx(sum(r[f"test/kl_per_unit/{u}"] for u in range(4)), rel=1e-5)
        assert 0 <= r["test/active_units"] <= 4
    assert evals[-1]["test/elbo"] > evals[0]["test/elbo"] + 50  # nats: an untrained decoder is far off
    # the importance-weighted bounds are tighter than the ELBO (each by about a nat here, far above the
    # Monte Carlo noise of 512 digits) and the final one, with twice the samples, tighter still
    assert finals["test/nll_iw8"] < finals["test/nll_iw4"] < -finals["test/elbo"]
    [bound] = [r for r in read_jsonl(workdir / "metrics.jsonl") if "test/nll_iw8" in r]  # logged too, at the end
    assert bound["step"] == ROUNDS and bound["test/nll_iw8"] == pytest.approx(finals["test/nll_iw8"])
    train = [r for r in read_jsonl(workdir / "metrics.jsonl") if "train/elbo" in r]
    assert train and all(np.isfinite(r["train/elbo_iw2"]) and r["train/elbo_iw2"] < 0 for r in train)
    assert train[-1]["train/elbo_iw2"] > train[0]["train/elbo_iw2"] + 50  # the IWAE's own objective, climbing


def test_samples_from_the_prior_at_each_eval_and_traversals_at_the_end(finished):
    workdir, _ = finished
    run = RunDir(workdir)
    assert sorted(p.name for p in run.samples.iterdir()) == [f"samples_step_{s:07d}.png" for s in (0, ROUNDS)]
    assert read_png(run.samples_png(ROUNDS)).shape[2] == 3
    assert [e.step for e in tb_accumulator(run.tensorboard).Images("views/samples")] == [0, ROUNDS]
    assert (run.latent / "traversals.png").exists()
    assert f"digits generated from the prior (a VAE&#x27;s samples at step {ROUNDS:,})" in run.report.read_text()
    config = vae_config(epochs=1)
    learner = build.learner(config)
    state = restore_state(workdir, config)
    z_nl = jax.random.normal(jax.random.PRNGKey(0), (64, 4))
    images = learner.autoencoder.apply(state.params["ae"], z_nl, method="decode")
    chex.assert_shape(images, (64, 28, 28))
    assert -1.0 <= float(images.min()) and float(images.max()) <= 1.0


def test_a_sweeps_samples_decode_the_same_prior_draws_on_each_members_own_units(tmp_path, monkeypatch):
    """Ten digits a member, from the same 64 draws: a narrower member's other units are zero (its decoder
    never saw them move), rows named by member, one picture to the first writer at the step."""
    codes, images = [], []
    program = types.SimpleNamespace(
        learner=types.SimpleNamespace(autoencoder=types.SimpleNamespace(latent_dim=5)), stacked=True,
        members=[{"member": "latent2", "latent_dim": 2}, {"member": "latent5", "latent_dim": 5}], step=lambda state: 7,
        decode=lambda state, z_nl, member: codes.append(z_nl) or np.full((64, 28, 28), member, np.float32))
    writer = types.SimpleNamespace(write_images=lambda step, views: images.append((step, sorted(views))))
    run = types.SimpleNamespace(program=program, workdir=tmp_path, writers=[writer, None])
    drawn = record_digit_rows(monkeypatch)
    measures._samples(run, state=None)
    narrow, wide = codes
    chex.assert_trees_all_equal(narrow[:, :2], wide[:, :2])
    assert not narrow[:, 2:].any() and wide[:, 2:].all()
    rows = drawn["samples from the prior at step 7"]
    assert [(name, len(digits), float(digits.max())) for name, digits in rows] == [("latent2", 10, 0.0), ("latent5", 10, 1.0)]
    assert images == [(7, ["views/samples"])]


def test_a_vae_samples_at_each_eval_and_after_its_last_epoch_and_bounds_once_at_the_end():
    """The schedules the driver follows (test_hooks checks it does): samples from step 0, at each eval and
    after the last epoch however the evals fall; the final bound only with samples asked for, its time shown."""
    [samples] = measures.vae_hooks(vae_config(eval_every_epochs=3))
    assert (samples.every, samples.at_start, samples.at_last, samples.at_end) == (3, True, True, False)
    assert measures.vae_hooks(tiny()) == []
    assert measures.bound_hooks(vae_config(iw_samples_final=0)) == []
    assert measures.bound_hooks(tiny(iw_samples_final=8)) == []  # no bound for a plain autoencoder
    [hook] = measures.bound_hooks(vae_config(iw_samples_final=8))
    assert hook.name == "bound with 8 importance samples" and hook.at_end and hook.shown


@pytest.mark.slow  # three runs; the quick tier resumes a plain run
def test_a_resumed_run_is_bit_identical_to_a_straight_one(tmp_path):
    tasks.train_and_evaluate(vae_config(), tmp_path / "a", log_framework="none", quiet=True)
    tasks.train_and_evaluate(vae_config(epochs=1), tmp_path / "b", log_framework="none", quiet=True)
    tasks.train_and_evaluate(vae_config(), tmp_path / "b", log_framework="none", quiet=True)
    a, b = restore_state(tmp_path / "a", vae_config()), restore_state(tmp_path / "b", vae_config())
    assert int(a.step) == int(b.step) == 2 * ROUNDS
    chex.assert_trees_all_equal(a.params, b.params)  # the rounds' binarisations and samples come from the state's key
    chex.assert_trees_all_equal(a.opt_states, b.opt_states)


def test_evaluation_scores_the_same_binary_digits_however_the_set_is_chunked_or_cut(mnist):
    """Digit i's binarisation and samples are functions of i alone (EVAL_SEED): a shorter test set's are
    the longer one's first rows, and the metrics do not depend on the chunk size (float32 sums: 1e-5)."""
    x_u8 = jnp.asarray(mnist.test_images[:300])
    bits, keys = vae.eval_draws(x_u8)
    bits100, keys100 = vae.eval_draws(x_u8[:100])
    chex.assert_trees_all_equal((bits[:100], keys[:100]), (bits100, keys100))
    learner = build.learner(vae_config())
    params = init_state(learner, 0).params
    enc = params["ae"]["params"]["encoder"]  # the mean head scaled up: posterior means that vary (active units)
    enc = {**enc, "mean": {**enc["mean"], "kernel": enc["mean"]["kernel"] * 30.0}}
    params = {**params, "ae": {"params": {**params["ae"]["params"], "encoder": enc}}}
    y = jnp.asarray(mnist.test_labels[:300])
    whole = evaluate(dataclasses.replace(learner, eval_batch_size=300), params, x_u8, y)
    chunked = evaluate(dataclasses.replace(learner, eval_batch_size=64), params, x_u8, y)
    chex.assert_trees_all_close(chunked, whole, rtol=1e-5)
    # each pixel 1 with its grey level's probability: 235,200 bits, so the share of ones is the mean grey level
    assert float(bits.mean()) == pytest.approx(float(x_u8.mean()) / 255.0, abs=0.005)
    extremes = vae.eval_draws(jnp.stack([jnp.zeros((28, 28), jnp.uint8), jnp.full((28, 28), 255, jnp.uint8)]))[0]
    assert extremes[0].max() == 0 and extremes[1].min() == 1  # black never, white always (p = 255 / 255)
    # the metrics written out: per-digit means of the ELBO's terms (one sample from the digit's key), the
    # posterior means' variance over the set, the 4-sample bound (float32 sums of 300: 1e-5)
    model, p = learner.autoencoder, params["ae"]
    eps = jax.vmap(lambda key: vae.unit_normals(key, (), 4))(keys)
    log_px, kl, _ = vae.elbo_terms(model, p, eps, bits)
    mean = np.asarray(model.apply(p, 2.0 * bits - 1.0, method="posterior")[0], np.float64)
    np.testing.assert_allclose(whole["test/elbo"], np.mean(log_px - kl.sum(-1)), rtol=1e-5)
    np.testing.assert_allclose(whole["test/kl"], np.mean(kl.sum(-1)), rtol=1e-5)
    np.testing.assert_allclose(whole["test/kl_per_unit"], np.mean(kl, axis=0), rtol=1e-5)
    assert 0 < int(whole["test/active_units"]) == int(np.sum(mean.var(axis=0) > 1e-2))
    bound = vae.iwae_bound(model, p, keys, bits, 4, chunk=vae.iw_chunk(4))
    np.testing.assert_allclose(whole["test/nll_iw4"], -np.mean(bound), rtol=1e-5)


def test_the_kl_weight_ramps_up_over_its_warmup_and_then_holds():
    learner = dataclasses.replace(build.learner(vae_config()), beta=4.0, kl_warmup_steps=4)
    np.testing.assert_allclose([kl_weight(learner, jnp.asarray(s)) for s in range(6)], [1, 2, 3, 4, 4, 4])
    assert kl_weight(dataclasses.replace(learner, kl_warmup_steps=0), jnp.asarray(0)) == 4.0


@pytest.mark.parametrize("overrides, message", [
    (dict(beta=-1.0), "beta=-1.0: the KL's weight must be a finite number >= 0"),
    (dict(iw_samples=0), "iw_samples=0: must be a positive integer"),
    (dict(iw_samples_final=-5), "iw_samples_final=-5: must be an integer >= 0 (0 = none)"),
    (dict(task="sweep", model="mlp", betas=(1.0, 4.0)), "weigh a vae's KL: set --config.model=vae"),
    (dict(task="sweep", betas=(4.0, 4.0)), "betas repeats 4.0"),
    (dict(train_iw_samples=0), "train_iw_samples=0: must be a positive integer"),
    (dict(train_iw_samples=5, beta=4.0), "train_iw_samples=5 trains an IWAE: it needs --config.model=vae with beta 1"),
    (dict(train_iw_samples=5, model="mlp"), "train_iw_samples=5 trains an IWAE"),
])
def test_bad_values_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        validate(vae_config(**overrides))
    assert "\n" not in str(refused.value)


def test_a_beta_sweeps_table_has_a_row_per_beta_and_the_vaes_numbers(tmp_path):
    from mnist_ae.analysis.baselines import PCA_KEY
    from mnist_ae.run.sweep_outputs import results_table

    members = [build.Member(2, 0, 1e-3, 1.0), build.Member(2, 0, 1e-3, 4.0)]
    finals = [{"test/recon_mse": 0.1, "test/elbo": -100.0, "test/nll_iw50": 99.0, "test/nll_iw5000": 98.5,
               "test/active_units": 2.0, "test/probe_accuracy": 0.9, PCA_KEY: 0.2},
              {"test/recon_mse": 0.2, "test/elbo": -120.0, "test/nll_iw50": 115.0, "test/nll_iw5000": 114.0,
               "test/active_units": 1.0, "test/probe_accuracy": 0.7, PCA_KEY: 0.2}]
    lines = results_table(members, finals, tmp_path).splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[:3] == ["latent", "learning rate", "beta"]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    assert [(r["beta"], r["test NLL, k=5000 (nats)"], r["active units"]) for r in rows] == [
        ("1", "98.5000", "2.0000"), ("4", "114.0000", "1.0000")]
    assert [m.name for m in members] == ["latent2_seed0_lr0.001_beta1", "latent2_seed0_lr0.001_beta4"]
