"""The library entry points, one per task: what the CLI, tests, benchmarks and notebooks call.

    from mnist_ae import tasks
    from mnist_ae.config import base_config
    final = tasks.run(base_config(), "runs/demo", log_framework="none")

Each takes a validated config and a workdir; `run` dispatches on `config.task`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ml_collections


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
                       quiet: bool = False) -> dict[str, float]:
    """A reconstruction or classification run, trained (or resumed) to `config.epochs`: its final metrics."""
    from mnist_ae.run import driver, hooks, program, setup  # noqa: PLC0415  (heavy imports only when called)

    run, state = setup.open_run(config, Path(workdir), log_framework, quiet, program.single_program)
    with driver.closing_all(run.ckpt, *run.writers, run.reporter):
        final, = driver.train(run, state, hooks.single_hooks(config, run.program.learner.is_autoencoder))
    run.reporter.summary(final=final, workdir=run.workdir, paths=setup.summary_paths(run.workdir))
    return final


def train_sweep(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
                quiet: bool = False) -> list[dict[str, float]]:
    """Every member of a sweep trained together (one vmapped program): final metrics per member."""
    from mnist_ae.run import driver, hooks, program, setup  # noqa: PLC0415

    run, state = setup.open_run(config, Path(workdir), log_framework, quiet, program.sweep_program)
    with driver.closing_all(run.ckpt, *run.writers, run.reporter):
        finals = driver.train(run, state, hooks.sweep_hooks(config))
    run.reporter.summary(final=[(tags, f) for tags, f in zip(run.program.members, finals)], workdir=run.workdir,
                         paths=setup.summary_paths(run.workdir))
    return finals


def analyze(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
            quiet: bool = False) -> dict[str, Any]:
    """The embedding analysis of the run in `workdir` (its own config; analysis keys from `config`)."""
    from mnist_ae.analyze import run_analyze  # noqa: PLC0415

    return run_analyze(config, Path(workdir), log_framework, quiet)


TASKS = {"reconstruction": train_and_evaluate, "classification": train_and_evaluate, "sweep": train_sweep,
         "analyze": analyze}


def run(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
        quiet: bool = False) -> Any:
    """The task `config.task` names."""
    return TASKS[config.task](config, workdir, log_framework, quiet)
