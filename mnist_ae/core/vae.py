"""A variational autoencoder on binary pixels and its bounds on log p(x), in nats (pure functions).

Gaussian posterior q(z|x) = N(mean, exp(logvar)) from an MLP encoder, standard normal prior p(z),
Bernoulli decoder p(x|z) on pixels in {0, 1} (the decoder emits logits). The ELBO is
E_q[log p(x|z)] - beta KL(q || p), the KL in closed form; the importance-weighted bound of Burda,
Grosse & Salakhutdinov (2016) is log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q, which equals the ELBO's
single-sample estimate at k = 1 and tightens towards log p(x) as k grows.

The module answers the plain `Autoencoder`'s methods (`encode`, `decode`, `logits`, `__call__`) with the
posterior mean as the code, so the probe, the maps and the report read it unchanged. Noise is drawn per
latent unit (`unit_normals`) and masked units are the prior and carry z = 0, so a sweep member built at a
wider code draws the same numbers as its single run and its padded weights get no gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_ae.core import losses
from mnist_ae.core.models import MLP, Autoencoder, MLPDecoder, layer_init

ACTIVE_UNIT_VARIANCE = 1e-2  # Burda et al.: a unit is active when Cov_x(E_q[z_u]) exceeds this
TRAIN_STREAM = 0xBE7A  # folded into the run's key for the rounds' binarisations and samples
EVAL_SEED = 123  # the test set's one binarisation and its samples: the same digits for every run and eval


class GaussianEncoder(nn.Module):
    """784-(hidden) trunk and two linear heads, the posterior's mean and log-variance (L each): separate
    kernels, so a sweep's zero-padding widens each head alone."""

    hidden: Sequence[int]
    latent_dim: int
    init_scheme: str = "flax"
    activation: str = "tanh"
    norm: str = "none"

    @nn.compact
    def __call__(self, x_bhw: jax.Array) -> tuple[jax.Array, jax.Array]:
        h_bd = MLP(self.hidden, None, self.init_scheme, self.activation, self.norm, name="trunk")(x_bhw)
        heads = [nn.Dense(self.latent_dim, **layer_init(self.init_scheme, h_bd.shape[-1]), name=name)(h_bd)
                 for name in ("mean", "logvar")]
        return heads[0], heads[1]


