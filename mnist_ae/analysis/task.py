"""The analysis of a run's codes as a run or `--task analyze` (`mnist_ae.tasks.analyze`) does it: the
run's own config from its checkpoint, the checkpoint to analyse, and `analyze_codes`, which writes
RUN/analysis/ (a subset of N codes: RUN/analysis_subsample<N>/) and logs through the writer. The end
of a reconstruction run calls `analyze_codes` on the codes it already has.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mnist_ae import render
from mnist_ae.analysis.pipeline import AnalysisResult, run_analysis
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.config import FIELDS, ConfigError, base_config
from mnist_ae.config_checks import check_analysis_points
from mnist_ae.workdir import RunDir
from mnist_ae.writers import MetricWriter

ANALYSIS_KEYS = ("tsne_backend", "analysis_subsample", "analyze_checkpoint")  # always from the command line
DATA_KEYS = ("data_dir", "data_source")  # from the command line where given: the files may have moved


def run_config(workdir: Path, cli_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The run's own config from its checkpoint, with the analysis options from the command line."""
    ckpt = Checkpointer(RunDir(workdir).checkpoints, 1)
    try:
        if ckpt.latest_epoch() is None:
            raise ConfigError(f"no checkpoint in {workdir / 'checkpoints'}: train first with "
                              f"--task reconstruction --workdir {workdir}")
        saved = ckpt.saved_config()
    finally:
        ckpt.close()
    if saved.get("task") != "reconstruction":
        raise ConfigError(f"{workdir} holds a {saved.get('task')!r} run; --task analyze needs a reconstruction "
                          "run: train one with --task reconstruction --workdir DIR")
    config = base_config()
    config.update({k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in FIELDS})
    config.update({k: cli_config[k] for k in ANALYSIS_KEYS})
    config.update({k: cli_config[k] for k in DATA_KEYS if cli_config[k] != FIELDS[k].default})
    check_analysis_points(config)  # the run's test_limit with the command line's analysis_subsample
    return config


def analyze_codes(config: ml_collections.ConfigDict, codes_nl: np.ndarray, eval_metrics: dict[str, Any],
                  test_y: jax.Array, test_x: jax.Array, class_names: tuple[str, ...], workdir: Path,
                  writer: MetricWriter, step: int, say: Callable[[str], None] | None = None) -> AnalysisResult:
    """Analyse test codes already on the host (with the eval's probe numbers); log figures and tables.
    `say` gets a line as each stage ends."""
    result = run_analysis(
        codes_nl, np.asarray(test_y), np.asarray(test_x), class_names,
        RunDir(workdir).analysis(len(codes_nl), config.analysis_subsample),
        probe_accuracy=float(eval_metrics["test/probe_accuracy"]),
        probe_confusion=np.asarray(eval_metrics["test/probe_confusion"]),
        tsne_backend=config.tsne_backend, subsample=config.analysis_subsample, seed=config.seed, say=say)
    log_result(writer, step, result)
    return result


def log_result(writer: MetricWriter, step: int, result: AnalysisResult) -> None:
    """Figures as images and tables as text. The quality numbers are not single-point scalar charts
    (they cluttered TensorBoard's first view): a training run puts them among the HParams metrics,
    and every run writes them to analysis/metrics.json.

    The 2-D maps are logged only as figures: as projector embeddings, 2-column tensors open
    on an empty canvas ("NaN%" variance) in TensorBoard's projector.
    """
    writer.write_images(step, {f"views/analysis/{name}": render.read_png(path) for name, path in result.figures.items()})
    writer.write_texts(step, {f"analysis/{name}": table for name, table in result.tables.items()})


def chosen_epoch(ckpt: Checkpointer, config: ml_collections.ConfigDict) -> int | None:
    """The epoch `analyze_checkpoint` names: None for the latest intact one, the best by the run's
    `best_checkpoint_metric`, or a number."""
    choice = str(config.analyze_checkpoint)
    if choice == "latest":
        return None
    if choice.isdigit():
        return int(choice)
    metric = config.best_checkpoint_metric or "test/recon_mse"
    epoch = ckpt.best_epoch(metric)
    if epoch is None:
        raise ConfigError(f"no checkpoint in {ckpt.directory} was saved with {metric} (runs keep a best one since "
                          "best_checkpoint_metric exists): use --config.analyze_checkpoint=latest or an epoch number")
    return epoch


