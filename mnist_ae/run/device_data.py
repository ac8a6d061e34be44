"""The dataset resident on the device: uint8 arrays placed once, gathered by index inside jit."""

from __future__ import annotations

import dataclasses
import functools

import jax
import ml_collections
import numpy as np

from mnist_ae import data as data_lib
from mnist_ae import parallel
from mnist_ae.config_checks import check_batch_fits


@dataclasses.dataclass
class DeviceData:
    """The dataset resident on the device (uint8), plus the fixed digits of the image grid."""

    train_x: jax.Array
    train_y: jax.Array
    test_x: jax.Array
    test_y: jax.Array
    grid_x: np.ndarray
    class_names: tuple[str, ...]


def load_data(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> DeviceData:
    """Checked uint8 arrays, replicated on every device of the mesh (each gathers its own rows)."""
    ds = data_lib.load_dataset(config.dataset, config.data_dir, config.data_source)
    tr, te = config.train_limit or None, config.test_limit or None
    check_batch_fits(config, len(ds.train_images[:tr]))
    parallel.check_divisible(config.batch_size, mesh)
    put = functools.partial(parallel.place, mesh=mesh)
    return DeviceData(put(ds.train_images[:tr]), put(ds.train_labels[:tr]), put(ds.test_images[:te]),
                      put(ds.test_labels[:te]), np.asarray(ds.test_images[: config.grid_digits]),
                      ds.class_names)
