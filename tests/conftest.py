"""Shared fixtures: small slices of the real MNIST. Shared helpers (tiny configs, ports, the
run-once harness, read-backs) are in helpers.py.

In CI (`CI` set, as .ci/run runs) a skipped test fails: CI installs every extra and dataset the
suite needs, so a skip there means a missing install step, not an optional feature.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Before jax is imported anywhere: a persistent compilation cache shared by the xdist workers and the
# subprocesses tests start, so the many tiny runs that compile the same programs compile them once;
# and the baselines' cache (PCA curve, raw-pixel numbers) in a scratch folder, never the user's.
_SCRATCH = Path(tempfile.gettempdir()) / f"mnist_ae_tests_{os.getuid()}"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_SCRATCH / "jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
os.environ.setdefault("MNIST_AE_CACHE", str(_SCRATCH / "cache"))
# XLA's CPU compiler in its quickest mode: the suite is mostly compiling many small programs (CI
# starts with an empty cache). Measured on a tiny config's init, epoch, code scores and t-SNE (one
# process each, no cache): 17.2 s by default, 10.7 s without LLVM optimisation passes, 6.1 s without
# the MLIR fusion emitters as well. Every test compares runs made under the same flags, or against
# tolerances, never against timings; subprocesses inherit the flags.
SUITE_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
_flags = os.environ.get("XLA_FLAGS", "").split()
_flags += [f for f in SUITE_XLA_FLAGS if f.split("=")[0] not in " ".join(_flags)]  # a user's own setting wins
os.environ["XLA_FLAGS"] = " ".join(_flags)
# Under xdist, each worker's BLAS gets its share of the cores: OpenBLAS's threads spin while they wait,
# so two workers with a thread per core each thrash (a 1,500-digit SVD beside another busy process:
# 5.2 s with two threads, 0.4 s with one). The variables reach the subprocesses tests start; threadpoolctl
# sets the library already loaded in this process.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _BLAS_THREADS = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _BLAS_THREADS)

import pytest  # noqa: E402
import threadpoolctl  # noqa: E402

from mnist_ae.data import Dataset, load_dataset  # noqa: E402

if _WORKERS > 1:
    threadpoolctl.threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]))


@pytest.fixture(scope="session")
def mnist() -> Dataset:
    return load_dataset("mnist")


# The modules that take longest (worker seconds, cold cache, 2 cores), longest first. Under
# `--dist loadfile --no-loadscope-reorder` (pyproject's addopts) each module runs whole on one xdist
# worker, so its module- and session-scoped runs happen once and no worker waits on another's; started
# longest first, the short modules fill in around them instead of one long module ending the session.
LONGEST_FIRST = ("test_parallel", "test_faults", "test_tensorboard_browser", "test_benchmarks", "test_sweep",
                 "test_analysis", "test_report", "test_analyze", "test_steps", "test_checkpoint")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__ if item.module else "", len(rank)))  # stable


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may skip (a missing install step?): {reason}"
