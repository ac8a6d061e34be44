"""The quality numbers computed on the device (`core.code_quality`, vmapped over members) against
scikit-learn's on fixed real codes: those of a checkpointed model (tests/fixtures/run_v1) for 1,000
real test digits, as two members of different widths (the narrow one zero-padded, as in a sweep)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import trustworthiness
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mnist_ae.analysis import quality
from mnist_ae.api import load
from mnist_ae.data import load_dataset

FIXTURES = Path(__file__).parent / "fixtures"
WIDTHS = (4, 2)


@pytest.fixture(scope="module")
def scored():
    """(members' own codes, labels, 2-D maps, member_quality's numbers)."""
    data = load_dataset("mnist")
    images, labels = data.test_images[:1000], data.test_labels[:1000].astype(np.int64)
    codes_nl = load(FIXTURES / "run_v1").encode(images)
    own = [codes_nl[:, :w] for w in WIDTHS]
    padded_mnl = np.stack([np.pad(c, ((0, 0), (0, codes_nl.shape[1] - c.shape[1]))) for c in own])
    maps_mn2 = np.stack([PCA(2).fit_transform(c) if c.shape[1] > 2 else c for c in own]).astype(np.float32)
    rows = np.arange(0, 1000, 2)  # the maps embed every other digit
    numbers = quality.member_quality(padded_mnl, labels, maps_mn2=maps_mn2[:, rows], probe_accuracies=[None, 0.5],
                                     seed=3, tsne_index=rows, widths=WIDTHS)
    return own, labels, maps_mn2, rows, numbers


def test_device_numbers_equal_scikit_learns_for_each_member(scored):
    own, labels, maps_mn2, rows, numbers = scored
    for codes_nl, map_n2, member in zip(own, maps_mn2, numbers):
        train, test = quality._split(labels, 3)
        knn = KNeighborsClassifier(5).fit(codes_nl[train], labels[train]).score(codes_nl[test], labels[test])
        logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, tol=1e-10))
        logreg_accuracy = logreg.fit(codes_nl[train], labels[train]).score(codes_nl[test], labels[test])
        assert member["knn5_accuracy"] == pytest.approx(knn, abs=1e-6)
        assert abs(member["logreg_accuracy"] - logreg_accuracy) <= 1 / len(test) + 1e-6  # one digit at most
        assert member["silhouette"] == pytest.approx(silhouette_score(codes_nl, labels), abs=1e-5)
        assert member["trustworthiness"] == pytest.approx(
            trustworthiness(codes_nl[rows], map_n2[rows], n_neighbors=5), abs=1e-6)
        assert member["pca_explained_variance_2"] == pytest.approx(
            np.cumsum(PCA(min(3, codes_nl.shape[1])).fit(codes_nl).explained_variance_ratio_)[1], abs=1e-5)
        assert member["dead_dims"] <= codes_nl.shape[1]  # counted over the member's own units, not the padding
    assert "probe_accuracy" not in numbers[0] and numbers[1]["probe_accuracy"] == 0.5
    assert numbers[0]["knn5_accuracy"] != numbers[1]["knn5_accuracy"]  # the members really differ
