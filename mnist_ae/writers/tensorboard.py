"""TensorBoard backend: tensorboardX event files for one run, plus the projector's own files."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tensorboardX.proto.graph_pb2 import GraphDef

from mnist_ae import render
from mnist_ae.workdir import naming
from mnist_ae.writers.base import (
    _HISTOGRAM_BINS,
    Embeddings,
    MetricWriter,
    _check_confusion,
    _finite,
    _numbers,
    flatten_hparams,
)


FINAL_PREFIX = "trained/"  # end-of-run numbers (HParams metric columns): a group sorted after train/
EPOCH_TAG = "train/epoch"


def _safe_name(name: str) -> str:
    """A file-system-safe directory name for a tag like "codes/test"."""
    return re.sub(r"[^\w.-]", "_", name)


class TensorBoardWriter(MetricWriter):
    """tensorboardX event files in `logdir` (one TensorBoard run), plus projector files.

    Hparams are written into this run's own event file (not tensorboardX's timestamped
    sub-run), so the HParams tab pairs them with this run's curves. The HParams plugin reads a
    metric column's value from a scalar of the session's run, so final metrics are logged as
    scalars `trained/<name>` and declared as the experiment's metric columns (without
    metrics TensorBoard infers the columns from all scalars).

    TensorBoard's Scalars and Time Series order chart groups alphabetically, so the first
    charts a user sees are the `test/*` and `train/*` curves: the single-point `trained/*`
    values and the `usage/*` charts sort after them, and the run's `epoch` (a step -> epoch
    staircase) is logged as `train/epoch` instead of heading the page.
    """

    def __init__(self, logdir: str | Path):
        from tensorboardX import SummaryWriter

        self._logdir = Path(logdir)
        with naming(self._logdir):
            self._writer = SummaryWriter(logdir=str(self._logdir))
        self._last_step = 0
        self._failed: OSError | None = None
        self._keep_write_errors(self._writer.file_writer.event_writer._ev_writer)  # noqa: SLF001

    def _keep_write_errors(self, events: Any) -> None:
        """tensorboardX writes on a thread of its own, which dies at its first OSError (a full disk); every
        later event then waits forever on its full queue (a run hung for 10 minutes on a 5 MiB disk, after
        a thread traceback). The file's writes keep their first error here instead, the thread lives on,
        and the next call of this writer raises it."""
        def kept(write: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any) -> Any:
                if self._failed is None:
                    try:
                        return write(*args)
                    except OSError as e:
                        self._failed = e
                return None
            return call

        events.write_event, events.flush = kept(events.write_event), kept(events.flush)

    def _check(self) -> None:
        if self._failed is not None:
            raise OSError(self._failed.errno, self._failed.strerror or str(self._failed), str(self._logdir))

    def _step(self, step: int) -> int:
        self._check()
        self._last_step = max(self._last_step, int(step))
        return int(step)

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        step = self._step(step)
        for tag, value in _numbers(scalars).items():
            self._writer.add_scalar(EPOCH_TAG if tag == "epoch" else tag, value, step)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        step = self._step(step)
        for tag, image in images.items():
            self._writer.add_image(tag, render.hwc_uint8(image), step, dataformats="HWC")

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

        self._check()
        final = {f"{FINAL_PREFIX}{k}": v for k, v in _numbers(metrics or {}).items()}
        experiment, start, end = hparams_summaries(flatten_hparams(hparams), final)
        summaries = (experiment, start, end) if final else (start, end)
        for summary in summaries:
            self._writer.file_writer.add_summary(summary)
        for tag, value in final.items():
            self._writer.add_scalar(tag, value, self._last_step)

    def write_confusion(
        self, step: int, name: str, counts: np.ndarray, class_names: Sequence[str]
    ) -> None:
        image = render.confusion_image(_check_confusion(counts, class_names), class_names, name)
        self._writer.add_image(name, image, self._step(step), dataformats="HWC")

    def write_embeddings(self, step: int, embeddings: Embeddings) -> None:
        """Writes `{step:05d}/{name}/` tensors.tsv, metadata.tsv, sprite.png.

        Same layout as tensorboardX's add_embedding, but written here so that rewriting
        a (step, name) - e.g. after resuming from a checkpoint - overwrites the files
        instead of duplicating the projector_config.pbtxt entry, metadata gets a header
        only when it has several columns (the projector's rule), and oversized sprites
        are shrunk instead of asserting.
        """
        step = self._step(step)
        x = np.asarray(embeddings.vectors_nd, dtype=np.float32)
        header, rows = embeddings.table()
        rel = f"{step:05d}/{_safe_name(embeddings.name)}"
        out = self._logdir / rel
        out.mkdir(parents=True, exist_ok=True)
        np.savetxt(out / "tensors.tsv", x, fmt="%.7g", delimiter="\t")
        lines = ([header] if len(header) > 1 else []) + rows
        (out / "metadata.tsv").write_text(
            "".join("\t".join(re.sub(r"[\t\r\n]", " ", v) for v in r) + "\n" for r in lines)
        )
        tensor_name = f"{embeddings.name}:{step:05d}"
        entry = [
            f'tensor_name: "{tensor_name}"',
            f"tensor_shape: {x.shape[0]}",
            f"tensor_shape: {x.shape[1]}",
            f'tensor_path: "{rel}/tensors.tsv"',
            f'metadata_path: "{rel}/metadata.tsv"',
        ]
        if embeddings.images_nhw is not None:
            sheet = render.sprite(embeddings.images_nhw)
            render.save_png(sheet, out / "sprite.png")
            thumb = sheet.shape[0] // render.sprite_cols(x.shape[0])
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

    def write_graph(self, graph: GraphDef) -> None:
        from tensorboardX.proto.event_pb2 import Event

        self._check()
        self._writer.file_writer.add_event(Event(graph_def=graph.SerializeToString()))

    def flush(self) -> None:
        self._writer.flush()
        self._check()

    def close(self) -> None:
        self._writer.close()
        self._check()
