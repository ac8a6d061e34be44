"""Low-dimensional maps of codes: PCA, t-SNE backends, the native-thread policy, seeded subsamples.

The default t-SNE ("auto") is the exact one in JAX (`core.tsne`: every pair, jitted, one call for
all of a sweep's members) up to EXACT_MAX_POINTS points, where it is faster than a Barnes-Hut
tree on the CPU, and above that openTSNE's FFT-accelerated one, with exact neighbours and a coarser
interpolation grid (OPENTSNE_SETTINGS). Measured side by side on 10,000 x 64 codes of the default
job (benchmarks/analysis_timing.py, 1 thread): 13 CPU-s against scikit-learn's 41, with
trustworthiness 0.988 against 0.988 and 5-NN accuracy in the map 0.938 against 0.936.
The 3-D t-SNE keeps a subset of TSNE_3D_POINTS points: Barnes-Hut in 3-D (FFT in 3-D is slower
still) grows much faster than linearly: openTSNE took 11 CPU-s on 2,000 points and 123 on all
10,000 (scikit-learn 14 on 2,000), at equal trustworthiness (0.995 at 2,000).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from mnist_ae.config import TSNE_BACKENDS
from mnist_ae.core.pca import PCAResult, pca
from mnist_ae.core.tsne import tsne as exact_tsne

TSNE_3D_POINTS = 2000
EXACT_MAX_POINTS = 3000  # "auto": the exact JAX t-SNE up to here (O(N^2): 36 MB per [N, N] array at 3,000)
# openTSNE: exact neighbours (10k x 64 brute force is quicker than its Annoy index: 9 CPU-s less) and a
# grid cell per 2 units of map instead of 1 (half the FFT work); quality unchanged (module docstring).
OPENTSNE_SETTINGS = {"neighbors": "exact", "ints_in_interval": 2}
# Barnes-Hut accuracy/speed trade-off for sklearn (its default is 0.5). Measured on 10k
# structured 64-d codes: 0.7 needs ~1/3 less CPU in 2-D and 3-D, trustworthiness unchanged
# to 1e-3 (0.9758 vs 0.9759; 3-D on 3000 points 0.9898 vs 0.9899).
SKLEARN_ANGLE = 0.7

# One XLA compile per input shape instead of one per primitive in eager mode (~3x faster here).
_pca = jax.jit(pca, static_argnums=1)
# The exact t-SNE runs 500 iterations of O(N^2) elementwise work: always compiled with XLA's full backend
# optimisation (3, the default), even in a process that turns it down to save compile time (the test
# suite does: a map of 2,000 points then took 11.6 s instead of 2.6 s).
_OPTIMISED = {"xla_backend_optimization_level": 3}
_exact_tsne = jax.jit(exact_tsne, static_argnames=("dims", "perplexity", "n_iter"), compiler_options=_OPTIMISED)
_exact_member_maps = jax.jit(
    lambda codes_mnl, key: jax.lax.map(lambda x_nl: exact_tsne(x_nl, key, dims=2), codes_mnl),
    compiler_options=_OPTIMISED)


def host_pca(x_nl: np.ndarray, k: int) -> PCAResult:
    """`core.pca.pca` of host data, jitted, with numpy results (k is clipped to min(N, L))."""
    return jax.device_get(_pca(jnp.asarray(x_nl, jnp.float32), min(k, *np.shape(x_nl))))


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


def resolved_backend(backend: str, n: int) -> str:
    """The t-SNE that `backend` means for `n` points ("auto": exact up to EXACT_MAX_POINTS, else openTSNE)."""
    if backend == "auto":
        return "exact" if n <= EXACT_MAX_POINTS else "opentsne"
    return backend


def member_maps(codes_mnl: np.ndarray, widths: Sequence[int], *, seed: int = 0, backend: str = "auto",
                threads: int | None = None) -> np.ndarray:
    """2-D t-SNE maps [M, N, 2] of each member's codes (member m: its first widths[m] units). The exact
    backend maps all members in one compiled call, one member after the other on the device."""
    codes_mnl = np.asarray(codes_mnl, np.float32)
    if resolved_backend(backend, codes_mnl.shape[1]) != "exact":
        return np.stack([tsne(codes_mnl[m, :, :widths[m]], 2, seed=seed, backend=backend, threads=threads)
                         for m in range(len(codes_mnl))])
    used_ml = np.arange(codes_mnl.shape[2])[None, :] < np.asarray(widths)[:, None]
    zeroed_mnl = jnp.asarray(np.where(used_ml[:, None, :], codes_mnl, 0.0))  # unused units: no distance, no PCA axis
    return np.asarray(_exact_member_maps(zeroed_mnl, jax.random.PRNGKey(seed)), np.float32)


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
    backend: str = "auto",
    perplexity: float = 30.0,
    max_iter: int = 500,
    threads: int | None = None,
) -> np.ndarray:
    """Non-linear 2-D/3-D embedding [N, dims] float32 of `x_nl` [N, L].

    backend: "auto" (see `resolved_backend`), "exact" (`core.tsne`, every pair, in JAX; its threads are
    XLA's), "opentsne" (FFT in 2-D, Barnes-Hut in 3-D), "sklearn" (Barnes-Hut) or "umap"
    (umap-learn, n_neighbors = perplexity / 2 so 30 maps to UMAP's default 15;
    UMAP picks its own epoch count, max_iter is not used). `max_iter` counts all iterations
    including the 250 early-exaggeration ones, as in scikit-learn (which needs >= 250), and is
    mapped the same way for openTSNE. Perplexity is clipped to (N - 1) / 3 for tiny N.
    `threads` (default `default_threads()`) caps the OpenMP threads of sklearn / openTSNE;
    UMAP runs single-threaded anyway once seeded.
    """
    x_nl = np.ascontiguousarray(x_nl, dtype=np.float32)
    perplexity = float(min(perplexity, (len(x_nl) - 1) / 3))
    threads = threads or default_threads()
    backend = resolved_backend(backend, len(x_nl))
    if backend == "exact":
        return np.asarray(_exact_tsne(jnp.asarray(x_nl), jax.random.PRNGKey(seed), dims=dims, perplexity=perplexity,
                                      n_iter=max_iter), np.float32)
    init = "pca" if x_nl.shape[1] >= dims else "random"  # PCA init needs as many input dims as output
    if backend == "sklearn":
        model = TSNE(
            n_components=dims, perplexity=perplexity, max_iter=max_iter, init=init,
            learning_rate="auto", angle=SKLEARN_ANGLE, random_state=seed,
        )
        with threadpool_limits(threads):
            return model.fit_transform(x_nl).astype(np.float32)
    if backend == "opentsne":
        import openTSNE  # noqa: PLC0415  (a default dependency, loaded only when a map is drawn)

        exaggeration_iter = min(250, max_iter // 2)
        embedding = openTSNE.TSNE(
            n_components=dims, perplexity=perplexity, early_exaggeration_iter=exaggeration_iter,
            initialization=init, n_iter=max_iter - exaggeration_iter, random_state=seed, n_jobs=threads,
            # FFT in 2-D from 10,000 points on (openTSNE's own rule); its fixed grid costs more below, and far more in 3-D
            negative_gradient_method="auto" if dims == 2 else "bh",
            **OPENTSNE_SETTINGS,
        ).fit(x_nl)
        return np.asarray(embedding, dtype=np.float32)
    if backend == "umap":
        umap = _optional_module("umap", backend)
        n_neighbors = int(np.clip(round(perplexity / 2), 2, len(x_nl) - 1))
        model = umap.UMAP(n_components=dims, n_neighbors=n_neighbors, random_state=seed)
        return np.asarray(model.fit_transform(x_nl), dtype=np.float32)
    raise ValueError(f"unknown tsne backend {backend!r}: use one of {', '.join(TSNE_BACKENDS)}")
