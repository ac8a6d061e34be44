"""The PCA baseline: a direct numpy SVD on a small slice, the published figure, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_ae.analysis import baselines
from mnist_ae.data import load_dataset


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_AE_CACHE", str(tmp_path))
    return tmp_path


def test_pca_test_error_equals_a_direct_svd_reconstruction(cache):
    ds = load_dataset("mnist")
    train, test = ds.train_images[:1500], ds.test_images[:300]
    x = train.reshape(1500, -1) / 127.5 - 1
    y = test.reshape(300, -1) / 127.5 - 1
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)  # a second method: SVD, not eigh
    for k in (1, 7, 30):
        recon = x.mean(0) + ((y - x.mean(0)) @ vt[:k].T) @ vt[:k]
        assert baselines.pca_test_mse(train, test, k) == pytest.approx(np.mean((recon - y) ** 2), rel=1e-9)
    assert baselines.pca_test_mse(train, test, 0) == pytest.approx(np.mean((y - x.mean(0)) ** 2), rel=1e-9)


def test_the_cache_is_reused_and_changed_pixels_invalidate_it(cache, monkeypatch):
    ds = load_dataset("mnist")
    train, test = ds.train_images[:800], ds.test_images[:200]
    first = baselines.pca_test_mse(train, test, 5)
    assert len(list(cache.glob("pca_curve_*.json"))) == 1
    monkeypatch.setattr(baselines, "pca_test_mse_curve", lambda *a: pytest.fail("recomputed"))
    assert baselines.pca_test_mse(train, test, 5) == first
    changed = train.copy()
    changed[0, 0, 0] ^= 1
    monkeypatch.undo()
    monkeypatch.setenv("MNIST_AE_CACHE", str(cache))
    assert baselines.pca_test_mse(changed, test, 5) != first
    assert len(list(cache.glob("pca_curve_*.json"))) == 2


def test_the_canonical_curves_ship_with_the_package(cache, monkeypatch):
    """A first run on the full MNIST or Fashion-MNIST reads PCA's curve instead of computing it (3 s on 2 cores,
    1.5 GiB of float64 pixels); a subset of them is not shipped, so it is computed."""
    monkeypatch.setattr(baselines, "pca_test_mse_curve", lambda *a: pytest.fail("computed"))
    for dataset in ("mnist", "fashion_mnist"):
        ds = load_dataset(dataset)
        assert 0 < baselines.pca_test_mse(ds.train_images, ds.test_images, 64) < 0.1
    assert not list(cache.glob("pca_curve_*.json"))  # nothing computed, nothing cached
    with pytest.raises(pytest.fail.Exception, match="computed"):
        baselines.pca_test_mse(ds.train_images[:-1], ds.test_images, 64)


@pytest.mark.slow
def test_pca_at_30_units_is_the_published_13_87_and_the_shipped_curve(cache):
    """Hinton & Salakhutdinov (2006), Fig. 2B: PCA with 30 components, 13.87 squared error per test
    image on pixels in [0, 1]. Our scale is [-1, 1] per pixel: multiply by 784 / 4. Computed here, and
    equal to the shipped curve: both are float64 sums of the same pixels (1e-9 relative allows another
    BLAS's summation order) along the axes the training digits vary along. The rest (variance below 1e-12
    of the largest: pixels the training digits never ink) span a space where eigh returns any basis, so
    how the test energy left there is split among them changes with the BLAS (one OpenBLAS thread against
    two moved it by 4.3e-9): there both curves only stay within that energy."""
    import json

    ds = load_dataset("mnist")
    curve = baselines.pca_test_mse_curve(ds.train_images, ds.test_images)
    assert curve[30] * 784 / 4 == pytest.approx(13.87, abs=0.005)
    assert curve[64] == pytest.approx(0.0362, abs=5e-5)
    shipped = json.loads(baselines.SHIPPED_CURVES.read_text())[baselines.curve_key(ds.train_images, ds.test_images)]
    assert shipped["dataset"] == "mnist"
    train_nd = baselines.unit_pixels(ds.train_images)
    variance_d = np.linalg.eigvalsh(np.cov(train_nd, rowvar=False))[::-1]
    varied = int(np.sum(variance_d > 1e-12 * variance_d[0]))  # 712 of 784 axes
    np.testing.assert_allclose(shipped["curve"][:varied], curve[:varied], rtol=1e-9, atol=1e-12)
    assert np.all(np.abs(np.array(shipped["curve"][varied:]) - curve[varied:]) <= curve[varied])


@pytest.mark.slow
def test_raw_pixel_numbers_are_computed_once_and_a_changed_image_recomputes_them(cache, monkeypatch, tmp_path):
    from mnist_ae.analysis import pipeline, raw_baseline

    ds = load_dataset("mnist")
    images, labels = ds.test_images[:300], ds.test_labels[:300]
    codes = images.reshape(300, -1)[:, ::49].astype(np.float32)  # any codes: 16 columns of pixels
    calls = []
    real = pipeline.quality_numbers
    for module in (pipeline, raw_baseline):  # the codes' numbers, the raw pixels' numbers
        monkeypatch.setattr(module, "quality_numbers", lambda *a, **k: calls.append(a[0].shape) or real(*a, **k))
    run = lambda imgs: pipeline.run_analysis(codes, labels, imgs, [str(d) for d in range(10)],  # noqa: E731
                                             tmp_path / "out", with_tsne=False)
    first = run(images)
    assert calls == [(300, 16), (300, 784)]  # codes, then raw pixels
    again = run(images)
    assert calls[2:] == [(300, 16)] and again.metrics["raw_pixels"] == first.metrics["raw_pixels"]
    changed = images.copy()
    changed[0, 14, 14] ^= 0xFF
    run(changed)
    assert calls[3:] == [(300, 16), (300, 784)]


@pytest.mark.slow  # second check: the quick tier reuses and invalidates the cache
def test_the_raw_pixel_cache_key_holds_the_labels_and_every_setting(cache, monkeypatch):
    """A changed label, seed, map backend or map on/off each computes (and caches) anew; the same call reads
    the cache. The map is a 2-D map of the pixels' PCA to 50 dims on the trustworthiness subsample
    (here every point: 300 < TRUST_POINTS); its recipe is spied on, and it returns a cheap stand-in."""
    from mnist_ae.analysis import raw_baseline

    ds = load_dataset("mnist")
    images, labels = ds.test_images[:300], ds.test_labels[:300].astype(np.int64)
    maps = []

    def spy_tsne(x_nk, dims, **kwargs):
        maps.append((x_nk.shape, dims, kwargs["backend"]))
        return np.asarray(x_nk[:, :dims], np.float32)

    monkeypatch.setattr(raw_baseline, "tsne", spy_tsne)
    computed = []
    real = raw_baseline.quality_numbers
    monkeypatch.setattr(raw_baseline, "quality_numbers", lambda *a, **k: computed.append(1) or real(*a, **k))
    run = lambda lbl=labels, seed=0, with_tsne=False, backend="auto": raw_baseline.raw_quality(  # noqa: E731
        images, lbl, tsne_backend=backend, seed=seed, with_tsne=with_tsne, threads=1)

    plain = run()
    assert run() == plain and len(computed) == 1  # read back
    relabelled = labels.copy()
    relabelled[0] = (relabelled[0] + 1) % 10
    run(lbl=relabelled)
    run(seed=1)
    mapped = run(with_tsne=True)
    run(with_tsne=True, backend="exact")
    assert len(computed) == 5 and len(list(cache.glob("raw_quality_*.json"))) == 5
    assert maps == [((300, 50), 2, "auto"), ((300, 50), 2, "exact")]  # PCA to 50 dims: the documented recipe
    assert "trustworthiness" in mapped and "trustworthiness" not in plain
    assert run(with_tsne=True) == mapped and len(computed) == 5


def test_the_canonical_test_sets_raw_numbers_ship_with_the_package(cache, monkeypatch):
    """A first run on MNIST or Fashion-MNIST reads them instead of computing (about 25 s on 2 cores)."""
    from mnist_ae.analysis import raw_baseline
    from mnist_ae.config import base_config

    config = base_config()
    monkeypatch.setattr(raw_baseline, "quality_numbers", lambda *a, **k: pytest.fail("computed"))
    for dataset in ("mnist", "fashion_mnist"):
        ds = load_dataset(dataset)
        numbers = raw_baseline.raw_quality(ds.test_images, ds.test_labels, tsne_backend=config.tsne_backend,
                                           seed=config.seed, with_tsne=True, threads=1)
        assert 0.7 < numbers["knn5_accuracy"] < 1 and 0.9 < numbers["trustworthiness"] < 1
    assert not list(cache.glob("raw_quality_*.json"))  # nothing computed, nothing cached


@pytest.mark.slow
def test_the_shipped_raw_numbers_are_what_this_machine_computes(cache, monkeypatch):
    """Recomputed here from the published files. kNN, silhouette, the PCA variances and the dead pixels
    rank, sum or count the same float32 pixels (1e-4 allows float32 rounding of a sum). Two numbers come out
    of float32 optimisations that amplify the reduction order (the machine, XLA's flags): the logistic
    regression, fitted to its convergence tolerance, and trustworthiness, measured on the t-SNE map
    (hundreds of gradient steps): 0.8945 / 0.9818 under XLA's default flags, 0.8965 / 0.9830 under this
    suite's. 0.01 is a baseline's precision in the report's tables (two or three digits), not one
    machine's rounding."""
    from mnist_ae.analysis import raw_baseline

    shipped = raw_baseline.shipped()
    [(key, entry)] = [(k, e) for k, e in shipped.items() if e["dataset"] == "mnist"]
    ds = load_dataset("mnist")
    monkeypatch.setattr(raw_baseline, "SHIPPED", cache / "none.json")
    fresh = raw_baseline.raw_quality(ds.test_images, ds.test_labels, threads=1, **entry["settings"])
    assert raw_baseline.cache_key(ds.test_images, ds.test_labels, **entry["settings"]) == key
    assert fresh.keys() == entry["numbers"].keys() and fresh["dead_dims"] == entry["numbers"]["dead_dims"]
    for name, value in entry["numbers"].items():
        optimised = name in ("logreg_accuracy", "trustworthiness")
        assert fresh[name] == pytest.approx(value, abs=0.01 if optimised else 1e-4), name
