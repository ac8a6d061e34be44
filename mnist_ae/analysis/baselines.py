"""The classic baseline beside every autoencoder: PCA's reconstruction error at the same code size.

PCA is fitted on the training images and measured on the test images, in the project's scale
(pixels in [-1, 1], mean squared error per pixel). One eigendecomposition gives the error at every
code size at once (the test error at k components is what the components after k leave out), so
the whole curve is computed once per dataset and cached in the user's cache directory, keyed by
a hash of the pixels: a run pays for it once (about 3 s for MNIST on 2 cores), then reads it. The
curves of the full canonical MNIST and Fashion-MNIST sets ship with the package (`SHIPPED_CURVES`,
written by tools/ship_baselines.py), so even a first run reads them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

PCA_KEY = "baseline/pca_recon_mse"
PCA_SSE01_KEY = "baseline/pca_recon_sse01"  # the same error as Hinton & Salakhutdinov's table measures it
SHIPPED_CURVES = Path(__file__).with_name("pca_curves_shipped.json")  # key -> {"dataset", "curve"}


def cache_dir() -> Path:
    """$MNIST_AE_CACHE, else $XDG_CACHE_HOME/mnist_ae, else ~/.cache/mnist_ae."""
    if os.environ.get("MNIST_AE_CACHE"):
        return Path(os.environ["MNIST_AE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist_ae"


def unit_pixels(images_nhw: np.ndarray) -> np.ndarray:
    """Flat float64 pixels on the project's [-1, 1] scale."""
    return images_nhw.reshape(len(images_nhw), -1).astype(np.float64) / 127.5 - 1.0


def pca_test_mse_curve(train_nhw: np.ndarray, test_nhw: np.ndarray) -> np.ndarray:
    """Test MSE per pixel of PCA with k = 0, 1, ..., D components fitted on the training set: [D + 1]."""
    mean_d, axes_dd = pca_axes(train_nhw, train_nhw[0].size)  # every axis, by decreasing variance
    energy_d = np.mean(((unit_pixels(test_nhw) - mean_d) @ axes_dd) ** 2, axis=0)  # test energy along each
    total = energy_d.sum()
    return (total - np.concatenate([[0.0], np.cumsum(energy_d)])) / len(mean_d)


def pca_axes(train_nhw: np.ndarray, code_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The training pixels' mean [D] and top `code_size` principal axes [D, k] ([-1, 1] pixels, float64)."""
    train_nd = unit_pixels(train_nhw)
    mean_d = train_nd.mean(0)
    _, vectors_dd = np.linalg.eigh((train_nd - mean_d).T @ (train_nd - mean_d))
    return mean_d, vectors_dd[:, ::-1][:, :code_size]


def curve_key(train_nhw: np.ndarray, test_nhw: np.ndarray) -> str:
    """A hash of the pixels, the only thing the curve depends on."""
    digest = hashlib.blake2b(train_nhw.tobytes(), digest_size=16)
    digest.update(test_nhw.tobytes())
    return digest.hexdigest()


def pca_test_mse(train_nhw: np.ndarray, test_nhw: np.ndarray, code_size: int) -> float:
    """PCA's test MSE at `code_size` components: shipped, cached when these pixels were seen before, or computed."""
    key = curve_key(train_nhw, test_nhw)
    shipped = json.loads(SHIPPED_CURVES.read_text()) if SHIPPED_CURVES.exists() else {}
    path = cache_dir() / f"pca_curve_{key}.json"
    if key in shipped:
        curve = shipped[key]["curve"]
    else:
        try:
            curve = json.loads(path.read_text())
        except (OSError, ValueError):
            curve = pca_test_mse_curve(train_nhw, test_nhw).tolist()
            write_cache(path, curve)
    return float(curve[min(code_size, len(curve) - 1)])


def write_cache(path: Path, value: Any) -> None:
    """Atomically, so concurrent runs never read half a file; a read-only cache dir only costs time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value))
        tmp.replace(path)
    except OSError:
        pass
