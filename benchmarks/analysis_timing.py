"""Per-stage wall time of mnist_ae.analysis.pipeline.run_analysis for N=10000 codes of L=64 dims.

The codes are synthetic but structured like a trained encoder's: the real MNIST test digits,
centred, projected by a fixed Gaussian matrix to 64 dims, then tanh (so classes cluster the
way they do in pixel space). Target: total <= 60 s on a 2-core CPU with scikit-learn alone.

    python benchmarks/analysis_timing.py                     # sklearn and (if installed) openTSNE
    python benchmarks/analysis_timing.py --backends sklearn
    python benchmarks/analysis_timing.py --threads 2         # default: half the CPUs
"""

import argparse
import importlib.util
import os
import tempfile
import time
from math import nan
from pathlib import Path

import numpy as np

from mnist_ae.analysis import TSNE_3D_POINTS, run_analysis
from mnist_ae.config import TSNE_BACKENDS
from mnist_ae.data import load_dataset


def structured_codes(images_nhw: np.ndarray, latent: int, seed: int = 0) -> np.ndarray:
    """tanh of a fixed random projection of the centred pixels, scaled to unit pre-activation."""
    x_nd = images_nhw.reshape(len(images_nhw), -1).astype(np.float32) / 255.0
    x_nd -= x_nd.mean(axis=0)
    w_dl = np.random.default_rng(seed).normal(size=(x_nd.shape[1], latent)).astype(np.float32)
    pre_nl = x_nd @ w_dl
    return np.tanh(pre_nl / pre_nl.std()).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--backends", nargs="+", default=["sklearn", "opentsne"], choices=list(TSNE_BACKENDS))
    parser.add_argument("--tsne-3d-points", type=int, default=TSNE_3D_POINTS)
    parser.add_argument("--threads", type=int, default=None, help="OpenMP/BLAS threads")
    args = parser.parse_args()

    data = load_dataset("mnist")
    images = data.test_images[: args.n]
    labels = data.test_labels[: args.n].astype(np.int64)
    codes = structured_codes(images, args.latent)
    backends = [b for b in args.backends if importlib.util.find_spec(TSNE_BACKENDS[b])]
    skipped = sorted(set(args.backends) - set(backends))

    results = {}
    load_before = os.getloadavg()[0]  # the box may be shared: say how busy it was
    for backend in backends:
        with tempfile.TemporaryDirectory() as outdir:
            cpu_start = time.process_time()
            results[backend] = run_analysis(
                codes, labels, images, data.class_names, Path(outdir), tsne_backend=backend,
                tsne_3d_points=args.tsne_3d_points, threads=args.threads,
            ).metrics
            # CPU seconds of all threads: the work itself, unlike wall time on a shared box.
            results[backend]["timings_s"]["total_cpu"] = time.process_time() - cpu_start

    settings = next(iter(results.values()))["settings"]
    print(f"run_analysis, N={len(codes)}, L={codes.shape[1]}, {os.cpu_count()} CPUs,"
          f" {settings['threads']} OpenMP/BLAS threads, 1-min load before: {load_before:.1f}"
          + (f" (not installed, skipped: {', '.join(skipped)})" if skipped else ""))
    print(f"3-D t-SNE on {settings['tsne_3d_points']} points, trustworthiness on"
          f" {settings['trustworthiness_points']}, silhouette on {settings['silhouette_points']}")
    stages = list(dict.fromkeys(s for m in results.values() for s in m["timings_s"]))
    print(f"{'stage':<16}" + "".join(f"{b + ' [s]':>16}" for b in results))
    for stage in stages:
        cells = "".join(f"{m['timings_s'].get(stage, 0.0):>16.2f}" for m in results.values())
        print(f"{stage:<16}{cells}")
    print()
    print(f"{'quality':<26}" + "".join(f"{b + ' codes':>18}{b + ' raw':>16}" for b in results))
    for name in results[backends[0]]["codes"] | results[backends[0]]["raw_pixels"]:
        cells = "".join(
            f"{m['codes'].get(name, nan):>18.4f}{m['raw_pixels'].get(name, nan):>16.4f}"
            for m in results.values()
        )
        print(f"{name:<26}{cells}")


if __name__ == "__main__":
    main()
