"""The codes' quality numbers for raw pixels: the baseline they are read against, cached.

The pixels never change between runs, so the numbers are computed once per dataset, subset and
settings (a t-SNE of 3,000 images, kNN and logistic regression on 784 dimensions: about 10 s) and
cached in the user's cache dir (`baselines.cache_dir()`), keyed by a hash of the pixels, labels and
every setting that enters them; every run, sweep and `--task analyze` then reads them. The numbers for
the canonical MNIST and Fashion-MNIST test sets under the default settings ship with the package
(`SHIPPED`, written by tools/ship_baselines.py), so a first run pays only for its own codes. The t-SNE
runs on the trustworthiness subsample after PCA to RAW_PCA_DIMS dims (the TensorBoard projector's
own raw-MNIST recipe); kNN, logistic regression, silhouette and PCA variance use all 784 pixels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from mnist_ae.analysis import baselines
from mnist_ae.analysis.embed import MAP_EXAGGERATION_ITERS, MAP_ITERS, host_pca, subsample_index, tsne
from mnist_ae.analysis.quality import TRUST_POINTS, quality_numbers

RAW_PCA_DIMS = 50
SHIPPED = Path(__file__).with_name("raw_quality_shipped.json")  # key -> {"dataset", "settings", "numbers"}


def cache_key(images_nhw: np.ndarray, labels_n: np.ndarray, *, tsne_backend: str, seed: int, with_tsne: bool) -> str:
    """A hash of the pixels, the labels and every setting that enters the numbers."""
    key = hashlib.blake2b(images_nhw.tobytes(), digest_size=16)
    key.update(labels_n.astype(np.int64).tobytes())
    key.update(json.dumps([tsne_backend if with_tsne else None, seed, TRUST_POINTS, RAW_PCA_DIMS,
                           "device numbers", MAP_EXAGGERATION_ITERS, MAP_ITERS]).encode())
    return key.hexdigest()


def shipped() -> dict[str, Any]:
    return json.loads(SHIPPED.read_text()) if SHIPPED.exists() else {}


def raw_quality(images_nhw: np.ndarray, labels_n: np.ndarray, *, tsne_backend: str, seed: int, with_tsne: bool,
                threads: int, timed: Callable[[str], AbstractContextManager] = lambda stage: nullcontext()
                ) -> dict[str, float]:
    """`quality_numbers` of the images as pixels in [0, 1], from the shipped numbers or the cache when they
    have them; `timed(stage)` times the stages that compute ("tsne_raw_2d", "quality_raw")."""
    key = cache_key(images_nhw, labels_n, tsne_backend=tsne_backend, seed=seed, with_tsne=with_tsne)
    if (known := shipped().get(key)) is not None:
        return dict(known["numbers"])
    path = baselines.cache_dir() / f"raw_quality_{key}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    n = len(images_nhw)
    raw_nd = images_nhw.reshape(n, -1).astype(np.float32) / 255.0
    # Same points as the codes' trustworthiness subsample, so the two numbers compare.
    trust_index = subsample_index(n, TRUST_POINTS, seed)
    raw_tsne = None
    if with_tsne:
        with timed("tsne_raw_2d"):
            reduced_nk = host_pca(raw_nd[trust_index], RAW_PCA_DIMS).projected
            raw_tsne = tsne(reduced_nk, 2, seed=seed, backend=tsne_backend, threads=threads)
    with timed("quality_raw"):
        quality = quality_numbers(raw_nd, labels_n, tsne_2d=raw_tsne, probe_accuracy=None, seed=seed,
                                  tsne_index=trust_index)
    baselines.write_cache(path, quality)
    return quality
