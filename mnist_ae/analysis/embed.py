"""Low-dimensional maps of codes: PCA, t-SNE backends, the native-thread policy, seeded subsamples.

The default t-SNE ("auto") is the exact one in JAX (`core.tsne`: every pair, jitted, one call for
all of a sweep's members) up to EXACT_MAX_POINTS points, where it is faster than a Barnes-Hut
tree on the CPU, and above that openTSNE's FFT-accelerated one, with exact neighbours and a coarser
interpolation grid (`map_process.OPENTSNE_SETTINGS`). Measured side by side on 10,000 x 64 codes of the default
job (benchmarks/analysis_timing.py, 1 thread): 13 CPU-s against scikit-learn's 41, with
trustworthiness 0.988 against 0.988 and 5-NN accuracy in the map 0.938 against 0.936.
The 3-D t-SNE keeps a subset of TSNE_3D_POINTS points: Barnes-Hut in 3-D (FFT in 3-D is slower
still) grows much faster than linearly: openTSNE took 11 CPU-s on 2,000 points and 123 on all
10,000 (scikit-learn 14 on 2,000), at equal trustworthiness (0.995 at 2,000).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_limits

from mnist_ae.analysis.map_process import MapProcess, opentsne_map, start_layout
from mnist_ae.config import TSNE_BACKENDS
from mnist_ae.core.pca import PCAResult, pca
from mnist_ae.core.tsne import EXAGGERATION_ITERS as SKLEARN_EXAGGERATION_ITERS
from mnist_ae.core.tsne import tsne as exact_tsne

TSNE_3D_POINTS = 2000
# Every map's schedule: 100 early-exaggeration iterations, then 150 (scikit-learn's is 250 + 750, and was
# 250 + 250 here). Measured on the default job's codes (2026-12-01, one thread): openTSNE's 2-D map of all
# 10,000 took 6.7 s instead of 13.8, trustworthiness 0.9861 against 0.9880, 5-NN accuracy in the map 0.947
# against 0.945; the exact 3-D map of 2,000 took 2.4 s instead of 6.3, trustworthiness 0.9944 against 0.9946.
MAP_EXAGGERATION_ITERS, MAP_ITERS = 100, 250
EXACT_MAX_POINTS = 3000  # "auto": the exact JAX t-SNE up to here (O(N^2): 36 MB per [N, N] array at 3,000)
# Barnes-Hut accuracy/speed trade-off for sklearn (its default is 0.5). Measured on 10k
# structured 64-d codes: 0.7 needs ~1/3 less CPU in 2-D and 3-D, trustworthiness unchanged
# to 1e-3 (0.9758 vs 0.9759; 3-D on 3000 points 0.9898 vs 0.9899).
SKLEARN_ANGLE = 0.7

# One XLA compile per input shape instead of one per primitive in eager mode (~3x faster here).
_pca = jax.jit(pca, static_argnums=1)
# The exact t-SNE runs hundreds of iterations of O(N^2) elementwise work: always compiled with XLA's full backend
# optimisation (3, the default), even in a process that turns it down to save compile time (the test
# suite does: a map of 2,000 points then took 11.6 s instead of 2.6 s).
_OPTIMISED = {"xla_backend_optimization_level": 3}
_exact_tsne = jax.jit(exact_tsne, static_argnames=("dims", "perplexity", "n_iter", "exaggeration_iters"),
                      compiler_options=_OPTIMISED)
_exact_member_maps = jax.jit(
    lambda codes_mnl, key: jax.lax.map(lambda x_nl: exact_tsne(x_nl, key, dims=2, n_iter=MAP_ITERS,
                                                               exaggeration_iters=MAP_EXAGGERATION_ITERS), codes_mnl),
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


class _ThreadMap:
    """`tsne(...)` in a worker thread (the backends that leave the GIL: the exact one's XLA, sklearn's
    OpenMP), with the interface of `MapProcess`."""

    def __init__(self, x_nl: np.ndarray, dims: int, **kwargs: object):
        def timed() -> tuple[np.ndarray, float]:
            start = time.perf_counter()
            return tsne(x_nl, dims, **kwargs), time.perf_counter() - start

        self._pool = ThreadPoolExecutor(1)
        self._future = self._pool.submit(timed)

    def result(self) -> tuple[np.ndarray, float]:
        return self._future.result()

    def __enter__(self) -> _ThreadMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)


def background_map(x_nl: np.ndarray, dims: int, *, seed: int = 0, backend: str = "auto",
                   threads: int | None = None) -> MapProcess | _ThreadMap:
    """`tsne(x_nl, dims, ...)` started now and drawn while the caller goes on; `.result()` gives
    (the map, its seconds). openTSNE's runs in a child process (its optimiser would wait on the GIL
    beside the caller's Python: `map_process`), the others in a thread."""
    threads = threads or default_threads()
    if resolved_backend(backend, len(x_nl)) == "opentsne":
        return MapProcess(x_nl, dims, seed=seed, perplexity=_perplexity(len(x_nl)), max_iter=MAP_ITERS,
                          exaggeration_iter=MAP_EXAGGERATION_ITERS, threads=threads)
    return _ThreadMap(x_nl, dims, seed=seed, backend=backend, threads=threads)


