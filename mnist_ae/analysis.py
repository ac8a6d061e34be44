"""Host-side analysis of test-set embeddings: projections, quality numbers, figures, tables.

Everything here runs on numpy/scikit-learn after the codes have been pulled to host; the
only JAX piece is the pure `mnist_ae.pca.pca`. Budget: 10k codes x 64 dims with both t-SNEs
within a minute on a 2-core CPU with scikit-learn alone (benchmarks/analysis_timing.py; ~45
CPU-seconds of work, most of it the full 2-D t-SNE). That is met by a coarser Barnes-Hut
(SKLEARN_ANGLE), by capping native threads (default_threads) and by running the expensive
pieces on fixed, seeded subsamples, all recorded in metrics.json under "settings" and stated
in figure titles:

* 3-D t-SNE: TSNE_3D_POINTS points (Barnes-Hut in 3-D costs far more per point than in 2-D
  and grows faster than linearly: measured 1 thread, 500 iterations, 2000 points ~8 s,
  3000 points ~17 s, while 2-D on all 10k takes ~25 s).
* trustworthiness: TRUST_POINTS points (it is O(n^2) in memory and time).
* silhouette: SILHOUETTE_POINTS points.
* raw-pixel baseline t-SNE: only on the trustworthiness subsample, after PCA to RAW_PCA_DIMS
  dims (the TensorBoard projector's own raw-MNIST recipe); kNN, logistic regression,
  silhouette and PCA variance use all 784 pixels.
"""

import csv
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE, trustworthiness
from sklearn.metrics import silhouette_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from mnist_ae import plots
from mnist_ae.config import MIN_ANALYSIS_POINTS, TSNE_BACKENDS
from mnist_ae.core.pca import pca

TSNE_3D_POINTS = 2000
TRUST_POINTS = 3000
TRUST_NEIGHBORS = 5
SILHOUETTE_POINTS = 5000
RAW_PCA_DIMS = 50
TEST_FRACTION = 0.2
NEAR_ZERO_REL = 1e-3  # |x| <= NEAR_ZERO_REL * RMS(all codes) counts as "near zero"
DEAD_STD = 1e-6
DEAD_NEAR_ZERO_SHARE = 0.99
OUTLIER_POINTS = 25
# Barnes-Hut accuracy/speed trade-off for sklearn (its default is 0.5). Measured on 10k
# structured 64-d codes: 0.7 needs ~1/3 less CPU in 2-D and 3-D, trustworthiness unchanged
# to 1e-3 (0.9758 vs 0.9759; 3-D on 3000 points 0.9898 vs 0.9899).
SKLEARN_ANGLE = 0.7

# One XLA compile per input shape instead of one per primitive in eager mode (~3x faster here).
_pca = jax.jit(pca, static_argnums=1)


class AnalysisResult(NamedTuple):
    """What run_analysis wrote, in forms the caller can log to TensorBoard / W&B directly."""

    metrics: dict[str, Any]  # same content as metrics.json
    figures: dict[str, Path]  # name -> PNG
    tables: dict[str, str]  # name -> markdown
    coords_2d: dict[str, np.ndarray]  # "pca", "tsne" -> [N, 2]
    index_n: np.ndarray  # which input rows the N analysed points are (all, or the subsample)

    def summary(self) -> dict[str, float]:
        """The headline numbers for an end-of-run summary, named as they are logged."""
        codes = self.metrics["codes"]
        return {f"analysis/{k}": codes[k] for k in ("knn5_accuracy", "trustworthiness") if k in codes}


