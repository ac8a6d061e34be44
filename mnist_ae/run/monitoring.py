"""What a training run logs, and when: the policy on top of the generic writers.

Host-only. Every function takes host numpy arrays (already pulled back once) and a writer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import psutil

from mnist_ae.render import save_png
from mnist_ae.writers import Embeddings, MetricWriter, create_writer
from mnist_ae.workdir import RunDir

__all__ = ["MetricWriter", "open_writer", "scalars"]

MAX_CODE_HISTOGRAMS = 64


def open_writer(config: ml_collections.ConfigDict, workdir: Path, log_framework: str,
                *, run_name: str = "", group: str = "", member: str = "") -> MetricWriter:
    """metrics.jsonl and TensorBoard and/or W&B as chosen; a sweep member (`member`): only its
    TensorBoard/W&B, in RUN/members/<member> (its records are tagged lines of the sweep's metrics.jsonl)."""
    return create_writer(
        log_framework, RunDir(workdir).member(member).root if member else workdir, config=config.to_dict(),
        wandb_project=config.wandb_project, wandb_entity=config.wandb_entity or None,
        run_name=run_name or config.run_name or run_title(config, workdir), group=group or config.wandb_group or None,
        tags=split_tags(config.wandb_tags), jsonl=not member)


def run_title(config: ml_collections.ConfigDict, workdir: Path) -> str:
    """A W&B run's default name: what tells it apart in the project's run list (not just the task)."""
    from mnist_ae.core.models import code_dim  # noqa: PLC0415

    what = (f"{config.model} classifier" if config.task == "classification"
            else f"{config.model} latent {code_dim(config.model, config.latent_dim)}")
    return f"{workdir.name}: {what}, lr {config.learning_rate:g}, seed {config.seed}, {config.epochs} epochs"


def wandb_note(workdir: Path) -> str | None:
    """The line saying where W&B logs go when they stay on this machine, and how to upload them."""
    from mnist_ae.writers.wandb import default_mode  # noqa: PLC0415  (wandb itself is not imported)

    mode, why = default_mode()
    if mode != "offline":
        return None
    return f"W&B: offline ({why}), sync later with `wandb sync {workdir / 'wandb'}/offline-run-*`"


def split_tags(values: Any) -> tuple[str, ...]:
    """`--config.wandb_tags=baseline,mlp` arrives as the one string 'baseline,mlp': split it."""
    return tuple(tag.strip() for value in values for tag in str(value).split(",") if tag.strip())


def scalars(metrics: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Scalar view of eval metrics: per-class vectors become `name/<class>`; matrices are dropped."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        value = np.asarray(value)
        if value.ndim == 0:
            out[key] = float(value)
        elif value.ndim == 1:
            out.update({f"{key}/{i}": float(v) for i, v in enumerate(value)})
    return out


def param_table(params: Any) -> str:
    """Parameters per layer as a markdown table: the model summary."""
    rows = [(jax.tree_util.keystr(path, simple=True, separator="/"), leaf.shape, int(np.size(leaf)))
            for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]
    total = sum(r[2] for r in rows)
    lines = ["| parameter | shape | count |", "|---|---|---:|"]
    lines += [f"| {name} | {tuple(shape)} | {count:,} |" for name, shape, count in rows]
    lines.append(f"| **total** | | **{total:,}** |")
    return "\n".join(lines)


def log_model_summary(writer: MetricWriter, params: Any) -> None:
    writer.write_texts(0, {"model/summary": param_table(params)})


_PROCESS = psutil.Process(os.getpid())
_PROCESS.cpu_percent(interval=None)  # the first reading only starts psutil's counter


def system_metrics() -> dict[str, float]:
    """Process memory and CPU use since the last call; device memory where reported (GPU/TPU).

    Named `usage/*` so that TensorBoard, which orders chart groups alphabetically, shows them after
    the `test/*` and `train/*` curves."""
    out = {"usage/host_rss_mb": _PROCESS.memory_info().rss / 2**20,
           "usage/cpu_percent": _PROCESS.cpu_percent(interval=None)}
    for i, device in enumerate(jax.local_devices()):
        stats = device.memory_stats() if hasattr(device, "memory_stats") else None
        if stats and "bytes_in_use" in stats:
            out[f"usage/device{i}_mem_mb"] = stats["bytes_in_use"] / 2**20
    return out


def log_system(writer: MetricWriter, step: int) -> None:
    writer.write_scalars(step, system_metrics())


def log_reconstructions(writer: MetricWriter, step: int, grid: np.ndarray, workdir: Path) -> None:
    """The gallery from noise to sharp digits: TensorBoard/W&B images and a PNG per eval.

    Pictures are tagged `views/*` and code histograms `z/*`: TensorBoard's Time Series, the page it opens
    on, orders groups alphabetically, and these names put them after the `test/*` and `train/*` curves."""
    writer.write_images(step, {"views/reconstructions": grid})
    save_png(grid, RunDir(workdir).reconstruction_png(step))


def log_histograms(writer: MetricWriter, step: int, codes_nl: np.ndarray | None, params: Any) -> None:
    """Each code dimension z (the first 64 for wide codes) and every weight array."""
    arrays: dict[str, np.ndarray] = {}
    if codes_nl is not None:
        arrays.update({f"z/dim_{i:03d}": codes_nl[:, i]
                       for i in range(min(codes_nl.shape[1], MAX_CODE_HISTOGRAMS))})
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        arrays["weights/" + jax.tree_util.keystr(path, simple=True, separator="/")] = np.asarray(leaf)
    writer.write_histograms(step, arrays)


def log_projector(writer: MetricWriter, step: int, codes_nl: np.ndarray, labels_n: np.ndarray,
                  preds_n: np.ndarray | None, images_nhw: np.ndarray, class_names: Sequence[str]) -> None:
    """Test codes for the TensorBoard projector, labelled by true class and probe prediction."""
    labels = [class_names[int(y)] for y in labels_n]
    header, rows = (), ()
    if preds_n is not None:  # the writer puts `label` first itself
        header = ["probe_prediction"]
        rows = [[class_names[int(p)]] for p in preds_n]
    writer.write_embeddings(step, Embeddings("codes", codes_nl, labels, images_nhw, metadata_header=header,
                                             metadata=rows))
