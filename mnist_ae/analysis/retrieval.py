"""Retrieval by label for a run's codes, beside raw pixels and PCA at the same code size.

Queries are 1,000 class-balanced test digits (the first 100 of each class: the usual protocol of MNIST
retrieval papers), the database every training digit; an item is relevant when it has the query's label.
Each query's whole database is ranked (distances on the device, `core.retrieval`; the sort on the host,
numpy's being several times XLA:CPU's; tied distances in numpy's quicksort order, deterministic), giving
two numbers: precision@10 and the
mean average precision (mAP) over the whole ranking. Raw pixels' and PCA's numbers depend only on the data
and the code size: those of the full canonical MNIST and Fashion-MNIST ship with the package (`SHIPPED`, at
the code sizes of `SHIPPED_SIZES`, written by tools/ship_baselines.py); others are computed once and cached
like the PCA curve (`baselines.cache_dir`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mnist_ae.analysis import baselines
from mnist_ae.core import retrieval

QUERIES_PER_CLASS = 100
BLOCK = 100  # queries ranked at once: 100 x 60,000 distances are 24 MB
PROTOCOL = 3  # bump when a number's definition changes: cached baselines of another protocol are not read
SHIPPED = Path(__file__).with_name("retrieval_shipped.json")  # key -> {"dataset", "pixels", "pca": {size: ...}}
SHIPPED_SIZES = (2, 3, 5, 10, 16, 30, 50, 64, 256)  # the code sizes of the experiments and the README


def balanced_queries(labels_m: np.ndarray, per_class: int = QUERIES_PER_CLASS) -> np.ndarray:
    """The first `per_class` test digits of each class, in test-set order."""
    return np.sort(np.concatenate([np.flatnonzero(labels_m == c)[:per_class] for c in np.unique(labels_m)]))


@functools.cache
def _distances():
    return jax.jit(retrieval.distances)


def ranked_scores(db_nl: np.ndarray, db_y_n: np.ndarray, query_ml: np.ndarray, query_y_m: np.ndarray,
                  k: int = 10) -> dict[str, float]:
    """Over the queries: the mean share of the k nearest items with the query's label (precision@k), and the
    mean average precision (the mean, over a query's relevant items, of the precision at each one's rank)."""
    db_nl, query_ml = np.asarray(db_nl, np.float32), np.asarray(query_ml, np.float32)
    precision, aps = [], []
    inverse_rank_n = 1.0 / np.arange(1, len(db_nl) + 1)
    for start in range(0, len(query_ml), BLOCK):
        dists_bn = np.asarray(_distances()(db_nl, query_ml[start:start + BLOCK]))
        relevant_bn = db_y_n[np.argsort(dists_bn, axis=1)] == query_y_m[start:start + BLOCK, None]
        found_bn = np.cumsum(relevant_bn, axis=1, dtype=np.int32)
        precision.append(found_bn[:, k - 1] / k)
        # the precision at each relevant item's rank, summed: a matmul (a fifth of np.where's time)
        aps.append((found_bn * relevant_bn) @ inverse_rank_n / np.maximum(found_bn[:, -1], 1))
    return {f"retrieval_precision_at_{k}": float(np.concatenate(precision).mean()),
            "retrieval_map": float(np.concatenate(aps).mean())}


def retrieval_numbers(db_nl: np.ndarray, db_y_n: np.ndarray, query_ml: np.ndarray, query_y_m: np.ndarray) -> dict[str, float]:
    """precision@10 and mAP of the class-balanced test queries against the whole database."""
    index = balanced_queries(query_y_m)
    return ranked_scores(db_nl, db_y_n, np.asarray(query_ml)[index], query_y_m[index])


def pca_projections(train_nhw: np.ndarray, test_nhw: np.ndarray, code_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and test pixels ([-1, 1]) on the top `code_size` principal axes of the training pixels."""
    mean_d, axes_dk = baselines.pca_axes(train_nhw, code_size)
    return (baselines.unit_pixels(train_nhw) - mean_d) @ axes_dk, (baselines.unit_pixels(test_nhw) - mean_d) @ axes_dk


def baseline(train_nhw: np.ndarray, train_y_n: np.ndarray, test_nhw: np.ndarray, test_y_m: np.ndarray,
             code_size: int | None) -> dict[str, float]:
    """Raw pixels' retrieval numbers (`code_size` None), or PCA's at `code_size` axes fitted on the training set."""
    if code_size is None:  # float32 from the start: 60,000 x 784 float64 pixels are 376 MB
        train, test = (images.reshape(len(images), -1).astype(np.float32) / 127.5 - 1.0 for images in (train_nhw, test_nhw))
    else:
        train, test = pca_projections(train_nhw, test_nhw, code_size)
    return retrieval_numbers(train, train_y_n, test, test_y_m)


def cache_key(train_nhw: np.ndarray, train_y_n: np.ndarray, test_nhw: np.ndarray, test_y_m: np.ndarray) -> str:
    """The pixels', the labels' and the protocol's hash: all a baseline number depends on, with its size."""
    return f"v{PROTOCOL}_" + baselines.curve_key(train_nhw, test_nhw) + baselines.curve_key(train_y_n, test_y_m)[:8]


def _cached(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def baseline_numbers(train_nhw: np.ndarray, train_y_n: np.ndarray, test_nhw: np.ndarray, test_y_m: np.ndarray,
                     code_size: int) -> dict[str, float]:
    """Raw pixels' and PCA's (at `code_size` components) retrieval numbers, as `baseline/pixels_*` and
    `baseline/pca_*`; computed once per data and size, then read from the cache."""
    key = cache_key(train_nhw, train_y_n, test_nhw, test_y_m)
    shipped = json.loads(SHIPPED.read_text()).get(key, {}) if SHIPPED.exists() else {}
    numbers = {}
    for name, size in (("pixels", None), ("pca", code_size)):
        path = baselines.cache_dir() / f"retrieval_{name}{size or ''}_{key}.json"
        try:
            found = shipped["pixels"] if size is None else shipped["pca"][str(size)]
        except KeyError:
            found = _cached(path)
        if found is None:
            found = baseline(train_nhw, train_y_n, test_nhw, test_y_m, size)
            baselines.write_cache(path, found)
        numbers.update({f"baseline/{name}_{k}": v for k, v in found.items()})
    return numbers
