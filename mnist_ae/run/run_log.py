"""WORKDIR/run.log: where library logs (absl/orbax, jax, tensorflow, wandb) and Python warnings go,
so that the terminal belongs to the progress reporter (`mnist_ae.run.progress`)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, TextIO
from mnist_ae.workdir import RunDir

# Third-party loggers that `configure_logging` takes off the terminal (plus the root logger).
LIBRARY_LOGGERS = ("absl", "jax", "orbax", "tensorflow", "wandb", "py.warnings")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is now, so that a live display that redirects it stays intact."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _RunLogHandler(logging.FileHandler):
    """WORKDIR/run.log (a type of its own so a second configure_logging replaces it). On a full or
    read-only disk it stays quiet: the log is for diagnosis, and logging's default would print a
    traceback per record (thousands of lines) over the one line that names the real failure."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        del record


def _to_replace(handler: logging.Handler) -> bool:
    """Handlers that write to the terminal (absl's from app.run, basicConfig's, TF's own) or that an
    earlier configure_logging added."""
    from absl import logging as absl_logging  # noqa: PLC0415

    if handler is absl_logging.get_absl_handler() or isinstance(handler, (_StderrHandler, _RunLogHandler)):
        return True
    return (type(handler) is logging.StreamHandler
            and getattr(handler, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__))


def configure_logging(workdir: Path, verbose: bool) -> None:
    """Library logs (absl/orbax, jax, tensorflow, wandb) and Python warnings go to WORKDIR/run.log,
    so the terminal is the reporter's; `verbose` copies them to stderr as well.

    Not verbose, also sets WANDB_SILENT (unless set) and TF_CPP_MIN_LOG_LEVEL=2: native INFO and
    WARNING lines off, errors kept. Native libraries read the latter when they load (TensorFlow
    under tfds: later; jaxlib: on `import jax`, so its C++ warnings, e.g. CUDA's, only if this runs
    before that import).
    """
    if not verbose:
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1") == "1":  # unset, or the 1 `import jax` sets then
            os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        os.environ.setdefault("WANDB_SILENT", "true")
    root = logging.getLogger()
    for logger in (root, *map(logging.getLogger, LIBRARY_LOGGERS)):
        for handler in [h for h in logger.handlers if _to_replace(h)]:
            logger.removeHandler(handler)
            if isinstance(handler, _RunLogHandler):
                handler.close()
        if logger is not root:
            logger.propagate = True  # to the root's handlers below, even where a library turned it off
    workdir.mkdir(parents=True, exist_ok=True)
    handlers: list[logging.Handler] = [_RunLogHandler(RunDir(workdir).log)]
    if verbose:
        handlers.append(_StderrHandler())
    for handler in handlers:
        handler.setLevel(logging.INFO)  # not DEBUG: jax logs thousands of lines per compile
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    sys.unraisablehook = _unraisable_to_log


def _unraisable_to_log(unraisable: Any) -> None:
    """An error no caller can catch (in a finalizer, or in a callback on a library's own thread: each
    pending TensorStore read of a damaged checkpoint whose restore already failed, into a closed event
    loop, printed 50 tracebacks) is a library log line, not a traceback on the terminal."""
    where = f" in {unraisable.object!r}" if unraisable.object is not None else ""
    logging.getLogger("py.unraisable").warning(
        "%s%s", unraisable.err_msg or "Exception ignored", where,
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback))


class _Unbreakable:
    """A terminal stream that a reader going away cannot break (`launch.py | head -1`): after its first
    failed write the fd points at /dev/null and the run goes on; run.log keeps the library logs."""

    def __init__(self, stream: TextIO, fd: int):
        self._stream, self._fd = stream, fd

    def _to_devnull(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._fd)  # the interpreter's own flush at exit then succeeds too
        os.close(devnull)
        self._broken = self._stream  # kept: collected, it would close the descriptor just pointed at /dev/null
        self._stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (lives as long as the process)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (BrokenPipeError, ValueError, OSError):
            self._to_devnull()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            self._to_devnull()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def close(self) -> None:
        for stream in (self._stream, getattr(self, "_broken", None)):
            if stream is not None:
                stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_terminal_streams() -> None:
    """stdout and stderr that neither a closed descriptor (`launch.py >&-`) nor a closed pipe can break: a
    closed one is reopened on /dev/null before any file can take its number (a lock file or run.log on fd 1
    would receive the progress lines), and writes that fail switch it to /dev/null."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            if devnull != fd:
                os.dup2(devnull, fd)
                os.close(devnull)
            setattr(sys, name, open(fd, "w", encoding="utf-8", closefd=False))  # noqa: SIM115
        stream = getattr(sys, name)
        if not isinstance(stream, _Unbreakable):
            setattr(sys, name, _Unbreakable(stream, fd))
