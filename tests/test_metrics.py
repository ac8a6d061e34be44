"""The metric-direction registry: every number the product writes is a score one way, or descriptive."""

from __future__ import annotations

import math

import pytest

from mnist_ae import metrics

LOWER, HIGHER = metrics.LOWER, metrics.HIGHER


@pytest.mark.parametrize("name, expected", [
    ("test/recon_mse", LOWER), ("test/recon_mse01", LOWER), ("test/recon_sse01", LOWER),  # 'sse': the star bug
    ("test/probe_loss", LOWER), ("train/recon_mse", LOWER), ("analysis/dead_dims", LOWER), ("test/nll_k5000", LOWER),
    ("test/probe_accuracy", HIGHER), ("test/accuracy", HIGHER), ("analysis/knn5_accuracy", HIGHER),
    ("analysis/logreg_accuracy", HIGHER), ("analysis/trustworthiness", HIGHER), ("analysis/silhouette", HIGHER),
    ("test/psnr_sigma0.5", HIGHER), ("test/auroc_mean", HIGHER), ("test/elbo", HIGHER),
    ("retrieval/precision_at_10", HIGHER),
    ("analysis/pca_explained_variance_2", None), ("test/probe_per_class_accuracy/3", None),
    ("baseline/pca_recon_mse", None), ("baseline/pca_recon_sse01", None), ("train/learning_rate", None),
    ("train/ae_grad_norm", None), ("train/ae_param_norm", None), ("train/steps_per_s", None),
    ("usage/host_rss_mb", None), ("epoch", None),
])
def test_each_metric_has_one_direction(name, expected):
    assert metrics.direction(name) == expected
    assert metrics.higher_is_better(name) == (expected == HIGHER)


def test_the_best_are_the_lowest_error_and_the_highest_accuracy_and_ties_share_it():
    assert metrics.best_indices([36.62, 12.89], "test/recon_sse01") == [1]
    assert metrics.best_indices([0.90, 0.95, 0.93], "test/probe_accuracy") == [1]
    assert metrics.best_indices([0.0, 0.0, 2.0], "analysis/dead_dims") == [0, 1]


def test_descriptive_unmeasured_or_lone_numbers_get_no_best():
    assert metrics.best_indices([0.3, 0.6], "analysis/pca_explained_variance_2") == []
    assert metrics.best_indices([0.05, 0.04], "baseline/pca_recon_mse") == []
    assert metrics.best_indices([None, 0.04], "test/recon_mse") == []
    assert metrics.best_indices([math.nan, 0.04, None], "test/recon_mse") == []
    assert metrics.best_indices([math.inf, 0.04], "test/recon_mse") == []
    assert metrics.best_indices([math.nan, 0.04, 0.05], "test/recon_mse") == [1]
