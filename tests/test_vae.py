"""The VAE's pure core (`core/vae.py`): its bounds against cases with a known answer, on real digits."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_ae.core import sweep, vae


@pytest.fixture(scope="module")
def digits(mnist) -> jax.Array:
    """64 test digits, dynamically binarised once (seed 0)."""
    return vae.binarize(jax.random.PRNGKey(0), jnp.asarray(mnist.test_images[:64], jnp.float32) / 255.0)


def _model_and_params(latent: int = 4):
    model = vae.make_vae(hidden=(32,), latent_dim=latent)
    return model, model.init(jax.random.PRNGKey(1), jnp.zeros((1, 28, 28)))


def _prior_posterior(params):
    """The same network whose encoder always answers the prior (mean 0, log-variance 0)."""
    enc = params["params"]["encoder"]
    zeroed = {head: jax.tree.map(jnp.zeros_like, enc[head]) for head in ("mean", "logvar")}
    return {"params": {**params["params"], "encoder": {**enc, **zeroed}}}


def test_shapes_and_the_binarised_pixels(digits):
    model, params = _model_and_params()
    mean, logvar = model.apply(params, digits, method="posterior")
    chex.assert_shape([mean, logvar], (64, 4))
    images, codes = model.apply(params, digits)
    chex.assert_shape(images, (64, 28, 28))
    chex.assert_trees_all_equal(codes, mean)  # the code is the posterior mean
    assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0
    assert set(np.unique(np.asarray(digits))) == {0.0, 1.0}
    # a grey level p gives ones with frequency p: 0.3 over 100,000 draws within 5 standard deviations
    ones = vae.binarize(jax.random.PRNGKey(2), jnp.full((100_000,), 0.3)).mean()
    assert abs(float(ones) - 0.3) < 5 * np.sqrt(0.3 * 0.7 / 100_000)


def test_the_heads_take_the_pytorch_init_of_their_fan_in():
    """init "torch": each head's weights and biases uniform in +-1/sqrt(32), the trunk's width (not the
    batch's: the model is initialised on one digit)."""
    model = vae.make_vae(hidden=(32,), latent_dim=8, init="torch")
    encoder = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28)))["params"]["encoder"]
    for head in ("mean", "logvar"):
        weights = np.concatenate([np.ravel(encoder[head]["kernel"]), encoder[head]["bias"]])  # 264 draws
        assert 0.9 / np.sqrt(32) < np.abs(weights).max() <= 1 / np.sqrt(32)


def test_the_kl_is_the_closed_form_and_matches_a_monte_carlo_estimate():
    mean, logvar = jnp.array([[0.0, 1.5, -0.7]]), jnp.array([[0.0, -1.0, 0.8]])
    kl = vae.kl_per_unit(mean, logvar)
    assert float(kl[0, 0]) == 0.0  # the prior itself
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.PRNGKey(3), (200_000, 3))
    log_q = -0.5 * (np.log(2 * np.pi) + logvar + (z - mean) ** 2 * jnp.exp(-logvar))
    log_p = -0.5 * (np.log(2 * np.pi) + z**2)
    # the mean of 200,000 log-ratios: its standard error is below 0.01 for these units
    np.testing.assert_allclose(np.asarray(kl[0]), np.asarray((log_q - log_p).mean(0)), atol=0.02)


