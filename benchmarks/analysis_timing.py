"""The end-of-run analysis against the training it follows, measured in one process on one machine.

Trains the default job (no analysis) and a 5-member latent sweep, encodes all 10,000 test digits
with the trained models, then times: the end-of-run analysis of the default job's codes stage by
stage (raw-pixel baselines apart: they are computed once per dataset and cached), its ratio to the
job's training time, the sweep's per-member analysis, and side by side on the same codes the two
t-SNE backends (time, trustworthiness, 5-NN accuracy in the map) and the quality numbers on the
device against scikit-learn's, and the exact JAX t-SNE beside them on a member map's 2,000 codes.

    python benchmarks/analysis_timing.py                 # everything (~5 min on a quiet 2-core CPU)
    python benchmarks/analysis_timing.py --no-compare    # only the analysis against training
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import trustworthiness
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mnist_ae import build, tasks
from mnist_ae.analysis import embed, pipeline, raw_baseline
from mnist_ae.analysis.members import MEMBER_MAP_POINTS, analyze_members
from mnist_ae.analysis.quality import SILHOUETTE_POINTS, TRUST_POINTS, _split
from mnist_ae.api import load
from mnist_ae.config import base_config
from mnist_ae.core import code_quality
from mnist_ae.data import load_dataset
from timing import timed


def train(config, workdir: Path) -> float:
    """Wall seconds of the whole job `config.task` names, in this process (compile, training, evals,
    checkpoints, hooks)."""
    return timed(tasks.run, config, workdir, "none", True)[1]


def compare_tsne(codes_nl: np.ndarray, labels_n: np.ndarray, backends: tuple[str, ...]) -> None:
    pick = embed.subsample_index(len(codes_nl), TRUST_POINTS, 0)
    train, test = _split(labels_n, 0)
    print(f"\n2-D t-SNE of the same {codes_nl.shape[0]} x {codes_nl.shape[1]} codes, {embed.default_threads()} thread(s)"
          " (exact: XLA's threads; its time includes compiling)")
    print(f"{'backend':<10}{'wall [s]':>10}{'CPU [s]':>10}{'trustworthiness':>17}{'5-NN in map':>13}")
    for backend in backends:
        cpu = time.process_time()
        map_n2, wall = timed(embed.tsne, codes_nl, 2, backend=backend)
        cpu = time.process_time() - cpu
        trust = trustworthiness(codes_nl[pick], map_n2[pick], n_neighbors=5)
        knn = KNeighborsClassifier(5).fit(map_n2[train], labels_n[train]).score(map_n2[test], labels_n[test])
        print(f"{backend:<10}{wall:>10.1f}{cpu:>10.1f}{trust:>17.4f}{knn:>13.4f}")


def compare_quality(codes_nl: np.ndarray, labels_n: np.ndarray) -> None:
    """Each number on the device (jitted, compiled before timing) and with scikit-learn."""
    y_n = labels_n.astype(np.int32)
    train, test = _split(labels_n, 0)
    sil = embed.subsample_index(len(y_n), SILHOUETTE_POINTS, 0)
    pick = embed.subsample_index(len(y_n), TRUST_POINTS, 0)
    map_n2 = embed.host_pca(codes_nl, 2).projected
    args = (codes_nl[train], y_n[train], codes_nl[test], y_n[test])
    device = {
        "kNN accuracy": (jax.jit(code_quality.knn_accuracy, static_argnums=4), (*args, 10)),
        "linear probe": (jax.jit(code_quality.logreg_accuracy, static_argnums=4), (*args, 10)),
        "silhouette": (jax.jit(code_quality.silhouette, static_argnums=2), (codes_nl[sil], y_n[sil], 10)),
        "trustworthiness": (jax.jit(code_quality.trustworthiness), (codes_nl[pick], map_n2[pick])),
    }
    host = {
        "kNN accuracy": lambda: KNeighborsClassifier(5).fit(*args[:2]).score(*args[2:]),
        "linear probe": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=200, tol=1e-3))
        .fit(*args[:2]).score(*args[2:]),
        "silhouette": lambda: silhouette_score(codes_nl[sil], y_n[sil]),
        "trustworthiness": lambda: trustworthiness(codes_nl[pick], map_n2[pick], n_neighbors=5),
    }
    print(f"\nquality numbers of the same codes: device (JAX, {jax.default_backend()}) against scikit-learn")
    print(f"{'number':<17}{'device [s]':>11}{'sklearn [s]':>12}{'device':>9}{'sklearn':>9}")
    for name, (fn, fn_args) in device.items():
        jax.block_until_ready(fn(*fn_args))  # compile outside the timing
        value, seconds = timed(lambda: float(jax.block_until_ready(fn(*fn_args))))
        reference, host_seconds = timed(host[name])
        print(f"{name:<17}{seconds:>11.2f}{host_seconds:>12.2f}{value:>9.4f}{reference:>9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="skip the side-by-side t-SNE backends and device/scikit-learn numbers")
    args = parser.parse_args()
    data = load_dataset("mnist")
    images, labels = data.test_images, data.test_labels.astype(np.int64)
    print(f"{os.cpu_count()} CPUs, 1-min load before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        job = base_config()
        job.update(analyze_at_end=False)
        train_s = train(job, Path(tmp) / "job")
        sweep = base_config()
        sweep.update(task="sweep", analyze_at_end=False)
        sweep_s = train(sweep, Path(tmp) / "sweep")
        codes_nl = load(Path(tmp) / "job").encode(images)
        members = build.members(sweep)
        member_codes = [load(Path(tmp) / "sweep" / "members" / m.name).encode(images) for m in members]
        width = max(c.shape[1] for c in member_codes)
        codes_mnl = np.stack([np.pad(c, ((0, 0), (0, width - c.shape[1]))) for c in member_codes])

        _, baseline_s = timed(raw_baseline.raw_quality, images, labels, tsne_backend="auto", seed=0, with_tsne=True,
                              threads=embed.default_threads())  # cached after the first run ever
        result = pipeline.run_analysis(codes_nl, labels, images, data.class_names, Path(tmp) / "analysis")
        _, members_s = timed(analyze_members, codes_mnl, labels, [m.latent_dim for m in members],
                             [m.name for m in members], data.class_names, Path(tmp) / "members")
    timings = result.metrics["timings_s"]
    print(f"\ndefault job (MLP, 5 epochs, no analysis): {train_s:.1f} s; 5-member sweep: {sweep_s:.1f} s")
    print(f"raw-pixel baselines: {baseline_s:.1f} s (once per dataset and settings, then read from the cache)")
    print(f"\nend-of-run analysis of all {result.metrics['settings']['n_points']} codes "
          f"(3-D t-SNE on {result.metrics['settings']['tsne_3d_points']}), {result.metrics['settings']['threads']} "
          "thread(s)")
    for stage, seconds in timings.items():
        print(f"  {stage:<16}{seconds:>8.2f} s")
    print(f"  analysis / training time of the same job: {timings['total'] / train_s:.2f}x")
    print(f"5-member sweep, every member analysed: {members_s:.1f} s "
          f"({members_s / sweep_s:.2f}x the sweep's training time)")
    if args.compare:
        compare_tsne(codes_nl, labels, ("opentsne", "sklearn"))
        few = embed.subsample_index(len(codes_nl), MEMBER_MAP_POINTS, 0)  # as many as a sweep member's map
        compare_tsne(codes_nl[few], labels[few], ("exact", "opentsne", "sklearn"))
        compare_quality(codes_nl, labels)
    print(f"1-min load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
