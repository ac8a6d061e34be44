"""Pictures of the latent space, made by decoding chosen codes: what the decoder has learned to draw.

- class means: the decoded mean code of each class (one row per model);
- interpolations: the line between the codes of two test digits of different classes, decoded;
- the manifold (2-unit codes): a regular grid over the codes' range, decoded and tiled;
- traversals: the units that vary most over the test codes, each moved through its percentiles while
  the others stay at their mean (for a VAE, its most active units).

The code sets are plain numpy; decoding is a callable (the run's jitted decoder), so this module
stays a host-side helper with no device or writer of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mnist_ae.analysis.digit_figures import digit_rows
from mnist_ae.analysis.figures import style

Decode = Callable[[np.ndarray], np.ndarray]  # codes [n, L] -> images [n, 28, 28] in [-1, 1]
INTERPOLATION_STEPS = 8
MANIFOLD_SIDE = 15
TRAVERSAL_PERCENTILES = np.linspace(1, 99, 9)
TRAVERSAL_UNITS = 8  # rows for a single model; a sweep's members get 2 each


def class_means(codes_nl: np.ndarray, labels_n: np.ndarray, num_classes: int) -> np.ndarray:
    """Mean code of each class, [classes, L]."""
    return np.stack([codes_nl[labels_n == c].mean(0) for c in range(num_classes)])


def interpolation_pairs(labels_n: np.ndarray, pairs: int) -> list[tuple[int, int]]:
    """Test indices (i, j): the first digit of class c and the first of class c + 1, for c = 0, 1, ..."""
    first = {int(c): int(np.argmax(labels_n == c)) for c in np.unique(labels_n)}
    classes = sorted(first)
    return [(first[a], first[b]) for a, b in zip(classes, classes[1:])][:pairs]


def interpolations(codes_nl: np.ndarray, pairs: Sequence[tuple[int, int]], steps: int) -> np.ndarray:
    """Codes along each pair's line, endpoints included: [pairs * steps, L]."""
    t_s = np.linspace(0.0, 1.0, steps)[:, None]
    return np.concatenate([(1 - t_s) * codes_nl[i] + t_s * codes_nl[j] for i, j in pairs])


def manifold_grid(codes_n2: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A side x side grid over the 1st-99th percentile of 2-unit codes: (codes [side^2, 2], xs, ys)."""
    low, high = np.percentile(codes_n2, [1, 99], axis=0)
    xs, ys = np.linspace(low[0], high[0], side), np.linspace(high[1], low[1], side)  # y up, as on a plot
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    return grid.astype(np.float32), xs, ys


def traversals(codes_nl: np.ndarray, units: int) -> tuple[np.ndarray, list[int]]:
    """Codes [units * steps, L] moving each of the `units` most varying units (largest variance first)
    through its TRAVERSAL_PERCENTILES, the other units at the mean code; and those units."""
    order = [int(u) for u in np.argsort(-codes_nl.var(0), kind="stable")[:units]]
    rows = []
    for u in order:
        row = np.repeat(codes_nl.mean(0, keepdims=True), len(TRAVERSAL_PERCENTILES), axis=0)
        row[:, u] = np.percentile(codes_nl[:, u], TRAVERSAL_PERCENTILES)
        rows.append(row)
    return np.concatenate(rows).astype(np.float32), order


def _manifold_figure(images: np.ndarray, xs: np.ndarray, ys: np.ndarray, title: str, path: Path) -> Path:
    side = len(xs)
    tiles = images.reshape(side, side, 28, 28).transpose(0, 2, 1, 3).reshape(side * 28, side * 28)
    with style():
        fig = Figure(figsize=(7, 7.3))
        ax = fig.subplots()
        ax.imshow(tiles, cmap="gray", vmin=-1, vmax=1, extent=(xs[0], xs[-1], ys[-1], ys[0]), aspect="auto")
        ax.set_xlabel("code unit 0")
        ax.set_ylabel("code unit 1")
        ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path)
    return path


def latent_pictures(models: Sequence[tuple[str, np.ndarray, Decode]], labels_n: np.ndarray,
                    class_names: Sequence[str], test_index_n: np.ndarray, outdir: Path) -> dict[str, Path]:
    """Class means, interpolations and (2-unit codes) manifolds of each (name, test codes, decoder).

    Several models (a sweep's members) share each figure, one row per model, so they compare side by
    side. Returns the figures by name."""
    outdir.mkdir(parents=True, exist_ok=True)
    num_classes = len(class_names)
    figures = {"class_means": digit_rows(
        [(name, decode(class_means(codes, labels_n, num_classes))) for name, codes, decode in models],
        outdir / "class_means.png", "decoded class means", class_names)}
    pairs = interpolation_pairs(labels_n, pairs=1 if len(models) > 1 else 5)
    rows = []
    for name, codes, decode in models:
        decoded = decode(interpolations(codes, pairs, INTERPOLATION_STEPS)).reshape(len(pairs), INTERPOLATION_STEPS, 28, 28)
        for (i, j), images in zip(pairs, decoded):
            label = f"{class_names[labels_n[i]]} #{test_index_n[i]} to {class_names[labels_n[j]]} #{test_index_n[j]}"
            rows.append((f"{name}: {label}" if len(models) > 1 else label, images))
    figures["interpolations"] = digit_rows(rows, outdir / "interpolations.png",
                                           "decoded along the line between two test digits' codes",
                                           [f"t={t:.2f}" for t in np.linspace(0, 1, INTERPOLATION_STEPS)])
    rows = []
    for name, codes, decode in models:
        path, units = traversals(codes, TRAVERSAL_UNITS if len(models) == 1 else 2)
        decoded = decode(path).reshape(len(units), len(TRAVERSAL_PERCENTILES), 28, 28)
        rows += [((f"{name}: " if len(models) > 1 else "") + f"unit {u}", images) for u, images in zip(units, decoded)]
    figures["traversals"] = digit_rows(rows, outdir / "traversals.png",
                                       "each most varying unit through its percentiles, the others at the mean code",
                                       [f"p{p:.0f}" for p in TRAVERSAL_PERCENTILES])
    for name, codes, decode in models:
        if codes.shape[1] == 2:
            grid, xs, ys = manifold_grid(codes, MANIFOLD_SIDE)
            key = "manifold" if len(models) == 1 else f"manifold_{name}"
            figures[key] = _manifold_figure(decode(grid), xs, ys, "the 2-D code space decoded"
                                            + (f" ({name})" if name else ""), outdir / f"{key}.png")
    return figures