def test_with_the_prior_as_posterior_and_a_decoder_that_ignores_z_every_bound_is_log_p_x(digits):
    """q = p(z) and logits that do not depend on z: every importance weight is p(x), so the ELBO and the
    IWAE bound at any k equal log p(x) = the Bernoulli log-likelihood of the decoder's constant logits."""
    model, params = _model_and_params()
    params = _prior_posterior(params)
    dec = params["params"]["decoder"]["mlp"]
    last = max(k for k in dec if k.startswith("Dense_"))
    dec = {**dec, last: {**dec[last], "kernel": jnp.zeros_like(dec[last]["kernel"])}}  # logits = the bias
    params = {"params": {**params["params"], "decoder": {"mlp": dec}}}
    logits = jnp.broadcast_to(dec[last]["bias"].reshape(28, 28), digits.shape)
    log_px = vae.bernoulli_log_likelihood(logits, digits)
    log_px_z, kl, _ = vae.elbo_terms(model, params, jax.random.normal(jax.random.PRNGKey(4), (64, 4)), digits)
    np.testing.assert_allclose(log_px_z, log_px, rtol=1e-6)
    assert float(jnp.abs(kl).max()) == 0.0
    for k in (1, 200):  # float32 sums of 784 terms: 1e-5 relative
        np.testing.assert_allclose(vae.iwae_bound(model, params, jax.random.split(jax.random.PRNGKey(5), 64), digits, k,
                                                  chunk=min(k, 100)),
                                   log_px, rtol=1e-5)


def test_the_importance_weighted_bound_tightens_with_k_and_starts_at_the_elbo(digits):
    """Averaged over 64 digits: IWAE(1) has the ELBO's expectation (a Monte Carlo KL instead of the closed
    form), within 4 standard errors of the difference of 30 draws each; and IWAE(1) < IWAE(10) < IWAE(100)
    (Burda et al.'s Theorem 1, in expectation: at an untrained model the gaps are nats, far above the noise)."""
    model, params = _model_and_params()
    keys = jax.random.split(jax.random.PRNGKey(0), 60)
    binary = 2.0 * digits - 1.0  # binary already: the training loss's binarisation keeps every bit
    elbos = np.asarray(jax.jit(jax.vmap(lambda key: vae.training_loss(model, params, key, binary, 1.0, k=1)[1]["elbo"]))(
        keys[:30]))
    iwae1 = np.asarray(jax.jit(jax.vmap(lambda key: vae.iwae_bound(model, params, jax.random.split(key, 64), digits, 1,
                                                                  chunk=1).mean()))(keys[30:]))
    standard_error = np.sqrt(elbos.var(ddof=1) / 30 + iwae1.var(ddof=1) / 30)
    assert abs(iwae1.mean() - elbos.mean()) < 4 * standard_error
    keys_b = jax.random.split(jax.random.PRNGKey(6), 64)
    bounds = {k: float(vae.iwae_bound(model, params, keys_b, digits, k, chunk=min(k, 50)).mean())
              for k in (10, 100)}
    assert iwae1.mean() < bounds[10] < bounds[100]
    with pytest.raises(ValueError, match="k=150 must be a multiple of chunk=100"):
        vae.iwae_bound(model, params, keys_b, digits, 150)


def test_the_training_loss_binarises_afresh_and_weighs_only_the_kl_by_beta(mnist):
    """Grey test digits: the round's key splits into the binarisation's (each pixel 1 with its grey level's
    probability) and the noise's; the loss is the mean of beta KL - log p(x|z) over those bits and samples,
    its ELBO, KL and squared error (against the grey digits) beside it."""
    model, params = _model_and_params()
    key, grey_u8 = jax.random.PRNGKey(7), jnp.asarray(mnist.test_images[:64])
    k_bin, k_eps = jax.random.split(key)
    bits = vae.binarize(k_bin, grey_u8 / 255.0)
    log_px, kl, logits = vae.elbo_terms(model, params, vae.unit_normals(k_eps, (64,), 4), bits)
    grey = grey_u8 / 127.5 - 1.0
    loss4, aux = jax.jit(lambda p: vae.training_loss(model, p, key, grey, 4.0, k=1))(params)
    np.testing.assert_allclose(loss4, jnp.mean(4.0 * kl.sum(-1) - log_px), rtol=1e-6)
    np.testing.assert_allclose(aux["elbo"], jnp.mean(log_px - kl.sum(-1)), rtol=1e-6)
    np.testing.assert_allclose(aux["kl"], jnp.mean(kl.sum(-1)), rtol=1e-6)
    np.testing.assert_allclose(aux["recon_mse"], jnp.mean(jnp.square(2.0 * jax.nn.sigmoid(logits) - 1.0 - grey)), rtol=1e-5)


