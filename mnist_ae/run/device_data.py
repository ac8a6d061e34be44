"""The dataset resident on the device: uint8 arrays placed once, gathered by index inside jit."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

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


class HostDigits(NamedTuple):
    """The run's own digits and labels on the host (uint8 and int views of the cached load)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def host_digits(config: ml_collections.ConfigDict) -> HostDigits:
    """The train and test slices the run trains and evaluates on (`train_limit`, `test_limit`): what
    `load_data` places on the device, and what the end-of-run baselines are fitted and scored on."""
    ds = data_lib.load_dataset(config.dataset, config.data_dir, config.data_source)  # cached: no re-read
    tr, te = config.train_limit or None, config.test_limit or None
    return HostDigits(ds.train_images[:tr], ds.train_labels[:tr], ds.test_images[:te], ds.test_labels[:te])


def load_data(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> DeviceData:
    """Checked uint8 arrays, replicated on every device of the mesh (each gathers its own rows)."""
    ds = data_lib.load_dataset(config.dataset, config.data_dir, config.data_source)
    digits = host_digits(config)
    check_batch_fits(config, len(digits.train_x))
    parallel.check_divisible(config.batch_size, mesh)
    put = functools.partial(parallel.place, mesh=mesh)
    return DeviceData(*(put(a) for a in digits), np.asarray(ds.test_images[: config.grid_digits]), ds.class_names)
