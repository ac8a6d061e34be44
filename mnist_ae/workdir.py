"""The run directory: every path in it named once (`RunDir`), and its files as programs read and write them.

Training, the analysis, the report, `api` and the tests meet only through these files, so their names
live here and nowhere else. Files a user opens (report.html, compare.html, figures) are written to a
temporary file beside the target and renamed over it, so a kill at any moment leaves the old file or
the new one, never a torn or empty one (a rename within a folder is atomic on POSIX). metrics.jsonl
has one reader.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mnist_ae.errors import WorkdirBusy


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """An OSError raised by a write to an open file (a full disk: `[Errno 28]`, no file name) names `path`,
    so the one-line error says which file could not be written."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror or str(e), str(path)) from e


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` fills a temporary file beside `path` (its folder made if needed), which then
    replaces `path`; on any error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with naming(path):
            write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def intact_line(epochs: list[int], none: str) -> str:
    """The checkpoints a rerun resumes from, for a message about a failed write ("checkpoints 1, 2 are
    intact"), or `none` when there are none."""
    if not epochs:
        return none
    return f"checkpoint{'s' if len(epochs) > 1 else ''} {', '.join(map(str, epochs))} {'are' if len(epochs) > 1 else 'is'} intact"


def parse_record(line: str) -> dict[str, Any] | None:
    """One metrics.jsonl line as a record, or None for a line that is not one: not JSON (a torn last line
    after a kill), not an object (`42`), or with a step that is not a number (garbage written by hand)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step", 0)
    return record if isinstance(step, (int, float)) and not isinstance(step, bool) else None


def read_records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records in order, skipping what `parse_record` refuses, so a bad line can break
    neither a resume nor a report."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [record for record in map(parse_record, lines) if record is not None]


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run directory's layout. A sweep's members are run directories of their own under `members/`
    (checkpoints, TensorBoard, W&B); their records are the tagged lines of the sweep's metrics.jsonl, so a
    resume trims one file and no point is ever logged twice."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    metrics = property(lambda self: self.root / "metrics.jsonl")  # one JSON record per line, appended
    config = property(lambda self: self.root / "config.json")  # the run's config, for the pages
    log = property(lambda self: self.root / "run.log")  # third-party logs and warnings
    lock = property(lambda self: self.root / ".lock")  # held by the one process writing the run
    checkpoints = property(lambda self: self.root / "checkpoints")
    tensorboard = property(lambda self: self.root / "tb")
    wandb = property(lambda self: self.root / "wandb")
    report = property(lambda self: self.root / "report.html")
    curves = property(lambda self: self.root / "curves.png")
    confusion = property(lambda self: self.root / "confusion.png")
    reconstructions = property(lambda self: self.root / "reconstructions")  # step_NNNNNNN.png per eval
    codes = property(lambda self: self.root / "codes")  # step_NNNNNNN.npz: test codes per eval
    latent = property(lambda self: self.root / "latent")  # decoded class means, interpolations, manifold
    anomaly_roc = property(lambda self: self.root / "anomaly_roc.png")  # one-class runs' ROC curves
    anomaly_digits = property(lambda self: self.root / "anomaly_digits.png")  # their most and least anomalous digits
    denoising = property(lambda self: self.root / "denoising.png")  # noisy / denoised / clean test digits
    samples = property(lambda self: self.root / "samples")  # a VAE's samples_step_NNNNNNN.png per eval
    comparison = property(lambda self: self.root / "comparison.png")  # a sweep's reconstructions per member
    sweep_results = property(lambda self: self.root / "sweep_results.md")  # for people
    sweep_results_json = property(lambda self: self.root / "sweep_results.json")  # for programs
    sweep_results_plot = property(lambda self: self.root / "sweep_results.png")
    members = property(lambda self: self.root / "members")

    def reconstruction_png(self, step: int) -> Path:
        return self.reconstructions / f"step_{step:07d}.png"

    def samples_png(self, step: int) -> Path:
        return self.samples / f"samples_step_{step:07d}.png"

    def codes_npz(self, step: int) -> Path:
        return self.codes / f"step_{step:07d}.npz"

    def analysis(self, n_codes: int | None = None, subsample: int | None = 0) -> Path:
        """RUN/analysis for all the codes, RUN/analysis_subsample<N> for a subset of N of them: an
        analysis names its subset, and a smaller one never overwrites a larger one."""
        whole = subsample in (0, None) or n_codes is None or subsample >= n_codes
        return self.root / ("analysis" if whole else f"analysis_subsample{subsample}")

    def analysis_metrics(self, n_codes: int | None = None, subsample: int | None = 0) -> Path:
        return self.analysis(n_codes, subsample) / "metrics.json"

    def member(self, name: str) -> RunDir:
        return RunDir(self.members / name)

    @property
    def sweep(self) -> RunDir | None:
        """The sweep this is a member of (its `members/<name>` folder), else None."""
        return RunDir(self.root.parent.parent) if self.root.parent.name == "members" else None

    def records(self) -> list[dict[str, Any]]:
        """The run's records; a sweep member's are its tagged lines (and the start events) in the sweep's
        metrics.jsonl (sweeps written before that decision kept a copy in the member's folder: read it)."""
        sweep = self.sweep
        if not self.metrics.exists() and sweep is not None:
            return [r for r in read_records(sweep.metrics)
                    if r.get("member") == self.root.name or r.get("event") == "start"]
        return read_records(self.metrics)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """An OS lock on RUN/.lock while the block runs (released by the OS even after kill -9), holding host,
    PID and start time for the refusal of a second run. Needs no JAX: the CLI probes it before the imports."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    handle = RunDir(root).lock.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise WorkdirBusy(f"{root} is in use by {holder}: wait for that run to end or pass another "
                              "--workdir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def check_free(root: Path) -> None:
    """WorkdirBusy now if another process holds RUN/.lock (taken and dropped at once: the run takes it
    for good later), so a second run is refused in a second, not after the imports."""
    with locked(root):
        pass