def subsample_index(n: int, cap: int, seed: int) -> np.ndarray:
    """Sorted indices of a fixed, seeded subset of min(n, cap) of n points (all if n <= cap).

    Shared by every subsampled stage so that, e.g., the codes' and the raw pixels'
    trustworthiness are measured on the same digits.
    """
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def default_threads() -> int:
    """Half the CPUs this process may use, at least 1.

    Analysis usually shares the box (training process, data loading, other jobs), and
    OpenMP/BLAS threads that spin-wait for a busy core are very costly. Measured on the shared
    2-core dev box (load 4-6): the 10k x 64 analysis took 136-166 s with 2 threads against
    55-69 s with 1, and 3000-point t-SNEs were up to 4x slower with 2 threads.
    """
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (usable or 1) // 2)


def _optional_module(module: str, backend: str) -> ModuleType:
    """Imports an optional backend, failing with one line that says how to install it."""
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"tsne backend {backend!r} needs the {module} package: pip install '.[tsne]'"
        ) from None


def tsne(
    x_nl: np.ndarray,
    dims: int,
    *,
    seed: int = 0,
    backend: str = "sklearn",
    perplexity: float = 30.0,
    max_iter: int = 500,
    threads: int | None = None,
) -> np.ndarray:
    """Non-linear 2-D/3-D embedding [N, dims] float32 of `x_nl` [N, L].

    backend: "sklearn" (default install, Barnes-Hut), "opentsne" (FFT in 2-D, Barnes-Hut in
    3-D) or "umap" (umap-learn, n_neighbors = perplexity / 2 so 30 maps to UMAP's default 15;
    UMAP picks its own epoch count, max_iter is not used). `max_iter` counts all iterations
    including the 250 early-exaggeration ones, as in scikit-learn (which needs >= 250), and is
    mapped the same way for openTSNE. Perplexity is clipped to (N - 1) / 3 for tiny N.
    `threads` (default `default_threads()`) caps the OpenMP threads of sklearn / openTSNE;
    UMAP runs single-threaded anyway once seeded.
    """
    x_nl = np.ascontiguousarray(x_nl, dtype=np.float32)
    perplexity = float(min(perplexity, (len(x_nl) - 1) / 3))
    threads = threads or default_threads()
    init = "pca" if x_nl.shape[1] >= dims else "random"  # PCA init needs as many input dims as output
    if backend == "sklearn":
        model = TSNE(
            n_components=dims, perplexity=perplexity, max_iter=max_iter, init=init,
            learning_rate="auto", angle=SKLEARN_ANGLE, random_state=seed,
        )
        with threadpool_limits(threads):
            return model.fit_transform(x_nl).astype(np.float32)
    if backend == "opentsne":
        open_tsne = _optional_module("openTSNE", backend)
        exaggeration_iter = min(250, max_iter // 2)
        embedding = open_tsne.TSNE(
            n_components=dims, perplexity=perplexity, early_exaggeration_iter=exaggeration_iter, initialization=init,
            n_iter=max_iter - exaggeration_iter, random_state=seed, n_jobs=threads,
            negative_gradient_method="fft" if dims == 2 else "bh",  # FFT in 3-D is far slower
        ).fit(x_nl)
        return np.asarray(embedding, dtype=np.float32)
    if backend == "umap":
        umap = _optional_module("umap", backend)
        n_neighbors = int(np.clip(round(perplexity / 2), 2, len(x_nl) - 1))
        model = umap.UMAP(n_components=dims, n_neighbors=n_neighbors, random_state=seed)
        return np.asarray(model.fit_transform(x_nl), dtype=np.float32)
    raise ValueError(f"unknown tsne backend {backend!r}: use one of {', '.join(TSNE_BACKENDS)}")


def dimension_stats(codes: np.ndarray) -> list[dict[str, float | int | bool]]:
    """Per code dim: dim, mean, std, min, max, near_zero share, dead flag.

    "Near zero" is |x| <= NEAR_ZERO_REL times the RMS of all codes, so the threshold follows
    the code scale (tanh codes ~1, unbounded codes ~10s) instead of a fixed 1e-3. A dim is
    dead if its std < DEAD_STD or more than DEAD_NEAR_ZERO_SHARE of its values are near zero
    (e.g. a ReLU unit that never fires).
    """
    x_nl = np.asarray(codes, dtype=np.float64)
    tol = NEAR_ZERO_REL * np.sqrt(np.mean(np.square(x_nl)))
    std_l = x_nl.std(axis=0)
    near_zero_l = np.mean(np.abs(x_nl) <= tol, axis=0)
    dead_l = (std_l < DEAD_STD) | (near_zero_l > DEAD_NEAR_ZERO_SHARE)
    columns = zip(x_nl.mean(axis=0), std_l, x_nl.min(axis=0), x_nl.max(axis=0), near_zero_l, dead_l)
    return [
        {"dim": d, "mean": float(mean), "std": float(std), "min": float(lo), "max": float(hi),
         "near_zero": float(near), "dead": bool(dead)}
        for d, (mean, std, lo, hi, near, dead) in enumerate(columns)
    ]


def quality_numbers(
    codes: np.ndarray,
    labels: np.ndarray,
    *,
    tsne_2d: np.ndarray | None,
    probe_accuracy: float | None,
    seed: int = 0,
    tsne_index: np.ndarray | None = None,
) -> dict[str, float]:
    """How well an embedding [N, L] separates classes and how faithful its t-SNE is.

    knn5_accuracy / logreg_accuracy: fit on a stratified, seeded 80% split of the given
    points, scored on the other 20% (the test set is all we embed; a fixed split keeps
    numbers comparable across runs). kNN works on the raw code geometry; the logistic
    regression standardizes first and stops at tol=1e-3 (same accuracy to ~0.1%, 3-5x faster).
    silhouette: by label, on SILHOUETTE_POINTS seeded points. trustworthiness: of `tsne_2d`
    w.r.t. the codes (n_neighbors=5) on TRUST_POINTS seeded points; `tsne_2d` embeds the
    rows `tsne_index` of `codes` (default: all rows). pca_explained_variance_2/_3: cumulative.
    dead_dims: see dimension_stats. Keys whose input is None (trustworthiness,
    probe_accuracy) are left out rather than set to NaN.
    """
    x_nl = np.asarray(codes, dtype=np.float32)
    y_n = np.asarray(labels)
    n, l = x_nl.shape
    class_counts = np.unique(y_n, return_counts=True)[1]
    # Stratify whenever sklearn can (>= 2 per class, a test slot per class): tiny slices can't.
    can_stratify = class_counts.min() >= 2 and n * TEST_FRACTION >= len(class_counts)
    stratify = y_n if can_stratify else None
    train, test = train_test_split(
        np.arange(n), test_size=TEST_FRACTION, random_state=seed, stratify=stratify
    )
    knn = KNeighborsClassifier(n_neighbors=5).fit(x_nl[train], y_n[train])
    logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200, tol=1e-3))
    logreg.fit(x_nl[train], y_n[train])
    ratio_k = np.asarray(_pca(jnp.asarray(x_nl), min(3, n, l)).explained_variance_ratio)
    cumulative_k = np.cumsum(ratio_k)
    numbers: dict[str, float] = {
        "knn5_accuracy": float(knn.score(x_nl[test], y_n[test])),
        "logreg_accuracy": float(logreg.score(x_nl[test], y_n[test])),
        "silhouette": float(
            silhouette_score(
                x_nl, y_n, sample_size=min(n, SILHOUETTE_POINTS), random_state=seed
            )
        ),
        "pca_explained_variance_2": float(cumulative_k[min(2, len(cumulative_k)) - 1]),
        "pca_explained_variance_3": float(cumulative_k[-1]),
        "dead_dims": sum(row["dead"] for row in dimension_stats(x_nl)),
    }
    if tsne_2d is not None:
        rows = np.arange(n) if tsne_index is None else np.asarray(tsne_index)
        pick = subsample_index(len(rows), TRUST_POINTS, seed)
        numbers["trustworthiness"] = float(
            trustworthiness(x_nl[rows[pick]], tsne_2d[pick], n_neighbors=TRUST_NEIGHBORS)
        )
    if probe_accuracy is not None:
        numbers["probe_accuracy"] = float(probe_accuracy)
    return numbers