def test_masked_units_are_the_prior(digits):
    model, params = _model_and_params()
    key = jax.random.PRNGKey(7)
    _, kl, _ = vae.elbo_terms(model, params, vae.unit_normals(key, (64,), 4), digits)
    _, kl_masked, _ = vae.elbo_terms(model, params, vae.unit_normals(key, (64,), 4), digits,
                                     mask_l=jnp.array([1.0, 1.0, 0.0, 0.0]))
    assert float(jnp.abs(kl_masked[:, 2:]).max()) == 0.0
    np.testing.assert_allclose(kl_masked[:, :2], kl[:, :2], rtol=1e-6)


def test_the_bound_takes_the_largest_chunk_of_samples_up_to_10_that_divides_k():
    assert [vae.iw_chunk(k) for k in (1, 4, 11, 50, 5000)] == [1, 4, 1, 10, 10]


def test_active_units_count_the_means_that_vary_over_the_data():
    rng = np.random.default_rng(0)
    means = np.stack([rng.normal(0, 1, 1000), rng.normal(0, 0.05, 1000), np.full(1000, 3.0), rng.normal(0, 0.2, 1000)], 1)
    assert int(vae.active_units(jnp.asarray(means))) == 2  # variances about 1, 0.0025, 0, 0.04


def test_the_elbo_is_the_network_written_in_numpy(digits):
    """The ELBO's terms by hand in float64: tanh MLPs, the reparameterised sample, Bernoulli log-likelihood
    and the closed-form KL (float32 sums of 784 terms: 1e-5 relative)."""
    model = vae.make_vae(hidden=(3,), latent_dim=2)
    params = model.init(jax.random.PRNGKey(8), jnp.zeros((1, 28, 28)))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    eps = np.asarray(vae.unit_normals(jax.random.PRNGKey(9), (64,), 2), np.float64)
    x = np.asarray(digits, np.float64).reshape(64, -1)
    dense = lambda layer, h: h @ layer["kernel"] + layer["bias"]  # noqa: E731
    h = np.tanh(dense(p["encoder"]["trunk"]["Dense_0"], 2 * x - 1))  # binary pixels read on [-1, 1]
    mean, logvar = dense(p["encoder"]["mean"], h), dense(p["encoder"]["logvar"], h)
    z = mean + np.exp(0.5 * logvar) * eps
    dec = p["decoder"]["mlp"]
    logits = dense(dec["Dense_1"], np.tanh(dense(dec["Dense_0"], z)))
    log_px = np.sum(x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits), axis=1)
    kl = 0.5 * (np.exp(logvar) + mean**2 - 1 - logvar)
    got_log_px, got_kl, _ = vae.elbo_terms(model, params, jnp.asarray(eps, jnp.float32), digits)
    np.testing.assert_allclose(got_log_px, log_px, rtol=1e-5)
    np.testing.assert_allclose(got_kl, kl, rtol=1e-5, atol=1e-6)


