"""Host-side loading of MNIST and Fashion-MNIST as uint8 numpy arrays.

The default source is the canonical IDX .gz files on local disk, so training and tests run
offline and reproducibly: every file is structure-checked and its decompressed content md5 is
verified against the published table. `source="tfds"` is an opt-in for users with internet.
Every failure raises `DataError` with one line that names the file (or value) and the fix.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mnist_ae.errors import DataError


class Dataset(NamedTuple):
    """A whole dataset in host memory; arrays are read-only because loads are cached."""

    name: str
    class_names: tuple[str, ...]
    train_images: np.ndarray  # uint8 [60000, 28, 28]
    train_labels: np.ndarray  # uint8 [60000]
    test_images: np.ndarray  # uint8 [10000, 28, 28]
    test_labels: np.ndarray  # uint8 [10000]


SOURCES: tuple[str, ...] = ("idx", "tfds")

# Dimensions that follow the 4-byte magic, per IDX magic (0x0801 labels, 0x0803 images).
_IDX_NDIM: dict[int, int] = {2049: 1, 2051: 3}

_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Everything known about one dataset before reading it."""

    class_names: tuple[str, ...]
    # md5 of the DECOMPRESSED content of each file in _FILES: Debian re-gzips Fashion-MNIST, so
    # .gz checksums differ between distributions while the content does not.
    md5: dict[str, str]
    default_dir: Path  # where the files are looked for when no data_dir is given
    missing_fix: str  # what to do when they are not there
    train_size: int = 60_000
    test_size: int = 10_000


SPECS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        class_names=tuple(str(digit) for digit in range(10)),
        md5={
            "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
        },
        default_dir=Path(__file__).resolve().parents[1] / "data" / "mnist",  # ships in the repo
        missing_fix="copy the canonical MNIST IDX .gz files there or pass --config.data_dir=DIR",
    ),
    "fashion_mnist": DatasetSpec(
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        md5={
            "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        default_dir=Path("/usr/share/datasets/fashion-mnist"),  # Debian's dataset-fashion-mnist
        missing_fix="install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
                    " or pass --config.data_dir=DIR holding the Fashion-MNIST IDX .gz files",
    ),
}
DATASETS: tuple[str, ...] = tuple(SPECS)

_CORRUPT_FIX = "replace it with the canonical file or pass --config.data_dir=DIR"


def read_idx(path: Path, expected_md5: str | None = None) -> np.ndarray:
    """Reads one gzipped IDX file into a read-only uint8 array, checking it fully.

    Results are cached per process on (resolved path, mtime, size), so repeated loads are free
    and an edited file is re-read.
    """
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        raise DataError(f"IDX file {path} is missing: {_CORRUPT_FIX}") from None
    return _read_idx_cached(resolved, expected_md5, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _read_idx_cached(
    path: Path, expected_md5: str | None, mtime_ns: int, size: int
) -> np.ndarray:
    """Decompresses and validates; mtime_ns and size are only part of the cache key."""
    del mtime_ns, size
    raw = _gunzip(path)
    array = _parse_idx(path, raw)
    if expected_md5 is not None:
        actual = hashlib.md5(raw).hexdigest()
        if actual != expected_md5:
            raise DataError(
                f"IDX file {path} fails its checksum (md5 of decompressed content {actual},"
                f" expected {expected_md5}): {_CORRUPT_FIX}"
            )
    return array


def _gunzip(path: Path) -> bytes:
    """Decompresses the whole file, turning gzip's several failure types into DataError."""
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"IDX file {path} is truncated or not valid gzip ({_first_line(error)}): {_CORRUPT_FIX}"
        ) from None


