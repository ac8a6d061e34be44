"""What every training task sets up before compute (`run/setup.py`), run in this process: the preflight,
the progress and its timings, the checkpointer, the writers, and what a rerun of a finished run (or a
longer one) writes."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from helpers import tiny, tiny_sweep
from mnist_ae import tasks
from mnist_ae.errors import ResourceError
from mnist_ae.run import monitoring, program, setup
from mnist_ae.workdir import RunDir, read_records
from mnist_ae.writers import MultiWriter


@pytest.fixture
def made(monkeypatch) -> dict[str, list[dict]]:
    """The keyword arguments of every Reporter and Checkpointer the set-up makes (the real ones are made)."""
    calls: dict[str, list[dict]] = {"Reporter": [], "Checkpointer": []}
    for name in calls:
        real = getattr(setup, name)

        def make(*args, real=real, name=name, **kwargs):  # noqa: ANN202, ANN002, ANN003
            calls[name].append(kwargs)
            return real(*args, **kwargs)

        monkeypatch.setattr(setup, name, make)
    return calls


def _starts(workdir: Path) -> list[int]:
    return [r["from_step"] for r in read_records(RunDir(workdir).metrics) if r.get("event") == "start"]


def _scalar_steps(workdir: Path) -> list[int]:
    return [e.step for e in EventAccumulator(str(workdir / "tb")).Reload().Scalars("test/recon_mse")]


def test_a_run_shows_its_device_and_data_time_and_its_rerun_writes_nothing(tmp_path, capsys, made):
    config = tiny(epochs=1, best_checkpoint_metric="test/recon_mse")
    started = time.perf_counter() - 30  # as if the process had started 30 s ago: its imports count as start-up
    first = tasks.run(config, tmp_path, log_framework="tensorboard", quiet=False, started=started)
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("device: cpu") and "mesh" not in out.splitlines()[0]  # one device: no layout
    wall, startup, data = (float(x) for x in re.search(r"wall time +([\d.]+) s \(start-up ([\d.]+) s, data ([\d.]+) s,",
                                                       out).groups())
    assert 30 <= startup < 30 + data + 5 and 0 <= data and startup + data <= wall  # 5: the preflight and the mesh
    assert re.search(r"after training +[\d.]+ s, [\d.]+x the training's", out)
    assert made["Reporter"][0]["rounds_per_epoch"] == 2048 // 64 and made["Reporter"][0]["quiet"] is False
    assert made["Reporter"][0]["title"] == "reconstruction"  # the task, on the progress line
    assert made["Checkpointer"][0]["best"] == "test/recon_mse"  # a single run keeps its best checkpoint
    log, events = RunDir(tmp_path).metrics.read_bytes(), sorted((tmp_path / "tb").iterdir())
    assert _starts(tmp_path) == [0]

    again = tasks.run(config, tmp_path, log_framework="tensorboard", quiet=True)  # finished: reported, no write
    assert again == first  # the numbers its first run saved
    assert "device:" not in capsys.readouterr().out and made["Reporter"][1]["quiet"] is True
    assert RunDir(tmp_path).metrics.read_bytes() == log and sorted((tmp_path / "tb").iterdir()) == events

    tasks.run(tiny(epochs=2), tmp_path, log_framework="tensorboard", quiet=True)  # longer: it goes on
    assert _starts(tmp_path) == [0, 32]
    assert _scalar_steps(tmp_path) == [0, 32, 64]


def test_a_sweep_keeps_no_single_best_checkpoint_and_groups_its_members(tmp_path, made, monkeypatch):
    opened = []
    monkeypatch.setattr(monitoring, "open_writer", lambda *args, **kwargs: opened.append(kwargs) or MultiWriter([]))
    run, _ = setup.open_run(tiny_sweep(best_checkpoint_metric="test/recon_mse"), tmp_path / "sweep", "wandb", True,
                            program.sweep_program)
    run.ckpt.close()
    assert made["Checkpointer"][0]["best"] == ""  # a sweep has no single best run
    assert made["Reporter"][0]["title"] == "sweep of 4"
    assert [w["group"] for w in opened] == ["sweep"] * 4  # the workdir's name, when no wandb_group is set
    assert [w["member"] for w in opened] == [m["member"] for m in run.program.members]
    opened.clear()
    setup.open_writers(tiny_sweep(wandb_group="mine"), tmp_path / "sweep", "wandb", run.program.members)
    assert [w["group"] for w in opened] == ["mine"] * 4


@pytest.mark.slow  # two runs with wandb
def test_the_wandb_line_shows_only_when_wandb_logs_this_start(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(monitoring, "wandb_note", lambda workdir: "W&B: offline (no account)")
    opened = []
    real = monitoring.open_writer
    monkeypatch.setattr(monitoring, "open_writer", lambda config, workdir, framework, **kw:
                        opened.append(framework) or real(config, workdir, "none", **kw))
    tasks.run(tiny(epochs=1), tmp_path / "a", log_framework="wandb")
    assert "W&B: offline (no account)" in capsys.readouterr().out.splitlines()
    tasks.run(tiny(epochs=1), tmp_path / "a", log_framework="wandb")  # finished: nothing is logged, no line
    tasks.run(tiny(epochs=1), tmp_path / "b", log_framework="none")
    assert "W&B" not in capsys.readouterr().out
    assert opened == ["wandb", "none", "none"]


def test_a_model_too_big_for_memory_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ResourceError, match="this run needs about"):
        tasks.run(tiny(hidden=(100_000, 100_000)), tmp_path)
    assert not RunDir(tmp_path).metrics.exists() and not any(RunDir(tmp_path).checkpoints.glob("*"))


def test_a_member_layout_that_does_not_divide_is_refused_before_anything_is_written(tmp_path):
    """4 members on this process's 1 device: only 1 group divides both (0, automatic, picks it)."""
    with pytest.raises(ValueError, match=r"^member_devices=2 does not divide both the 4 members and the 1 devices: "
                                         r"use one of 1 \(or 0 for 1\)$"):
        tasks.run(tiny_sweep(member_devices=2), tmp_path)
    assert not RunDir(tmp_path).metrics.exists() and not any(RunDir(tmp_path).checkpoints.glob("*"))


def test_the_first_line_names_the_mesh_from_two_devices_on():
    import types

    def mesh(members: int, data: int):
        return types.SimpleNamespace(shape={"members": members, "data": data}, size=members * data)

    assert setup._layout(mesh(1, 1)) == ""
    assert setup._layout(mesh(1, 2)) == "; mesh 1 members x 2 data"
    assert setup._layout(mesh(8, 1)) == "; mesh 8 members x 1 data"
