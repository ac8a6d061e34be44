"""The training tasks (reconstruction, classification, sweep): one lifecycle, a program and its hooks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import ml_collections

from mnist_ae.run import driver, hooks, program, setup
from mnist_ae.tasks import entered


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: Path, log_framework: str,
                       quiet: bool, started: float | None = None) -> dict[str, float]:
    """One run (`mnist_ae.tasks.train_and_evaluate`): its final metrics. `started`: see `setup.open_run`."""
    finals = _train(config, workdir, log_framework, quiet, program.single_program,
                    lambda run: hooks.single_hooks(config, run.program.learner.is_autoencoder), started)
    return finals[0]


def train_sweep(config: ml_collections.ConfigDict, workdir: Path, log_framework: str,
                quiet: bool, started: float | None = None) -> list[dict[str, float]]:
    """Every member in one vmapped program (`mnist_ae.tasks.train_sweep`): final metrics per member."""
    return _train(config, workdir, log_framework, quiet, program.sweep_program,
                  lambda run: hooks.sweep_hooks(config), started)


def _train(config: ml_collections.ConfigDict, workdir: Path, log_framework: str, quiet: bool,
           make_program: Callable, make_hooks: Callable, started: float | None) -> list[dict[str, float]]:
    """The lifecycle every training task shares: lock, set-up, the driver, clean closing, the summary."""
    with entered(workdir, finishes_epochs=True) as stop:
        run, state = setup.open_run(config, workdir, log_framework, quiet, make_program, started)
        run.stop = stop
        with driver.closing_all(run.ckpt, *run.writers, run.reporter):
            finals = driver.train(run, state, make_hooks(run))
    final = finals[0] if len(finals) == 1 and run.program.members == [{}] else list(zip(run.program.members, finals))
    run.reporter.summary(final=final, workdir=workdir, paths=setup.summary_paths(workdir))
    return finals
