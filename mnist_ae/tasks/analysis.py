"""`--task analyze`: the embedding analysis of any run with a checkpoint, finished or interrupted.

The model is rebuilt from the config stored in the checkpoint, the whole test set is encoded in one
jitted call, and the codes come back to the host once for `analysis.task.analyze_codes`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from mnist_ae import build, parallel
from mnist_ae.run import monitoring
from mnist_ae.analysis import ANALYSIS_PHASE
from mnist_ae.analysis.task import analyze_codes, chosen_epoch, run_config
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.core.steps import encode, evaluate, init_state
from mnist_ae.run.progress import Reporter
from mnist_ae.run.device_data import load_data
from mnist_ae.tasks import entered
from mnist_ae.workdir import RunDir


def analyze(cli_config: ml_collections.ConfigDict, workdir: Path, log_framework: str,
            quiet: bool = False, started: float | None = None) -> dict[str, Any]:
    """Analyse the chosen checkpoint in `workdir` (the run's lock held); returns metrics.json's content.
    `started`: see `setup.open_run`."""
    config = run_config(workdir, cli_config)  # before the lock: a folder with no run is not created
    with entered(workdir):
        return _analyze(config, workdir, log_framework, quiet, started)


def _analyze(config: ml_collections.ConfigDict, workdir: Path, log_framework: str, quiet: bool,
             started: float | None) -> dict[str, Any]:
    learner = build.learner(config)
    mesh = parallel.make_mesh(1)
    reporter = Reporter(total_epochs=0, rounds_per_epoch=0, quiet=quiet, title="analyze", started=started)
    with reporter.phase("data"):
        data = load_data(config, mesh)
    ckpt = Checkpointer(RunDir(workdir).checkpoints, config.keep_checkpoints)
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
    outdir = RunDir(workdir).analysis(len(codes), config.analysis_subsample)
    reporter.summary(final={**monitoring.scalars(metrics), **result.summary()}, workdir=workdir,
                     paths={"analysis": outdir, "metrics.json": outdir / "metrics.json"})
    return result.metrics
