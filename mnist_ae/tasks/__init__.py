"""The six tasks behind one registry: what the CLI, tests, benchmarks and notebooks call.

    from mnist_ae import tasks
    from mnist_ae.config import base_config
    final = tasks.run(base_config(), "runs/demo", log_framework="none")     # the config's task
    tasks.TASKS["compare"].fn("runs/a,runs/b", "runs/compare.html")         # any task by name

Each task is entered the same way (`entered`: the workdir's lock, and for the tasks that train the
handlers that let a signal finish the epoch in flight); the CLI adds the log routing and the one-line
errors. Importing this package is light: a task's modules
(JAX, orbax, plotly) load when it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ml_collections

from mnist_ae.errors import UnknownTask


@dataclasses.dataclass(frozen=True)
class Task:
    """A task: its name, its one-line help, its Python entry point, and whether it trains from a config
    (`experiments/<name>.py`) or reads runs already on disk (report, compare: no config file)."""

    name: str
    help: str
    fn: Callable[..., Any]
    trains: bool = True


NOTHING_TORN = ("before it finished; every file it writes is replaced whole, so none is torn: rerun the same "
                "command to finish")


@contextlib.contextmanager
def entered(workdir: Path | None, *, finishes_epochs: bool = False) -> Iterator[Any]:
    """What every task holds while it runs: the workdir's lock (none for compare, which only reads runs)
    and SIGINT/SIGTERM handlers (yields their stop request): for the tasks that train, the epoch in
    flight finishes and commits; the others stop at the first signal, as a command should, with one
    line. Either way a watchdog ends a run whose main thread is stuck in a device call."""
    from mnist_ae.run import lifecycle  # noqa: PLC0415

    with lifecycle.workdir_lock(workdir) if workdir is not None else contextlib.nullcontext(), \
            lifecycle.stop_on_signals("" if finishes_epochs else NOTHING_TORN) as stop:
        yield stop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
                       quiet: bool = False, started: float | None = None) -> dict[str, float]:
    """A reconstruction or classification run, trained (or resumed) to `config.epochs`: its final metrics.
    `started`: a `time.perf_counter()` reading where the summary's wall time begins (default: the set-up)."""
    from mnist_ae.tasks import train  # noqa: PLC0415

    return train.train_and_evaluate(config, Path(workdir), log_framework, quiet, started)


def train_sweep(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
                quiet: bool = False, started: float | None = None) -> list[dict[str, float]]:
    """Every member of a sweep trained together (one vmapped program): final metrics per member."""
    from mnist_ae.tasks import train  # noqa: PLC0415

    return train.train_sweep(config, Path(workdir), log_framework, quiet, started)


def analyze(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
            quiet: bool = False, started: float | None = None) -> dict[str, Any]:
    """The embedding analysis of the run in `workdir` (its own config; analysis keys from `config`)."""
    from mnist_ae.tasks import analysis  # noqa: PLC0415

    return analysis.analyze(config, Path(workdir), log_framework, quiet, started)


def report(workdir: str | Path) -> Path:
    """WORKDIR/report.html for a finished, interrupted or sweep run; returns its path."""
    from mnist_ae.tasks import pages  # noqa: PLC0415

    return pages.report(Path(workdir))


def compare(workdirs: str, out: str | Path = "runs/compare.html") -> Path:
    """A comparison page of the runs `workdirs` names (comma-separated, globs welcome); returns its path."""
    from mnist_ae.tasks import pages  # noqa: PLC0415

    return pages.compare(workdirs, Path(out))


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("reconstruction", "train an autoencoder, with the alternating embedding-classifier probe", train_and_evaluate),
    Task("classification", "train a plain supervised classifier on the pixels", train_and_evaluate),
    Task("sweep", "train many latent sizes / seeds / learning rates at once under jax.vmap", train_sweep),
    Task("analyze", "PCA, t-SNE, figures and quality numbers for the codes of a finished run", analyze),
    Task("report", "RUN/report.html: one self-contained page with the run's config, curves, grids and maps",
         report, trains=False),
    Task("compare", "compare.html: several runs side by side (--workdirs A,B,'runs/*', --out FILE)", compare,
         trains=False),
)}


def check_task(name: str, *, trains: bool | None = None) -> Task:
    """The registered task `name`, or a one-line error naming the choices (those that train, if asked)."""
    choices = [t for t in TASKS.values() if trains is None or t.trains == trains]
    if name not in {t.name for t in choices}:
        raise UnknownTask(f"unknown task {name!r}: choose one of {', '.join(t.name for t in choices)}")
    return TASKS[name]


def run(config: ml_collections.ConfigDict, workdir: str | Path, log_framework: str = "none",
        quiet: bool = False, started: float | None = None) -> Any:
    """The training or analysis task `config.task` names."""
    return check_task(config.task, trains=True).fn(config, workdir, log_framework, quiet, started)
