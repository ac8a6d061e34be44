"""Embedding analysis on small slices of the real MNIST test set (CPU, seconds)."""

import json
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mnist_ae import analysis, plots
from mnist_ae.data import load_dataset
from mnist_ae.core.pca import pca

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def one_native_thread():
    """One BLAS/OpenMP thread per test process: on a shared 2-core box (or under xdist)
    spinning OpenMP threads in t-SNE and BLAS make small problems several times slower."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """First 2000 test digits (uint8 [2000, 28, 28]), labels, class names."""
    data = load_dataset("mnist")
    return data.test_images[:2000], data.test_labels[:2000].astype(np.int64), data.class_names


def pixels(images_nhw: np.ndarray) -> np.ndarray:
    return images_nhw.reshape(len(images_nhw), -1).astype(np.float32) / 255.0


def fake_codes(images_nhw: np.ndarray, latent: int = 16) -> np.ndarray:
    """Structured stand-in for encoder output: tanh of a fixed random projection of pixels."""
    w_dl = np.random.default_rng(0).normal(size=(784, latent)).astype(np.float32) / 10.0
    x_nd = pixels(images_nhw)
    return np.tanh((x_nd - x_nd.mean(axis=0)) @ w_dl)


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000, path


def test_pca_matches_numpy_svd(digits):
    x_nl = fake_codes(digits[0][:1000], latent=32)
    result = pca(jnp.asarray(x_nl), 5)
    centred = x_nl.astype(np.float64) - x_nl.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected_ratio = (s**2 / np.sum(s**2))[:5]
    chex.assert_trees_all_close(
        (np.abs(np.asarray(result.projected)), np.asarray(result.explained_variance_ratio)),
        (np.abs(centred @ vt[:5].T), expected_ratio),
        atol=2e-3, rtol=1e-3,
    )
    chex.assert_shape((result.mean, result.components), ((32,), (5, 32)))
    components = np.asarray(result.components)
    np.testing.assert_allclose(components @ components.T, np.eye(5), atol=1e-4)
    # Deterministic sign: each component's largest-|.| entry is positive.
    assert np.all(components[np.arange(5), np.abs(components).argmax(axis=1)] > 0)


def test_pca_ratio_in_unit_interval_and_non_increasing(digits):
    for x_nl in (pixels(digits[0][:500]), np.ones((50, 8), np.float32)):
        ratio = np.asarray(pca(jnp.asarray(x_nl), 8).explained_variance_ratio)
        assert np.all(np.isfinite(ratio)) and np.all((ratio >= 0) & (ratio <= 1))
        assert np.all(np.diff(ratio) <= 1e-6) and ratio.sum() <= 1 + 1e-5
    with pytest.raises(ValueError, match="k <="):
        pca(jnp.ones((4, 3)), 4)


def test_pca_jits_and_vmaps(digits):
    batch_bnl = jnp.asarray(fake_codes(digits[0][:600], latent=8).reshape(3, 200, 8))
    jitted = jax.jit(pca, static_argnums=1)(batch_bnl[0], 3)
    chex.assert_trees_all_close(jitted, pca(batch_bnl[0], 3), atol=1e-4)
    batched = jax.vmap(lambda x_nl: pca(x_nl, 3))(batch_bnl)
    chex.assert_shape(batched.projected, (3, 200, 3))
    for b in range(3):
        chex.assert_trees_all_close(
            jax.tree.map(lambda leaf: leaf[b], batched), pca(batch_bnl[b], 3), atol=1e-4
        )


@pytest.mark.parametrize("dims", [2, 3])
def test_tsne_shapes(digits, dims):
    coords = analysis.tsne(fake_codes(digits[0][:300]), dims, max_iter=250)
    assert coords.shape == (300, dims) and coords.dtype == np.float32
    assert np.all(np.isfinite(coords))


def test_opentsne_backend_shape(digits):
    pytest.importorskip("openTSNE")
    coords = analysis.tsne(fake_codes(digits[0][:300]), 2, backend="opentsne", max_iter=250)
    assert coords.shape == (300, 2) and np.all(np.isfinite(coords))


def test_tsne_backend_errors(monkeypatch, digits):
    with pytest.raises(ValueError, match="unknown tsne backend"):
        analysis.tsne(np.zeros((20, 4)), 2, backend="pca")
    monkeypatch.setitem(sys.modules, "umap", None)  # makes `import umap` fail
    with pytest.raises(ImportError, match=r"pip install '\.\[tsne\]'"):
        analysis.tsne(fake_codes(digits[0][:50]), 2, backend="umap")


def test_quality_numbers_ranges_and_raw_knn(digits):
    images, labels, _ = digits
    raw = pixels(images)
    stand_in_2d = np.asarray(pca(jnp.asarray(raw), 2).projected)  # any 2-D map will do here
    numbers = analysis.quality_numbers(
        raw, labels, tsne_2d=stand_in_2d, probe_accuracy=0.9, seed=0
    )
    for name in ("knn5_accuracy", "logreg_accuracy", "trustworthiness",
                 "pca_explained_variance_2", "pca_explained_variance_3", "probe_accuracy"):
        assert 0.0 <= numbers[name] <= 1.0, name
    assert -1.0 <= numbers["silhouette"] <= 1.0
    assert numbers["knn5_accuracy"] > 0.85  # kNN on raw MNIST pixels is ~0.95 at this size
    assert numbers["pca_explained_variance_2"] <= numbers["pca_explained_variance_3"]
    assert numbers["dead_dims"] > 0  # MNIST's always-blank border pixels
    without = analysis.quality_numbers(raw[:500], labels[:500], tsne_2d=None, probe_accuracy=None)
    assert "trustworthiness" not in without and "probe_accuracy" not in without


def test_dimension_stats_flags_dead_dims(digits):
    codes = fake_codes(digits[0][:500], latent=6)
    codes[:, 2] = 0.37  # constant
    codes[:, 4] = np.where(np.arange(500) == 0, 1.0, 0.0)  # a unit that fires once
    stats = analysis.dimension_stats(codes)
    assert [row["dead"] for row in stats] == [False, False, True, False, True, False]
    assert stats[2]["std"] < 1e-6 and stats[2]["mean"] == pytest.approx(0.37)
    assert stats[4]["near_zero"] > 0.99 and stats[0]["near_zero"] < 0.5


def test_confused_pairs_order():
    confusion = np.diag([50, 50, 50, 50])
    confusion[0, 1], confusion[1, 0] = 3, 4  # 7 total, split across both directions
    confusion[2, 3] = 9
    confusion[3, 0] = 1
    pairs = analysis.confused_pairs(confusion, ("a", "b", "c", "d"), top=5)
    assert pairs == [("c", "d", 9), ("a", "b", 7), ("a", "d", 1)]
    assert analysis.confused_pairs(confusion, ("a", "b", "c", "d"), top=1) == [("c", "d", 9)]


def test_outliers_finds_inserted_point(digits):
    codes = fake_codes(digits[0][:800])
    labels = digits[1][:800]
    codes[123] = codes[labels == labels[123]].mean(axis=0) + 5.0
    found = analysis.outliers(codes, labels, top=10)
    assert found[0] == 123 and len(found) == 10 and len(set(found.tolist())) == 10


def test_run_analysis_writes_all_outputs(tmp_path, digits):
    images, labels, class_names = digits[0][:400], digits[1][:400], digits[2]
    confusion = np.eye(10, dtype=int) * 30
    confusion[4, 9] = 6
    result = analysis.run_analysis(
        fake_codes(images), labels, images, class_names, tmp_path / "out",
        probe_accuracy=0.8, probe_confusion=confusion, tsne_3d_points=200,
    )
    out = tmp_path / "out"
    for name in ("pca_2d", "pca_3d", "tsne_2d", "tsne_3d", "correlation", "histograms", "outliers"):
        assert result.figures[name] == out / f"{name}.png"
        assert_png(result.figures[name])
    for name in ("stats.md", "stats.csv", "confused_pairs.md", "quality.md"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) >= {"codes", "raw_pixels", "timings_s", "confused_pairs"}
    assert metrics["confused_pairs"][0] == ["4", "9", 6]
    assert metrics["settings"]["tsne_3d_points"] == 200
    for side in ("codes", "raw_pixels"):
        assert 0.0 <= metrics[side]["trustworthiness"] <= 1.0
        assert 0.0 <= metrics[side]["knn5_accuracy"] <= 1.0
        assert -1.0 <= metrics[side]["silhouette"] <= 1.0
    quality_md = result.tables["quality"]
    assert "| knn5_accuracy |" in quality_md and "raw pixels" in quality_md
    assert result.coords_2d["tsne"].shape == (400, 2) and result.coords_2d["pca"].shape == (400, 2)


def test_run_analysis_without_tsne_or_baseline(tmp_path, digits):
    images, labels, class_names = digits[0][:300], digits[1][:300], digits[2]
    result = analysis.run_analysis(
        fake_codes(images), labels, images, class_names, tmp_path, with_tsne=False,
        raw_baseline=False, subsample=200,
    )
    assert result.metrics["settings"]["n_points"] == 200
    assert result.coords_2d["pca"].shape == (200, 2)
    index = result.index_n  # the analysed rows: 200 distinct inputs, in order, fixed by the seed
    chex.assert_shape(index, (200,))
    assert np.all(np.diff(index) > 0) and index[-1] < 300
    np.testing.assert_array_equal(index, analysis.subsample_index(300, 200, 0))
    assert "tsne" not in result.coords_2d and "tsne_2d" not in result.figures
    assert result.metrics["raw_pixels"] == {} and "trustworthiness" not in result.metrics["codes"]
    with pytest.raises(ValueError, match="NaN"):
        analysis.run_analysis(
            np.full((10, 4), np.nan), labels[:10], images[:10], class_names, tmp_path
        )


def test_plots_cap_wide_codes_and_line_plot(tmp_path):
    codes_nl = np.random.default_rng(0).normal(size=(500, 256)).astype(np.float32)
    assert_png(plots.histogram_grid(codes_nl, tmp_path / "hist.png"))
    assert_png(plots.correlation_heatmap(codes_nl, tmp_path / "corr.png"))
    series = {"knn5": ([0.8, 0.9, 0.95], [0.01, 0.02, 0.01]), "probe": ([0.7, 0.85, 0.9], [0] * 3)}
    path = tmp_path / "line.png"
    assert_png(plots.line_plot([2, 8, 32], series, "latent size", "accuracy", path, logx=True))


@pytest.mark.parametrize("latent", [1, 2])
def test_run_analysis_handles_codes_narrower_than_the_projections(tmp_path, digits, latent):
    """Latent 1 and 2 (the seed tutorial's smallest sweep member): t-SNE starts at random instead
    of PCA, and a 1-unit code's PCA view is its one axis against zeros."""
    images, labels, class_names = digits[0][:150], digits[1][:150], digits[2]
    result = analysis.run_analysis(fake_codes(images, latent), labels, images, class_names, tmp_path,
                                   raw_baseline=False)
    chex.assert_shape((result.coords_2d["pca"], result.coords_2d["tsne"]), ((150, 2), (150, 2)))
    chex.assert_tree_all_finite(result.coords_2d)
    assert ("pca_3d" in result.figures) is False and {"pca_2d", "tsne_2d", "tsne_3d"} <= set(result.figures)
    if latent == 1:
        np.testing.assert_array_equal(result.coords_2d["pca"][:, 1], 0.0)
    assert 0.0 <= result.metrics["codes"]["trustworthiness"] <= 1.0


def test_run_analysis_refuses_too_few_points(tmp_path, digits):
    images, labels, class_names = digits[0][:60], digits[1][:60], digits[2]
    with pytest.raises(ValueError, match=f"at least {analysis.MIN_ANALYSIS_POINTS} points"):
        analysis.run_analysis(fake_codes(images), labels, images, class_names, tmp_path)
