"""The run's lifecycle helpers in this process: the signal watchdog (fed signal numbers through its pipe, with
short graces and `os._exit` caught), the device line, the git commit of the provenance record, and the
trimming of metrics.jsonl. tests/test_signals.py sends real signals to real runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mnist_ae.run import lifecycle
from mnist_ae.run.lifecycle import StopRequest, _Watchdog


@pytest.fixture
def exits(monkeypatch) -> list[int]:
    """The watchdog's `os._exit` codes; the fake ends the watchdog's loop instead of the process."""
    codes: list[int] = []

    def fake_exit(code: int) -> None:
        codes.append(code)
        threading.current_thread()._closed.set()  # the watchdog's own thread: its loop ends

    monkeypatch.setattr(lifecycle.os, "_exit", fake_exit)
    monkeypatch.setattr(lifecycle, "GRACE_S", 0.3)
    monkeypatch.setattr(lifecycle, "SECOND_GRACE_S", 0.1)
    monkeypatch.setattr(lifecycle, "STOP_GRACE_S", 0.5)
    return codes


def _arrive(watchdog: _Watchdog, *signums: int) -> None:
    """What the interpreter writes to the wake-up fd when these signals arrive."""
    os.write(watchdog._write, bytes(signums))


def _ended(watchdog: _Watchdog, within: float = 10.0) -> None:
    watchdog.join(timeout=within)
    assert not watchdog.is_alive()


@pytest.mark.parametrize("handled, signums, why, code", [
    (0, (15,), "SIGTERM at once (the run was blocked in a device call within 0.3 s)", 143),
    (1, (2, 2), "SIGINT at once (a second signal within 0.1 s)", 130),
    (1, (15,), "SIGTERM at once (the epoch in flight did not end within 0.5 s)", 143),
])
def test_the_watchdog_ends_a_run_whose_stop_does_not_come(exits, capfd, handled, signums, why, code):
    """A first signal the handler never saw (the main thread blocked in a device call), a second one it did
    not act on, a seen one whose epoch never ended: each ends the process with one line, 128 + signum."""
    request = StopRequest(handled=handled)
    watchdog = _Watchdog(request)
    _arrive(watchdog, *signums)
    _ended(watchdog)
    watchdog.close()
    assert exits == [code]
    assert capfd.readouterr().err == f"interrupted by {why}; {lifecycle.KEPT}\n"


def test_a_handled_signal_or_a_byte_that_is_no_signal_ends_nothing_and_close_frees_the_pipe(exits, capfd):
    request = StopRequest()
    watchdog = _Watchdog(request)
    _arrive(watchdog, 0, 7)  # close's wake-up byte, and a signal the run does not stop on
    request.handled = 1
    _arrive(watchdog, 2)  # seen by the handler at once; the epoch ends before STOP_GRACE_S
    time.sleep(0.3)
    assert watchdog.is_alive() and exits == []
    fds = watchdog._read, watchdog._write
    watchdog.close()
    assert not watchdog.is_alive()  # joined, not left running
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    assert exits == [] and capfd.readouterr().err == ""


def test_the_watchdog_takes_the_wakeup_fd_while_it_runs_and_gives_it_back():
    before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(before)
    watchdog = _Watchdog(StopRequest())
    assert signal.set_wakeup_fd(watchdog._write) == watchdog._write  # where the interpreter writes signals
    watchdog.close()
    assert signal.set_wakeup_fd(before) == before


def test_the_device_line_names_the_cpu_model_and_this_process_s_cores(monkeypatch):
    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")]
    monkeypatch.setattr(lifecycle.os, "sched_getaffinity", lambda pid: {0} if pid == 0 else {0, 1, 2, 3})
    assert lifecycle.device_line() == f"cpu x1: {models[0] if models else 'CPU'}, 1 cores"


def test_the_device_line_of_an_accelerator_names_its_kind(monkeypatch):
    import jax

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "devices", lambda: [type("D", (), {"device_kind": "NVIDIA H100 80GB HBM3"})()] * 8)
    assert lifecycle.device_line() == "gpu x8: NVIDIA H100 80GB HBM3"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_the_provenance_names_the_checkout_s_commit_and_whether_it_was_changed(tmp_path, monkeypatch):
    repo = tmp_path / "checkout"
    module = repo / "mnist_ae" / "run" / "lifecycle.py"
    module.parent.mkdir(parents=True)
    module.write_text("# the package as a checkout holds it\n")
    _git(repo, "init", "-q")
    monkeypatch.setattr(lifecycle, "__file__", str(module))
    assert lifecycle._git_commit() is None  # a checkout without a commit yet
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    monkeypatch.setattr(lifecycle, "__file__", str(module))
    head = _git(repo, "rev-parse", "HEAD")
    (repo / "untracked.txt").write_text("not a change to the code")
    assert lifecycle._git_commit() == head
    module.write_text("# changed\n")
    assert lifecycle._git_commit() == f"{head}+dirty"
    assert lifecycle.provenance()["commit"] == f"{head}+dirty"

    monkeypatch.setattr(lifecycle.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(OSError("no git")))
    assert lifecycle._git_commit() is None  # git missing
    monkeypatch.undo()
    monkeypatch.setattr(lifecycle, "__file__", str(module))
    (repo / ".git").rename(repo / "git-moved")
    (repo / ".git").write_text("gitdir: nowhere\n")  # a .git that git cannot read
    assert lifecycle._git_commit() is None
    (repo / ".git").unlink()
    assert lifecycle._git_commit() is None  # not a checkout (an installed package)


def test_trimming_keeps_what_the_restored_run_will_not_write_again(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert lifecycle.keep_records_before(path, 5) == 0 and not path.exists()
    records = [{"event": "start", "from_step": 0}, {"step": 0, "x": 1}, {"step": 1, "x": 2}, {"step": 2, "x": 3},
               {"hparams": {}, "metrics": {}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert lifecycle.keep_records_before(path, 1) == 2  # restored at step 1: its own eval is kept
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:3]
    assert lifecycle.keep_records_before(path, 1) == 0
    assert lifecycle.keep_records_before(path, 0) == 2  # afresh: even step 0 is written again
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:1]
