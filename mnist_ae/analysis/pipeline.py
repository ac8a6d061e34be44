"""`run_analysis`: the whole embedding report of one set of codes, timed stage by stage.

Runs on host arrays after the codes have been pulled from the device once. The expensive stages
run on fixed, seeded subsamples, all recorded in metrics.json under "settings" and stated in the
figure titles: the 3-D t-SNE (`embed.TSNE_3D_POINTS`), trustworthiness and silhouette (see
`quality`), and the raw-pixel baseline's t-SNE (`raw_baseline`, cached across runs).
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_ae.analysis import digit_figures, figures, tables
from mnist_ae.analysis.embed import (TSNE_3D_POINTS, background_map, default_threads, host_pca, resolved_backend,
                                     subsample_index, tsne)
from mnist_ae.analysis.quality import (SILHOUETTE_POINTS, TEST_FRACTION, TRUST_POINTS, confused_pairs,
                                       dimension_stats, map_trustworthiness, outliers, quality_numbers)
from mnist_ae.analysis.raw_baseline import RAW_PCA_DIMS
from mnist_ae.analysis.raw_baseline import raw_quality as raw_baseline_numbers
from mnist_ae.config import MIN_ANALYSIS_POINTS


class AnalysisResult(NamedTuple):
    """What run_analysis wrote, in forms the caller can log to TensorBoard / W&B directly."""

    metrics: dict[str, Any]  # same content as metrics.json
    figures: dict[str, Path]  # name -> PNG
    tables: dict[str, str]  # name -> markdown
    coords_2d: dict[str, np.ndarray]  # "pca", "tsne" -> [N, 2]
    index_n: np.ndarray  # which input rows the N analysed points are (all, or the subsample)

    def summary(self) -> dict[str, float]:
        """The codes' quality numbers, for the end-of-run summary and the HParams metric columns."""
        return {f"analysis/{k}": float(v) for k, v in self.metrics["codes"].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}


class _Scored(NamedTuple):
    """Projections and quality numbers, handed from the compute stages to the writers."""

    pca_n3: np.ndarray  # [N, min(3, L)]
    coords_2d: dict[str, np.ndarray]
    tsne_n3: np.ndarray | None  # [len(index_3d), 3]
    codes_quality: dict[str, float]
    raw_quality: dict[str, float]


class StageTimes(dict):
    """Seconds per analysis stage, and who is told as each one ends (a piped log is never silent for
    the length of the whole analysis)."""

    def __init__(self, say: Callable[[str], None] | None = None):
        super().__init__()
        self.say = say


@contextmanager
def _timed(timings_s: StageTimes, stage: str) -> Iterator[None]:
    """Adds the wall time of the block to timings_s[stage] (rounded to ms) and says it in one line."""
    start = time.perf_counter()
    yield
    _record(timings_s, stage, time.perf_counter() - start)


def _record(timings_s: StageTimes, stage: str, seconds: float) -> None:
    """Adds `seconds` to timings_s[stage] (rounded to ms) and says them in one line."""
    timings_s[stage] = round(timings_s.get(stage, 0.0) + seconds, 3)
    if timings_s.say is not None:
        timings_s.say(f"  analysis: {stage} ... {seconds:.1f} s")


