"""`--task analyze`: the embedding analysis of any run with a checkpoint, finished or interrupted.

The model is rebuilt from the config stored in the checkpoint, the whole test set is encoded in
one jitted call, and the codes come back to the host once for `run_analysis`. Results go to
RUN/analysis/ (a subset of N codes: RUN/analysis_subsample<N>/) and, through the writer, to TensorBoard / W&B. `analyze_codes` is also what the
end of a reconstruction run calls, on the codes it already has.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mnist_ae import build, monitoring, parallel, render
from mnist_ae.analysis import ANALYSIS_PHASE
from mnist_ae.analysis.pipeline import AnalysisResult, run_analysis
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.config import FIELDS, ConfigError, base_config, check_analysis_points
from mnist_ae.core.steps import encode, evaluate, init_state
from mnist_ae.progress import Reporter
from mnist_ae.run.device_data import load_data
from mnist_ae.writers import MetricWriter

ANALYSIS_KEYS = ("tsne_backend", "analysis_subsample", "analyze_checkpoint")  # always from the command line
DATA_KEYS = ("data_dir", "data_source")  # from the command line where given: the files may have moved


def run_config(workdir: Path, cli_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The run's own config from its checkpoint, with the analysis options from the command line."""
    ckpt = Checkpointer(workdir / "checkpoints", 1)
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


def analysis_dir(workdir: Path, n_codes: int, subsample: int) -> Path:
    """WORKDIR/analysis for all the codes, WORKDIR/analysis_subsample<N> for a subset of N of them: an
    analysis names its subset, and a smaller one never overwrites a larger one."""
    return workdir / ("analysis" if subsample in (0, None) or subsample >= n_codes else f"analysis_subsample{subsample}")


def analyze_codes(config: ml_collections.ConfigDict, codes_nl: np.ndarray, eval_metrics: dict[str, Any],
                  test_y: jax.Array, test_x: jax.Array, class_names: tuple[str, ...], workdir: Path,
                  writer: MetricWriter, step: int, say: Callable[[str], None] | None = None) -> AnalysisResult:
    """Analyse test codes already on the host (with the eval's probe numbers); log figures and tables.
    `say` gets a line as each stage ends."""
    result = run_analysis(
        codes_nl, np.asarray(test_y), np.asarray(test_x), class_names,
        analysis_dir(workdir, len(codes_nl), config.analysis_subsample),
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


def run_analyze(cli_config: ml_collections.ConfigDict, workdir: Path, log_framework: str,
                quiet: bool = False) -> dict[str, Any]:
    """Analyse the latest checkpoint in `workdir`; returns metrics.json's content."""
    config = run_config(workdir, cli_config)
    learner = build.learner(config)
    mesh = parallel.make_mesh(1)
    reporter = Reporter(total_epochs=0, rounds_per_epoch=0, quiet=quiet, title="analyze")
    with reporter.phase("data"):
        data = load_data(config, mesh)
    ckpt = Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
    try:  # into an abstract target: nothing is initialised only to be overwritten
        epoch = chosen_epoch(ckpt, config)
        with reporter.phase(f"checkpoint ({config.analyze_checkpoint})"):
            state = ckpt.restore(parallel.replicated_abstract(lambda: init_state(learner, config.seed), mesh),
                                 epoch=epoch)
    finally:
        ckpt.close()
    with reporter.phase("encoding and evaluating the test set"):
        codes = np.asarray(jax.jit(functools.partial(encode, learner))(state.params["ae"], data.test_x))
        metrics = jax.device_get(jax.jit(functools.partial(evaluate, learner))(state.params, data.test_x,
                                                                                 data.test_y))
    try:
        with monitoring.open_writer(config, workdir, log_framework) as writer, reporter.phase(ANALYSIS_PHASE):
            result = analyze_codes(config, codes, metrics, data.test_y, data.test_x, data.class_names, workdir,
                                   writer, int(state.step), say=reporter.note)
    finally:
        reporter.close()
    outdir = analysis_dir(workdir, len(codes), config.analysis_subsample)
    reporter.summary(final={**monitoring.scalars(metrics), **result.summary()}, workdir=workdir,
                     paths={"analysis": outdir, "metrics.json": outdir / "metrics.json"})
    return result.metrics
