"""Figures of digit images: a captioned grid (the outliers) and labelled rows (class means,
interpolations, a sweep's reconstructions), each drawn as one image on one Axes.

An Axes per digit took 0.9 s for 25 digits and 1.3 to 1.6 s for 5 rows of 8; one tiled image takes a
tenth of that. Style and saving are `figures`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from mnist_ae.analysis import figures

_DIGIT_GAP = 3  # pixels of white between the digits of `digit_rows`


def _tiled(images_nhw: np.ndarray, rows: int, cols: int, cell_hw: tuple[int, int], at_hw: tuple[int, int],
           fill: float) -> np.ndarray:
    """One canvas of rows x cols cells, `fill` where no image is; image i (row-major) at `at_hw` in its cell."""
    (cell_h, cell_w), (dy, dx) = cell_hw, at_hw
    canvas = np.full((rows * cell_h, cols * cell_w), fill)
    for i, image in enumerate(images_nhw):
        top, left = (i // cols) * cell_h + dy, (i % cols) * cell_w + dx
        canvas[top:top + image.shape[0], left:left + image.shape[1]] = image
    return canvas


def digit_grid(
    images_nhw: np.ndarray, titles: Sequence[str], path: Path, title: str = ""
) -> Path:
    """Grid of images (e.g. outlying digits) with one short caption each, drawn as one image (one
    Axes per digit took 0.9 s for 25 of them)."""
    images_nhw = np.asarray(images_nhw)
    n = len(images_nhw)
    cols = int(np.ceil(np.sqrt(max(n, 1))))
    rows = int(np.ceil(max(n, 1) / cols))
    h, w = images_nhw.shape[1:3] if n else (28, 28)
    cell_h, cell_w = h + h // 2, w + w // 4  # room for the caption above, a gap beside
    canvas = _tiled(images_nhw, rows, cols, (cell_h, cell_w), (h // 2, w // 8), 0.0)
    height = 1.45 * rows + 0.4
    with figures.style():
        fig = Figure(figsize=(1.3 * cols, height))
        fig.suptitle(title)
        ax = fig.add_axes((0.02, 0.02, 0.96, 1 - 0.5 / height))
        vmax = images_nhw.max() if n else 1
        ax.imshow(canvas, cmap="gray_r", interpolation="nearest", vmin=min(0, images_nhw.min() if n else 0), vmax=vmax)
        for i, caption in enumerate(titles[:n]):
            ax.text((i % cols) * cell_w + cell_w / 2 - 0.5, (i // cols) * cell_h + h // 2 - 1.5, caption,
                    ha="center", va="bottom", fontsize=7)
        ax.set_axis_off()
        return figures.save(fig, path, tight=False)


def digit_rows(rows: Sequence[tuple[str, np.ndarray]], path: Path, title: str = "",
               col_labels: Sequence[str] = ()) -> Path:
    """One labelled row of digits ([cols, H, W] in [-1, 1]) per (label, images): decoded class means,
    interpolations, a sweep's reconstructions; white strokes on black, as the data.

    Drawn as one image on one Axes, the labels as its ticks: an Axes per digit took 1.3 to 1.6 s for 5
    rows of 8 (every run's interpolations), this takes a tenth of that.
    """
    images_rchw = np.stack([np.asarray(images, np.float64) for _, images in rows])
    n_rows, cols, h, w = images_rchw.shape
    canvas = _tiled(images_rchw.reshape(-1, h, w), n_rows, cols, (h + _DIGIT_GAP, w + _DIGIT_GAP), (0, 0),
                    np.nan)[:-_DIGIT_GAP, :-_DIGIT_GAP]  # no gap after the last row and column
    with figures.style():
        fig = Figure(figsize=(0.8 * cols + 1.6, 0.85 * n_rows + (0.7 if title or col_labels else 0.2)))
        if title:
            fig.suptitle(title)
        ax = fig.add_subplot()
        ax.imshow(canvas, cmap=mpl.colormaps["gray"].with_extremes(bad="white"), vmin=-1, vmax=1,
                  interpolation="nearest")
        ax.set_yticks((np.arange(n_rows) * (h + _DIGIT_GAP) + (h - 1) / 2), [label for label, _ in rows], fontsize=8)
        ax.set_xticks((np.arange(cols) * (w + _DIGIT_GAP) + (w - 1) / 2) if col_labels else [], list(col_labels),
                      fontsize=8)
        ax.tick_params(length=0, top=bool(col_labels), labeltop=bool(col_labels), bottom=False, labelbottom=False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        return figures.save(fig, path)
