"""The latent space forming: a 2-D PCA map of the same test codes at every eval, each map turned onto
the one before it (orthogonal Procrustes), so that a slider over the steps shows the classes
separating instead of the picture flipping and spinning with the arbitrary signs of the PCA axes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import orthogonal_procrustes

from mnist_ae.analysis.embed import host_pca


def onto(current_n2: np.ndarray, previous_n2: np.ndarray) -> np.ndarray:
    """`current` rotated (or reflected) to lie closest to `previous`, point by point; distances kept."""
    rotation, _ = orthogonal_procrustes(current_n2, previous_n2)
    return current_n2 @ rotation


def pca_2d(codes_nl: np.ndarray) -> np.ndarray:
    """Centred 2-D PCA coordinates scaled to unit RMS radius (codes grow during training; the maps
    are compared by shape). A 1-unit code gets a zero second column."""
    proj = host_pca(codes_nl, 2).projected
    proj = np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))
    rms = np.sqrt(np.mean(np.sum(proj**2, axis=1)))
    return proj / rms if rms > 0 else proj


def aligned_maps(codes_over_steps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One [n, 2] map per step, each aligned onto the previous step's."""
    maps: list[np.ndarray] = []
    for codes_nl in codes_over_steps:
        current = pca_2d(codes_nl)
        maps.append(onto(current, maps[-1]) if maps else current)
    return maps
