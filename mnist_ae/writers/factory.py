"""`create_writer`: the one place that turns a --log_framework flag into a writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mnist_ae.config import LOG_FRAMEWORKS as FRAMEWORKS  # one list for the CLI and the writers
from mnist_ae.writers.base import MetricWriter
from mnist_ae.writers.combinators import AsyncWriter, MultiWriter
from mnist_ae.writers.jsonl import JsonlWriter
from mnist_ae.writers.tensorboard import TensorBoardWriter
from mnist_ae.writers.wandb import WandbWriter
from mnist_ae.workdir import RunDir


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
    jsonl: bool = True,
    asynchronous: bool = True,
    is_main_process: bool | None = None,
) -> MetricWriter:
    """The writer for a run: JSONL at workdir/metrics.jsonl (unless `jsonl` is False: a sweep member's
    records go to the sweep's file) plus the chosen framework.

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
        run = RunDir(workdir)
        writers: list[MetricWriter] = [JsonlWriter(run.metrics, tags=jsonl_tags)] if jsonl else []
        if framework in ("tensorboard", "both"):
            writers.append(TensorBoardWriter(run.tensorboard))
        if framework in ("wandb", "both"):
            writers.append(WandbWriter(project=wandb_project, entity=wandb_entity, name=run_name, group=group,
                                       tags=tags, config=config, dir=workdir))
        return MultiWriter(writers)

    return AsyncWriter(build) if asynchronous else build()
