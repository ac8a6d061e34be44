"""Latent-space pictures: the decoded code sets are the ones promised, and a run writes the figures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import tiny
from mnist_ae.analysis import latent_pictures as lp
from mnist_ae import tasks


def test_code_sets_are_class_means_lines_and_a_grid():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(40, 3)).astype(np.float32)
    labels = np.repeat(np.arange(4), 10)[rng.permutation(40)]
    means = lp.class_means(codes, labels, 4)
    np.testing.assert_allclose(means[2], codes[labels == 2].mean(0), rtol=1e-6)
    pairs = lp.interpolation_pairs(labels, pairs=2)
    assert pairs == [(int(np.flatnonzero(labels == 0)[0]), int(np.flatnonzero(labels == 1)[0])),
                     (int(np.flatnonzero(labels == 1)[0]), int(np.flatnonzero(labels == 2)[0]))]
    line = lp.interpolations(codes, pairs, steps=5)
    assert line.shape == (10, 3)
    np.testing.assert_allclose(line[0], codes[pairs[0][0]], rtol=1e-6)
    np.testing.assert_allclose(line[4], codes[pairs[0][1]], rtol=1e-6)
    np.testing.assert_allclose(line[2], (codes[pairs[0][0]] + codes[pairs[0][1]]) / 2, rtol=1e-6)
    grid, xs, ys = lp.manifold_grid(codes[:, :2], side=4)
    assert grid.shape == (16, 2) and xs[0] == pytest.approx(np.percentile(codes[:, 0], 1))
    assert ys[0] == pytest.approx(np.percentile(codes[:, 1], 99))  # the top row is the highest y
    assert tuple(grid[0]) == pytest.approx((xs[0], ys[0])) and tuple(grid[-1]) == pytest.approx((xs[-1], ys[-1]))
    codes[:, 1] *= 5  # unit 1 varies most, then unit 0 or 2
    path, units = lp.traversals(codes, units=2)
    assert units[0] == 1 and len(units) == 2 and path.shape == (2 * len(lp.TRAVERSAL_PERCENTILES), 3)
    row = path[: len(lp.TRAVERSAL_PERCENTILES)]  # unit 1 through its percentiles, the others at the mean
    np.testing.assert_allclose(row[:, 1], np.percentile(codes[:, 1], lp.TRAVERSAL_PERCENTILES), rtol=1e-6)
    np.testing.assert_allclose(row[:, [0, 2]], np.broadcast_to(codes.mean(0)[[0, 2]], (len(row), 2)), rtol=1e-6)


def test_a_run_with_two_unit_codes_writes_class_means_interpolations_traversals_and_the_manifold(tmp_path):
    tasks.train_and_evaluate(tiny(latent_dim=2, epochs=1, latent_pictures=True), tmp_path, "none", quiet=True)
    sizes = {p.name: Image.open(p).size for p in (tmp_path / "latent").iterdir()}
    assert set(sizes) == {"class_means.png", "interpolations.png", "traversals.png", "manifold.png"}
    assert all(w >= 400 and h >= 100 for w, h in sizes.values())