def run_analysis(
    codes: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    class_names: Sequence[str],
    outdir: Path,
    *,
    probe_accuracy: float | None = None,
    probe_confusion: np.ndarray | None = None,
    tsne_backend: str = "auto",
    subsample: int = 0,
    seed: int = 0,
    with_tsne: bool = True,
    raw_baseline: bool = True,
    tsne_3d_points: int = TSNE_3D_POINTS,
    threads: int | None = None,
    say: Callable[[str], None] | None = None,
) -> AnalysisResult:
    """Full embedding report for codes [N, L] of the digits images [N, 28, 28] into `outdir`.

    `subsample` > 0 analyses a fixed seeded subset of that many points throughout (quick
    looks during training); 0 uses all. The 3-D t-SNE runs on `tsne_3d_points` of them
    (0 = all). `threads` caps native (OpenMP/BLAS) threads, default `default_threads()`. `say` gets
    one line per finished stage with its time.
    Writes pca_2d/pca_3d/tsne_2d/tsne_3d/correlation/histograms/outliers.png, stats.md/.csv,
    confused_pairs.md, quality.md, metrics.json and coords.npz (the maps' coordinates); see the
    module docstring for which stages subsample.
    """
    start = time.perf_counter()
    codes_nl = np.asarray(codes, dtype=np.float32)
    if not np.isfinite(codes_nl).all():
        raise ValueError("run_analysis: codes contain NaN/inf (diverged model?)")
    if min(len(codes_nl), subsample or len(codes_nl)) < MIN_ANALYSIS_POINTS:
        raise ValueError(f"run_analysis: needs at least {MIN_ANALYSIS_POINTS} points, got {len(codes_nl)} "
                         f"(subsample={subsample})")
    labels_n, images_nhw = np.asarray(labels, dtype=np.int64), np.asarray(images)
    keep = subsample_index(len(codes_nl), subsample or len(codes_nl), seed)
    codes_nl, labels_n, images_nhw = codes_nl[keep], labels_n[keep], images_nhw[keep]
    n, l = codes_nl.shape
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    threads = threads or default_threads()
    index_3d = subsample_index(n, tsne_3d_points or n, seed)
    timings_s = StageTimes(say)
    # The 2-D map of every code is the longest stage (openTSNE's FFT on all 10,000): it is drawn in the
    # background (`embed.background_map`) while this thread does every other stage and figure.
    with threadpool_limits(threads), (background_map(codes_nl, 2, seed=seed, backend=tsne_backend, threads=threads)
                                      if with_tsne else nullcontext()) as map_2d:
        scored = _embed_and_score(
            codes_nl, labels_n, images_nhw, timings_s, probe_accuracy=probe_accuracy,
            tsne_backend=tsne_backend, seed=seed, with_tsne=with_tsne, raw_baseline=raw_baseline,
            index_3d=index_3d, threads=threads,
        )
        with _timed(timings_s, "figures_tables"):
            pngs = _write_figures(outdir, codes_nl, labels_n, images_nhw, class_names, scored, index_3d, tsne_backend,
                                  keep)
            stats = tables.write_stats(dimension_stats(codes_nl), outdir)
        if map_2d is not None:
            tsne_n2, seconds = map_2d.result()
            _record(timings_s, "tsne_2d", seconds)
            scored = _with_map(scored, codes_nl, tsne_n2, timings_s, seed)
            with _timed(timings_s, "figure_tsne_2d"):
                pngs["tsne_2d"] = figures.scatter_2d(
                    scored.coords_2d["tsne"], labels_n, class_names,
                    f"t-SNE of codes ({n} points, {resolved_backend(tsne_backend, n)})", outdir / "tsne_2d.png",
                    _map_axis(tsne_backend))
    pairs = confused_pairs(probe_confusion, class_names) if probe_confusion is not None else None
    markdown = {
        "quality": tables.quality_table(scored.codes_quality, scored.raw_quality),
        "stats": stats,
        "confused_pairs": tables.confused_pairs_table(pairs),
    }
    (outdir / "quality.md").write_text(markdown["quality"])
    (outdir / "confused_pairs.md").write_text(markdown["confused_pairs"])
    timings_s["total"] = round(time.perf_counter() - start, 3)
    metrics = {
        "codes": scored.codes_quality,
        "raw_pixels": scored.raw_quality,
        "timings_s": dict(timings_s),
        "confused_pairs": [list(pair) for pair in pairs or []],
        "settings": {
            "n_points": n, "latent_dims": l, "seed": seed, "subsample": subsample,
            "threads": threads,
            "tsne_backend": tsne_backend if with_tsne else None,
            "tsne_maps": {"2d": resolved_backend(tsne_backend, n), "3d": resolved_backend(tsne_backend, len(index_3d))}
            if with_tsne else None,
            "tsne_3d_points": len(index_3d) if with_tsne else None,
            "trustworthiness_points": min(n, TRUST_POINTS) if with_tsne else None,
            "silhouette_points": min(n, SILHOUETTE_POINTS),
            "split": f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%}, seed {seed}",
            "raw_pixels": f"images/255 (784 dims); its t-SNE after PCA-{RAW_PCA_DIMS} on the"
            " trustworthiness subsample",
        },
    }
    (outdir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_coords(outdir / "coords.npz", keep, scored, index_3d)
    return AnalysisResult(metrics, pngs, markdown, scored.coords_2d, keep)


def _write_coords(path: Path, keep: np.ndarray, scored: _Scored, index_3d: np.ndarray) -> None:
    """The maps' coordinates with the test index of each point, for the interactive maps of report.html
    (the t-SNE is the costly part: read back, never recomputed)."""
    arrays = {"index": keep, "pca_2d": scored.coords_2d["pca"], "pca_3d": scored.pca_n3}
    if scored.tsne_n3 is not None:
        arrays.update(tsne_2d=scored.coords_2d["tsne"], tsne_3d=scored.tsne_n3, index_3d=keep[index_3d])
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})


