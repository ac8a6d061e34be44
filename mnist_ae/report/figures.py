"""The report's interactive figures, as Plotly figures (the page draws them with plotly.js).

Each map draws one trace per class, so the legend toggles classes; every point carries its row
(for the hover thumbnail), its test index and the probe's prediction in `customdata`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

COLOURS = qualitative.D3  # ten distinct colours, one per class
CURVES = (("reconstruction MSE", "recon_mse"), ("probe accuracy", "probe_accuracy"), ("probe loss", "probe_loss"))
LAYOUT = dict(margin=dict(l=50, r=10, t=40, b=40), hovermode="closest")
MAX_HISTOGRAMS = 16
# The look (plotly_white) is set once per page by its glue (`page.template_json`), not in every figure:
# plotly deep-copies and validates a template into each figure it builds (20-50 ms per figure here, most
# of a sweep report's time) and its JSON is 6.5 kB per figure. "none" is plotly's empty template.
BARE = dict(template="none")


def _figure(data: Any = None) -> go.Figure:
    return go.Figure(data, layout=BARE)


def _subplots(rows: int, cols: int, titles: Sequence[str]) -> go.Figure:
    return make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), figure=_figure())


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["step"], r[key]) for r in records if key in r and "step" in r]
    return [s for s, _ in points], [v for _, v in points]


def curves(records: Sequence[dict[str, Any]]) -> go.Figure:
    """Train windows and test evals against the step, one panel per quantity; hover for values."""
    fig = _subplots(1, len(CURVES), [title for title, _ in CURVES])
    for col, (_, key) in enumerate(CURVES, start=1):
        for split, dash in (("train", "solid"), ("test", "dot")):
            steps, values = _series(records, f"{split}/{key}")
            if steps:
                fig.add_trace(go.Scatter(x=steps, y=values, name=f"{split}/{key}", mode="lines+markers" if split == "test"
                                         else "lines", line=dict(dash=dash)), row=1, col=col)
        fig.update_xaxes(title_text="step", row=1, col=col)
    fig.update_layout(**LAYOUT, height=320, legend=dict(orientation="h", y=-0.25))
    return fig


OVERLAID_NOTE = "markers: test evals, faint lines: train windows; runs:"


def overlaid_curves(runs: Sequence[tuple[str, Sequence[dict[str, Any]]]]) -> go.Figure:
    """The same panels with one colour per run: test (markers) and train (thin faint line), as the legend's
    title says (its entries name the runs)."""
    fig = _subplots(1, len(CURVES), [title for title, _ in CURVES])
    for i, (name, records) in enumerate(runs):
        colour = COLOURS[i % len(COLOURS)]
        for col, (_, key) in enumerate(CURVES, start=1):
            for split in ("train", "test"):
                steps, values = _series(records, f"{split}/{key}")
                if steps:
                    fig.add_trace(go.Scatter(
                        x=steps, y=values, name=name, legendgroup=name, showlegend=col == 1 and split == "test",
                        mode="lines+markers" if split == "test" else "lines", opacity=1.0 if split == "test" else 0.35,
                        line=dict(color=colour, width=2 if split == "test" else 1),
                        hovertemplate=f"{name} {split}/{key}<br>step %{{x}}: %{{y:.4f}}<extra></extra>"), row=1, col=col)
    fig.update_layout(**LAYOUT, height=340, legend=dict(orientation="h", y=-0.25, title=dict(text=OVERLAID_NOTE)))
    return fig


def _class_traces(coords_nk: np.ndarray, labels_n: np.ndarray, class_names: Sequence[str],
                  custom_nc: np.ndarray | None, three_d: bool, marker_size: float) -> list[Any]:
    traces = []
    hover = ("label %{fullData.name}, probe says %{customdata[2]}<br>test #%{customdata[1]}<extra></extra>"
             if custom_nc is not None else "%{fullData.name}<extra></extra>")
    for c, name in enumerate(class_names):
        rows = np.flatnonzero(labels_n == c)
        common = dict(name=name, mode="markers", hovertemplate=hover,
                      customdata=None if custom_nc is None else custom_nc[rows],
                      marker=dict(color=COLOURS[c % len(COLOURS)], size=marker_size))
        xyz = coords_nk[rows].astype(np.float32)
        if three_d:
            traces.append(go.Scatter3d(x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], **common))
        else:
            traces.append(go.Scattergl(x=xyz[:, 0], y=xyz[:, 1], **common))
    return traces


def hover_data(rows_n: np.ndarray, test_index_n: np.ndarray, preds_n: np.ndarray,
               class_names: Sequence[str]) -> np.ndarray:
    """customdata per point: [sprite row, test index, predicted class name] (object array; the label is
    the trace's name)."""
    names = np.asarray(class_names, dtype=object)
    return np.stack([rows_n.astype(object), test_index_n.astype(object), names[preds_n]], axis=1)


def scatter_map(coords_n2: np.ndarray, labels_n: np.ndarray, custom_nc: np.ndarray | None,
                class_names: Sequence[str], title: str) -> go.Figure:
    """A 2-D map of the codes; hovering a point shows its digit (page glue), label and prediction."""
    fig = _figure(_class_traces(coords_n2, labels_n, class_names, custom_nc, False, 4))
    fig.update_layout(**LAYOUT, title=title, height=460, legend=dict(itemsizing="constant"))
    return fig


def scatter_3d(coords_n3: np.ndarray, labels_n: np.ndarray, custom_nc: np.ndarray, class_names: Sequence[str],
               title: str) -> go.Figure:
    """A rotatable 3-D map (drag to turn, scroll to zoom)."""
    fig = _figure(_class_traces(coords_n3, labels_n, class_names, custom_nc, True, 2))
    fig.update_layout(**LAYOUT, title=title, height=520, legend=dict(itemsizing="constant"))
    return fig


def forming_frames(maps_n2: Sequence[np.ndarray], labels_n: np.ndarray,
                   class_names: Sequence[str]) -> tuple[go.Figure, list[list[list[list[float]]]]]:
    """The last step's map as a figure, and every step's [class][x|y][points] for the slider glue,
    on one fixed axis range so that the steps compare."""
    fig = scatter_map(maps_n2[-1], labels_n, None, class_names, "")  # the slider starts at the end
    extent = float(max(np.quantile(np.abs(m), 0.995) for m in maps_n2)) * 1.1
    fig.update_layout(title=None, xaxis=dict(range=[-extent, extent], title="PC 1 (aligned)"),
                      yaxis=dict(range=[-extent, extent], title="PC 2 (aligned)", scaleanchor="x"))
    frames = [[[np.round(m[labels_n == c, 0], 2).tolist(), np.round(m[labels_n == c, 1], 2).tolist()]
               for c in range(len(class_names))] for m in maps_n2]
    return fig, frames


def heatmap(z_rc: np.ndarray, title: str, x: Sequence[str], y: Sequence[str], *, counts: bool = False) -> go.Figure:
    """Correlation (diverging, -1..1) or a confusion matrix (counts written in the cells)."""
    trace = go.Heatmap(z=z_rc, x=list(x), y=list(y), colorscale="Blues" if counts else "RdBu",
                       zmid=None if counts else 0, zmin=None if counts else -1, zmax=None if counts else 1,
                       texttemplate="%{z}" if counts else None,
                       hovertemplate=("true %{y}, predicted %{x}: %{z}" if counts else "dims %{y}, %{x}: %{z:.2f}")
                       + "<extra></extra>")
    fig = _figure(trace)
    side = min(700, 160 + 22 * len(x))
    fig.update_layout(**LAYOUT, title=title, height=side, yaxis=dict(autorange="reversed"),  # as wide as its column
                      xaxis_title="predicted" if counts else None, yaxis_title="true" if counts else None)
    return fig


def histograms(codes_nl: np.ndarray) -> go.Figure:
    """One histogram per code unit (the MAX_HISTOGRAMS widest ones for large codes)."""
    order = np.argsort(-codes_nl.std(axis=0), kind="stable")[:MAX_HISTOGRAMS]
    cols = 4
    rows = -(-len(order) // cols)
    fig = _subplots(rows, cols, [f"unit {d}" for d in order])
    for i, d in enumerate(order):  # counted here: 40 bars a unit instead of every code in the page
        counts, edges = np.histogram(codes_nl[:, d], bins=40)
        fig.add_trace(go.Bar(x=((edges[:-1] + edges[1:]) / 2).astype(np.float32), y=counts.astype(np.int32),
                             width=float(edges[1] - edges[0]), showlegend=False, marker_color=COLOURS[0],
                             hovertemplate="%{x:.3g}: %{y}<extra></extra>"), row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(**LAYOUT, height=170 * rows, bargap=0)
    return fig
