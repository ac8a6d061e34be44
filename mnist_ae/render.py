"""Images for people: pixel conversion, tiling, the projector sprite, confusion matrices, PNGs.

numpy and PIL only, and no writer: the writers, the training loop and tests all call these
directly. Pixel values are uint8, or floats in [0, 1] or [-1, 1] as each function says.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_ae.workdir import write_atomic

MAX_SPRITE_PX = 8192  # TensorBoard projector limit on each side of the sprite image.
_SEPARATOR = 128  # mid-grey: visible against MNIST's black background and white strokes.


# ----------------------------------------------------------------------------- pixels


def _to_uint8(images: np.ndarray, low: float) -> np.ndarray:
    """Maps floats in [low, 1] to uint8 (clipping); uint8 passes through unchanged."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x
    x = (x.astype(np.float32) - low) / (1.0 - low)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _as_nhwc(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected images [N,H,W] or [N,H,W,C], got shape {x.shape}")
    return x


def nhwc_uint8(images: np.ndarray) -> np.ndarray:
    """[N,H,W(,C)] -> uint8 NHWC, all images on one scale so they stay comparable.

    uint8 as is; floats are [-1, 1] if any value is negative, else [0, 1].
    """
    x = _as_nhwc(images)
    return _to_uint8(x, -1.0 if x.dtype != np.uint8 and x.min() < 0 else 0.0)


def hwc_uint8(image: np.ndarray) -> np.ndarray:
    """One HWC image (C in {1, 3}, uint8 or float in [0, 1], clipped) as uint8, checked."""
    x = _to_uint8(image, 0.0)
    if x.ndim != 3 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected an HWC image with C in {{1, 3}}, got shape {x.shape}")
    return x


def to_pil(image_hwc: np.ndarray) -> Image.Image:
    """A uint8 HWC image as PIL: one channel becomes mode "L" (PIL cannot take HW1)."""
    x = np.asarray(image_hwc)
    return Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x)


def save_png(image_hwc: np.ndarray, path: Path) -> None:
    """Writes a uint8 HWC image as PNG, creating the folder; atomically (a kill leaves no torn PNG)."""
    write_atomic(path, lambda tmp: to_pil(image_hwc).save(tmp, format="PNG"))


# ----------------------------------------------------------------------------- grids


def _tile(images: np.ndarray, rows: int, cols: int, pad: int, fill: int) -> np.ndarray:
    """Lays out uint8 [N,H,W,C] row-major on a rows x cols grid with `pad` px gaps."""
    n, h, w, c = images.shape
    cells = np.full((rows * cols, h + pad, w + pad, c), fill, np.uint8)
    cells[:n, :h, :w] = images
    grid = cells.reshape(rows, cols, h + pad, w + pad, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (h + pad), cols * (w + pad), c)
    return grid[: grid.shape[0] - pad, : grid.shape[1] - pad]


