"""The library entry points, one per task: what the CLI, tests, benchmarks and notebooks call.

    from mnist_ae import tasks
    from mnist_ae.config import base_config
    final = tasks.run(base_config(), "runs/demo", log_framework="none")

Each takes a validated config and a workdir; `run` dispatches on `config.task`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
                       quiet: bool = False) -> dict[str, float]:
    """A reconstruction or classification run, trained (or resumed) to `config.epochs`: its final metrics."""
    from mnist_ae.run import hooks, program  # noqa: PLC0415  (heavy imports only when called)

    finals = _train(config, Path(workdir), log_framework, quiet, program.single_program,
                    lambda run: hooks.single_hooks(config, run.program.learner.is_autoencoder))
    return finals[0]


def train_sweep(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
                quiet: bool = False) -> list[dict[str, float]]:
    """Every member of a sweep trained together (one vmapped program): final metrics per member."""
    from mnist_ae.run import hooks, program  # noqa: PLC0415

    return _train(config, Path(workdir), log_framework, quiet, program.sweep_program,
                  lambda run: hooks.sweep_hooks(config))


def _train(config: ml_collections.ConfigDict, workdir: Path, log_framework: str, quiet: bool,
           make_program: Callable, make_hooks: Callable) -> list[dict[str, float]]:
    """The lifecycle every training task shares: lock, set-up, the driver, clean closing, the summary."""
    from mnist_ae.run import driver, lifecycle, setup  # noqa: PLC0415

    with lifecycle.workdir_lock(workdir), lifecycle.stop_on_signals() as stop:
        run, state = setup.open_run(config, workdir, log_framework, quiet, make_program)
        run.stop = stop
        with driver.closing_all(run.ckpt, *run.writers, run.reporter):
            finals = driver.train(run, state, make_hooks(run))
    final = finals[0] if len(finals) == 1 and run.program.members == [{}] else list(zip(run.program.members, finals))
    run.reporter.summary(final=final, workdir=workdir, paths=setup.summary_paths(workdir))
    return finals


def analyze(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
            quiet: bool = False) -> dict[str, Any]:
    """The embedding analysis of the run in `workdir` (its own config; analysis keys from `config`)."""
    from mnist_ae.analysis.task import run_analyze  # noqa: PLC0415

    return run_analyze(config, Path(workdir), log_framework, quiet)


TASKS = {"reconstruction": train_and_evaluate, "classification": train_and_evaluate, "sweep": train_sweep,
         "analyze": analyze}


def run(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
        quiet: bool = False) -> Any:
    """The task `config.task` names."""
    return TASKS[config.task](config, workdir, log_framework, quiet)
