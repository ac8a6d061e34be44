"""Exact t-SNE as a pure JAX function: jittable, and mapped over sweep members in one call.

Every pair of points at every iteration (O(N^2) time and memory), so it is for maps of a few
thousand points (`analysis.embed` uses it up to EXACT_MAX_POINTS and openTSNE's FFT above): there
it beats the Barnes-Hut tree on the CPU, needs no host round trip per member, and approximates no
force. The method is scikit-learn's (van der Maaten's): each point's Gaussian bandwidth found by
bisection at the given perplexity over its 3 x perplexity + 1 nearest neighbours, the affinities
symmetrised; KL gradient descent with early exaggeration 12 and momentum 0.5 for the first 250
iterations (by default), then momentum 0.8; per-coordinate gains; learning rate max(N / 12 / 4, 50); the PCA
projection scaled to a standard deviation of 1e-4 along its first axis as the start.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mnist_ae.core.pca import pca

EXAGGERATION, EXAGGERATION_ITERS = 12.0, 250
BISECTION_STEPS = 64  # on log(precision) over [1e-20, 1e20]: far below float32 resolution at the end


def _conditional(d2_k: jax.Array, perplexity: float) -> jax.Array:
    """P(j | i) over one point's neighbours at squared distances `d2_k`, with the Gaussian's precision
    set by bisection so that the distribution's entropy is log(perplexity)."""
    d2_k = d2_k - d2_k.min()  # the same distribution, without underflow when distances are large

    def entropy_and_p(beta: jax.Array) -> tuple[jax.Array, jax.Array]:
        w_k = jnp.exp(-d2_k * beta)
        total = w_k.sum()
        p_k = w_k / total
        return jnp.log(total) + beta * jnp.sum(d2_k * p_k), p_k

    def halve(_: int, bounds: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        lo, hi = bounds
        mid = jnp.sqrt(lo * hi)
        too_flat = entropy_and_p(mid)[0] > jnp.log(perplexity)  # entropy falls as the precision rises
        return jnp.where(too_flat, mid, lo), jnp.where(too_flat, hi, mid)

    lo, hi = jax.lax.fori_loop(0, BISECTION_STEPS, halve, (jnp.float32(1e-20), jnp.float32(1e20)))
    return entropy_and_p(jnp.sqrt(lo * hi))[1]


def affinities(x_nl: jax.Array, perplexity: float) -> jax.Array:
    """The symmetric joint probabilities P [N, N] (zero diagonal, summing to 1) of the points `x_nl`."""
    n = x_nl.shape[0]
    k = min(n - 1, int(3.0 * perplexity + 1))
    sq_n = jnp.sum(jnp.square(x_nl), axis=1)
    d2_nn = jnp.maximum(sq_n[:, None] + sq_n[None, :] - 2.0 * x_nl @ x_nl.T, 0.0)
    d2_nn = jnp.where(jnp.eye(n, dtype=bool), jnp.inf, d2_nn)
    neg_d2_nk, idx_nk = jax.lax.top_k(-d2_nn, k)
    p_nk = jax.vmap(_conditional, (0, None))(-neg_d2_nk, perplexity)
    p_nn = jnp.zeros((n, n), x_nl.dtype).at[jnp.arange(n)[:, None], idx_nk].set(p_nk)
    return (p_nn + p_nn.T) / (2.0 * n)


def kl_gradient(p_nn: jax.Array, y_nd: jax.Array, exaggeration: jax.Array | float) -> jax.Array:
    """d KL(exaggeration * P || Q) / d y for the Student-t map affinities Q of `y_nd` [N, d]."""
    n, dims = y_nd.shape
    d2_nn = sum(jnp.square(y_nd[:, None, c] - y_nd[None, :, c]) for c in range(dims))  # no cancellation
    num_nn = jnp.where(jnp.eye(n, dtype=bool), 0.0, 1.0 / (1.0 + d2_nn))
    w_nn = (exaggeration * p_nn - num_nn / num_nn.sum()) * num_nn
    return 4.0 * (w_nn.sum(axis=1, keepdims=True) * y_nd - w_nn @ y_nd)  # sum_j w_ij (y_i - y_j)


def learning_rate(n: int) -> float:
    """scikit-learn's "auto" rate for N points (Belkina et al. 2019): N / exaggeration / 4, at least 50."""
    return max(n / EXAGGERATION / 4.0, 50.0)


def tsne(x_nl: jax.Array, key: jax.Array, *, dims: int = 2, perplexity: float = 30.0,
         n_iter: int = 500, exaggeration_iters: int = EXAGGERATION_ITERS) -> jax.Array:
    """The t-SNE map [N, dims] of `x_nl` [N, L]; `n_iter` counts the first `exaggeration_iters` (the
    early-exaggeration phase) too. `dims`, `perplexity`, `n_iter` and `exaggeration_iters` are static under jit.

    Starts from PCA when the points have at least `dims` features that vary, else from a random
    layout of the same scale (`key`; e.g. 1-unit codes, or a member's unused units zeroed).
    """
    n = x_nl.shape[0]
    x_nl = x_nl.astype(jnp.float32)
    p_nn = affinities(x_nl, min(perplexity, (n - 1) / 3.0))
    start_nd = pca(x_nl, min(dims, *x_nl.shape)).projected
    start_nd = jnp.pad(start_nd, ((0, 0), (0, dims - start_nd.shape[1])))
    varies = jnp.all(jnp.std(start_nd, axis=0) > 1e-12)
    start_nd = jnp.where(varies, start_nd, jax.random.normal(key, (n, dims)))
    y_nd = start_nd / jnp.std(start_nd[:, 0]) * 1e-4
    rate = learning_rate(n)

    def step(carry: tuple[jax.Array, ...], i: jax.Array) -> tuple[tuple[jax.Array, ...], None]:
        y_nd, update_nd, gains_nd = carry
        early = i < exaggeration_iters
        grad_nd = kl_gradient(p_nn, y_nd, jnp.where(early, EXAGGERATION, 1.0))
        gains_nd = jnp.maximum(jnp.where(update_nd * grad_nd < 0.0, gains_nd + 0.2, gains_nd * 0.8), 0.01)
        update_nd = jnp.where(early, 0.5, 0.8) * update_nd - rate * gains_nd * grad_nd
        return (y_nd + update_nd, update_nd, gains_nd), None

    zeros_nd = jnp.zeros_like(y_nd)
    (y_nd, _, _), _ = jax.lax.scan(step, (y_nd, zeros_nd, jnp.ones_like(y_nd)), jnp.arange(n_iter))
    return y_nd
