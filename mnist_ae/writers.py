"""Host-side metric writers: JSONL, TensorBoard (tensorboardX) and Weights & Biases.

The training loop talks to one `MetricWriter` (usually from `create_writer`) and never to a
backend directly, so backends can be switched by a flag and the JSONL log always exists
for scripts and tests. In the spirit of `clu.metric_writers`, without TensorFlow or clu.

All inputs are converted with `np.asarray` / `float` on the writing thread; pass host or
device arrays, but do not mutate a numpy buffer after handing it to an `AsyncWriter`.
"""

from __future__ import annotations

import abc
import collections
import html
import json
import math
import netrc
import numbers
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from mnist_ae.config import LOG_FRAMEWORKS as FRAMEWORKS  # one list for the CLI and the writers

MAX_SPRITE_PX = 8192  # TensorBoard projector limit on each side of the sprite image.
_SEPARATOR = 128  # mid-grey: visible against MNIST's black background and white strokes.
_HISTOGRAM_BINS = 64
MAX_WANDB_TABLE_IMAGES = 500  # thumbnails in a W&B embedding table; larger tables log coordinates only

HParamValue = bool | int | float | str


class MetricWriter(abc.ABC):
    """Interface shared by every backend; `step` is the global training step."""

    @abc.abstractmethod
    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

    @abc.abstractmethod
    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Each image is HWC, C in {1, 3}, uint8 or float in [0, 1] (clipped)."""

    @abc.abstractmethod
    def write_histograms(self, step: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Non-finite values are dropped so one NaN cannot kill the writer."""

    @abc.abstractmethod
    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        """Texts may be markdown."""

    @abc.abstractmethod
    def write_hparams(
        self, hparams: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> None:
        """Nested hparams are flattened to dotted keys; `metrics` are final results."""

    @abc.abstractmethod
    def write_confusion(
        self, step: int, name: str, counts: np.ndarray, class_names: Sequence[str]
    ) -> None:
        """`counts[i, j]` = number of examples of true class i predicted as class j."""

    @abc.abstractmethod
    def write_embeddings(
        self,
        step: int,
        name: str,
        codes: np.ndarray,
        labels: Sequence[str],
        images: np.ndarray | None,
        metadata_header: Sequence[str] | None = None,
        metadata: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Projector data for one set of points.

        codes: [N, D]; labels: N strings (the "label" column); images: [N, H, W(, C)] square
        thumbnails, values as for `image_grid`; metadata: N rows of extra columns named by
        `metadata_header`. Use one `name` per set: rewriting (step, name) overwrites it.
        """

    @abc.abstractmethod
    def flush(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# ----------------------------------------------------------------------------- helpers


def flatten_hparams(hparams: Mapping[str, Any], prefix: str = "") -> dict[str, HParamValue]:
    """Flattens nested mappings (incl. ml_collections.ConfigDict) to dotted scalar leaves.

    Every backend filters/sorts runs by scalar values, so lists, None and other objects
    become their `str()`.
    """
    flat: dict[str, HParamValue] = {}
    for key, value in hparams.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            flat.update(flatten_hparams(value, f"{name}."))
        elif isinstance(value, (bool, np.bool_)):
            flat[name] = bool(value)
        elif isinstance(value, numbers.Integral):
            flat[name] = int(value)
        elif isinstance(value, numbers.Real):
            flat[name] = float(value)
        else:
            flat[name] = value if isinstance(value, str) else str(value)
    return flat


def _numbers(scalars: Mapping[str, Any]) -> dict[str, int | float]:
    """Host numbers: integers (an epoch count) stay integers, everything else becomes a float."""
    def number(v: Any) -> int | float:
        a = np.asarray(v)
        return int(a) if a.dtype.kind in "iu" else float(a)

    return {k: number(v) for k, v in scalars.items()}


def _to_uint8(images: np.ndarray, low: float) -> np.ndarray:
    """Maps floats in [low, 1] to uint8 (clipping); uint8 passes through unchanged."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x
    x = (x.astype(np.float32) - low) / (1.0 - low)
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _auto_uint8(images: np.ndarray) -> np.ndarray:
    """uint8 as is; floats are [-1, 1] if any value is negative, else [0, 1]."""
    x = np.asarray(images)
    return _to_uint8(x, -1.0 if x.dtype != np.uint8 and x.min() < 0 else 0.0)


def _as_nhwc(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"expected images [N,H,W] or [N,H,W,C], got shape {x.shape}")
    return x


def _image_hwc(image: np.ndarray) -> np.ndarray:
    x = _to_uint8(image, 0.0)
    if x.ndim != 3 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected an HWC image with C in {{1, 3}}, got shape {x.shape}")
    return x


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

    Values: uint8, or floats in [-1, 1] when any value is negative, else [0, 1] (all
    images are mapped together so originals and reconstructions share one scale).
    Concatenate k originals with their k reconstructions and pass rows=2 to get
    originals on the top row and reconstructions below. Tiles are separated by 2 px of
    mid-grey.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    x = _auto_uint8(_as_nhwc(images))
    return _tile(x, rows, -(-x.shape[0] // rows), pad=2, fill=_SEPARATOR)


def _sprite_cols(n: int) -> int:
    """Columns (= rows) of the square projector sprite: ceil(sqrt(n))."""
    return math.isqrt(n - 1) + 1 if n > 0 else 1


def sprite(images: np.ndarray, max_px: int = MAX_SPRITE_PX) -> np.ndarray:
    """Square HWC uint8 sprite for the TensorBoard projector, at most `max_px` a side.

    Thumbnails are laid out ceil(sqrt(N)) per row; when N is too large for full-size
    thumbnails they are shrunk by an integer box filter (28 -> 14 -> 9 -> 7 ...), so
    thumbnail side = sprite side // ceil(sqrt(N)). Values as for `image_grid`.
    """
    x = _auto_uint8(_as_nhwc(images))
    n, h, w, c = x.shape
    if h != w:
        raise ValueError(f"projector thumbnails must be square, got {h}x{w}")
    cols = _sprite_cols(n)
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


def _embedding_table(
    n: int,
    labels: Sequence[str],
    images: np.ndarray | None,
    metadata_header: Sequence[str] | None,
    metadata: Sequence[Sequence[str]] | None,
) -> tuple[list[str], list[list[str]]]:
    """Validated metadata columns ("label" first) and one row of strings per point."""
    if len(labels) != n or (images is not None and len(images) != n):
        raise ValueError(f"labels and images must have one entry per point ({n})")
    if metadata is None:
        return ["label"], [[str(label)] for label in labels]
    header = list(metadata_header or ())
    if len(metadata) != n or any(len(row) != len(header) for row in metadata):
        raise ValueError(f"metadata must be {n} rows of {len(header)} columns (metadata_header)")
    rows = [[str(label), *map(str, row)] for label, row in zip(labels, metadata)]
    return ["label", *header], rows


def _safe_name(name: str) -> str:
    """A file-system-safe directory name for a tag like "codes/test"."""
    return re.sub(r"[^\w.-]", "_", name)


def _confusion_image(counts: np.ndarray, class_names: Sequence[str], title: str) -> np.ndarray:
    """A row-normalised confusion matrix with counts, as an RGB uint8 image.

    Drawn with PIL rather than a matplotlib figure: about 100x cheaper, which keeps per-eval
    logging well inside the training time on a 2-core machine. Rows are true classes.
    """
    import matplotlib as mpl
    from PIL import ImageDraw, ImageFont

    n = counts.shape[0]
    recall = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    cell, left, top = 40, 90, 40
    cells_rgb = (mpl.colormaps["Blues"](recall)[..., :3] * 255).astype(np.uint8)
    image = Image.new("RGB", (left + n * cell + 10, top + n * cell + 30), "white")
    image.paste(Image.fromarray(np.repeat(np.repeat(cells_rgb, cell, 0), cell, 1)), (left, top))
    draw, font = ImageDraw.Draw(image), ImageFont.load_default()
    draw.text((left, 8), f"{title}  (rows: true, columns: predicted)", fill="black", font=font)
    for i, name in enumerate(class_names):
        draw.text((4, top + i * cell + cell // 2 - 5), name[:14], fill="black", font=font)
        draw.text((left + i * cell + 3, top + n * cell + 8), name[:6], fill="black", font=font)
        for j in range(n):
            draw.text((left + j * cell + 4, top + i * cell + cell // 2 - 5), str(int(counts[i, j])),
                      fill="white" if recall[i, j] > 0.5 else "black", font=font)
    return np.asarray(image)


def _check_confusion(counts: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    c = np.asarray(counts)
    if c.shape != (len(class_names), len(class_names)):
        raise ValueError(f"counts {c.shape} must be [C, C] for {len(class_names)} class names")
    if not np.array_equal(c, np.round(c)):
        raise ValueError("confusion counts must be whole numbers (not normalised rates)")
    return c.astype(np.int64)


def _finite(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


# ----------------------------------------------------------------------------- JSONL


class JsonlWriter(MetricWriter):
    """Appends one JSON object per line: `{"step": s, **tags, **scalars}`.

    `tags` (e.g. sweep member, latent_dim) are merged into every record so several runs
    can share one file. `write_hparams` appends one record without "step":
    `{"hparams": {flat...}, "metrics": {...}, **tags}`; readers select scalar records
    with `"step" in record`. Images, histograms, texts, confusion matrices and embeddings
    are not logged here. Non-finite floats are written as NaN/Infinity, which
    `json.loads` reads back. Lines are flushed as written so `tail -f` and crashes lose
    nothing.
    """

    def __init__(self, path: str | Path, tags: Mapping[str, Any] | None = None):
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._tags = dict(tags or {})
        self._file = self._path.open("a", buffering=1, encoding="utf-8")

    def _append(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        clash = {"step", *self._tags} & set(scalars)
        if clash:
            raise ValueError(f"scalar names {sorted(clash)} clash with 'step' or JSONL tags")
        self._append({"step": int(step), **self._tags, **_numbers(scalars)})

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Not logged in JSONL."""

    def write_histograms(self, step: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Not logged in JSONL."""

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        """Not logged in JSONL."""

    def write_hparams(
        self, hparams: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> None:
        record = {"hparams": flatten_hparams(hparams), "metrics": _numbers(metrics or {})}
        self._append({**record, **self._tags})

    def write_confusion(
        self, step: int, name: str, counts: np.ndarray, class_names: Sequence[str]
    ) -> None:
        """Not logged in JSONL."""

    def write_embeddings(
        self,
        step: int,
        name: str,
        codes: np.ndarray,
        labels: Sequence[str],
        images: np.ndarray | None,
        metadata_header: Sequence[str] | None = None,
        metadata: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Not logged in JSONL."""

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# ----------------------------------------------------------------------------- TensorBoard


class TensorBoardWriter(MetricWriter):
    """tensorboardX event files in `logdir` (one TensorBoard run), plus projector files.

    Hparams are written into this run's own event file (not tensorboardX's timestamped
    sub-run), so the HParams tab pairs them with this run's curves. Final metrics are
    logged as scalars `hparams/<name>` (kept apart from the training curves) and declared
    as the experiment's metric columns; without metrics TensorBoard infers the columns
    from all scalars.
    """

    def __init__(self, logdir: str | Path):
        from tensorboardX import SummaryWriter

        self._logdir = Path(logdir)
        self._writer = SummaryWriter(logdir=str(self._logdir))
        self._last_step = 0

    def _step(self, step: int) -> int:
        self._last_step = max(self._last_step, int(step))
        return int(step)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        step = self._step(step)
        for tag, value in _numbers(scalars).items():
            self._writer.add_scalar(tag, value, step)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        step = self._step(step)
        for tag, image in images.items():
            self._writer.add_image(tag, _image_hwc(image), step, dataformats="HWC")

    def write_histograms(self, step: int, arrays: Mapping[str, np.ndarray]) -> None:
        step = self._step(step)
        for tag, values in arrays.items():
            finite = _finite(values)
            if finite.size:
                self._writer.add_histogram(tag, finite, step, bins=_HISTOGRAM_BINS)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        step = self._step(step)
        for tag, text in texts.items():
            self._writer.add_text(tag, text, step)

    def write_hparams(
        self, hparams: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> None:
        from tensorboardX.summary import hparams as hparams_summaries

        final = {f"hparams/{k}": v for k, v in _numbers(metrics or {}).items()}
        experiment, start, end = hparams_summaries(flatten_hparams(hparams), final)
        summaries = (experiment, start, end) if final else (start, end)
        for summary in summaries:
            self._writer.file_writer.add_summary(summary)
        for tag, value in final.items():
            self._writer.add_scalar(tag, value, self._last_step)

    def write_confusion(
        self, step: int, name: str, counts: np.ndarray, class_names: Sequence[str]
    ) -> None:
        image = _confusion_image(_check_confusion(counts, class_names), class_names, name)
        self._writer.add_image(name, image, self._step(step), dataformats="HWC")

    def write_embeddings(
        self,
        step: int,
        name: str,
        codes: np.ndarray,
        labels: Sequence[str],
        images: np.ndarray | None,
        metadata_header: Sequence[str] | None = None,
        metadata: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Writes `{step:05d}/{name}/` tensors.tsv, metadata.tsv, sprite.png.

        Same layout as tensorboardX's add_embedding, but written here so that rewriting
        a (step, name) - e.g. after resuming from a checkpoint - overwrites the files
        instead of duplicating the projector_config.pbtxt entry, metadata gets a header
        only when it has several columns (the projector's rule), and oversized sprites
        are shrunk instead of asserting.
        """
        step = self._step(step)
        x = np.asarray(codes, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"codes must be [N, D], got shape {x.shape}")
        header, rows = _embedding_table(x.shape[0], labels, images, metadata_header, metadata)
        rel = f"{step:05d}/{_safe_name(name)}"
        out = self._logdir / rel
        out.mkdir(parents=True, exist_ok=True)
        np.savetxt(out / "tensors.tsv", x, fmt="%.7g", delimiter="\t")
        lines = ([header] if len(header) > 1 else []) + rows
        (out / "metadata.tsv").write_text(
            "".join("\t".join(re.sub(r"[\t\r\n]", " ", v) for v in r) + "\n" for r in lines)
        )
        tensor_name = f"{name}:{step:05d}"
        entry = [
            f'tensor_name: "{tensor_name}"',
            f"tensor_shape: {x.shape[0]}",
            f"tensor_shape: {x.shape[1]}",
            f'tensor_path: "{rel}/tensors.tsv"',
            f'metadata_path: "{rel}/metadata.tsv"',
        ]
        if images is not None:
            sheet = sprite(images)
            Image.fromarray(sheet[..., 0] if sheet.shape[-1] == 1 else sheet).save(
                out / "sprite.png"
            )
            thumb = sheet.shape[0] // _sprite_cols(x.shape[0])
            entry += [
                "sprite {",
                f'  image_path: "{rel}/sprite.png"',
                f"  single_image_dim: {thumb}",
                f"  single_image_dim: {thumb}",
                "}",
            ]
        config = self._logdir / "projector_config.pbtxt"
        existing = config.read_text() if config.exists() else ""
        if f'tensor_name: "{tensor_name}"' not in existing:
            with config.open("a") as f:
                f.write("embeddings {\n" + "".join(f"  {line}\n" for line in entry) + "}\n")

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


# ----------------------------------------------------------------------------- W&B


def _has_wandb_credentials() -> bool:
    """True if W&B would find an API key: WANDB_API_KEY or a netrc entry for the host.

    Checked without importing or calling wandb, so no prompt and no network.
    """
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    base_url = os.environ.get("WANDB_BASE_URL")
    hosts = [urlsplit(base_url).netloc] if base_url else ["api.wandb.ai", "api.forge.coreweave.com"]
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
    try:
        entries = netrc.netrc(str(path))
    except (OSError, netrc.NetrcParseError):
        return False
    return any((entries.authenticators(h) or (None, None, None))[2] for h in hosts)


class WandbWriter(MetricWriter):
    """One W&B run.

    mode: explicit argument, else $WANDB_MODE, else "online" if credentials are
    configured (WANDB_API_KEY or netrc) and "offline" otherwise - never a login prompt.
    W&B silently drops a step lower than one already logged, so a lower step raises
    ValueError here; several calls with the same step merge into one history row.
    wandb is imported lazily because the import takes about a second.
    """

    def __init__(
        self,
        *,
        project: str,
        entity: str | None = None,
        name: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        config: Mapping[str, Any] | None = None,
        dir: str | Path = ".",
        mode: str | None = None,
    ):
        import wandb

        self._wandb = wandb
        self.mode = mode or os.environ.get("WANDB_MODE") or (
            "online" if _has_wandb_credentials() else "offline"
        )
        if self.mode == "offline":
            # The process-wide settings (not just this run's) decide whether wandb's own
            # usage telemetry tries to reach its server; offline must not touch the network.
            wandb.setup(wandb.Settings(mode="offline"))
        Path(dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            entity=entity,
            name=name,
            group=group,
            tags=list(tags),
            config=flatten_hparams(config or {}),
            dir=str(dir),
            mode=self.mode,
            reinit="create_new",  # several writers may coexist, e.g. sweep members.
            settings=wandb.Settings(silent=True, console="off"),
        )
        self._last_step = -1

    def _log(self, step: int, data: Mapping[str, Any]) -> None:
        step = int(step)
        if step < self._last_step:
            raise ValueError(
                f"W&B step {step} < last logged step {self._last_step}: W&B would silently "
                "drop it; log in non-decreasing step order"
            )
        self._last_step = step
        if data:
            self.run.log(dict(data), step=step)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._log(step, _numbers(scalars))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        self._log(step, {k: self._image(_image_hwc(v)) for k, v in images.items()})

    def _image(self, hwc: np.ndarray) -> Any:
        return self._wandb.Image(hwc[..., 0] if hwc.shape[-1] == 1 else hwc)

    def write_histograms(self, step: int, arrays: Mapping[str, np.ndarray]) -> None:
        data = {}
        for k, values in arrays.items():
            finite = _finite(values)
            if finite.size:
                hist = np.histogram(finite, bins=_HISTOGRAM_BINS)
                data[k] = self._wandb.Histogram(np_histogram=hist)
        self._log(step, data)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        html_texts = {
            k: self._wandb.Html(f"<pre>{html.escape(v)}</pre>", data_is_not_path=True)
            for k, v in texts.items()
        }
        self._log(step, html_texts)

    def write_hparams(
        self, hparams: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> None:
        self.run.config.update(flatten_hparams(hparams), allow_val_change=True)
        self.run.summary.update(_numbers(metrics or {}))

    def write_confusion(
        self, step: int, name: str, counts: np.ndarray, class_names: Sequence[str]
    ) -> None:
        """Builds the table behind wandb.plot.confusion_matrix directly from counts."""
        c = _check_confusion(counts, class_names)
        rows = [[class_names[i], class_names[j], int(n)] for (i, j), n in np.ndenumerate(c)]
        table = self._wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows)
        chart = self._wandb.plot_table(
            "wandb/confusion_matrix/v1",
            table,
            {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
            {"title": name},
        )
        self._log(step, {name: chart})

    def write_embeddings(
        self,
        step: int,
        name: str,
        codes: np.ndarray,
        labels: Sequence[str],
        images: np.ndarray | None,
        metadata_header: Sequence[str] | None = None,
        metadata: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """A wandb.Table: metadata columns, optional "image", then one column per dim
        ("d0", ...) - the layout W&B's 2D-projection panel picks up. W&B keeps at most
        wandb.Table.MAX_ROWS (10000) rows of a logged table: subsample larger sets."""
        x = np.asarray(codes, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"codes must be [N, D], got shape {x.shape}")
        columns, rows = _embedding_table(x.shape[0], labels, images, metadata_header, metadata)
        if images is not None and x.shape[0] <= MAX_WANDB_TABLE_IMAGES:  # one wandb.Image per row is slow
            thumbs = _auto_uint8(_as_nhwc(images))
            columns.append("image")
            rows = [[*r, self._image(t)] for r, t in zip(rows, thumbs)]
        columns += [f"d{i}" for i in range(x.shape[1])]
        data = [[*r, *v] for r, v in zip(rows, x.tolist())]
        self._log(step, {name: self._wandb.Table(columns=columns, data=data)})

    def flush(self) -> None:
        """wandb streams records to its service process as they are logged."""

    def close(self) -> None:
        """Finishes the run. wandb-core completes the run's files in the background; they
        are complete once wandb.teardown() returns or the process has exited."""
        self.run.finish()


# ----------------------------------------------------------------------------- combinators


class _Forwarding(MetricWriter):
    """Every write_* call becomes `_dispatch(method_name, *args)`: for writers that pass calls on."""

    def _dispatch(self, method: str, *args: Any) -> None:
        raise NotImplementedError

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._dispatch("write_scalars", step, scalars)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        self._dispatch("write_images", step, images)

    def write_histograms(self, step: int, arrays: Mapping[str, np.ndarray]) -> None:
        self._dispatch("write_histograms", step, arrays)

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        self._dispatch("write_texts", step, texts)

    def write_hparams(
        self, hparams: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> None:
        self._dispatch("write_hparams", hparams, metrics)

    def write_confusion(
        self, step: int, name: str, counts: np.ndarray, class_names: Sequence[str]
    ) -> None:
        self._dispatch("write_confusion", step, name, counts, class_names)

    def write_embeddings(
        self,
        step: int,
        name: str,
        codes: np.ndarray,
        labels: Sequence[str],
        images: np.ndarray | None,
        metadata_header: Sequence[str] | None = None,
        metadata: Sequence[Sequence[str]] | None = None,
    ) -> None:
        self._dispatch("write_embeddings", step, name, codes, labels, images, metadata_header, metadata)



def close_all(resources: Iterable[Any]) -> list[Exception]:
    """Calls every resource's `close()`, in order, whatever fails; returns the errors for the caller."""
    errors = []
    for resource in resources:
        try:
            resource.close()
        except Exception as e:  # noqa: BLE001 - handed back: the caller re-raises or logs them
            errors.append(e)
    return errors


class MultiWriter(_Forwarding):
    """Fans every call out to `writers` in order. With no writers it is a no-op writer."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self._writers = list(writers)

    def _dispatch(self, method: str, *args: Any) -> None:
        for writer in self._writers:
            getattr(writer, method)(*args)

    def flush(self) -> None:
        self._dispatch("flush")

    def close(self) -> None:
        """Closes every writer even if one fails, then re-raises the first error."""
        errors = close_all(self._writers)
        if errors:
            raise errors[0]


class WriterError(RuntimeError):
    """A writer could not be built (e.g. `wandb.init` failed online): reported in one line."""


class AsyncWriter(_Forwarding):
    """Runs a writer's calls in order on one background thread.

    Keeps slow I/O (PNG encoding, W&B tables, projector files) off the training loop. Given a
    factory instead of a writer, it builds the writer on that thread too, so a slow start-up
    (`wandb.init`, about a second) overlaps the step-0 evaluation and the first compilation;
    `flush()` before the first epoch surfaces a failed build (as `WriterError`) before training.
    An exception raised on the thread is re-raised by the next call, `flush` or `close`; after a
    failed build the remaining calls do nothing.
    At most `max_pending` calls are queued; beyond that a call waits for the oldest, so
    a slow backend applies back-pressure instead of growing memory. `close` drains.
    """

    def __init__(self, writer: MetricWriter | Callable[[], MetricWriter], max_pending: int = 64):
        self._writer: MetricWriter | None = None
        self._max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metric-writer")
        self._pending: collections.deque[Future[None]] = collections.deque()
        self._closed = False
        if isinstance(writer, MetricWriter):
            self._writer = writer
        else:
            self._pending.append(self._executor.submit(self._build, writer))

    def _build(self, factory: Callable[[], MetricWriter]) -> None:
        try:
            self._writer = factory()
        except Exception as e:
            raise WriterError(f"the metric writers could not start: {type(e).__name__}: {e}") from e

    def _call(self, method: str, *args: Any) -> None:
        if self._writer is not None:  # None: the build failed and its error is already queued
            getattr(self._writer, method)(*args)

    def _settle(self, wait: bool) -> None:
        """Pops finished calls (all calls if `wait`), re-raising the first error."""
        while self._pending and (wait or self._pending[0].done()):
            self._pending.popleft().result()

    def _dispatch(self, method: str, *args: Any) -> None:
        self._settle(wait=False)
        if len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._executor.submit(self._call, method, *args))

    def flush(self) -> None:
        self._dispatch("flush")
        self._settle(wait=True)

    def close(self) -> None:
        """Runs every queued call and the wrapped close, then re-raises the first error."""
        if self._closed:
            return
        self._closed = True
        self._pending.append(self._executor.submit(self._call, "close"))
        self._executor.shutdown(wait=True)
        self._settle(wait=True)


# ----------------------------------------------------------------------------- factory


def create_writer(
    framework: str,
    workdir: str | Path,
    *,
    config: Mapping[str, Any] | None = None,
    wandb_project: str = "mnist_ae",
    wandb_entity: str | None = None,
    run_name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    jsonl_tags: Mapping[str, Any] | None = None,
    asynchronous: bool = True,
    is_main_process: bool | None = None,
) -> MetricWriter:
    """The writer for a run: JSONL at workdir/metrics.jsonl plus the chosen framework.

    framework: "tensorboard" (logdir workdir/tb), "wandb" (dir workdir; `config` becomes
    the run config at init, so it is there even if the run crashes), "both" or "none".
    Only the main process (default: jax.process_index() == 0) writes; the others get a
    writer that does nothing. Call `write_hparams(config, final_metrics)` at the end for
    the TensorBoard HParams tab / W&B summary.
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    if is_main_process is None:
        import jax

        is_main_process = jax.process_index() == 0
    if not is_main_process:
        return MultiWriter([])
    workdir = Path(workdir)

    def build() -> MetricWriter:
        writers: list[MetricWriter] = [JsonlWriter(workdir / "metrics.jsonl", tags=jsonl_tags)]
        if framework in ("tensorboard", "both"):
            writers.append(TensorBoardWriter(workdir / "tb"))
        if framework in ("wandb", "both"):
            writers.append(WandbWriter(project=wandb_project, entity=wandb_entity, name=run_name, group=group,
                                       tags=tags, config=config, dir=workdir))
        return MultiWriter(writers)

    return AsyncWriter(build) if asynchronous else build()
