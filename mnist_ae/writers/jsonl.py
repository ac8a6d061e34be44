"""JSONL backend: the log that always exists, for scripts and tests (no TensorBoard or W&B needed)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mnist_ae.workdir import naming
from mnist_ae.writers.base import Embeddings, MetricWriter, _numbers, flatten_hparams


class JsonlWriter(MetricWriter):
    """Appends one JSON object per line: `{"step": s, "time": unix seconds, **tags, **scalars}`.

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
        with naming(self._path):
            self._file.write(json.dumps(record) + "\n")

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        clash = {"step", "time", *self._tags} & set(scalars)
        if clash:
            raise ValueError(f"scalar names {sorted(clash)} clash with 'step', 'time' or JSONL tags")
        self._append({"step": int(step), "time": round(time.time(), 3), **self._tags, **_numbers(scalars)})

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """Not logged in JSONL."""

    def write_histograms(self, step: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Not logged in JSONL."""

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        """Not logged in JSONL."""

    def write_hparams(
        self, hparams: Mapping[str, Any], metrics: Mapping[str, float] | None = None
    ) -> None:
        record = {"time": round(time.time(), 3), "hparams": flatten_hparams(hparams), "metrics": _numbers(metrics or {})}
        self._append({**record, **self._tags})

    def write_confusion(
        self, step: int, name: str, counts: np.ndarray, class_names: Sequence[str]
    ) -> None:
        """Not logged in JSONL."""

    def write_embeddings(self, step: int, embeddings: Embeddings) -> None:
        """Not logged in JSONL."""

    def flush(self) -> None:
        with naming(self._path):
            self._file.flush()

    def close(self) -> None:
        with naming(self._path):
            self._file.close()
