"""Host-side figures for the embedding analysis and for sweeps, in one consistent style.

Figures are built on `matplotlib.figure.Figure` with the Agg canvas rather than through
pyplot: nothing is registered in pyplot's global figure list, so a figure is freed as soon as
it is saved (no leak across thousands of calls, no `plt.close` bookkeeping) and the module
works unchanged in headless training jobs whatever the user's default backend is.
Every function writes a PNG to `path` and returns `path`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

DPI = 100
MAX_PANEL_DIMS = 64  # histogram panels / heatmap rows beyond this make figures slow and unreadable
_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "savefig.dpi": DPI,
}


@contextmanager
def style() -> Iterator[None]:
    """The single place that sets rcParams; scoped so importing this module changes nothing."""
    with mpl.rc_context(_RC):
        yield


def class_colors(n_classes: int) -> np.ndarray:
    """tab10 colours, one per class (RGBA [n_classes, 4]); digits 0..9 map to tab10's 10."""
    return mpl.colormaps["tab10"](np.arange(n_classes) % 10)


def save(fig: Figure, path: Path, tight: bool = True) -> Path:
    """Renders with Agg and writes the PNG; the figure is unreferenced (freed) afterwards.

    `tight` crops to the drawn content (legends outside the axes) at the price of a second
    draw; panel grids lay themselves out and skip it (it halves their ~2 s render).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", bbox_inches="tight" if tight else None)
    return path


def _class_legend(ax: Axes, class_names: Sequence[str]) -> None:
    """Legend with one marker per class name, independent of how points were drawn."""
    colors = class_colors(len(class_names))
    handles = [
        Line2D([], [], ls="", marker="o", ms=5, color=colors[i], label=str(name))
        for i, name in enumerate(class_names)
    ]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=1.2)


def _point_size(n: int) -> float:
    """Smaller markers for denser clouds so 10k points don't merge into blobs."""
    return float(np.clip(20000.0 / max(n, 1), 2.0, 16.0))


def scatter_2d(
    coords_n2: np.ndarray, labels_n: np.ndarray, class_names: Sequence[str], title: str, path: Path,
    axis: str = "dim",
) -> Path:
    """2-D embedding coloured by class with a class-name legend; axes named `axis` 1 and 2 (e.g. "PC")."""
    return scatter_2d_panels([(title, coords_n2)], labels_n, class_names, path, axis)


def scatter_2d_panels(
    panels: Sequence[tuple[str, np.ndarray]], labels_n: np.ndarray, class_names: Sequence[str], path: Path,
    axis: str = "dim",
) -> Path:
    """2-D embeddings [N, 2] of the same points side by side (e.g. one per sweep member), each titled,
    coloured by class, one class-name legend; axes named `axis` 1 and 2."""
    with style():
        fig = Figure(figsize=(5.0 * len(panels) + 1.5, 5.5))
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        colors = class_colors(len(class_names))
        for ax, (title, coords_n2) in zip(axes, panels):
            ax.scatter(
                coords_n2[:, 0], coords_n2[:, 1], c=colors[labels_n], s=_point_size(len(labels_n)),
                linewidths=0, alpha=0.8, rasterized=True,
            )
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"{axis} 1")
            ax.set_ylabel(f"{axis} 2")
        _class_legend(axes[-1], class_names)
        return save(fig, path)


def scatter_3d(
    coords_n3: np.ndarray, labels_n: np.ndarray, class_names: Sequence[str], title: str, path: Path,
    axis: str = "dim",
) -> Path:
    """3-D embedding coloured by class, one fixed viewpoint, with a class-name legend; axes named `axis` 1-3."""
    with style():
        fig = Figure(figsize=(7.0, 6.0))
        ax = fig.add_subplot(projection="3d")
        colors = class_colors(len(class_names))
        ax.scatter(
            coords_n3[:, 0], coords_n3[:, 1], coords_n3[:, 2], c=colors[labels_n],
            s=_point_size(len(labels_n)), linewidths=0, alpha=0.8, depthshade=False,
        )
        ax.view_init(elev=20, azim=35)
        ax.set_title(title)
        for i, side in enumerate((ax.xaxis, ax.yaxis, ax.zaxis), start=1):
            side.set_ticklabels([])
            side.set_label_text(f"{axis} {i}")
        _class_legend(ax, class_names)
        return save(fig, path)


def _capped(codes_nl: np.ndarray) -> tuple[np.ndarray, str]:
    """First MAX_PANEL_DIMS dims and a title suffix saying so when the cap applies."""
    l = codes_nl.shape[1]
    if l <= MAX_PANEL_DIMS:
        return codes_nl, f"{l} dims"
    return codes_nl[:, :MAX_PANEL_DIMS], f"first {MAX_PANEL_DIMS} of {l} dims"


