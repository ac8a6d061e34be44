"""Faults a run must survive: a second run on its workdir, damaged checkpoints, a disk that refuses
writes, SIGTERM/SIGINT, restarts that would duplicate records."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import pytest

from helpers import REPO, tiny, tiny_run
from mnist_ae import build, tasks
from mnist_ae.checkpoint import CheckpointError, Checkpointer
from mnist_ae.run import lifecycle
from mnist_ae.errors import WorkdirBusy


def _final_state(workdir: Path, config):
    ckpt = Checkpointer(workdir / "checkpoints", 3)
    try:
        return ckpt.restore(jax.eval_shape(lambda: build.initial_state(config)))
    finally:
        ckpt.close()


def _records(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted 3-epoch tiny run: the reference every recovered run must equal bit for bit."""
    workdir = tmp_path_factory.mktemp("straight")
    tasks.train_and_evaluate(tiny(epochs=3), workdir, "none", quiet=True)
    return _final_state(workdir, tiny(epochs=3)), _records(workdir)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A tiny run stopped after 2 of 3 epochs (the session's shared one); tests damage a copy of it."""
    return tiny_run(tmp_path_factory, epochs=2)[0]


def _copy(source: Path, tmp_path: Path) -> Path:
    shutil.copytree(source, tmp_path / "run")
    return tmp_path / "run"


def test_a_second_run_on_a_busy_workdir_is_refused_naming_the_holder(tmp_path):
    with lifecycle.workdir_lock(tmp_path):
        with pytest.raises(WorkdirBusy, match=rf"in use by pid {os.getpid()} on .* since"):
            tasks.train_and_evaluate(tiny(epochs=1), tmp_path, "none", quiet=True)
    assert not (tmp_path / "checkpoints").exists()  # refused before any set-up
    with lifecycle.workdir_lock(tmp_path):  # released on exit
        pass


def test_the_command_line_refuses_a_busy_workdir_before_its_imports_and_logs(tmp_path):
    """The lock is probed before JAX is imported (a second run used to wait 11.6 s for its refusal):
    one line, status 2, and not even run.log, which the logging set-up after the probe would create."""
    with lifecycle.workdir_lock(tmp_path):
        result = subprocess.run([sys.executable, "launch.py", "--workdir", str(tmp_path), "--log_framework", "none"],
                                cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: {tmp_path} is in use by pid {os.getpid()}")
    assert not (tmp_path / "run.log").exists()


def test_the_lock_of_a_process_killed_with_sigkill_is_released(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from mnist_ae.run.lifecycle import workdir_lock\n"
        f"with workdir_lock(Path({str(tmp_path)!r})):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(WorkdirBusy, match=f"pid {holder.pid}"):
        with lifecycle.workdir_lock(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with lifecycle.workdir_lock(tmp_path):
        pass


def test_records_a_restored_run_would_write_again_are_dropped_and_a_torn_line_repaired(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 0, "test/recon_mse": 1.0}, {"step": 4, "train/loss": 2.0}, {"step": 8, "test/recon_mse": 0.5},
             {"step": 12, "train/loss": 1.0}, {"hparams": {"seed": 0}, "metrics": {}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 16, "train/lo')
    assert lifecycle.keep_records_before(path, 8) == 3  # step 12, the hparams record, the torn line
    assert [json.loads(line) for line in path.read_text().splitlines()] == lines[:3]
    assert lifecycle.keep_records_before(path, 0) == 3  # a fresh start keeps nothing it will rewrite
    assert path.read_text() == ""


def test_a_garbage_line_is_dropped_by_the_resume_and_skipped_by_every_reader(tmp_path):
    """A valid-JSON line that is no record (`42`, a list, a string step) blocked every resume with an
    AttributeError until the file was edited by hand; now the resume drops it and the readers (report,
    curves, api) skip it, as they skip a torn line."""
    from mnist_ae.workdir import RunDir, read_records

    path = tmp_path / "metrics.jsonl"
    good = [{"step": 0, "test/recon_mse": 1.0}, {"step": 4, "train/loss": 2.0}]
    path.write_text(json.dumps(good[0]) + '\n42\n[1, 2]\n{"step": "four"}\n' + json.dumps(good[1]) + '\n{"st')
    assert read_records(path) == RunDir(tmp_path).records() == good
    assert lifecycle.keep_records_before(path, 8) == 4
    assert [json.loads(line) for line in path.read_text().splitlines()] == good


def test_a_restart_after_a_lost_checkpoint_logs_each_step_once(tmp_path, straight, two_epochs):
    tmp_path = _copy(two_epochs, tmp_path)
    shutil.rmtree(tmp_path / "checkpoints" / "2")  # as if killed after logging epoch 2, before its commit
    tasks.train_and_evaluate(tiny(epochs=3), tmp_path, "none", quiet=True)
    records = [r for r in _records(tmp_path) if "step" in r]
    keys = [(r["step"], tuple(sorted(k for k in r if not k.startswith(("usage/", "train/steps", "time")))))
            for r in records]
    assert len(keys) == len(set(keys))
    strip = lambda rs: [{k: v for k, v in r.items() if not k.startswith(("usage/", "train/steps", "time"))}  # noqa: E731
                        for r in rs if "step" in r]
    assert strip(records) == strip(straight[1])
    assert sum("hparams" in r for r in _records(tmp_path)) == 1
    starts = [r for r in _records(tmp_path) if r.get("event") == "start"]
    assert [r["from_step"] for r in starts] == [0, 32]  # one start record per start: the provenance
    assert starts[0]["versions"]["jax"] == jax.__version__ and starts[0]["devices"]["count"] == jax.device_count()
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 3


def _flip_a_byte(step_dir: Path) -> None:
    data = max((p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
               key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))


def _truncate(step_dir: Path) -> None:
    data = max((p for p in (step_dir / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])


def _delete_state(step_dir: Path) -> None:
    shutil.rmtree(step_dir / "state")


def _delete_config(step_dir: Path) -> None:
    shutil.rmtree(step_dir / "config")


@pytest.mark.parametrize("damage", [_flip_a_byte, *(pytest.param(d, marks=pytest.mark.slow)  # the quick tier: one kind
                                                     for d in (_truncate, _delete_state, _delete_config))])
def test_a_damaged_latest_checkpoint_is_set_aside_and_the_previous_one_used(tmp_path, capsys, damage, straight,
                                                                          two_epochs):
    tmp_path = _copy(two_epochs, tmp_path)
    damage(tmp_path / "checkpoints" / "2")
    capsys.readouterr()
    tasks.train_and_evaluate(tiny(epochs=3), tmp_path, "none", quiet=True)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "checkpoints/2 is damaged" in warnings[0] and "trying the previous one" in warnings[0]
    assert [p.name.split("-")[0] for p in (tmp_path / "checkpoints-damaged").iterdir()] == ["2"]  # kept, not deleted
    chex.assert_trees_all_equal(_final_state(tmp_path, tiny(epochs=3)), straight[0])  # resumed from epoch 1


def test_a_checkpoint_that_cannot_be_written_is_one_line_and_keeps_the_earlier_ones(tmp_path, monkeypatch,
                                                                                     two_epochs):
    tmp_path = _copy(two_epochs, tmp_path)
    shutil.rmtree(tmp_path / "checkpoints" / "2")
    import orbax.checkpoint as ocp

    def full_disk(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "checkpoints"))

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(CheckpointError) as error:
        tasks.train_and_evaluate(tiny(epochs=2), tmp_path, "none", quiet=True)
    message = str(error.value)
    assert "\n" not in message and "No space left on device" in message and "checkpoints/2" in message
    monkeypatch.undo()
    assert Checkpointer(tmp_path / "checkpoints", 3).latest_epoch() == 1


@pytest.mark.slow
def test_a_checkpoint_whose_data_cannot_be_read_is_one_warning_line_on_the_command_line(tmp_path, two_epochs):
    """Every data chunk of the latest checkpoint overwritten: orbax's restore fails, and each of its pending
    TensorStore reads then raised into a closed event loop on its own thread (57 tracebacks, 3,940 stderr
    lines for `--task analyze`). Those go to run.log (`run_log._unraisable_to_log`); stderr has the one
    warning, and the run resumes from the previous checkpoint."""
    workdir = _copy(two_epochs, tmp_path)
    for chunk in (workdir / "checkpoints" / "2" / "state").rglob("d/*"):
        chunk.write_bytes(b"\x00" * 100)
    result = subprocess.run(_tiny_command(workdir), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    [warning] = result.stderr.splitlines()
    assert warning.startswith("warning: checkpoint ") and "is damaged" in warning and "TensorStore({" not in warning
    assert Checkpointer(workdir / "checkpoints", 3).latest_epoch() == 3


def _tiny_command(workdir: Path, **extra: object) -> list[str]:
    """`tiny(epochs=3)` through the real command line (with `extra` settings that do not change training)."""
    return [sys.executable, "launch.py", "--workdir", str(workdir), "--log_framework", "none",
            *[f"--config.{k}={v}" for k, v in dict(
                train_limit=2048, test_limit=512, hidden="64,32", latent_dim=8, probe_hidden=16, batch_size=64,
                epochs=3, eval_batch_size=256, log_every_steps=4, grid_digits=4, projector_points=64,
                analyze_at_end=False, latent_pictures=False, report_at_end=False, learning_rate=1e-2,
                probe_learning_rate=1e-2, **extra).items()]]


def _start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _after_an_epoch(proc: subprocess.Popen) -> str:
    """Reads the run's output up to the first epoch it reports (a resumed run's first may be a later
    one); '' if it ended first (a run resumed after its last epoch reports none)."""
    for line in proc.stdout:
        if re.match(r"epoch \d+/3 ", line):
            return line
    return ""


def _rerun_ends_as_straight(command: list[str], workdir: Path, straight) -> None:
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    chex.assert_trees_all_equal(_final_state(workdir, tiny(epochs=3)), straight[0])


@pytest.mark.slow
def test_kill_9_anywhere_then_the_same_command_ends_bit_identical(tmp_path, straight):
    """SIGKILL just after an epoch is reported (its checkpoint may be mid-write), three times in a row,
    each time on the run that resumes the last one's workdir (a kill may land later in the run, or after
    it ended); then the same command to the end."""
    command = _tiny_command(tmp_path)
    for delay_s in (0.0, 0.15, 0.05):
        proc = _start(command)
        _after_an_epoch(proc)
        time.sleep(delay_s)
        proc.kill()
        proc.communicate()
    _rerun_ends_as_straight(command, tmp_path, straight)
    steps = [(r.get("member"), r["step"], tuple(sorted(k for k in r if k != "time" and not k.startswith("usage/")
                                                       and k != "train/steps_per_s")))
             for r in _records(tmp_path) if "step" in r]
    assert len(steps) == len(set(steps))  # each record once, however the kills fell


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_at_an_epoch_boundary_with_its_checkpoint_and_the_rerun_matches(tmp_path, sig, code,
                                                                                         straight):
    """No scheduled checkpoint before the end (every 5 epochs of 3): the one the signal's epoch leaves
    is the signal's own, so the epoch the message names must be on disk (a save skipped on a signal
    would leave nothing to resume from)."""
    command = _tiny_command(tmp_path, checkpoint_every_epochs=5)
    proc = _start(command)
    assert _after_an_epoch(proc).startswith("epoch 1/3")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    last = err.strip().splitlines()[-1]
    stopped = re.match(rf"interrupted by {signal.Signals(sig).name} after epoch (\d+)", last)
    assert stopped, last
    assert "Traceback" not in err
    ckpt = Checkpointer(tmp_path / "checkpoints", 3)
    assert ckpt.latest_epoch() == int(stopped.group(1)) >= 1
    ckpt.close()
    _rerun_ends_as_straight(command, tmp_path, straight)


def test_a_stream_whose_reader_went_away_switches_to_devnull_and_never_raises():
    """The unit under the next test: a write into a closed pipe (EPIPE) is swallowed, later writes and
    the flush go to /dev/null, and the descriptor itself now points there (the interpreter's own flush
    at exit cannot fail either)."""
    from mnist_ae.run.run_log import _Unbreakable

    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    stream = _Unbreakable(open(write_fd, "w", buffering=1, encoding="utf-8"), write_fd)
    assert stream.write("epoch 1/3\n") == len("epoch 1/3\n")
    stream.write("epoch 2/3\n")
    stream.flush()
    assert os.path.samestat(os.fstat(write_fd), os.stat(os.devnull))
    stream.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["pipe closed after the first line", "stdout closed (>&-)"])
def test_a_run_whose_stdout_breaks_or_is_closed_trains_to_the_end(tmp_path, how):
    """`launch.py ... | head -1` aborted at step 0 with BrokenPipeError, and `launch.py ... >&-` before
    training: the run must finish, exit 0, with no traceback and every checkpoint (both fail on the code
    before `run_log.guard_terminal_streams`)."""
    command = _tiny_command(tmp_path)
    if how.startswith("pipe"):
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.readline()
        proc.stdout.close()  # the reader goes away, as `head -1` does
        err = proc.stderr.read()
        proc.wait(timeout=300)
    else:
        proc = subprocess.run(command, cwd=REPO, stderr=subprocess.PIPE, text=True, timeout=300,
                              preexec_fn=lambda: os.close(1))
        err = proc.stderr
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "Broken pipe" not in err
    assert Checkpointer(tmp_path / "checkpoints", 3).latest_epoch() == 3
    assert "epoch 1/3" not in (tmp_path / "run.log").read_text()  # no file took the closed descriptor's number


@pytest.mark.slow
def test_end_of_run_stages_cut_short_are_finished_by_the_rerun_and_then_reported_as_saved(tmp_path, monkeypatch,
                                                                                          capsys):
    """A failure (as a kill) in an end-of-run stage left no baseline, no curves and no final records, and
    every rerun said "already trained" and stopped. Now the rerun finishes the stages; the next rerun
    reports exactly the numbers the finished run saved (all of them, not only the test metrics)."""
    from mnist_ae.run import hooks

    def cut_short(run, state):
        raise RuntimeError("killed here")

    monkeypatch.setattr(hooks, "_pca_baseline", cut_short)
    with pytest.raises(RuntimeError, match="killed here"):
        tasks.train_and_evaluate(tiny(epochs=1), tmp_path, "none", quiet=True)
    monkeypatch.undo()
    assert not any("hparams" in r for r in _records(tmp_path))  # the final records never came
    finished = tasks.train_and_evaluate(tiny(epochs=1), tmp_path, "none", quiet=True)
    assert "cut its end-of-run stages short" in capsys.readouterr().err
    assert "baseline/pca_recon_mse" in finished and (tmp_path / "curves.png").is_file()
    again = tasks.train_and_evaluate(tiny(epochs=1), tmp_path, "none", quiet=True)
    assert "already trained" in capsys.readouterr().err
    assert again == finished
    assert sum("hparams" in r for r in _records(tmp_path)) == 1  # the final record once
