"""Tests for mnist_ae.data against the real IDX files and hand-made broken copies.

Expected values are published facts (dataset sizes, MNIST class counts, first labels, the md5
published with the canonical IDX files), never values computed by the code under test.
"""

from __future__ import annotations

import dataclasses

import gzip
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnist_ae import data
from mnist_ae.data import DataError, load_dataset, read_idx

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO / "data" / "mnist"
FASHION_DIR = data.SPECS["fashion_mnist"].default_dir  # Debian's dataset-fashion-mnist (.ci/run installs it)
FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# The published md5 of the decompressed MNIST test labels (t10k-labels-idx1-ubyte).
MNIST_TEST_LABELS_MD5 = "27ae3e4e09519cfbb04c329615203637"
# Published MNIST per-digit counts (LeCun et al.), digits 0..9.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def raises_data_error(call: Callable[[], object], *fragments: str) -> str:
    """Runs call, checks it raises a one-line DataError containing every fragment."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


def write_gz(path: Path, content: bytes) -> Path:
    path.write_bytes(gzip.compress(content))
    return path


def idx_bytes(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    """Builds IDX content by hand, independently of the reader."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + payload


def dataset_dir_with(tmp_path: Path, replace: dict[str, bytes | None]) -> Path:
    """A copy of the MNIST folder (symlinks) where some files are replaced or removed (None)."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    for file in FILES:
        if file not in replace:
            (folder / file).symlink_to(MNIST_DIR / file)
        elif replace[file] is not None:
            (folder / file).write_bytes(replace[file])
    return folder


def check_shapes(dataset: data.Dataset, n_train: int, n_test: int) -> None:
    assert dataset.train_images.shape == (n_train, 28, 28)
    assert dataset.train_labels.shape == (n_train,)
    assert dataset.test_images.shape == (n_test, 28, 28)
    assert dataset.test_labels.shape == (n_test,)
    for array in dataset[2:]:
        assert array.dtype == np.uint8
    assert len(dataset.class_names) == 10


def test_mnist_matches_published_facts() -> None:
    mnist = load_dataset("mnist")
    check_shapes(mnist, 60000, 10000)
    assert mnist.name == "mnist"
    assert mnist.class_names == tuple("0123456789")
    assert mnist.train_labels[0] == 5 and mnist.test_labels[0] == 7
    assert np.bincount(mnist.train_labels, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(mnist.test_labels, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert mnist.train_images.min() == 0 and mnist.train_images.max() == 255
    assert mnist.test_images.min() == 0 and mnist.test_images.max() == 255


def test_mnist_arrays_are_read_only_and_cached() -> None:
    first, second = load_dataset("mnist"), load_dataset("mnist")
    assert second.train_images is first.train_images
    with pytest.raises(ValueError):
        first.train_images[0, 0, 0] = 1
    with pytest.raises(ValueError):
        first.test_labels[0] = 1


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
@pytest.mark.parametrize("layout", ["default", "data_dir", "nested"])
def test_fashion_mnist_loads_from_its_folder(layout: str, tmp_path: Path) -> None:
    if layout == "nested":  # --config.data_dir=DIR holding DIR/fashion_mnist/
        (tmp_path / "fashion_mnist").symlink_to(FASHION_DIR)
    data_dir = {"default": "", "data_dir": str(FASHION_DIR), "nested": str(tmp_path)}[layout]
    fashion = load_dataset("fashion_mnist", data_dir=data_dir)
    check_shapes(fashion, 60000, 10000)
    assert fashion.class_names == FASHION_CLASSES
    # Zalando: 6,000 train and 1,000 test images per class.
    assert np.bincount(fashion.train_labels, minlength=10).tolist() == [6000] * 10
    assert np.bincount(fashion.test_labels, minlength=10).tolist() == [1000] * 10
    assert fashion.train_images.min() == 0 and fashion.train_images.max() == 255


def test_data_dir_accepts_dataset_subfolder(tmp_path: Path) -> None:
    dataset_dir_with(tmp_path, {})
    assert load_dataset("mnist", data_dir=str(tmp_path)).train_labels[0] == 5


def test_missing_file_is_named(tmp_path: Path) -> None:
    folder = dataset_dir_with(tmp_path, {"t10k-labels-idx1-ubyte.gz": None})
    raises_data_error(
        lambda: load_dataset("mnist", data_dir=str(folder)),
        str(folder / "t10k-labels-idx1-ubyte.gz"),
        "--config.data_dir",
    )


def test_missing_fashion_suggests_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(data.SPECS, "fashion_mnist", dataclasses.replace(data.SPECS["fashion_mnist"], default_dir=tmp_path / "absent"))
    raises_data_error(
        lambda: load_dataset("fashion_mnist"), str(tmp_path / "absent"), "dataset-fashion-mnist"
    )


def test_read_idx_missing_file(tmp_path: Path) -> None:
    raises_data_error(lambda: read_idx(tmp_path / "nope.gz"), "nope.gz", "missing")


def test_read_idx_verifies_real_file_against_readme_md5() -> None:
    labels = read_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz", MNIST_TEST_LABELS_MD5)
    assert labels.shape == (10000,) and labels[0] == 7


def test_truncated_gzip(tmp_path: Path) -> None:
    gz = (MNIST_DIR / "train-labels-idx1-ubyte.gz").read_bytes()
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gz[: len(gz) // 2])
    raises_data_error(lambda: read_idx(path), str(path), "truncated")


def test_not_gzip(tmp_path: Path) -> None:
    path = tmp_path / "plain.gz"
    path.write_bytes(idx_bytes(2049, (3,), bytes([1, 2, 3])))
    raises_data_error(lambda: read_idx(path), str(path), "gzip")


def test_wrong_magic(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "bad-magic.gz", idx_bytes(2052, (1, 2, 2), bytes(4)))
    raises_data_error(lambda: read_idx(path), str(path), "magic 2052")


def test_content_shorter_than_header(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "short.gz", idx_bytes(2051, (2, 28, 28), bytes(28 * 28)))
    raises_data_error(lambda: read_idx(path), str(path), "truncated")


def test_small_valid_file_reads_back(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "tiny.gz", idx_bytes(2051, (2, 1, 3), bytes([0, 1, 2, 3, 4, 255])))
    assert read_idx(path).tolist() == [[[0, 1, 2]], [[3, 4, 255]]]


def test_checksum_mismatch(tmp_path: Path) -> None:
    content = bytearray(gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    content[-1] ^= 1  # still a well-formed IDX file, so only the checksum can catch it
    path = write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", bytes(content))
    raises_data_error(lambda: read_idx(path, MNIST_TEST_LABELS_MD5), str(path), "checksum")
    assert read_idx(path).shape == (10000,)  # without an expected md5 it is accepted


def test_load_dataset_verifies_checksums(tmp_path: Path) -> None:
    content = bytearray(gzip.decompress((MNIST_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    content[8] ^= 1
    folder = dataset_dir_with(tmp_path, {"t10k-labels-idx1-ubyte.gz": gzip.compress(content)})
    raises_data_error(
        lambda: load_dataset("mnist", data_dir=str(folder)), "t10k-labels-idx1-ubyte.gz", "checksum"
    )


def test_edited_file_is_reread(tmp_path: Path) -> None:
    path = write_gz(tmp_path / "labels.gz", idx_bytes(2049, (2,), bytes([1, 2])))
    assert read_idx(path).tolist() == [1, 2]
    write_gz(path, idx_bytes(2049, (3,), bytes([7, 8, 9])))
    assert read_idx(path).tolist() == [7, 8, 9]


def test_unknown_dataset_lists_valid_names() -> None:
    raises_data_error(lambda: load_dataset("cifar10"), "'cifar10'", "mnist", "fashion_mnist")


def test_unknown_source() -> None:
    raises_data_error(lambda: load_dataset("mnist", source="csv"), "'csv'", "idx", "tfds")


def test_tfds_source_without_tfds_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # makes the import fail
    raises_data_error(lambda: load_dataset("mnist", source="tfds"), "pip install '.[tfds]'")


@pytest.mark.parametrize("name", data.DATASETS)
def test_tfds_source_with_mock_data(name: str) -> None:
    # tfds.testing.mock_data serves tfds.data_source without TensorFlow (tfds.load would need it).
    tfds = pytest.importorskip("tensorflow_datasets", reason="the tfds extra is not installed")
    with tfds.testing.mock_data(num_examples=6):
        dataset = load_dataset(name, source="tfds")
    check_shapes(dataset, 6, 6)  # mock_data gives random examples, so only check their form
    assert dataset.name == name
    for labels in (dataset.train_labels, dataset.test_labels):
        assert labels.min() >= 0 and labels.max() <= 9
    with pytest.raises(ValueError):
        dataset.train_images[0, 0, 0] = 1