def _perplexity(n: int, perplexity: float = 30.0) -> float:
    """The perplexity a map of n points can reach: at most (n - 1) / 3."""
    return float(min(perplexity, (n - 1) / 3))


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
    max_iter: int = MAP_ITERS,
    exaggeration_iter: int = MAP_EXAGGERATION_ITERS,
    threads: int | None = None,
) -> np.ndarray:
    """Non-linear 2-D/3-D embedding [N, dims] float32 of `x_nl` [N, L].

    backend: "auto" (see `resolved_backend`), "exact" (`core.tsne`, every pair, in JAX; its threads are
    XLA's), "opentsne" (FFT in 2-D, Barnes-Hut in 3-D), "sklearn" (Barnes-Hut) or "umap"
    (umap-learn, n_neighbors = perplexity / 2 so 30 maps to UMAP's default 15;
    UMAP picks its own epoch count, max_iter is not used). `max_iter` counts all iterations
    including the first `exaggeration_iter` (the early-exaggeration phase); scikit-learn fixes that
    phase at 250, so it gets 250 and then the same `max_iter - exaggeration_iter` as the others.
    Perplexity is clipped to (N - 1) / 3 for tiny N.
    `threads` (default `default_threads()`) caps the OpenMP threads of sklearn / openTSNE;
    UMAP runs single-threaded anyway once seeded.
    """
    x_nl = np.ascontiguousarray(x_nl, dtype=np.float32)
    perplexity = _perplexity(len(x_nl), perplexity)
    threads = threads or default_threads()
    backend = resolved_backend(backend, len(x_nl))
    if backend == "exact":
        return np.asarray(_exact_tsne(jnp.asarray(x_nl), jax.random.PRNGKey(seed), dims=dims, perplexity=perplexity,
                                      n_iter=max_iter, exaggeration_iters=exaggeration_iter), np.float32)
    if backend == "sklearn":
        from sklearn.manifold import TSNE  # noqa: PLC0415  (scikit-learn's import takes 3 s: only when chosen)

        model = TSNE(
            n_components=dims, perplexity=perplexity, max_iter=SKLEARN_EXAGGERATION_ITERS + max_iter - exaggeration_iter,
            init=start_layout(x_nl, dims), learning_rate="auto", angle=SKLEARN_ANGLE, random_state=seed,
        )
        with threadpool_limits(threads):
            return model.fit_transform(x_nl).astype(np.float32)
    if backend == "opentsne":
        return opentsne_map(x_nl, dims, seed=seed, perplexity=perplexity, max_iter=max_iter,
                            exaggeration_iter=exaggeration_iter, threads=threads)
    if backend == "umap":
        umap = _optional_module("umap", backend)
        n_neighbors = int(np.clip(round(perplexity / 2), 2, len(x_nl) - 1))
        model = umap.UMAP(n_components=dims, n_neighbors=n_neighbors, random_state=seed)
        return np.asarray(model.fit_transform(x_nl), dtype=np.float32)
    raise ValueError(f"unknown tsne backend {backend!r}: use one of {', '.join(TSNE_BACKENDS)}")
