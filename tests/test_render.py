"""Rendering without any writer: grids, the projector sprite, confusion matrices and PNGs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnist_ae import render


def _digits(n: int, seed: int = 0) -> np.ndarray:
    """Float images in [-1, 1], like the training data."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28)).astype(np.float32)


def test_image_grid_originals_above_reconstructions():
    originals, recons = _digits(4, 0), _digits(4, 1)
    grid = render.image_grid(np.concatenate([originals, recons]), rows=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 28 + 2, 4 * 28 + 3 * 2, 1)
    expected = render._to_uint8(np.concatenate([originals, recons]), -1.0)
    np.testing.assert_array_equal(grid[:28, :28, 0], expected[0])
    np.testing.assert_array_equal(grid[30:, 30:58, 0], expected[5])  # recon 1: row 2, col 2
    assert (grid[28:30] == 128).all() and (grid[:, 28:30] == 128).all()  # separators


def test_image_grid_value_ranges():
    assert render.image_grid(np.array([[[-1.0, 1.0]]]), 1)[0, :, 0].tolist() == [0, 255]
    assert render.image_grid(np.array([[[0.0, 1.0]]]), 1)[0, :, 0].tolist() == [0, 255]
    assert render.image_grid(np.array([[[3, 200]]], np.uint8), 1)[0, :, 0].tolist() == [3, 200]


def test_reconstruction_grid_keeps_uint8_originals_and_maps_recons_from_tanh_range():
    originals = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    recons = _digits(3, 1)
    grid = render.reconstruction_grid(originals, recons)
    assert grid.shape == (2 * 28 + 2, 3 * 28 + 2 * 2, 1)
    np.testing.assert_array_equal(grid[:28, 30:58, 0], originals[1])  # pixels unchanged
    np.testing.assert_array_equal(grid[30:, 30:58, 0], np.round((recons[1] + 1) / 2 * 255))
    # The same picture as tiling originals mapped to [-1, 1] with the reconstructions.
    np.testing.assert_array_equal(
        grid, render.image_grid(np.concatenate([originals / 127.5 - 1.0, recons]), rows=2)
    )


def test_sprite_square_and_shrinks_to_fit():
    full = render.sprite(_digits(10))
    assert full.shape == (4 * 28, 4 * 28, 1)  # ceil(sqrt(10)) = 4 thumbnails a side
    assert render.sprite_cols(10) == 4 and render.sprite_cols(9) == 3 and render.sprite_cols(0) == 1
    small = render.sprite(_digits(100), max_px=100)  # 10 a side, <= 10 px each -> 28 // 3 = 9
    assert small.shape == (90, 90, 1)
    with pytest.raises(ValueError, match="square"):
        render.sprite(np.zeros((2, 28, 20)))


def test_hwc_uint8_checks_channels():
    assert render.hwc_uint8(np.full((2, 2, 3), 0.5)).tolist()[0][0] == [128, 128, 128]
    with pytest.raises(ValueError, match="HWC image with C in"):
        render.hwc_uint8(np.zeros((2, 2, 2)))


def test_confusion_image_is_rgb_with_darker_diagonal():
    counts = np.array([[90, 10], [0, 5]])
    image = render.confusion_image(counts, ["zero", "one"], "confusion/test")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    cell, top = 60, 44  # layout of confusion_image: the cells end 10 px before the right edge
    left = image.shape[1] - 10 - 2 * cell
    def colour(i, j):
        return image[top + i * cell + 2, left + j * cell + 2].astype(int).sum()

    assert colour(0, 0) < colour(0, 1)  # recall 0.9 is darker than 0.1
    assert colour(1, 1) < colour(1, 0)  # a row of 5 is normalised to recall 1.0
    # Readable on TensorBoard's card: the count "10" in its light cell is drawn at least 11 px high.
    patch = image[top : top + cell, left + cell : left + 2 * cell, 0].astype(int)
    dark_rows = np.flatnonzero((patch < 100).any(axis=1))
    assert dark_rows.size and dark_rows[-1] - dark_rows[0] + 1 >= 11


def test_labelled_reconstruction_grid_enlarges_the_digits_and_writes_the_title_and_row_names():
    """Each pixel of the plain grid becomes a 3x3 block (checked against numpy's kron), with the title
    drawn above the digits and the row names to their left."""
    rng = np.random.default_rng(0)
    originals = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    recons = rng.uniform(-1, 1, (4, 28, 28)).astype(np.float32)
    image = render.labelled_reconstruction_grid(originals, recons, "step 100   test MSE 0.0123")
    plain = render.reconstruction_grid(originals, recons)[..., 0]
    expected = np.kron(plain, np.ones((3, 3), np.uint8))
    h, w = expected.shape
    assert (h, w) == (3 * (2 * 28 + 2), 3 * (4 * 30 - 2))
    top, left = 36, image.shape[1] - 8 - w  # layout: 36 px title band, 8 px right and bottom margins
    assert image.shape == (top + h + 8, left + w + 8, 3)
    np.testing.assert_array_equal(image[top : top + h, left : left + w, 0], expected)
    assert (image[:top, left:, 0] < 100).sum() > 100  # the title's ink
    for row in range(2):  # "input" beside the top row, "reconstruction" beside the bottom one
        band = image[top + row * 3 * 30 : top + (row + 1) * 3 * 30 - 6, :left, 0]
        assert (band < 100).sum() > 50


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_png_round_trips_pixels(tmp_path, channels, mode):
    image = np.random.default_rng(0).integers(0, 256, (5, 7, channels), dtype=np.uint8)
    path = tmp_path / "sub" / "image.png"
    render.save_png(image, path)
    read = Image.open(path)
    assert read.mode == mode and read.size == (7, 5)
    np.testing.assert_array_equal(np.asarray(read).reshape(image.shape), image)
