"""How good an embedding is: class separation, map faithfulness, per-dimension health, outliers.

The quality numbers are computed on the device (`core.code_quality`, vmapped over a sweep's
members); the rest is numpy on host arrays. The O(n^2) numbers run on fixed, seeded subsamples (see
`embed.subsample_index`): trustworthiness on TRUST_POINTS points, silhouette on SILHOUETTE_POINTS.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from mnist_ae.analysis.embed import subsample_index
from mnist_ae.core import code_quality

# One compile per shape; members on the leading axis, everything else shared.
_scores = jax.jit(jax.vmap(code_quality.scores, in_axes=(0, None, None, None, None, None)), static_argnums=5)
_trustworthiness = jax.jit(jax.vmap(code_quality.trustworthiness))

TRUST_POINTS = 3000
SILHOUETTE_POINTS = 5000
TEST_FRACTION = 0.2
NEAR_ZERO_REL = 1e-3  # |x| <= NEAR_ZERO_REL * RMS(all codes) counts as "near zero"
DEAD_STD = 1e-6
DEAD_NEAR_ZERO_SHARE = 0.99
OUTLIER_POINTS = 25


def dimension_stats(codes: np.ndarray) -> list[dict[str, float | int | bool]]:
    """Per code dim: dim, mean, std, min, max, near_zero share, dead flag.

    "Near zero" is |x| <= NEAR_ZERO_REL times the RMS of all codes, so the threshold follows
    the code scale (tanh codes ~1, unbounded codes ~10s) instead of a fixed 1e-3. A dim is
    dead if its std < DEAD_STD or more than DEAD_NEAR_ZERO_SHARE of its values are near zero
    (e.g. a ReLU unit that never fires).
    """
    x_nl = np.asarray(codes, dtype=np.float64)
    tol = NEAR_ZERO_REL * np.sqrt(np.mean(np.square(x_nl)))
    std_l = x_nl.std(axis=0)
    near_zero_l = np.mean(np.abs(x_nl) <= tol, axis=0)
    dead_l = (std_l < DEAD_STD) | (near_zero_l > DEAD_NEAR_ZERO_SHARE)
    columns = zip(x_nl.mean(axis=0), std_l, x_nl.min(axis=0), x_nl.max(axis=0), near_zero_l, dead_l)
    return [
        {"dim": d, "mean": float(mean), "std": float(std), "min": float(lo), "max": float(hi),
         "near_zero": float(near), "dead": bool(dead)}
        for d, (mean, std, lo, hi, near, dead) in enumerate(columns)
    ]


def _split(labels_n: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, test) of the stratified, seeded (1 - TEST_FRACTION) / TEST_FRACTION split.

    Stratified whenever sklearn can (>= 2 per class, a test slot per class): tiny slices can't.
    """
    # Imported here: scikit-learn takes 2 s to import, and the report (which imports this module for
    # its tables) runs in every job, with or without the analysis.
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    class_counts = np.unique(labels_n, return_counts=True)[1]
    can_stratify = class_counts.min() >= 2 and len(labels_n) * TEST_FRACTION >= len(class_counts)
    return train_test_split(np.arange(len(labels_n)), test_size=TEST_FRACTION, random_state=seed,
                            stratify=labels_n if can_stratify else None)


def quality_numbers(
    codes: np.ndarray,
    labels: np.ndarray,
    *,
    tsne_2d: np.ndarray | None,
    probe_accuracy: float | None,
    seed: int = 0,
    tsne_index: np.ndarray | None = None,
) -> dict[str, float]:
    """How well an embedding [N, L] separates classes and how faithful its t-SNE is: `member_quality`
    of one member."""
    return member_quality(np.asarray(codes)[None], labels, maps_mn2=None if tsne_2d is None else tsne_2d[None],
                          probe_accuracies=[probe_accuracy], seed=seed, tsne_index=tsne_index)[0]


