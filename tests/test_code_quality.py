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


def test_numbers_do_not_move_when_every_code_is_shifted_far_from_the_origin(scored):
    """Codes need not be centred (a ReLU code is all positive). Distances come from |a|^2 + |b|^2 - 2ab,
    which float32 only keeps exact on centred data: shifted by 1,000 in every unit, the numbers must stay
    scikit-learn's on the unshifted codes."""
    own, labels, _, _, _ = scored
    codes_nl = own[0]
    shifted = quality.member_quality((codes_nl + 1000.0)[None], labels, maps_mn2=None, probe_accuracies=[None],
                                     seed=3)[0]
    train, test = quality._split(labels, 3)
    knn = KNeighborsClassifier(5).fit(codes_nl[train], labels[train]).score(codes_nl[test], labels[test])
    assert shifted["knn5_accuracy"] == pytest.approx(knn, abs=1e-6)
    assert shifted["silhouette"] == pytest.approx(silhouette_score(codes_nl, labels), abs=1e-3)


@pytest.mark.slow  # edge cases; the quick tier checks the silhouette's mean
def test_silhouettes_of_a_digit_alone_in_its_class_and_of_a_pair_are_scikit_learns(scored):
    """scikit-learn's convention (Rousseeuw's): a point with no other point of its label scores 0; a
    point of a pair has its partner as its whole own class."""
    own, labels, _, _, _ = scored
    keep = np.flatnonzero(labels > 1)
    keep = np.sort(np.concatenate([keep, np.flatnonzero(labels == 0)[:1], np.flatnonzero(labels == 1)[:2]]))
    codes_nl, few = own[0][keep], labels[keep]
    assert np.sum(few == 0) == 1 and np.sum(few == 1) == 2
    silhouette = quality.member_quality(codes_nl[None], few, maps_mn2=None, probe_accuracies=[None])[0]["silhouette"]
    assert silhouette == pytest.approx(silhouette_score(codes_nl, few), abs=1e-5)