def image_grid(images: np.ndarray, rows: int) -> np.ndarray:
    """Tiles [N,H,W] (or [N,H,W,C]) images into one HWC uint8 image, row-major.

    Values as for `nhwc_uint8` (all images are mapped together so originals and
    reconstructions share one scale). Concatenate k originals with their k reconstructions
    and pass rows=2 to get originals on the top row and reconstructions below. Tiles are
    separated by 2 px of mid-grey.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    x = nhwc_uint8(images)
    return _tile(x, rows, -(-x.shape[0] // rows), pad=2, fill=_SEPARATOR)


def reconstruction_grid(originals_bhw: np.ndarray, recon_bhw: np.ndarray) -> np.ndarray:
    """Originals on the top row, reconstructions under them; uint8 HW1.

    Both are uint8 pixels or floats in [-1, 1] (the tanh decoder's range), mapped on that
    fixed scale so a washed-out reconstruction looks washed out.
    """
    pair = [_to_uint8(originals_bhw, -1.0), _to_uint8(recon_bhw, -1.0)]
    return image_grid(np.concatenate(pair), rows=2)


def font(size: int):
    """Pillow's bundled font at `size` px (scalable with FreeType, else its small bitmap font)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def labelled_reconstruction_grid(originals_bhw: np.ndarray, recon_bhw: np.ndarray, title: str,
                                 scale: int = 3) -> np.ndarray:
    """`reconstruction_grid` enlarged `scale` times (nearest neighbour: pixels stay sharp) so digits
    read at 100% in a browser, the rows named on the left and `title` (step, test MSE) on top; RGB uint8."""
    from PIL import ImageDraw

    grid = reconstruction_grid(originals_bhw, recon_bhw)[..., 0]
    big = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    text, small = font(18), font(16)
    names = ("input", "reconstruction")
    left = 16 + max(int(small.getlength(name)) for name in names)
    top, row = 36, (np.shape(originals_bhw)[1] + 2) * scale  # one digit row and its separator
    image = Image.new("RGB", (left + big.shape[1] + 8, top + big.shape[0] + 8), "white")
    image.paste(Image.fromarray(big).convert("RGB"), (left, top))
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), title, fill="black", font=text)
    for i, name in enumerate(names):
        draw.text((8, top + i * row + row // 2), name, fill="black", font=small, anchor="lm")
    return np.asarray(image)


def sprite_cols(n: int) -> int:
    """Columns (= rows) of the square projector sprite for n thumbnails: ceil(sqrt(n))."""
    return math.isqrt(n - 1) + 1 if n > 0 else 1


def sprite(images: np.ndarray, max_px: int = MAX_SPRITE_PX) -> np.ndarray:
    """Square HWC uint8 sprite for the TensorBoard projector, at most `max_px` a side.

    Thumbnails are laid out ceil(sqrt(N)) per row; when N is too large for full-size
    thumbnails they are shrunk by an integer box filter (28 -> 14 -> 9 -> 7 ...), so
    thumbnail side = sprite side // ceil(sqrt(N)). Values as for `image_grid`.
    """
    x = nhwc_uint8(images)
    n, h, w, c = x.shape
    if h != w:
        raise ValueError(f"projector thumbnails must be square, got {h}x{w}")
    cols = sprite_cols(n)
    if cols > max_px:
        raise ValueError(f"{n} points cannot fit a {max_px}px sprite even at 1px each")
    factor = -(-h // min(h, max_px // cols))
    if factor > 1:
        side = h // factor
        off = (h - side * factor) // 2
        crop = x[:, off : off + side * factor, off : off + side * factor].astype(np.float32)
        blocks = crop.reshape(n, side, factor, side, factor, c).mean(axis=(2, 4))
        x = np.round(blocks).astype(np.uint8)
    return _tile(x, cols, cols, pad=0, fill=0)


# ----------------------------------------------------------------------------- confusion


def confusion_image(counts: np.ndarray, class_names: Sequence[str], title: str) -> np.ndarray:
    """A row-normalised confusion matrix with counts, as an RGB uint8 image.

    Drawn with PIL rather than a matplotlib figure: about 100x cheaper, which keeps per-eval
    logging well inside the training time on a 2-core machine. Rows are true classes; only
    matplotlib's "Blues" colormap is borrowed. Cells of 60 px and 16 px numbers stay readable
    when TensorBoard shrinks the image to its card.
    """
    import matplotlib as mpl
    from PIL import ImageDraw

    n = counts.shape[0]
    recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    number, label = font(16), font(15)
    left = 16 + max(int(label.getlength(name[:14])) for name in class_names)
    cell, top = 60, 44
    cells_rgb = (mpl.colormaps["Blues"](recall)[..., :3] * 255).astype(np.uint8)
    image = Image.new("RGB", (left + n * cell + 10, top + n * cell + 36), "white")
    image.paste(Image.fromarray(np.repeat(np.repeat(cells_rgb, cell, 0), cell, 1)), (left, top))
    draw = ImageDraw.Draw(image)
    draw.text((8, 10), f"{title}  (rows: true, columns: predicted)", fill="black", font=font(18))
    for i, name in enumerate(class_names):
        draw.text((8, top + i * cell + cell // 2), name[:14], fill="black", font=label, anchor="lm")
        draw.text((left + i * cell + cell // 2, top + n * cell + 8), name[:7], fill="black", font=label,
                  anchor="ma")
        for j in range(n):
            draw.text((left + j * cell + cell // 2, top + i * cell + cell // 2), str(int(counts[i, j])),
                      fill="white" if recall[i, j] > 0.5 else "black", font=number, anchor="mm")
    return np.asarray(image)


def read_png(path: Path) -> np.ndarray:
    """A PNG file as HWC uint8 RGB, for the writers."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