def _embed_and_score(
    codes_nl: np.ndarray,
    labels_n: np.ndarray,
    images_nhw: np.ndarray,
    timings_s: StageTimes,
    *,
    probe_accuracy: float | None,
    tsne_backend: str,
    seed: int,
    with_tsne: bool,
    raw_baseline: bool,
    index_3d: np.ndarray,
    threads: int,
) -> _Scored:
    """The compute stages of run_analysis but the 2-D map (drawn in the background), each timed into timings_s."""
    with _timed(timings_s, "pca"):
        pca_n3 = host_pca(codes_nl, 3).projected
    # A 1-unit code has one principal axis: its 2-D view is that axis against a zero column.
    coords_2d = {"pca": np.pad(pca_n3[:, :2], ((0, 0), (0, 2 - min(2, pca_n3.shape[1]))))}
    tsne_n3 = None
    if with_tsne:
        with _timed(timings_s, "tsne_3d"):
            tsne_n3 = tsne(codes_nl[index_3d], 3, seed=seed, backend=tsne_backend, threads=threads)
    with _timed(timings_s, "quality_codes"):
        codes_quality = quality_numbers(codes_nl, labels_n, tsne_2d=None, probe_accuracy=probe_accuracy, seed=seed)
    raw_quality = raw_baseline_numbers(images_nhw, labels_n, tsne_backend=tsne_backend, seed=seed, with_tsne=with_tsne,
                                       threads=threads, timed=functools.partial(_timed, timings_s)) if raw_baseline else {}
    return _Scored(pca_n3, coords_2d, tsne_n3, codes_quality, raw_quality)


def _map_axis(backend: str) -> str:
    return "UMAP" if backend == "umap" else "t-SNE"


def _with_map(scored: _Scored, codes_nl: np.ndarray, tsne_n2: np.ndarray, timings_s: StageTimes, seed: int) -> _Scored:
    """`scored` with the 2-D map and its trustworthiness, in the numbers where quality.md lists it (before dead_dims)."""
    with _timed(timings_s, "trustworthiness"):
        trust = float(map_trustworthiness(codes_nl[None], tsne_n2[None], seed=seed)[0])
    numbers = list(scored.codes_quality.items())
    at = [k for k, _ in numbers].index("dead_dims")
    return scored._replace(coords_2d={**scored.coords_2d, "tsne": tsne_n2},
                           codes_quality=dict(numbers[:at] + [("trustworthiness", trust)] + numbers[at:]))


def _write_figures(
    outdir: Path,
    codes_nl: np.ndarray,
    labels_n: np.ndarray,
    images_nhw: np.ndarray,
    class_names: Sequence[str],
    scored: _Scored,
    index_3d: np.ndarray,
    backend: str,
    test_index_n: np.ndarray,
) -> dict[str, Path]:
    """The PNGs of run_analysis but the 2-D map's (drawn while it is computed); subsample sizes go into the titles, and the outlier captions
    name each digit's index in the test set (`test_index_n`: analysed row -> test index)."""
    n = len(codes_nl)
    pca_n3, tsne_n3 = scored.pca_n3, scored.tsne_n3
    pngs = {
        "pca_2d": figures.scatter_2d(
            scored.coords_2d["pca"], labels_n, class_names, f"PCA of codes ({n} points)", outdir / "pca_2d.png", "PC",
        ),
        "correlation": figures.correlation_heatmap(codes_nl, outdir / "correlation.png"),
        "histograms": figures.histogram_grid(codes_nl, outdir / "histograms.png"),
    }
    if pca_n3.shape[1] == 3:
        pngs["pca_3d"] = figures.scatter_3d(
            pca_n3, labels_n, class_names, f"PCA 3-D of codes ({n} points)", outdir / "pca_3d.png", "PC"
        )
    if tsne_n3 is not None:
        pngs["tsne_3d"] = figures.scatter_3d(
            tsne_n3, labels_n[index_3d], class_names,
            f"t-SNE 3-D of codes ({len(index_3d)} of {n} points, {resolved_backend(backend, len(index_3d))})",
            outdir / "tsne_3d.png", _map_axis(backend),
        )
    far = outliers(codes_nl, labels_n)
    pngs["outliers"] = digit_figures.digit_grid(
        images_nhw[far], [f"{class_names[labels_n[i]]} (test #{test_index_n[i]})" for i in far],
        outdir / "outliers.png", title="Farthest from their class centroid (label, index in the test set)",
    )
    return pngs
