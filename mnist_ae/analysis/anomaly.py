"""One-class anomaly detection as Ruff et al. (2018, Deep SVDD, ICML) measure it: a model trained on the
training digits of one class scores every test digit, the other classes being the anomalies, and the
AUROC says how well its scores rank the anomalies above the normal digits.

The score is the reconstruction error (MSE per pixel); PCA fitted on the same class at the same code size,
scored by its own reconstruction error, is the classic baseline beside it. Host-side numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mnist_ae.analysis import baselines
from mnist_ae.analysis.digit_figures import digit_rows
from mnist_ae.analysis.figures import class_colors, save, style

EXTREMES = 8  # the most and least anomalous test digits shown per class


def _ranks(x_n: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(x_n, kind="stable")
    sorted_x = x_n[order]
    first = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(x_n))
    ranks = np.empty(len(x_n))
    ranks[order] = ((starts + ends + 1) / 2.0)[group]
    return ranks


def auroc(scores_n: np.ndarray, anomalous_n: np.ndarray) -> float:
    """The probability that an anomaly scores above a normal digit (ties count a half): the Mann-Whitney U
    over the product of the counts, the area under the ROC curve."""
    scores_n, anomalous_n = np.asarray(scores_n, np.float64), np.asarray(anomalous_n, bool)
    positives, negatives = anomalous_n.sum(), (~anomalous_n).sum()
    u = _ranks(scores_n)[anomalous_n].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def roc_curve(scores_n: np.ndarray, anomalous_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every threshold, from the highest score down."""
    order = np.argsort(-np.asarray(scores_n), kind="stable")
    hits = np.asarray(anomalous_n, bool)[order]
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    return fpr, tpr


def pca_scores(train_nhw: np.ndarray, test_nhw: np.ndarray, code_size: int) -> np.ndarray:
    """Each test digit's reconstruction error (MSE per pixel, [-1, 1]) by PCA with `code_size` axes fitted on
    `train_nhw`."""
    mean_d, axes_dk = baselines.pca_axes(train_nhw, code_size)
    centred = baselines.unit_pixels(test_nhw) - mean_d
    return np.mean(np.square(centred - centred @ axes_dk @ axes_dk.T), axis=1)


def roc_figure(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: Path) -> Path:
    """One ROC curve per (class name, fpr, tpr, AUROC)."""
    colors = class_colors(len(curves))
    with style():
        fig = Figure(figsize=(6, 5.5))
        ax = fig.subplots()
        for (name, fpr, tpr, area), color in zip(curves, colors):
            ax.plot(fpr, tpr, color=color, lw=1.2, label=f"{name} normal: {area:.3f}")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
        ax.set_xlabel("false positive rate (normal digits flagged)")
        ax.set_ylabel("true positive rate (anomalies flagged)")
        ax.set_title("one-class ROC curves (AUROC in the legend)")
        ax.legend(fontsize=7, loc="lower right")
        return save(fig, path)


def extremes_figure(rows: Sequence[tuple[str, np.ndarray, np.ndarray]], images_nhw: np.ndarray, path: Path) -> Path:
    """Per (class name, scores, labels): the EXTREMES most anomalous test digits and the EXTREMES most normal."""
    lines = []
    for name, scores_n, _ in rows:
        order = np.argsort(scores_n, kind="stable")
        lines.append((f"{name}: most anomalous", images_nhw[order[::-1][:EXTREMES]]))
        lines.append((f"{name}: most normal", images_nhw[order[:EXTREMES]]))
    pixels = [(label, images.astype(np.float32) / 127.5 - 1.0) for label, images in lines]
    return digit_rows(pixels, path, "test digits by each one-class model's reconstruction error")
