"""The `MetricWriter` interface, the `Embeddings` record, and the conversions every backend shares.

Names with a leading underscore are private to the writers package: the backends import them,
`mnist_ae.writers` does not re-export them.
"""

from __future__ import annotations

import abc
import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tensorboardX.proto.graph_pb2 import GraphDef

HParamValue = bool | int | float | str

_HISTOGRAM_BINS = 64  # TensorBoard and W&B bin alike, so their histograms can be compared.


@dataclasses.dataclass(frozen=True)
class Embeddings:
    """One set of projector points: a vector, a label and optionally a thumbnail per point.

    One checked record instead of seven parameters repeated by every backend. Checked here,
    when it is built on the caller's thread, so a bad set fails at the call and not later
    on an `AsyncWriter` thread; only shapes are read, so nothing is copied to the host yet.
    Use one `name` per set: writing the same (step, name) again overwrites it.
    """

    name: str
    vectors_nd: np.ndarray  # [N, D]
    labels: Sequence[str]  # N strings, the "label" column
    images_nhw: np.ndarray | None = None  # [N, H, W(, C)] square thumbnails, values as for render.image_grid
    metadata_header: Sequence[str] = ()
    metadata: Sequence[Sequence[str]] = ()  # N rows of extra columns named by metadata_header

    def __post_init__(self) -> None:
        shape = np.shape(self.vectors_nd)
        if len(shape) != 2:
            raise ValueError(f"embedding vectors must be [N, D], got shape {shape}")
        n, columns = shape[0], len(self.metadata_header)
        if len(self.labels) != n or (self.images_nhw is not None and len(self.images_nhw) != n):
            raise ValueError(f"labels and images must have one entry per point ({n})")
        if (columns or len(self.metadata)) and (
            len(self.metadata) != n or any(len(row) != columns for row in self.metadata)
        ):
            raise ValueError(f"metadata must be {n} rows of {columns} columns (metadata_header)")

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Metadata column names ("label" first) and one row of strings per point."""
        extras = self.metadata if len(self.metadata) else [()] * len(self.labels)
        rows = [[str(label), *map(str, row)] for label, row in zip(self.labels, extras)]
        return ["label", *self.metadata_header], rows


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
    def write_embeddings(self, step: int, embeddings: Embeddings) -> None:
        """Projector data for one set of points (see `Embeddings`)."""

    def write_graph(self, graph: GraphDef) -> None:  # noqa: B027  (optional: only TensorBoard draws graphs)
        """A TensorBoard `GraphDef` (`writers.graph`) for the Graphs tab; other backends ignore it."""

    @abc.abstractmethod
    def flush(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> MetricWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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


def _finite(values: np.ndarray) -> np.ndarray:
    """The finite values, flattened: what a histogram can bin."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def _check_confusion(counts: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Counts as int64 [C, C]; rates are refused because the backends show and sum counts."""
    c = np.asarray(counts)
    if c.shape != (len(class_names), len(class_names)):
        raise ValueError(f"counts {c.shape} must be [C, C] for {len(class_names)} class names")
    if not np.array_equal(c, np.round(c)):
        raise ValueError("confusion counts must be whole numbers (not normalised rates)")
    return c.astype(np.int64)
