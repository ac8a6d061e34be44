"""openTSNE's map, and the same map drawn in a child process while the analysis goes on.

A worker thread shares the GIL with the analysis' Python work (matplotlib's drawing, JAX's tracing),
and openTSNE's optimiser takes it back hundreds of times per map: measured on the default job's
10,000 codes (2026-12-01), the 2-D map took 82.7 s beside a busy Python thread, 16.1 s with a 0.2 ms
switch interval, and about 8 s alone. A process shares nothing but two files. This module imports
only numpy and openTSNE, so the child starts in about a second.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Exact neighbours (openTSNE's ball tree: on 10k x 64 codes 9 CPU-s quicker than its Annoy index; a numpy
# brute force measured no quicker, 1.9 s against 2.3, as the 10k x 10k distances are memory-bound) and a grid
# cell per 2 units of map instead of 1 (half the FFT work); quality unchanged (`embed`'s docstring).
OPENTSNE_SETTINGS = {"neighbors": "exact", "ints_in_interval": 2}


def start_layout(x_nl: np.ndarray, dims: int) -> str:
    """openTSNE's and scikit-learn's start: PCA, which needs as many input dims as map dims, else random."""
    return "pca" if x_nl.shape[1] >= dims else "random"


def opentsne_map(x_nl: np.ndarray, dims: int, *, seed: int, perplexity: float, max_iter: int,
                 exaggeration_iter: int, threads: int) -> np.ndarray:
    """openTSNE's map [N, dims] of `x_nl` [N, L]: FFT in 2-D, Barnes-Hut in 3-D; `max_iter` counts the
    first `exaggeration_iter` too."""
    import openTSNE  # noqa: PLC0415  (a default dependency, loaded only when a map is drawn)

    embedding = openTSNE.TSNE(
        n_components=dims, perplexity=perplexity, early_exaggeration_iter=exaggeration_iter,
        initialization=start_layout(x_nl, dims), n_iter=max_iter - exaggeration_iter,
        random_state=seed, n_jobs=threads,
        # FFT in 2-D from 10,000 points on (openTSNE's own rule); its fixed grid costs more below, and far more in 3-D
        negative_gradient_method="auto" if dims == 2 else "bh",
        **OPENTSNE_SETTINGS,
    ).fit(np.ascontiguousarray(x_nl, dtype=np.float32))
    return np.asarray(embedding, dtype=np.float32)


class MapProcess:
    """`opentsne_map(x_nl, dims, **settings)` in a child process, started at once; `result()` waits for
    it. As a context manager, a child still running when the block ends (an error in it) is killed, and
    the exchange folder `path` removed."""

    def __init__(self, x_nl: np.ndarray, dims: int, **settings: float | int):
        remove_orphaned_folders()
        self._folder = tempfile.TemporaryDirectory(prefix=f"{FOLDER_PREFIX}{os.getpid()}_")
        self.path = Path(self._folder.name)
        np.save(self.path / "x.npy", np.ascontiguousarray(x_nl, dtype=np.float32))
        threads = str(settings["threads"])
        # this package's folder first on the child's path: it imports the same code, installed or not
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self.child = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self.path), json.dumps({"dims": dims, **settings}), str(os.getpid())],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def result(self) -> tuple[np.ndarray, float]:
        """(the map [N, dims], the child's seconds); RuntimeError with the child's last line if it failed."""
        _, err = self.child.communicate()
        if self.child.returncode != 0:
            lines = err.strip().splitlines() or [f"exit status {self.child.returncode}"]
            raise RuntimeError(f"the t-SNE map's process failed: {lines[-1]}")
        with np.load(self.path / "map.npz") as out:
            return out["map"], float(out["seconds"])

    def __enter__(self) -> MapProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.child.poll() is None:
            self.child.kill()
            self.child.communicate()
        self._folder.cleanup()


FOLDER_PREFIX = "mnist_ae_map_"  # + the parent's PID: a folder whose parent died (kill -9) is removed later


def remove_orphaned_folders() -> None:
    """The exchange folders of runs killed with -9 (their cleanup never ran), found by their dead PID."""
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*_*"):
        pid = folder.name[len(FOLDER_PREFIX):].split("_")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def die_with(parent: int) -> None:
    """Linux: the kernel sends this process SIGKILL when its parent dies, even by kill -9, so no t-SNE
    outlives its run; if the parent is already gone, exit now."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(1)


def main(argv: list[str]) -> None:
    """`python -m mnist_ae.analysis.map_process FOLDER SETTINGS_JSON PARENT_PID`: FOLDER/x.npy -> FOLDER/map.npz."""
    path, settings = Path(argv[0]), json.loads(argv[1])
    die_with(int(argv[2]))
    start_s = time.perf_counter()
    map_nd = opentsne_map(np.load(path / "x.npy"), settings.pop("dims"), **settings)
    np.savez(path / "map.npz", map=map_nd, seconds=time.perf_counter() - start_s)


if __name__ == "__main__":
    main(sys.argv[1:])
