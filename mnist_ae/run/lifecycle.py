"""A run's guarantees around the driver: one process per workdir, clean stops on SIGINT/SIGTERM,
and a metrics log that holds each (step, member) once however often the run was restarted."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnist_ae import parallel
from mnist_ae.errors import WorkdirBusy
from mnist_ae.workdir import RunDir, parse_record, read_records


@contextlib.contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """An OS lock on WORKDIR/.lock for the whole run (released by the OS even after kill -9), holding
    host, PID and start time. Several processes of one multi-process run: process 0 holds it."""
    if not parallel.is_main_process():
        yield
        return
    workdir.mkdir(parents=True, exist_ok=True)
    handle = RunDir(workdir).lock.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise WorkdirBusy(f"{workdir} is in use by {holder}: wait for that run to end or pass another "
                              "--workdir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


@dataclasses.dataclass
class StopRequest:
    """Set by the first SIGINT/SIGTERM; the driver stops at the end of the compiled epoch in flight."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """SIGINT and SIGTERM ask for a clean stop; a second one stops at once (KeyboardInterrupt)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        del frame
        if request.signum is not None:
            raise KeyboardInterrupt
        request.signum = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def keep_records_before(path: Path, step: int) -> int:
    """Rewrite metrics.jsonl keeping what a run restored at `step` will not write again: scalar records
    before `step` (and at it, unless the run starts afresh at 0). Final hparams records go (the run
    writes them again at its end), and so does a line that is no record (`workdir.parse_record`: a torn line
    from a crash mid-write, or garbage). Returns the lines dropped."""
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = parse_record(line)
        if record is None:
            dropped += 1
            continue
        record_step = record.get("step")
        if "hparams" in record:
            dropped += 1
        elif record_step is None or record_step < step or (record_step == step and step > 0):
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        tmp.replace(path)
    return dropped


def device_line() -> str:
    """The devices in one line, e.g. "cpu x1: AMD EPYC 9B14, 2 cores" or "gpu x8: NVIDIA H100 80GB HBM3"."""
    import jax  # noqa: PLC0415

    devices = jax.devices()
    head = f"{jax.default_backend()} x{len(devices)}"
    if jax.default_backend() != "cpu":
        return f"{head}: {devices[0].device_kind}"
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{head}: {names[0] if names else 'CPU'}, {cores} cores"


def provenance() -> dict[str, Any]:
    """What ran: package versions, the devices, and the git commit when run from a checkout."""
    import importlib.metadata  # noqa: PLC0415
    import platform  # noqa: PLC0415

    import jax  # noqa: PLC0415

    versions = {}
    for package in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "mnist-ae-jax"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    devices = jax.devices()
    return {"versions": {"python": platform.python_version(), **versions},
            "devices": {"platform": jax.default_backend(), "count": len(devices), "kind": devices[0].device_kind,
                        "processes": jax.process_count(), "line": device_line()},
            "host": socket.gethostname(), "commit": _git_commit()}


def _git_commit() -> str | None:
    """HEAD of the checkout this package runs from (with "+dirty" for local changes), else None."""
    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def record_start(workdir: Path, config: Any, step: int) -> None:
    """The resolved config at the top of the workdir, and a start record in metrics.jsonl (one per
    start, so restarts show in the log)."""
    RunDir(workdir).config.write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True) + "\n")
    _append_event(workdir, {"event": "start", "time": round(time.time(), 3), "from_step": step, **provenance()})


def _append_event(workdir: Path, record: dict[str, Any]) -> None:
    with RunDir(workdir).metrics.open("a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


def record_end(workdir: Path, step: int) -> None:
    """An end record in metrics.jsonl once every end-of-run stage (analysis, report, hparams) is done: a
    rerun finds it and only reports; without it (a stop during that work) the rerun finishes the work."""
    if parallel.is_main_process():
        _append_event(workdir, {"event": "end", "time": round(time.time(), 3), "at_step": step})


def ended(workdir: Path, step: int) -> bool:
    """Whether the run's last start (or its first) was followed by its end record at `step`."""
    events = [r for r in read_records(RunDir(workdir).metrics) if "event" in r]
    return bool(events) and events[-1]["event"] == "end" and events[-1].get("at_step") == step


def saved_finals(workdir: Path, members: list[dict[str, Any]]) -> list[dict[str, float]] | None:
    """Each member's final numbers as its last hparams record holds them (None if one has none): what a
    rerun of a finished run reports, the same table as its first run's."""
    records = [r for r in read_records(RunDir(workdir).metrics) if "hparams" in r]
    finals = []
    for tags in members:
        mine = [r for r in records if r.get("member") == tags.get("member")]
        if not mine:
            return None
        finals.append(mine[-1]["metrics"])
    return finals
