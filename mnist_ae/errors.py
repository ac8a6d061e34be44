"""Every error a command reports in one line, with its exit status: the CLI catches `ProductError` and
prints the message; nothing else needs to know which module raised it.

Status 2: the user's mistake (fix the command, the config or the files and run it again). Status 1: a run
that stopped on its own (diverged, a checkpoint that cannot be written). 128 + signum: a signal.
Importing this module loads nothing, so the CLI can catch these before JAX is imported.
"""

from __future__ import annotations

import signal


class ProductError(Exception):
    """An error the command reports as one line (`prefix` + message) and ends with `exit_code`."""

    exit_code = 1
    prefix = "error: "


class UserError(ProductError, ValueError):
    """A mistake in the command, the config, the data or the paths: the message names it and the fix."""

    exit_code = 2


class RunStopped(ProductError, RuntimeError):
    """A run that cannot go on; what it committed is kept and the message says what to do."""

    exit_code = 1


class UsageError(UserError):
    """A command-line mistake."""


class UnknownTask(UserError):
    """A task name that is not in `mnist_ae.tasks.TASKS`."""


class ConfigError(UserError):
    """A user mistake in the configuration."""


class DataError(UserError):
    """Missing, corrupt or unreadable data: names the file and the fix."""


class WriterError(UserError, RuntimeError):
    """A writer could not be built (e.g. `wandb.init` failed online)."""


class WorkdirBusy(UserError, RuntimeError):
    """Another live process holds the workdir; the message names it."""


class PathError(UserError):
    """A path the run must write and cannot (a file in place of a folder, a read-only folder)."""


class ResourceError(UserError):
    """A run too big for its device: refused before it allocates, naming the sizes."""


class ReportError(UserError):
    """A workdir the report cannot be written for."""


class TrainingDiverged(RunStopped):
    """Non-finite metrics: the run stops and the last good checkpoint stays."""


class CheckpointError(RunStopped):
    """A checkpoint that cannot be written or read; the message names the path and the cause."""


class SomeDiverged(RunStopped):
    """A sweep finished but some members diverged; the others' results are kept."""


class Interrupted(ProductError):
    """SIGINT or SIGTERM: at an epoch boundary after its checkpoint committed, or (`during`: what was
    cut short and what a rerun does) at once."""

    prefix = ""

    def __init__(self, signum: int, epoch: int | None, during: str = ""):
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        if during:
            super().__init__(f"interrupted by {name} {during}")
            return
        where = f"after epoch {epoch}; checkpoint kept" if epoch is not None else "before the first epoch"
        super().__init__(f"interrupted by {name} {where}: rerun the same command to resume")
