"""Writers made of writers: fan-out (`MultiWriter`) and a background thread (`AsyncWriter`)."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tensorboardX.proto.graph_pb2 import GraphDef

from mnist_ae.errors import WriterError

from mnist_ae.writers.base import Embeddings, MetricWriter


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

    def write_embeddings(self, step: int, embeddings: Embeddings) -> None:
        self._dispatch("write_embeddings", step, embeddings)

    def write_graph(self, graph: GraphDef) -> None:
        self._dispatch("write_graph", graph)


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