def test_the_iwae_objective_is_the_log_mean_importance_weight_written_in_numpy(digits):
    """The IWAE's training objective by hand in float64 (k = 5 samples of each of 64 digits): z_i from the
    same noise, log w_i = log p(x|z_i) + log N(z_i; 0, I) - log N(z_i; mean, var) with every constant, and
    the loss minus the mean of log (1/k) sum_i w_i (float32 sums of 784 terms: 1e-5 relative). Its gradient
    reaches both networks; and by Jensen the bound is above the mean log-weight of the same samples."""
    model = vae.make_vae(hidden=(3,), latent_dim=2)
    params = model.init(jax.random.PRNGKey(8), jnp.zeros((1, 28, 28)))
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    key, k = jax.random.PRNGKey(10), 5
    eps = np.asarray(vae.unit_normals(key, (k, 64), 2), np.float64)
    x = np.asarray(digits, np.float64).reshape(64, -1)
    dense = lambda layer, h: h @ layer["kernel"] + layer["bias"]  # noqa: E731
    h = np.tanh(dense(p["encoder"]["trunk"]["Dense_0"], 2 * x - 1))
    mean, logvar = dense(p["encoder"]["mean"], h), dense(p["encoder"]["logvar"], h)
    z = mean + np.exp(0.5 * logvar) * eps  # [k, b, L]
    dec = p["decoder"]["mlp"]
    logits = dense(dec["Dense_1"], np.tanh(dense(dec["Dense_0"], z)))
    log_px = np.sum(x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits), axis=-1)
    log_normal = lambda v, m, lv: np.sum(-0.5 * (np.log(2 * np.pi) + lv + (v - m) ** 2 / np.exp(lv)), -1)  # noqa: E731
    log_w = log_px + log_normal(z, 0.0, 0.0) - log_normal(z, mean, logvar)
    bound = np.logaddexp.reduce(log_w, axis=0) - np.log(k)
    grey = 2.0 * digits - 1.0  # the training digits' own scale; their binarisation is drawn inside
    loss_and_grads = jax.jit(jax.value_and_grad(lambda q: vae.iwae_loss(model, q, key, digits, grey, k), has_aux=True))
    (loss, aux), grads = loss_and_grads(params)
    np.testing.assert_allclose(-loss, bound.mean(), rtol=1e-5)
    np.testing.assert_allclose(aux["elbo_iw"], bound.mean(), rtol=1e-5)
    assert float(aux["elbo_iw"]) > log_w.mean()
    kl = 0.5 * (np.exp(logvar) + mean**2 - 1 - logvar).sum(-1)  # closed form, [b]
    np.testing.assert_allclose(aux["kl"], kl.mean(), rtol=1e-5)
    np.testing.assert_allclose(aux["elbo"], log_px.mean() - kl.mean(), rtol=1e-5)
    first = 2.0 / (1.0 + np.exp(-logits[0])) - 1.0  # the first sample's Bernoulli means on [-1, 1]
    np.testing.assert_allclose(aux["recon_mse"], np.mean(np.square(first - np.asarray(grey).reshape(64, -1))), rtol=1e-5)
    assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads["params"]))
    via_training = jax.jit(lambda q: vae.training_loss(model, q, jax.random.PRNGKey(11), grey, 1.0, k=k))(params)
    assert set(via_training[1]) == {"recon_mse", "elbo", "kl", "elbo_iw"}


def test_a_wide_model_masked_to_a_narrow_ones_units_gives_its_bounds():
    """A 2-unit VAE zero-padded to 5 units (each head alone) and masked to its 2 draws the same noise
    (`unit_normals`) and gets the same ELBO and IWAE bound: the padded units are the prior and add nothing."""
    x = vae.binarize(jax.random.PRNGKey(0), jax.random.uniform(jax.random.PRNGKey(1), (16, 28, 28)))
    narrow, wide = vae.make_vae(hidden=(8,), latent_dim=2), vae.make_vae(hidden=(8,), latent_dim=5)
    p2 = narrow.init(jax.random.PRNGKey(2), x[:1])
    padded = sweep.pad_to(p2, wide.init(jax.random.PRNGKey(3), x[:1]))  # as a sweep pads a member
    mask = jnp.array([1.0, 1.0, 0.0, 0.0, 0.0])
    key, keys = jax.random.PRNGKey(4), jax.random.split(jax.random.PRNGKey(5), 16)
    wide_loss = vae.training_loss(wide, padded, key, 2.0 * x - 1.0, 2.0, mask, k=1)
    chex.assert_trees_all_close(wide_loss, vae.training_loss(narrow, p2, key, 2.0 * x - 1.0, 2.0, k=1), rtol=1e-6)
    np.testing.assert_allclose(vae.iwae_bound(wide, padded, keys, x, 20, 10, mask),
                               vae.iwae_bound(narrow, p2, keys, x, 20, 10), rtol=1e-6)
