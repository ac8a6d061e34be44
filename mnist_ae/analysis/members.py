"""Every sweep member analysed at the end of a sweep: its quality numbers, computed on the device in one
vmapped call over members, and its 2-D t-SNE map, all maps side by side in one figure.

The maps embed a fixed, seeded subset of MEMBER_MAP_POINTS test codes (the same digits for every
member), on which trustworthiness is measured; the other numbers use all the sweep's test codes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from mnist_ae.analysis import figures
from mnist_ae.analysis.embed import default_threads, member_maps, resolved_backend, subsample_index
from mnist_ae.analysis.quality import member_quality

MEMBER_MAP_POINTS = 2000  # a t-SNE per member: a fifth of the points of the single run's map


def analyze_members(codes_mnl: np.ndarray, labels_n: np.ndarray, widths: Sequence[int], names: Sequence[str],
                    class_names: Sequence[str], outdir: Path, *, tsne_backend: str = "auto", seed: int = 0,
                    threads: int | None = None) -> list[dict[str, float]]:
    """Quality numbers per member (empty for a member whose codes are not finite, e.g. diverged) for
    codes [M, N, L] whose member m uses its first widths[m] units; writes member_maps.png and
    members.json (numbers, settings, timings) into `outdir`."""
    start = time.perf_counter()
    codes_mnl = np.asarray(codes_mnl, dtype=np.float32)
    labels_n = np.asarray(labels_n, dtype=np.int64)
    healthy = [m for m in range(len(codes_mnl)) if np.isfinite(codes_mnl[m]).all()]
    threads = threads or default_threads()
    index = subsample_index(codes_mnl.shape[1], MEMBER_MAP_POINTS, seed)
    timings_s: dict[str, float] = {}
    with threadpool_limits(threads):
        maps_mn2 = member_maps(codes_mnl[healthy][:, index], [widths[m] for m in healthy], seed=seed,
                               backend=tsne_backend, threads=threads) if healthy else np.zeros((0, len(index), 2), np.float32)
    timings_s["tsne_2d"] = round(time.perf_counter() - start, 3)
    numbers = member_quality(codes_mnl[healthy], labels_n, maps_mn2=maps_mn2, probe_accuracies=[None] * len(healthy),
                             seed=seed, tsne_index=index, widths=[widths[m] for m in healthy]) if healthy else []
    timings_s["quality"] = round(time.perf_counter() - start - timings_s["tsne_2d"], 3)
    per_member = [{} for _ in codes_mnl]
    for m, member_numbers in zip(healthy, numbers):
        per_member[m] = member_numbers
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if healthy:
        panels = [(f"{names[m]}\ntrustworthiness {per_member[m]['trustworthiness']:.3f}", maps_mn2[i])
                  for i, m in enumerate(healthy)]
        figures.scatter_2d_panels(panels, labels_n[index], class_names, outdir / "member_maps.png")
    timings_s["total"] = round(time.perf_counter() - start, 3)
    settings = {"n_points": codes_mnl.shape[1], "map_points": len(index),
                "tsne_backend": resolved_backend(tsne_backend, len(index)), "seed": seed,
                "threads": threads}
    record = {"members": dict(zip(names, per_member)), "settings": settings, "timings_s": timings_s}
    (outdir / "members.json").write_text(json.dumps(record, indent=2) + "\n")
    return per_member
