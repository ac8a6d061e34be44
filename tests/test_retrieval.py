"""Retrieval by label: precision@10 and mAP against brute force, the queries, and the cached baselines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from mnist_ae.analysis import retrieval


@pytest.fixture(scope="module")
def codes():
    """Continuous random codes (no tied distances), 4 classes with different centres."""
    rng = np.random.default_rng(0)
    db_y, query_y = rng.integers(0, 4, 300), rng.integers(0, 4, 60)
    centres = rng.normal(0, 1.5, (4, 3))
    db = (centres[db_y] + rng.normal(size=(300, 3))).astype(np.float32)
    query = (centres[query_y] + rng.normal(size=(60, 3))).astype(np.float32)
    return db, db_y, query, query_y


def test_precision_at_10_and_map_are_brute_force_numpys_and_scikit_learns(codes, monkeypatch):
    """Ranked over the whole database in blocks of queries (7 here, so the last block is partial):
    precision@10 is the share of the ten nearest with the query's label, the mAP scikit-learn's average
    precision of each query (continuous codes: no tied distances), averaged."""
    db, db_y, query, query_y = codes
    monkeypatch.setattr(retrieval, "BLOCK", 7)
    dists = ((query[:, None, :].astype(np.float64) - db[None]) ** 2).sum(-1)
    got = retrieval.ranked_scores(db, db_y, query, query_y)
    assert got["retrieval_precision_at_10"] == pytest.approx(
        np.mean([np.mean(db_y[np.argsort(d)[:10]] == y) for d, y in zip(dists, query_y)]), abs=1e-12)
    assert got["retrieval_map"] == pytest.approx(
        np.mean([average_precision_score(db_y == y, -d) for d, y in zip(dists, query_y)]), rel=1e-6)


def test_average_precision_by_hand_with_the_relevant_items_last():
    """Codes on a line, so the ranking is plain: query 0 (label 0) finds labels 0, 1, 2, 0, AP = (1/1 + 2/4) / 2;
    query 1 (label 2) finds its one relevant item third, AP = 1/3; precision@2 = 1/2 and 0."""
    db, db_y = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([0, 1, 2, 0])
    got = retrieval.ranked_scores(db, db_y, np.array([[0.0], [-0.1]]), np.array([0, 2]), k=2)
    assert got["retrieval_map"] == pytest.approx((0.75 + 1 / 3) / 2, rel=1e-12)
    assert got["retrieval_precision_at_2"] == pytest.approx(0.25, rel=1e-12)


def test_the_map_queries_are_the_first_of_each_class(mnist):
    labels = np.array([3, 1, 1, 0, 3, 3, 0, 1, 2])
    np.testing.assert_array_equal(retrieval.balanced_queries(labels, per_class=2), [0, 1, 2, 3, 4, 6, 8])
    queries = retrieval.balanced_queries(mnist.test_labels)  # the documented 1,000: 100 of each digit
    assert len(queries) == 1000 and set(np.bincount(mnist.test_labels[queries])) == {100}


def test_pca_with_every_axis_retrieves_as_the_pixels_do_and_the_numbers_are_cached(mnist, tmp_path, monkeypatch):
    """A rotation keeps every distance: PCA at all 784 axes has the pixels' numbers (float64 projections,
    float32 distances: 1e-6); a second call reads the cache, computing nothing."""
    monkeypatch.setenv("MNIST_AE_CACHE", str(tmp_path))
    data = (mnist.train_images[:600], mnist.train_labels[:600], mnist.test_images[:200], mnist.test_labels[:200])
    first = retrieval.baseline_numbers(*data, 784)
    assert first["baseline/pca_retrieval_map"] == pytest.approx(first["baseline/pixels_retrieval_map"], rel=1e-6)
    assert first["baseline/pca_retrieval_precision_at_10"] == pytest.approx(
        first["baseline/pixels_retrieval_precision_at_10"], rel=1e-6)
    two_axes = retrieval.baseline_numbers(*data, 2)  # pixels' numbers again, PCA's at 2 axes: far worse
    assert two_axes["baseline/pixels_retrieval_map"] == first["baseline/pixels_retrieval_map"]
    assert two_axes["baseline/pca_retrieval_map"] < first["baseline/pixels_retrieval_map"] - 0.05
    monkeypatch.setattr(retrieval, "retrieval_numbers", lambda *a: pytest.fail("recomputed a cached baseline"))
    assert retrieval.baseline_numbers(*data, 784) == first
    assert len(list(tmp_path.glob("retrieval_*.json"))) == 3


def test_the_full_datasets_baselines_ship_with_the_package(mnist, tmp_path, monkeypatch):
    """The default run's pixels' and PCA-64 numbers are read from the package: nothing is computed."""
    monkeypatch.setenv("MNIST_AE_CACHE", str(tmp_path))
    monkeypatch.setattr(retrieval, "baseline", lambda *a: pytest.fail("computed a shipped baseline"))
    numbers = retrieval.baseline_numbers(mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels, 64)
    assert set(numbers) == {f"baseline/{name}_{k}" for name in ("pixels", "pca")
                            for k in ("retrieval_map", "retrieval_precision_at_10")}
    assert 0.3 < numbers["baseline/pca_retrieval_map"] < 0.5 and list(tmp_path.iterdir()) == []
    shipped = json.loads(retrieval.SHIPPED.read_text())  # what tools/ship_baselines.py wrote for SHIPPED_SIZES
    assert sorted(entry["dataset"] for entry in shipped.values()) == ["fashion_mnist", "mnist"]
    assert all(sorted(map(int, entry["pca"])) == sorted(retrieval.SHIPPED_SIZES) for entry in shipped.values())
    assert all(key.startswith(f"v{retrieval.PROTOCOL}_") for key in shipped)  # of this protocol, else never read