class VAE(Autoencoder):
    """An `Autoencoder` with a `GaussianEncoder` and a Bernoulli decoder (`output` "sigmoid": its images are
    the Bernoulli means): its code is the posterior mean, so `encode`, `decode`, `logits` and `__call__`
    serve the probe, the maps and the pictures as the plain autoencoder's do."""

    @property
    def latent_dim(self) -> int:
        return self.encoder.latent_dim

    def posterior(self, x_bhw: jax.Array, mask_l: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """q(z|x)'s mean and log-variance, [b, L] each; masked units are the prior (0, 0)."""
        mean_bl, logvar_bl = self.encoder(x_bhw)
        if mask_l is not None:
            mean_bl, logvar_bl = mean_bl * mask_l, logvar_bl * mask_l
        return mean_bl, logvar_bl

    def pixel_logits(self, z_bl: jax.Array) -> jax.Array:
        """p(x|z)'s Bernoulli logits, [b, 28, 28]."""
        return self.decoder(z_bl)

    def encode(self, x_bhw: jax.Array, mask_l: jax.Array | None = None) -> jax.Array:
        """The code: the posterior mean."""
        return self.posterior(x_bhw, mask_l)[0]


def make_vae(hidden: Sequence[int], latent_dim: int, init: str = "flax", activation: str = "tanh",
             norm: str = "none") -> VAE:
    """784-(hidden)-(L mean, L log-variance) encoder and L-(reversed hidden)-784 Bernoulli decoder."""
    return VAE(GaussianEncoder(tuple(hidden), latent_dim, init, activation, norm),
               MLPDecoder(tuple(hidden), init, activation, norm), output="sigmoid")


def binarize(key: jax.Array, x01_bhw: jax.Array) -> jax.Array:
    """Dynamic binarisation: each pixel is 1 with its grey level's probability, afresh for each key."""
    return jax.random.bernoulli(key, x01_bhw).astype(jnp.float32)


def unit_normals(key: jax.Array, lead: tuple[int, ...], width: int) -> jax.Array:
    """Standard normals [*lead, width], unit u drawn from fold_in(key, u): the first l units are the same
    whatever the width (a sweep member and its single run sample alike)."""
    return jnp.moveaxis(jax.vmap(lambda u: jax.random.normal(jax.random.fold_in(key, u), lead))(jnp.arange(width)), 0, -1)


def bernoulli_log_likelihood(logits_bhw: jax.Array, x_bhw: jax.Array) -> jax.Array:
    """log p(x|z) summed over pixels, [b]: x log sigmoid(l) + (1 - x) log sigmoid(-l), stably."""
    per_pixel = x_bhw * jax.nn.log_sigmoid(logits_bhw) + (1 - x_bhw) * jax.nn.log_sigmoid(-logits_bhw)
    return per_pixel.reshape(per_pixel.shape[0], -1).sum(-1)


def kl_per_unit(mean_bl: jax.Array, logvar_bl: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent unit, [b, L], in closed form."""
    return 0.5 * (jnp.exp(logvar_bl) + jnp.square(mean_bl) - 1.0 - logvar_bl)


def log_prior_over_posterior(z_bl: jax.Array, mean_bl: jax.Array, logvar_bl: jax.Array) -> jax.Array:
    """log p(z) - log q(z|x) summed over units, [b]; per unit the 2 pi terms cancel, so a masked unit
    (z = mean = logvar = 0) adds exactly 0."""
    per_unit = 0.5 * (logvar_bl + jnp.square(z_bl - mean_bl) * jnp.exp(-logvar_bl) - jnp.square(z_bl))
    return per_unit.sum(-1)


def sample(mean_bl: jax.Array, logvar_bl: jax.Array, eps_bl: jax.Array, mask_l: jax.Array | None) -> jax.Array:
    """The reparameterised z; masked units are 0, not prior noise (their decoder weights get no gradient)."""
    z_bl = mean_bl + jnp.exp(0.5 * logvar_bl) * eps_bl
    return z_bl if mask_l is None else z_bl * mask_l


def _posterior(model: VAE, params: dict, x_bhw: jax.Array, mask_l: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """q(z|x) of binary pixels, which the encoder reads on the [-1, 1] scale every model's encoder reads."""
    return model.apply(params, 2.0 * x_bhw - 1.0, mask_l, method="posterior")


def elbo_terms(model: VAE, params: dict, eps_bl: jax.Array, x_bhw: jax.Array,
               mask_l: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Of binary pixels `x_bhw`: one reparameterised sample (noise `eps_bl`)'s log p(x|z) [b], the
    closed-form KL per unit [b, L] and the logits [b, 28, 28]."""
    mean_bl, logvar_bl = _posterior(model, params, x_bhw, mask_l)
    logits_bhw = model.apply(params, sample(mean_bl, logvar_bl, eps_bl, mask_l), method="pixel_logits")
    return bernoulli_log_likelihood(logits_bhw, x_bhw), kl_per_unit(mean_bl, logvar_bl), logits_bhw


def iwae_bound(model: VAE, params: dict, keys_b: jax.Array, x_bhw: jax.Array, k: int, chunk: int = 100,
               mask_l: jax.Array | None = None) -> jax.Array:
    """log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x) per image, [b]. Image j's samples come from its own key
    `keys_b[j]` (so a set's bounds do not depend on how it is chunked), `chunk` samples at a time (memory
    b x chunk x 784), accumulated by a running log-sum-exp."""
    mean_bl, logvar_bl = _posterior(model, params, x_bhw, mask_l)
    chunks, rest = divmod(k, chunk)
    if rest:
        raise ValueError(f"iwae_bound: k={k} must be a multiple of chunk={chunk}")

    def log_weights(c: jax.Array) -> jax.Array:  # [chunk, b]
        eps_bcl = jax.vmap(lambda key: unit_normals(jax.random.fold_in(key, c), (chunk,), model.latent_dim))(keys_b)

        def one(eps_bl: jax.Array) -> jax.Array:
            z_bl = sample(mean_bl, logvar_bl, eps_bl, mask_l)
            log_px = bernoulli_log_likelihood(model.apply(params, z_bl, method="pixel_logits"), x_bhw)
            return log_px + log_prior_over_posterior(z_bl, mean_bl, logvar_bl)

        return jax.lax.map(one, jnp.moveaxis(eps_bcl, 1, 0))

    def body(total_b: jax.Array, c: jax.Array) -> tuple[jax.Array, None]:
        return jnp.logaddexp(total_b, jax.nn.logsumexp(log_weights(c), axis=0)), None

    total_b, _ = jax.lax.scan(body, jnp.full(x_bhw.shape[0], -jnp.inf), jnp.arange(chunks))
    return total_b - jnp.log(k)


def active_units(mean_nl: jax.Array, threshold: float = ACTIVE_UNIT_VARIANCE) -> jax.Array:
    """How many units' posterior means vary over the data by more than `threshold` (Burda et al.'s count)."""
    return jnp.sum(jnp.var(mean_nl, axis=0) > threshold)


def round_key(rng: jax.Array, step: jax.Array) -> jax.Array:
    """A training round's key for its binarisations and samples: a function of the run's key and the
    round only, so a resumed run draws what it would have drawn."""
    return jax.random.fold_in(jax.random.fold_in(rng, TRAIN_STREAM), step)


def training_loss(model: VAE, params: dict, key: jax.Array, x_bhw: jax.Array, beta: float | jax.Array,
                  mask_l: jax.Array | None = None, *, k: int) -> tuple[jax.Array, dict[str, jax.Array]]:
    """A batch of grey digits in [-1, 1], binarised afresh: the mean of beta KL - log p(x|z), and the batch's
    ELBO (at beta 1), KL and the reconstruction's squared error against the grey digits (per pixel, [-1, 1]).
    With k > 1 the IWAE's objective instead (`iwae_loss`; beta is 1 there, the config refuses another)."""
    k_bin, k_eps = jax.random.split(key)
    x01_bhw = binarize(k_bin, (x_bhw + 1.0) / 2.0)
    if k > 1:
        return iwae_loss(model, params, k_eps, x01_bhw, x_bhw, k, mask_l)
    log_px_b, kl_bl, logits_bhw = elbo_terms(model, params, unit_normals(k_eps, x_bhw.shape[:1], model.latent_dim),
                                             x01_bhw, mask_l)
    kl_b = kl_bl.sum(-1)
    recon_mse = losses.mse(losses.to_image(logits_bhw, model.output), x_bhw)
    return jnp.mean(beta * kl_b - log_px_b), {"recon_mse": recon_mse, "elbo": jnp.mean(log_px_b - kl_b),
                                              "kl": jnp.mean(kl_b)}


def iwae_loss(model: VAE, params: dict, key: jax.Array, x01_bhw: jax.Array, x_bhw: jax.Array, k: int,
              mask_l: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The IWAE's objective (Burda et al. 2016): minus the batch's mean k-sample bound
    log (1/k) sum_i p(x, z_i) / q(z_i|x), the encoder run once and the decoder on all k samples (noise
    `unit_normals(key, (k, b))`). Its gradient weighs each sample by its normalised weight, so the
    posterior is not pushed to cover the prior as the ELBO's is. Reported beside it: the bound (elbo_iw),
    the closed-form ELBO and KL over the same samples, and the first sample's squared error ([-1, 1])."""
    b, width = x01_bhw.shape[0], model.latent_dim
    mean_bl, logvar_bl = _posterior(model, params, x01_bhw, mask_l)
    z_kbl = sample(mean_bl, logvar_bl, unit_normals(key, (k, b), width), mask_l)
    logits_kbhw = model.apply(params, z_kbl.reshape(k * b, width), method="pixel_logits").reshape(k, *x01_bhw.shape)
    log_px_kb = jax.vmap(bernoulli_log_likelihood, in_axes=(0, None))(logits_kbhw, x01_bhw)
    bound_b = jax.nn.logsumexp(log_px_kb + log_prior_over_posterior(z_kbl, mean_bl, logvar_bl), axis=0) - jnp.log(k)
    kl_b = kl_per_unit(mean_bl, logvar_bl).sum(-1)
    recon_mse = losses.mse(losses.to_image(logits_kbhw[0], model.output), x_bhw)
    return -jnp.mean(bound_b), {"recon_mse": recon_mse, "elbo": jnp.mean(log_px_kb) - jnp.mean(kl_b),
                                "kl": jnp.mean(kl_b), "elbo_iw": jnp.mean(bound_b)}


def eval_draws(x_u8_nhw: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The test set's fixed binarisation and one sampling key per digit, each a function of the digit's index
    alone (EVAL_SEED): the same for any chunking and any test_limit."""
    k_bin, k_eps = jax.random.split(jax.random.PRNGKey(EVAL_SEED))
    index_n = jnp.arange(x_u8_nhw.shape[0])
    x01_nhw = jax.vmap(lambda i, x: binarize(jax.random.fold_in(k_bin, i), x))(index_n, x_u8_nhw / 255.0)
    return x01_nhw, jax.vmap(lambda i: jax.random.fold_in(k_eps, i))(index_n)


def eval_sums(model: VAE, params: dict, x01_bhw: jax.Array, keys_b: jax.Array, w_b: jax.Array,
              iw_samples: int, mask_l: jax.Array | None = None) -> dict[str, jax.Array]:
    """A chunk's weighted sums of what `eval_metrics` reports (rows with weight 0 are padding)."""
    eps_bl = jax.vmap(lambda key: unit_normals(key, (), model.latent_dim))(keys_b)
    log_px_b, kl_bl, _ = elbo_terms(model, params, eps_bl, x01_bhw, mask_l)
    mean_bl, _ = _posterior(model, params, x01_bhw, mask_l)
    sums = {"elbo": jnp.sum(w_b * (log_px_b - kl_bl.sum(-1))), "kl_l": w_b @ kl_bl,
            "mean_l": w_b @ mean_bl, "mean2_l": w_b @ jnp.square(mean_bl)}
    if iw_samples:
        sums["iw"] = jnp.sum(w_b * iwae_bound(model, params, keys_b, x01_bhw, iw_samples, iw_chunk(iw_samples), mask_l))
    return sums


def iw_chunk(k: int) -> int:
    """Samples per step of the bound: the largest divisor of k up to 10 (a 1,000-digit chunk's 10 samples
    are 31 MB of logits)."""
    return max(c for c in range(1, 11) if k % c == 0)


def eval_metrics(sums: dict[str, jax.Array], n: int, iw_samples: int) -> dict[str, jax.Array]:
    """Test-set numbers in nats per digit: the ELBO, the KL (total and per unit), the active units (posterior
    means' variance over the set above 1e-2) and, with `iw_samples`, -log p(x)'s importance-weighted bound."""
    variance_l = sums["mean2_l"] / n - jnp.square(sums["mean_l"] / n)
    metrics = {"test/elbo": sums["elbo"] / n, "test/kl": jnp.sum(sums["kl_l"]) / n, "test/kl_per_unit": sums["kl_l"] / n,
               "test/active_units": jnp.sum(variance_l > ACTIVE_UNIT_VARIANCE)}
    if iw_samples:
        metrics[f"test/nll_iw{iw_samples}"] = -sums["iw"] / n
    return metrics