def confused_pairs(
    confusion: np.ndarray, class_names: Sequence[str], top: int = 5
) -> list[tuple[str, str, int]]:
    """Class pairs most often mistaken for each other, either way round (C[i,j] + C[j,i]).

    Pairs with zero confusions are left out; ties keep class order (stable sort).
    """
    confusion_cc = np.asarray(confusion, dtype=np.int64)
    symmetric_cc = confusion_cc + confusion_cc.T
    i_p, j_p = np.triu_indices(len(confusion_cc), k=1)
    counts_p = symmetric_cc[i_p, j_p]
    order = np.argsort(-counts_p, kind="stable")
    return [
        (str(class_names[i_p[p]]), str(class_names[j_p[p]]), int(counts_p[p]))
        for p in order[:top]
        if counts_p[p] > 0
    ]


def outliers(codes: np.ndarray, labels: np.ndarray, top: int = OUTLIER_POINTS) -> np.ndarray:
    """Indices of the `top` points farthest from their class centroid, farthest first.

    Distances are Euclidean after standardizing each dim over all points, so a few
    large-scale dims don't decide alone; constant dims are left unscaled (they add 0).
    """
    x_nl = np.asarray(codes, dtype=np.float64)
    std_l = x_nl.std(axis=0)
    z_nl = (x_nl - x_nl.mean(axis=0)) / np.where(std_l > DEAD_STD, std_l, 1.0)
    _, class_n = np.unique(np.asarray(labels), return_inverse=True)
    sums_cl = np.zeros((class_n.max() + 1, x_nl.shape[1]))
    np.add.at(sums_cl, class_n, z_nl)
    centroids_cl = sums_cl / np.bincount(class_n)[:, None]
    distance_n = np.linalg.norm(z_nl - centroids_cl[class_n], axis=1)
    return np.argsort(-distance_n, kind="stable")[:top]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """GitHub markdown table; floats to 4 decimals, None as an em dash."""

    def cell(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@contextmanager
def _timed(timings_s: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the wall time of the block to timings_s[stage] (rounded to ms)."""
    start = time.perf_counter()
    yield
    timings_s[stage] = round(timings_s.get(stage, 0.0) + time.perf_counter() - start, 3)


def _quality_table(codes: dict[str, float], raw_pixels: dict[str, float]) -> str:
    """metric | codes | raw pixels, over the union of metric names (missing ones as a dash)."""
    names = list(codes) + [name for name in raw_pixels if name not in codes]
    header = ["metric", "codes"] + (["raw pixels"] if raw_pixels else [])
    rows = [
        [name, codes.get(name)] + ([raw_pixels.get(name)] if raw_pixels else []) for name in names
    ]
    return markdown_table(header, rows)


def _write_stats(stats: list[dict[str, Any]], outdir: Path) -> str:
    """stats.csv and stats.md from dimension_stats; returns the markdown."""
    header = list(stats[0])
    with open(outdir / "stats.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(stats)
    table = markdown_table(header, [list(row.values()) for row in stats])
    (outdir / "stats.md").write_text(table)
    return table


def run_analysis(
    codes: np.ndarray,
    labels: np.ndarray,
    images: np.ndarray,
    class_names: Sequence[str],
    outdir: Path,
    *,
    probe_accuracy: float | None = None,
    probe_confusion: np.ndarray | None = None,
    tsne_backend: str = "sklearn",
    subsample: int = 0,
    seed: int = 0,
    with_tsne: bool = True,
    raw_baseline: bool = True,
    tsne_3d_points: int = TSNE_3D_POINTS,
    threads: int | None = None,
) -> AnalysisResult:
    """Full embedding report for codes [N, L] of the digits images [N, 28, 28] into `outdir`.

    `subsample` > 0 analyses a fixed seeded subset of that many points throughout (quick
    looks during training); 0 uses all. The 3-D t-SNE runs on `tsne_3d_points` of them
    (0 = all). `threads` caps native (OpenMP/BLAS) threads, default `default_threads()`.
    Writes pca_2d/pca_3d/tsne_2d/tsne_3d/correlation/histograms/outliers.png, stats.md/.csv,
    confused_pairs.md, quality.md and metrics.json (see module docstring for which stages
    subsample).
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
    timings_s: dict[str, float] = {}
    with threadpool_limits(threads):
        scored = _embed_and_score(
            codes_nl, labels_n, images_nhw, timings_s, probe_accuracy=probe_accuracy,
            tsne_backend=tsne_backend, seed=seed, with_tsne=with_tsne, raw_baseline=raw_baseline,
            index_3d=index_3d, threads=threads,
        )
    pairs = confused_pairs(probe_confusion, class_names) if probe_confusion is not None else []
    with _timed(timings_s, "figures_tables"):
        figures = _write_figures(
            outdir, codes_nl, labels_n, images_nhw, class_names, scored, index_3d, tsne_backend
        )
        tables = {
            "quality": _quality_table(scored.codes_quality, scored.raw_quality),
            "stats": _write_stats(dimension_stats(codes_nl), outdir),
            "confused_pairs": (
                markdown_table(["class", "class", "confusions (both ways)"], pairs)
                if probe_confusion is not None
                else "No probe confusion matrix was given.\n"
            ),
        }
        (outdir / "quality.md").write_text(tables["quality"])
        (outdir / "confused_pairs.md").write_text(tables["confused_pairs"])
    timings_s["total"] = round(time.perf_counter() - start, 3)
    metrics = {
        "codes": scored.codes_quality,
        "raw_pixels": scored.raw_quality,
        "timings_s": timings_s,
        "confused_pairs": [list(pair) for pair in pairs],
        "settings": {
            "n_points": n, "latent_dims": l, "seed": seed, "subsample": subsample,
            "threads": threads,
            "tsne_backend": tsne_backend if with_tsne else None,
            "tsne_3d_points": len(index_3d) if with_tsne else None,
            "trustworthiness_points": min(n, TRUST_POINTS) if with_tsne else None,
            "silhouette_points": min(n, SILHOUETTE_POINTS),
            "split": f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%}, seed {seed}",
            "raw_pixels": f"images/255 (784 dims); its t-SNE after PCA-{RAW_PCA_DIMS} on the"
            " trustworthiness subsample",
        },
    }
    (outdir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return AnalysisResult(metrics, figures, tables, scored.coords_2d, keep)


class _Scored(NamedTuple):
    """Projections and quality numbers, handed from the compute stages to the writers."""

    pca_n3: np.ndarray  # [N, min(3, L)]
    coords_2d: dict[str, np.ndarray]
    tsne_n3: np.ndarray | None  # [len(index_3d), 3]
    codes_quality: dict[str, float]
    raw_quality: dict[str, float]


def _embed_and_score(
    codes_nl: np.ndarray,
    labels_n: np.ndarray,
    images_nhw: np.ndarray,
    timings_s: dict[str, float],
    *,
    probe_accuracy: float | None,
    tsne_backend: str,
    seed: int,
    with_tsne: bool,
    raw_baseline: bool,
    index_3d: np.ndarray,
    threads: int,
) -> _Scored:
    """The compute stages of run_analysis, each timed into timings_s."""
    n, l = codes_nl.shape
    with _timed(timings_s, "pca"):
        pca_n3 = np.asarray(_pca(jnp.asarray(codes_nl), min(3, n, l)).projected)
    # A 1-unit code has one principal axis: its 2-D view is that axis against a zero column.
    coords_2d = {"pca": np.pad(pca_n3[:, :2], ((0, 0), (0, 2 - min(2, pca_n3.shape[1]))))}
    tsne_n3 = None
    if with_tsne:
        with _timed(timings_s, "tsne_2d"):
            coords_2d["tsne"] = tsne(codes_nl, 2, seed=seed, backend=tsne_backend, threads=threads)
        with _timed(timings_s, "tsne_3d"):
            tsne_n3 = tsne(
                codes_nl[index_3d], 3, seed=seed, backend=tsne_backend, threads=threads
            )
    with _timed(timings_s, "quality_codes"):
        codes_quality = quality_numbers(
            codes_nl, labels_n, tsne_2d=coords_2d.get("tsne"), probe_accuracy=probe_accuracy,
            seed=seed,
        )
    raw_quality: dict[str, float] = {}
    if raw_baseline:
        raw_nd = images_nhw.reshape(n, -1).astype(np.float32) / 255.0
        # Same points as the codes' trustworthiness subsample, so the two numbers compare.
        trust_index = subsample_index(n, TRUST_POINTS, seed)
        raw_tsne = None
        if with_tsne:
            with _timed(timings_s, "tsne_raw_2d"):
                raw_trust_nd = raw_nd[trust_index]
                reduced = _pca(jnp.asarray(raw_trust_nd), min(RAW_PCA_DIMS, *raw_trust_nd.shape))
                raw_tsne = tsne(
                    np.asarray(reduced.projected), 2, seed=seed, backend=tsne_backend,
                    threads=threads,
                )
        with _timed(timings_s, "quality_raw"):
            raw_quality = quality_numbers(
                raw_nd, labels_n, tsne_2d=raw_tsne, probe_accuracy=None, seed=seed,
                tsne_index=trust_index,
            )
    return _Scored(pca_n3, coords_2d, tsne_n3, codes_quality, raw_quality)


def _write_figures(
    outdir: Path,
    codes_nl: np.ndarray,
    labels_n: np.ndarray,
    images_nhw: np.ndarray,
    class_names: Sequence[str],
    scored: _Scored,
    index_3d: np.ndarray,
    backend: str,
) -> dict[str, Path]:
    """All PNGs of run_analysis; subsample sizes go into the titles, row numbers into the
    outlier captions (#i is the row of the analysed codes)."""
    n = len(codes_nl)
    pca_n3, tsne_n2, tsne_n3 = scored.pca_n3, scored.coords_2d.get("tsne"), scored.tsne_n3
    figures = {
        "pca_2d": plots.scatter_2d(
            scored.coords_2d["pca"], labels_n, class_names, f"PCA of codes ({n} points)",
            outdir / "pca_2d.png",
        ),
        "correlation": plots.correlation_heatmap(codes_nl, outdir / "correlation.png"),
        "histograms": plots.histogram_grid(codes_nl, outdir / "histograms.png"),
    }
    if pca_n3.shape[1] == 3:
        figures["pca_3d"] = plots.scatter_3d(
            pca_n3, labels_n, class_names, f"PCA 3-D of codes ({n} points)", outdir / "pca_3d.png"
        )
    if tsne_n2 is not None and tsne_n3 is not None:
        figures["tsne_2d"] = plots.scatter_2d(
            tsne_n2, labels_n, class_names, f"t-SNE of codes ({n} points, {backend})",
            outdir / "tsne_2d.png",
        )
        figures["tsne_3d"] = plots.scatter_3d(
            tsne_n3, labels_n[index_3d], class_names,
            f"t-SNE 3-D of codes ({len(index_3d)} of {n} points, {backend})",
            outdir / "tsne_3d.png",
        )
    far = outliers(codes_nl, labels_n)
    figures["outliers"] = plots.digit_grid(
        images_nhw[far], [f"{class_names[labels_n[i]]} (#{i})" for i in far],
        outdir / "outliers.png", title="Farthest from their class centroid (label, row)",
    )
    return figures
