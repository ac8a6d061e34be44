"""The map settings `analysis/embed.py` documents: the native-thread policy, the perplexity clip, and what
the opt-in scikit-learn and UMAP backends are asked for. The backends' classes are replaced by recorders
(their maps are tested in test_analysis.py and test_tsne.py); these tests check the settings handed over."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

from mnist_ae.analysis import embed


@pytest.mark.parametrize("cpus, threads", [(4, 2), (3, 1), (2, 1), (1, 1), (16, 8)])
def test_default_threads_is_half_this_processs_cpus_and_at_least_one(monkeypatch, cpus, threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0: set(range(cpus))}[pid])  # pid 0: this process
    assert embed.default_threads() == threads


@pytest.mark.parametrize("count, threads", [(8, 4), (1, 1), (None, 1)])
def test_default_threads_falls_back_on_the_cpu_count(monkeypatch, count, threads):
    """Where the platform has no affinity mask (macOS), os.cpu_count(), which may be None."""
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: count)
    assert embed.default_threads() == threads


def test_perplexity_is_30_clipped_to_a_third_of_the_other_points():
    assert embed._perplexity(31) == 10.0 and embed._perplexity(91) == 30.0 and embed._perplexity(10_000) == 30.0
    assert embed._perplexity(31, perplexity=5.0) == 5.0


class Recorder:
    """Stands in for a backend's estimator: keeps its keyword arguments and the data it is fitted on."""

    made: list[Recorder] = []

    def __init__(self, **kwargs):
        self.kwargs, self.fitted = kwargs, None
        Recorder.made.append(self)

    def fit_transform(self, x_nl):
        self.fitted = x_nl
        return np.zeros((len(x_nl), self.kwargs["n_components"]), np.float64)


@pytest.fixture()
def recorder(monkeypatch):
    Recorder.made = []
    import sklearn.manifold

    monkeypatch.setattr(sklearn.manifold, "TSNE", Recorder)
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=Recorder))
    return Recorder.made


def test_sklearn_gets_its_250_exaggerated_iterations_then_the_same_150_as_the_others(recorder):
    x_nl = np.random.default_rng(0).normal(size=(100, 5)).astype(np.float32)
    map_n3 = embed.tsne(x_nl, 3, backend="sklearn", seed=4, threads=1)
    assert map_n3.shape == (100, 3) and map_n3.dtype == np.float32
    (model,) = recorder
    assert model.kwargs["max_iter"] == 250 + 150  # scikit-learn's fixed 250, then the schedule's 250 - 100
    assert model.kwargs["angle"] == 0.7 and model.kwargs["perplexity"] == 30.0 and model.kwargs["random_state"] == 4
    assert model.kwargs["init"] == "pca" and model.fitted is not None


def test_umap_gets_half_the_perplexity_as_its_neighbours_and_at_least_2(recorder):
    rng = np.random.default_rng(0)
    big = embed.tsne(rng.normal(size=(1000, 4)).astype(np.float32), 2, backend="umap", seed=1)
    tiny = embed.tsne(rng.normal(size=(8, 4)).astype(np.float32), 2, backend="umap", seed=1)
    assert big.shape == (1000, 2) and big.dtype == np.float32 and tiny.shape == (8, 2)
    assert [m.kwargs["n_neighbors"] for m in recorder] == [15, 2]  # 30 / 2; (8 - 1) / 3 / 2 rounds to 1, raised to 2
    assert all(m.kwargs["random_state"] == 1 for m in recorder)


def test_member_maps_of_another_backend_map_each_member_on_its_own_units(recorder):
    codes_mnl = np.random.default_rng(0).normal(size=(3, 50, 6)).astype(np.float32)
    maps = embed.member_maps(codes_mnl, [2, 6, 4], backend="sklearn", threads=1)
    assert maps.shape == (3, 50, 2)
    assert [m.fitted.shape for m in recorder] == [(50, 2), (50, 6), (50, 4)]
    np.testing.assert_array_equal(recorder[0].fitted, codes_mnl[0, :, :2])
    assert all(m.kwargs["random_state"] == 0 for m in recorder)  # the default seed
