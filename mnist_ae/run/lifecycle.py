"""A run's guarantees around the driver: one process per workdir, clean stops on SIGINT/SIGTERM,
and a metrics log that holds each (step, member) once however often the run was restarted."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnist_ae import parallel
from mnist_ae.errors import Interrupted
from mnist_ae.workdir import RunDir, locked, parse_record, read_records


@contextlib.contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """`workdir.locked` for the whole run. Several processes of one multi-process run: process 0 holds it."""
    with locked(workdir) if parallel.is_main_process() else contextlib.nullcontext():
        yield


@dataclasses.dataclass
class StopRequest:
    """Set by the first SIGINT/SIGTERM. While training, the driver stops at the end of the compiled
    epoch in flight; once `during` is set (what a stop would cut short: the end-of-run stages, a page
    being written), a signal raises `Interrupted` where it lands, and a second one always does."""

    signum: int | None = None
    during: str = ""
    handled: int = 0  # signals the Python handler has seen (the watchdog compares)


KEPT = "the last committed checkpoint is kept: rerun the same command to resume"
AT_ONCE = f"at once (a second signal); {KEPT}"
GRACE_S = 5.0  # a first signal the main thread has not seen by then: it is blocked in a device call
SECOND_GRACE_S = 1.0  # a second signal not acted on by then: stop at once, as promised
STOP_GRACE_S = 30.0  # a seen signal whose epoch has not ended by then (a scheduler's usual kill wait)


@contextlib.contextmanager
def stop_on_signals(during: str = "") -> Iterator[StopRequest]:
    """SIGINT and SIGTERM ask for a clean stop (or, with `during`, stop at once); a second one stops at
    once. A watchdog thread sees every signal the moment it arrives (`signal.set_wakeup_fd`), so a main
    thread blocked in a device call, where Python runs no handler, still ends within GRACE_S."""
    request = StopRequest(during=during)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum: int, frame: Any) -> None:
        del frame
        request.handled += 1
        if request.signum is not None:
            raise Interrupted(signum, None, AT_ONCE)
        request.signum = signum
        if request.during:
            raise Interrupted(signum, None, request.during)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    watchdog = _Watchdog(request)
    try:
        yield request
    finally:
        watchdog.close()
        for s, h in previous.items():
            signal.signal(s, h)


class _Watchdog(threading.Thread):
    """Reads the signal numbers the interpreter writes to a pipe as each signal arrives, and ends the
    process with one line when the stop does not come in time: a first signal the handler has not seen
    after GRACE_S (the main thread is stuck, e.g. waiting on a device that cannot finish), a second after
    SECOND_GRACE_S (two quick Ctrl-Cs the interpreter merged into one handler call), a seen one whose
    epoch has not ended after STOP_GRACE_S. Committed checkpoints stay; the resume treats the cut like
    kill -9 (bit-identical)."""

    def __init__(self, request: StopRequest):
        super().__init__(name="mnist_ae-signal-watchdog", daemon=True)
        self._request = request
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self._closed = threading.Event()
        self.start()

    def run(self) -> None:
        arrived: list[tuple[int, float]] = []
        while not self._closed.is_set():  # asleep until a signal (or close's wake-up byte) arrives
            ready, _, _ = select.select([self._read], [], [], 0.2 if arrived else None)
            if ready:
                try:
                    data = os.read(self._read, 64)
                except OSError:
                    return
                arrived += [(b, time.monotonic()) for b in data if b in (signal.SIGINT, signal.SIGTERM)]
            if not arrived:
                continue
            seen = min(self._request.handled, len(arrived))
            if seen < len(arrived):  # the handler has not run for the latest signal
                signum, at = arrived[seen]
                limit, why = (SECOND_GRACE_S, "a second signal") if len(arrived) >= 2 else (
                    GRACE_S, "the run was blocked in a device call")
            else:
                (signum, at), limit, why = arrived[0], STOP_GRACE_S, "the epoch in flight did not end"
            if time.monotonic() - at > limit:
                os.write(2, f"interrupted by {signal.Signals(signum).name} at once ({why} within {limit:g} s); "
                            f"{KEPT}\n".encode())
                os._exit(128 + signum)

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        self._closed.set()
        os.write(self._write, b"\0")  # wakes the thread at once (0 is no signal's number)
        self.join()
        os.close(self._read)
        os.close(self._write)


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


def record_start(workdir: Path, config: Any, step: int, mesh: dict[str, int] | None = None) -> None:
    """The resolved config at the top of the workdir, and a start record in metrics.jsonl (one per
    start, so restarts show in the log) with the device mesh it trains on ({"members": m, "data": d})."""
    RunDir(workdir).config.write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True) + "\n")
    _append_event(workdir, {"event": "start", "time": round(time.time(), 3), "from_step": step,
                            **({"mesh": mesh} if mesh else {}), **provenance()})


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