def _first_line(error: BaseException) -> str:
    """Keeps DataError messages to one line whatever the wrapped library wrote."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def _parse_idx(path: Path, raw: bytes) -> np.ndarray:
    """Checks magic and that the byte count matches the header, then views the pixels as uint8."""
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _IDX_NDIM:
        raise DataError(
            f"IDX file {path} has magic {magic}, expected 2049 (labels) or 2051 (images):"
            f" {_CORRUPT_FIX}"
        )
    header_size = 4 + 4 * _IDX_NDIM[magic]
    if len(raw) < header_size:
        raise DataError(f"IDX file {path} is truncated inside its header: {_CORRUPT_FIX}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=_IDX_NDIM[magic], offset=4))
    expected_size = header_size + int(np.prod(dims))
    if len(raw) != expected_size:
        raise DataError(
            f"IDX file {path} holds {len(raw)} bytes but its header {dims} needs {expected_size}"
            f" (truncated or corrupt): {_CORRUPT_FIX}"
        )
    # A view on immutable bytes, hence read-only: cached arrays cannot be corrupted by callers.
    return np.frombuffer(raw, np.uint8, offset=header_size).reshape(dims)


def load_dataset(name: str = "mnist", data_dir: str = "", source: str = "idx") -> Dataset:
    """Loads a whole dataset; `data_dir` overrides the default location (tfds: its data dir)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    if source == "idx":
        return _load_idx(name, data_dir)
    if source == "tfds":
        return _load_tfds(name, data_dir)
    raise DataError(f"unknown data source {source!r}: use one of {', '.join(SOURCES)}")


def _idx_dir(name: str, data_dir: str) -> Path:
    """Accepts data_dir holding the files directly or in a <name>/ subfolder."""
    if not data_dir:
        return SPECS[name].default_dir
    nested = Path(data_dir) / name
    return nested if nested.is_dir() else Path(data_dir)


def _load_idx(name: str, data_dir: str) -> Dataset:
    """Reads the four IDX files, reporting all missing ones at once with the dataset's fix."""
    folder = _idx_dir(name, data_dir)
    if not folder.is_dir():
        raise DataError(f"{name} IDX folder {folder} does not exist: {SPECS[name].missing_fix}")
    paths = [folder / file for file in _FILES]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DataError(f"{name} IDX file(s) missing: {', '.join(missing)}: {SPECS[name].missing_fix}")
    arrays = [read_idx(path, SPECS[name].md5[path.name]) for path in paths]
    return Dataset(name, SPECS[name].class_names, *arrays)


def _load_tfds(name: str, data_dir: str) -> Dataset:
    """Loads via tensorflow_datasets, imported here because it is an optional extra."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(
            f"source='tfds' for {name} needs tensorflow_datasets:"
            " install the tfds extra: pip install '.[tfds]'"
        ) from None
    train = _tfds_split(tfds, name, "train", data_dir)
    test = _tfds_split(tfds, name, "test", data_dir)
    return Dataset(name, SPECS[name].class_names, *train, *test)


def _tfds_split(tfds: Any, name: str, split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split into uint8 (images [N, 28, 28], labels [N]), read-only like IDX arrays."""
    try:
        # array_record is the random-access format data_source reads; tfds defaults to tfrecord.
        source = tfds.data_source(
            name,
            split=split,
            data_dir=data_dir or None,
            builder_kwargs={"file_format": "array_record"},
        )
        examples = list(source)
    except Exception as error:  # tfds raises many unrelated types (network, no TensorFlow, ...).
        raise DataError(
            f"tfds could not load {name}/{split} ({_first_line(error)}): check internet access,"
            " TFDS_DATA_DIR and that TensorFlow is installed to prepare it,"
            " or use --config.data_source=idx"
        ) from None
    images = np.stack([np.asarray(example["image"]) for example in examples])
    labels = np.asarray([example["label"] for example in examples])
    bad_labels = np.any((labels < 0) | (labels > 9))
    if images.shape[1:] != (28, 28, 1) or images.dtype != np.uint8 or bad_labels:
        raise DataError(
            f"tfds {name}/{split} gave images {images.dtype}{list(images.shape)} and labels up to"
            f" {labels.max()}, expected uint8 [N, 28, 28, 1] and 0..9: use --config.data_source=idx"
        )
    images = images.reshape(-1, 28, 28)  # tfds keeps a channel axis; the IDX path has none.
    images.flags.writeable = False
    labels = labels.astype(np.uint8)
    labels.flags.writeable = False
    return images, labels
