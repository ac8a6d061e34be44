"""A variational autoencoder on binary pixels and its bounds on log p(x), in nats (pure functions).

Gaussian posterior q(z|x) = N(mean, exp(logvar)) from an MLP encoder, standard normal prior p(z),
Bernoulli decoder p(x|z) on pixels in {0, 1} (the decoder emits logits). The ELBO is
E_q[log p(x|z)] - beta KL(q || p), the KL in closed form; the importance-weighted bound of Burda,
Grosse & Salakhutdinov (2016) is log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q, which equals the ELBO's
single-sample estimate at k = 1 and tightens towards log p(x) as k grows. Codes for the probe, the
maps and the report are the posterior means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnist_ae.core.models import MLP, MLPDecoder

LOG_2PI = math.log(2 * math.pi)
ACTIVE_UNIT_VARIANCE = 1e-2  # Burda et al.: a unit is active when Cov_x(E_q[z_u]) exceeds this


class VAE(nn.Module):
    """784-(hidden)-2L Gaussian encoder and L-(reversed hidden)-784 Bernoulli decoder."""

    hidden: Sequence[int]
    latent_dim: int
    init_scheme: str = "flax"
    activation: str = "tanh"

    def setup(self) -> None:
        self.encoder = MLP(self.hidden, 2 * self.latent_dim, self.init_scheme, self.activation)
        self.decoder = MLPDecoder(self.hidden, self.init_scheme, self.activation)

    def posterior(self, x_bhw: jax.Array) -> tuple[jax.Array, jax.Array]:
        """q(z|x)'s mean and log-variance, [b, L] each."""
        mean_bl, logvar_bl = jnp.split(self.encoder(x_bhw), 2, axis=-1)
        return mean_bl, logvar_bl

    def pixel_logits(self, z_bl: jax.Array) -> jax.Array:
        """p(x|z)'s Bernoulli logits, [b, 28, 28]."""
        return self.decoder(z_bl)

    def __call__(self, x_bhw: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Posterior and the logits at its mean (what `init` traces: every parameter is used)."""
        mean_bl, logvar_bl = self.posterior(x_bhw)
        return mean_bl, logvar_bl, self.pixel_logits(mean_bl)


def binarize(key: jax.Array, x01_bhw: jax.Array) -> jax.Array:
    """Dynamic binarisation: each pixel is 1 with its grey level's probability, afresh for each key."""
    return jax.random.bernoulli(key, x01_bhw).astype(jnp.float32)


def bernoulli_log_likelihood(logits_bhw: jax.Array, x_bhw: jax.Array) -> jax.Array:
    """log p(x|z) summed over pixels, [b]: x log sigmoid(l) + (1 - x) log sigmoid(-l), stably."""
    per_pixel = x_bhw * jax.nn.log_sigmoid(logits_bhw) + (1 - x_bhw) * jax.nn.log_sigmoid(-logits_bhw)
    return per_pixel.reshape(per_pixel.shape[0], -1).sum(-1)


def kl_per_unit(mean_bl: jax.Array, logvar_bl: jax.Array) -> jax.Array:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent unit, [b, L], in closed form."""
    return 0.5 * (jnp.exp(logvar_bl) + jnp.square(mean_bl) - 1.0 - logvar_bl)


def gaussian_log_density(z_bl: jax.Array, mean_bl: jax.Array, logvar_bl: jax.Array) -> jax.Array:
    """log N(z; mean, exp(logvar)) summed over units, [b]."""
    return -0.5 * jnp.sum(LOG_2PI + logvar_bl + jnp.square(z_bl - mean_bl) * jnp.exp(-logvar_bl), axis=-1)


def elbo_terms(model: VAE, params: dict, key: jax.Array, x_bhw: jax.Array,
               mask_l: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """One reparameterised sample's log p(x|z) and the closed-form KL per unit, [b] and [b, L]. With
    `mask_l`, masked units are the prior (mean 0, logvar 0): they cost no KL and carry nothing."""
    mean_bl, logvar_bl = model.apply(params, x_bhw, method=VAE.posterior)
    if mask_l is not None:
        mean_bl, logvar_bl = mean_bl * mask_l, logvar_bl * mask_l
    z_bl = mean_bl + jnp.exp(0.5 * logvar_bl) * jax.random.normal(key, mean_bl.shape)
    logits_bhw = model.apply(params, z_bl, method=VAE.pixel_logits)
    return bernoulli_log_likelihood(logits_bhw, x_bhw), kl_per_unit(mean_bl, logvar_bl)


def elbo_loss(model: VAE, params: dict, key: jax.Array, x_bhw: jax.Array, beta: float | jax.Array = 1.0,
              mask_l: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """The batch's mean of -(log p(x|z) - beta KL) (what training minimises) and its mean -ELBO at beta 1."""
    log_px_b, kl_bl = elbo_terms(model, params, key, x_bhw, mask_l)
    kl_b = kl_bl.sum(-1)
    return jnp.mean(beta * kl_b - log_px_b), jnp.mean(kl_b - log_px_b)


def iwae_bound(model: VAE, params: dict, key: jax.Array, x_bhw: jax.Array, k: int, chunk: int = 100) -> jax.Array:
    """log (1/k) sum_i p(x|z_i) p(z_i) / q(z_i|x) per image, [b]: k samples in chunks of `chunk` (memory
    b x chunk x 784), accumulated by a running log-sum-exp."""
    mean_bl, logvar_bl = model.apply(params, x_bhw, method=VAE.posterior)
    chunks, rest = divmod(k, chunk)
    if rest:
        raise ValueError(f"iwae_bound: k={k} must be a multiple of chunk={chunk}")

    def log_weights(chunk_key: jax.Array) -> jax.Array:  # [chunk, b]
        eps_cbl = jax.random.normal(chunk_key, (chunk, *mean_bl.shape))
        z_cbl = mean_bl + jnp.exp(0.5 * logvar_bl) * eps_cbl

        def one(z_bl: jax.Array) -> jax.Array:
            log_px = bernoulli_log_likelihood(model.apply(params, z_bl, method=VAE.pixel_logits), x_bhw)
            log_pz = gaussian_log_density(z_bl, jnp.zeros_like(z_bl), jnp.zeros_like(z_bl))
            return log_px + log_pz - gaussian_log_density(z_bl, mean_bl, logvar_bl)

        return jax.lax.map(one, z_cbl)

    def body(total_b: jax.Array, chunk_key: jax.Array) -> tuple[jax.Array, None]:
        return jnp.logaddexp(total_b, jax.nn.logsumexp(log_weights(chunk_key), axis=0)), None

    total_b, _ = jax.lax.scan(body, jnp.full(x_bhw.shape[0], -jnp.inf), jax.random.split(key, chunks))
    return total_b - jnp.log(k)


def active_units(mean_nl: jax.Array, threshold: float = ACTIVE_UNIT_VARIANCE) -> jax.Array:
    """How many units' posterior means vary over the data by more than `threshold` (Burda et al.'s count)."""
    return jnp.sum(jnp.var(mean_nl, axis=0) > threshold)