def correlation_heatmap(codes_nl: np.ndarray, path: Path) -> Path:
    """Pearson correlation between code dims; dead (constant) dims show as 0, not NaN."""
    x_nl, shown = _capped(np.asarray(codes_nl, np.float64))
    centred_nl = x_nl - x_nl.mean(axis=0)
    norm_l = np.linalg.norm(centred_nl, axis=0)
    unit_nl = centred_nl / np.where(norm_l > 0, norm_l, 1.0)
    corr_ll = unit_nl.T @ unit_nl
    with style():
        fig = Figure(figsize=(6.0, 5.0))
        ax = fig.add_subplot()
        image = ax.imshow(corr_ll, cmap="RdBu_r", vmin=-1.0, vmax=1.0, interpolation="nearest")
        fig.colorbar(image, ax=ax, shrink=0.8, label="Pearson r")
        ax.set_title(f"Code dimension correlation ({shown})")
        ax.set_xlabel("dim")
        ax.set_ylabel("dim")
        return save(fig, path)


def histogram_grid(codes_nl: np.ndarray, path: Path, bins: int = 40) -> Path:
    """One histogram panel per code dim (capped at MAX_PANEL_DIMS, stated in the title), each scaled to
    its own range and peak, with the range's ends written under it.

    All panels share one Axes: 64 Axes with their ticks took 2.2 s to build and draw, one takes 0.3 s.
    """
    x_nl, shown = _capped(np.asarray(codes_nl, np.float64))
    l = x_nl.shape[1]
    cols = int(np.ceil(np.sqrt(l)))
    rows = int(np.ceil(l / cols))
    height = 1.2 * rows + 0.5
    with style():
        fig = Figure(figsize=(1.6 * cols, height))
        ax = fig.add_axes((0.01, 0.01, 0.98, 1 - 0.6 / height))
        for d in range(l):
            row, col = divmod(d, cols)
            x0, y0 = col * (1 + _PANEL_GAP[0]), -row * (1 + _PANEL_GAP[1])  # the panel's lower left corner
            counts, edges = np.histogram(x_nl[:, d], bins=bins)
            span = edges[-1] - edges[0]
            ax.stairs(y0 + counts / max(counts.max(), 1), x0 + (edges - edges[0]) / span, baseline=y0, fill=True,
                      color="tab:blue")
            ax.text(x0 + 0.5, y0 + 1.05, f"d{d}", ha="center", va="bottom", fontsize=7)
            for at, value, align in ((x0, edges[0], "left"), (x0 + 1, edges[-1], "right")):
                ax.text(at, y0 - 0.04, f"{value:.3g}", ha=align, va="top", fontsize=6, color="0.3")
        ax.set_xlim(-0.05, cols * (1 + _PANEL_GAP[0]) - _PANEL_GAP[0] + 0.05)
        ax.set_ylim(-(rows - 1) * (1 + _PANEL_GAP[1]) - 0.3, 1.25)
        ax.set_axis_off()
        fig.suptitle(f"Code value histograms ({shown})")
        return save(fig, path, tight=False)


_PANEL_GAP = (0.18, 0.45)  # between histogram panels, in panel widths / heights


def line_plot(
    xs: Sequence[float],
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    path: Path,
    title: str = "",
    logx: bool = False,
) -> Path:
    """Metric vs a swept value (e.g. latent size), one line per series, mean +/- std bars.

    `logx` puts x on a log2 axis, which suits doubling sweeps like latent size 2..256.
    """
    with style():
        fig = Figure(figsize=(5.5, 4.0))
        ax = fig.add_subplot()
        for name, (mean, std) in series.items():
            ax.errorbar(xs, mean, yerr=std, marker="o", ms=4, capsize=3, label=name)
        if logx:
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(xs), [f"{x:g}" for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title)
        ax.grid(alpha=0.3)
        if series:
            ax.legend()
        return save(fig, path)


CURVE_METRICS = ("recon_mse", "probe_accuracy", "loss", "accuracy")  # the panels of `training_curves`, in order


def training_curves(records: Sequence[Mapping[str, float]], path: Path, title: str = "") -> Path:
    """One panel per metric of CURVE_METRICS the run logged: the train window means as a thin line and
    the test evaluations as dots joined by a line, against the training step (no smoothing)."""
    names = [m for m in CURVE_METRICS if any(f"test/{m}" in r or f"train/{m}" in r for r in records)]
    with style():
        fig = Figure(figsize=(5.0 * max(len(names), 1), 3.8))
        axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
        for ax, name in zip(axes, names):
            for split, kwargs in (("train", dict(lw=1, alpha=0.7)), ("test", dict(marker="o", ms=4, lw=1.5))):
                points = [(r["step"], r[f"{split}/{name}"]) for r in records if f"{split}/{name}" in r]
                if points:
                    steps, values = zip(*points)
                    ax.plot(steps, values, label=split, **kwargs)
            ax.set_xlabel("training step")
            ax.set_ylabel(name)
            ax.set_title(name.replace("_", " "))
            ax.grid(alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        return save(fig, path)
