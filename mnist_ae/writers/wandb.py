"""Weights & Biases backend, and the credential check that keeps it from ever prompting."""

from __future__ import annotations

import html
import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from mnist_ae import render
from mnist_ae.writers.base import (
    _HISTOGRAM_BINS,
    Embeddings,
    MetricWriter,
    _check_confusion,
    _finite,
    _numbers,
    flatten_hparams,
)

MAX_WANDB_TABLE_IMAGES = 500  # thumbnails in a W&B embedding table; larger tables log coordinates only


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


def default_mode() -> tuple[str, str]:
    """The mode a run without an explicit one gets, and why: $WANDB_MODE, else online with
    credentials, else offline (never a login prompt)."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"], "WANDB_MODE"
    return ("online", "logged in") if _has_wandb_credentials() else ("offline", "not logged in")


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
        self.mode = mode or default_mode()[0]
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

    def _image(self, hwc: np.ndarray) -> Any:
        return self._wandb.Image(render.to_pil(hwc))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        self._log(step, _numbers(scalars))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        self._log(step, {k: self._image(render.hwc_uint8(v)) for k, v in images.items()})

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

    def write_embeddings(self, step: int, embeddings: Embeddings) -> None:
        """A wandb.Table: metadata columns, optional "image", then one column per dim
        ("d0", ...) - the layout W&B's 2D-projection panel picks up. W&B keeps at most
        wandb.Table.MAX_ROWS (10000) rows of a logged table: subsample larger sets."""
        x = np.asarray(embeddings.vectors_nd, dtype=np.float32)
        columns, rows = embeddings.table()
        images = embeddings.images_nhw
        if images is not None and x.shape[0] <= MAX_WANDB_TABLE_IMAGES:  # one wandb.Image per row is slow
            columns.append("image")
            rows = [[*r, self._image(t)] for r, t in zip(rows, render.nhwc_uint8(images))]
        columns += [f"d{i}" for i in range(x.shape[1])]
        data = [[*r, *v] for r, v in zip(rows, x.tolist())]
        self._log(step, {embeddings.name: self._wandb.Table(columns=columns, data=data)})

    def flush(self) -> None:
        """wandb streams records to its service process as they are logged."""

    def close(self) -> None:
        """Finishes the run. wandb-core completes the run's files in the background; they
        are complete once wandb.teardown() returns or the process has exited."""
        self.run.finish()