def member_quality(
    codes_mnl: np.ndarray,
    labels: np.ndarray,
    *,
    maps_mn2: np.ndarray | None,
    probe_accuracies: Sequence[float | None],
    seed: int = 0,
    tsne_index: np.ndarray | None = None,
    widths: Sequence[int] | None = None,
) -> list[dict[str, float]]:
    """The quality numbers of M members' codes [M, N, L] at once, on the device (`core.code_quality`,
    vmapped over members; measured 2-25x faster than scikit-learn's, same numbers: benchmarks/analysis_timing.py).

    knn5_accuracy / logreg_accuracy: fit on a stratified, seeded 80% split of the given points,
    scored on the other 20% (the test set is all we embed; a fixed split keeps numbers comparable
    across runs). kNN works on the raw code geometry; the logistic regression (scikit-learn's C=1
    objective) standardizes first and is fitted to convergence. silhouette: by label, on
    SILHOUETTE_POINTS seeded points. trustworthiness: of each member's map `maps_mn2` [M, P, 2]
    w.r.t. its codes (n_neighbors=5) on TRUST_POINTS seeded points; the maps embed the rows
    `tsne_index` of the codes (default: all rows). pca_explained_variance_2/_3: cumulative.
    dead_dims: see dimension_stats, over each member's first `widths[m]` units (default: all; a
    sweep pads narrower members with zeros). Keys whose input is None (trustworthiness,
    probe_accuracy) are left out rather than set to NaN.
    """
    x_mnl = np.asarray(codes_mnl, dtype=np.float32)
    y_n = np.asarray(labels).astype(np.int32)
    n = x_mnl.shape[1]
    train, test = _split(y_n, seed)
    silhouette_rows = subsample_index(n, SILHOUETTE_POINTS, seed)
    device = jax.device_get(_scores(x_mnl, y_n, train, test, silhouette_rows, int(y_n.max()) + 1))
    if maps_mn2 is not None:
        device["trustworthiness"] = map_trustworthiness(x_mnl, maps_mn2, seed=seed, tsne_index=tsne_index)
    numbers = []
    for m, probe_accuracy in enumerate(probe_accuracies):
        width = widths[m] if widths is not None else x_mnl.shape[2]
        member = {key: float(values[m]) for key, values in device.items()}
        member["dead_dims"] = sum(row["dead"] for row in dimension_stats(x_mnl[m, :, :width]))
        if probe_accuracy is not None:
            member["probe_accuracy"] = float(probe_accuracy)
        numbers.append(member)
    return numbers


def map_trustworthiness(codes_mnl: np.ndarray, maps_mn2: np.ndarray, *, seed: int = 0,
                        tsne_index: np.ndarray | None = None) -> np.ndarray:
    """Trustworthiness [M] of each member's 2-D map [M, P, 2] w.r.t. its codes [M, N, L] (n_neighbors=5),
    on TRUST_POINTS seeded points; the maps embed the rows `tsne_index` of the codes (default: all)."""
    x_mnl = np.asarray(codes_mnl, dtype=np.float32)
    rows = np.arange(x_mnl.shape[1]) if tsne_index is None else np.asarray(tsne_index)
    pick = subsample_index(len(rows), TRUST_POINTS, seed)
    return jax.device_get(_trustworthiness(x_mnl[:, rows[pick]], np.asarray(maps_mn2, np.float32)[:, pick]))


def confused_pairs(
    confusion: np.ndarray, class_names: Sequence[str], top: int = 5
) -> list[tuple[str, str, int]]:
    """Class pairs most often mistaken for each other, either way round (C[i,j] + C[j,i]).

    Pairs with zero confusions are left out; ties keep class order (stable sort).
    """
    confusion_cc = np.asarray(confusion, dtype=np.int64)
    symmetric_cc = confusion_cc + confusion_cc.T
    i_p, j_p = np.triu_indices(len(confusion_cc), k=1)
    counts_p = symmetric_cc[i_p, j_p]
    order = np.argsort(-counts_p, kind="stable")
    return [
        (str(class_names[i_p[p]]), str(class_names[j_p[p]]), int(counts_p[p]))
        for p in order[:top]
        if counts_p[p] > 0
    ]


def outliers(codes: np.ndarray, labels: np.ndarray, top: int = OUTLIER_POINTS) -> np.ndarray:
    """Indices of the `top` points farthest from their class centroid, farthest first.

    Distances are Euclidean after standardizing each dim over all points, so a few
    large-scale dims don't decide alone; constant dims are left unscaled (they add 0).
    """
    x_nl = np.asarray(codes, dtype=np.float64)
    std_l = x_nl.std(axis=0)
    z_nl = (x_nl - x_nl.mean(axis=0)) / np.where(std_l > DEAD_STD, std_l, 1.0)
    _, class_n = np.unique(np.asarray(labels), return_inverse=True)
    sums_cl = np.zeros((class_n.max() + 1, x_nl.shape[1]))
    np.add.at(sums_cl, class_n, z_nl)
    centroids_cl = sums_cl / np.bincount(class_n)[:, None]
    distance_n = np.linalg.norm(z_nl - centroids_cl[class_n], axis=1)
    return np.argsort(-distance_n, kind="stable")[:top]
