"""How well codes separate classes and how faithful a 2-D map of them is, as pure jnp functions.

The same numbers scikit-learn gives (5-NN accuracy, a standardized L2 logistic regression,
silhouette, trustworthiness), computed on the device: jittable and vmappable, so a sweep's members
([M, N, L], narrower members zero-padded: zero columns change no distance, variance or fit) are
scored in one call. Pairwise distances are taken block by block of BLOCK rows, so memory stays
O(BLOCK x N) whatever N is. Distances come from |a|^2 + |b|^2 - 2ab on data centred first (less
float32 cancellation); a point is never its own neighbour.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mnist_ae.core.pca import pca

BLOCK = 500  # rows of a pairwise-distance block
LOGREG_STEPS = 100  # L-BFGS iterations: converged on 10k x 784 pixels (gradient norm < 1e-4)


def _sq_dists(a_bl: jax.Array, b_nl: jax.Array) -> jax.Array:
    """Squared Euclidean distances [B, N], clipped at 0 (rounding can make them slightly negative)."""
    cross_bn = a_bl @ b_nl.T
    return jnp.maximum(jnp.sum(a_bl**2, 1)[:, None] + jnp.sum(b_nl**2, 1)[None, :] - 2 * cross_bn, 0.0)


def _by_blocks(fn, n: int, block: int = BLOCK) -> jax.Array:
    """fn(rows_b) for rows 0..n-1 in blocks of `block` (the last one padded with row 0), concatenated."""
    blocks = -(-n // block)
    rows_kb = jnp.arange(blocks * block).reshape(blocks, block)
    out = jax.lax.map(lambda rows_b: fn(jnp.where(rows_b < n, rows_b, 0)), rows_kb)
    return out.reshape(blocks * block, *out.shape[2:])[:n]


def knn_accuracy(train_nl: jax.Array, train_y_n: jax.Array, test_ml: jax.Array, test_y_m: jax.Array,
                 num_classes: int, k: int = 5) -> jax.Array:
    """Share of test points whose k nearest training points vote their label (ties: the lowest label,
    as scikit-learn's KNeighborsClassifier)."""
    mean_l = jnp.mean(train_nl, 0)
    train_nl, test_ml = train_nl - mean_l, test_ml - mean_l

    def predict(rows_b: jax.Array) -> jax.Array:
        _, nearest_bk = jax.lax.top_k(-_sq_dists(test_ml[rows_b], train_nl), k)
        return jnp.argmax(jax.nn.one_hot(train_y_n[nearest_bk], num_classes).sum(1), -1)

    return jnp.mean(_by_blocks(predict, test_ml.shape[0]) == test_y_m)


def silhouette(x_nl: jax.Array, y_n: jax.Array, num_classes: int) -> jax.Array:
    """Mean silhouette over all points by label (Euclidean); a point alone in its class scores 0."""
    x_nl = x_nl - jnp.mean(x_nl, 0)
    n = x_nl.shape[0]
    onehot_nc = jax.nn.one_hot(y_n, num_classes, dtype=x_nl.dtype)
    counts_c = onehot_nc.sum(0)

    def scores(rows_b: jax.Array) -> jax.Array:
        dist_bn = jnp.sqrt(_sq_dists(x_nl[rows_b], x_nl))
        dist_bn = jnp.where(jnp.arange(n)[None, :] == rows_b[:, None], 0.0, dist_bn)
        sums_bc = dist_bn @ onehot_nc
        own_b = y_n[rows_b]
        own_count_b = counts_c[own_b]
        a_b = jnp.take_along_axis(sums_bc, own_b[:, None], 1)[:, 0] / jnp.maximum(own_count_b - 1, 1)
        other_bc = jnp.where((jnp.arange(num_classes)[None, :] == own_b[:, None]) | (counts_c[None, :] == 0),
                             jnp.inf, sums_bc / jnp.maximum(counts_c, 1)[None, :])
        b_b = other_bc.min(1)
        s_b = (b_b - a_b) / jnp.maximum(jnp.maximum(a_b, b_b), jnp.finfo(x_nl.dtype).tiny)
        return jnp.where(own_count_b > 1, s_b, 0.0)

    return jnp.mean(_by_blocks(scores, n))


def _diff_sq_dists(a_bl: jax.Array, b_nl: jax.Array) -> jax.Array:
    """Squared distances [B, N] from differences: exact ranks even for near-equal distances (the
    expanded form's float32 rounding reorders them, e.g. the two neighbours either side on a 1-unit code)."""
    return jnp.sum(jnp.square(a_bl[:, None] - b_nl[None]), -1)


def trustworthiness(x_nl: jax.Array, map_nd: jax.Array, k: int = 5) -> jax.Array:
    """How far the map's k nearest neighbours of each point are, in rank, beyond its k nearest in the
    codes: 1 - 2 / (n k (2n - 3k - 1)) * sum max(0, rank - k) (Venna and Kaski; scikit-learn's formula)."""
    x_nl, map_nd = jnp.asarray(x_nl), jnp.asarray(map_nd)
    n, l = x_nl.shape
    block = max(1, min(BLOCK, 2**24 // (n * l)))  # a [block, n, l] difference tensor of at most 64 MB

    def penalties(rows_b: jax.Array) -> jax.Array:
        self_bn = jnp.arange(n)[None, :] == rows_b[:, None]
        _, near_bk = jax.lax.top_k(-jnp.where(self_bn, jnp.inf, _diff_sq_dists(map_nd[rows_b], map_nd)), k)
        codes_bn = jnp.where(self_bn, jnp.inf, _diff_sq_dists(x_nl[rows_b], x_nl))
        near_dist_bk = jnp.take_along_axis(codes_bn, near_bk, 1)
        # 1 = nearest; equal distances ranked by index (a stable sort's order)
        closer_bkn = (codes_bn[:, None, :] < near_dist_bk[:, :, None]) | (
            (codes_bn[:, None, :] == near_dist_bk[:, :, None]) & (jnp.arange(n) < near_bk[:, :, None]))
        return jnp.sum(jnp.maximum(jnp.sum(closer_bkn, -1) + 1 - k, 0), 1)

    total = jnp.sum(_by_blocks(penalties, n, block).astype(jnp.float32))
    return 1.0 - 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)) * total


def logreg_accuracy(train_nl: jax.Array, train_y_n: jax.Array, test_ml: jax.Array, test_y_m: jax.Array,
                    num_classes: int, steps: int = LOGREG_STEPS) -> jax.Array:
    """Held-out accuracy of a multinomial logistic regression on standardized features, fitted by
    L-BFGS to scikit-learn's objective (C = 1: summed cross-entropy + ||W||^2 / 2, bias unpenalised).
    Constant features are left unscaled (they get zero weight)."""
    mean_l, std_l = jnp.mean(train_nl, 0), jnp.std(train_nl, 0)
    scale_l = jnp.where(std_l > 0, std_l, 1.0)
    train_nl, test_ml = (train_nl - mean_l) / scale_l, (test_ml - mean_l) / scale_l
    targets_nc = jax.nn.one_hot(train_y_n, num_classes)
    n = train_nl.shape[0]

    def loss(params: tuple[jax.Array, jax.Array]) -> jax.Array:  # divided by n: the same minimiser
        w_lc, b_c = params
        logits_nc = train_nl @ w_lc + b_c
        return jnp.mean(optax.softmax_cross_entropy(logits_nc, targets_nc)) + 0.5 / n * jnp.sum(w_lc**2)

    optimizer = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def step(carry, _):
        params, opt_state = carry
        value, grad = value_and_grad(params, state=opt_state)
        updates, opt_state = optimizer.update(grad, opt_state, params, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(params, updates), opt_state), None

    params = (jnp.zeros((train_nl.shape[1], num_classes), train_nl.dtype), jnp.zeros(num_classes, train_nl.dtype))
    ((w_lc, b_c), _), _ = jax.lax.scan(step, (params, optimizer.init(params)), length=steps)
    return jnp.mean(jnp.argmax(test_ml @ w_lc + b_c, -1) == test_y_m)


def scores(x_nl: jax.Array, y_n: jax.Array, train_t: jax.Array, test_s: jax.Array, silhouette_p: jax.Array,
           num_classes: int) -> dict[str, jax.Array]:
    """The map-free numbers of one set of codes: 5-NN and logistic-regression accuracy (fit on rows
    `train_t`, scored on `test_s`), silhouette on rows `silhouette_p`, cumulative PCA variance of 2 and 3
    axes. vmap it over members' codes [M, N, L] (in_axes=(0, None, None, None, None, None))."""
    ratio_k = pca(x_nl, min(3, *x_nl.shape)).explained_variance_ratio
    cumulative_k = jnp.cumsum(jnp.pad(ratio_k, (0, 3 - ratio_k.shape[0])))  # a 1- or 2-unit code: the rest is 0
    return {
        "knn5_accuracy": knn_accuracy(x_nl[train_t], y_n[train_t], x_nl[test_s], y_n[test_s], num_classes),
        "logreg_accuracy": logreg_accuracy(x_nl[train_t], y_n[train_t], x_nl[test_s], y_n[test_s], num_classes),
        "silhouette": silhouette(x_nl[silhouette_p], y_n[silhouette_p], num_classes),
        "pca_explained_variance_2": cumulative_k[1],
        "pca_explained_variance_3": cumulative_k[2],
    }
