"""The shared epoch driver with a fake program: hooks fire exactly when due, one metrics pull per epoch."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnist_ae.config import base_config
from mnist_ae.run.progress import Reporter
from mnist_ae.run import driver
from mnist_ae.run.driver import Hook, Run, due


def test_due_follows_the_schedule():
    assert [e for e in range(10) if due(e, 3)] == [3, 6, 9]
    assert [e for e in range(10) if due(e, 3, at_start=True)] == [0, 3, 6, 9]
    assert [e for e in range(10) if due(e, 0, at_start=True)] == [0]
    assert not any(due(e, 0) for e in range(10))


@dataclasses.dataclass
class FakeState:
    epoch: int = 0
    step: int = 0


class FakeProgram:
    """Two members, 4 rounds an epoch; metrics are device arrays made before the guarded epoch."""

    members = [{"member": "a"}, {"member": "b"}]
    learner = None
    stacked = False  # a divergence stops the run (a stacked sweep freezes the member instead)

    def __init__(self, diverge_at: int = 0):
        self.evaluated_at: list[int] = []
        self.diverge_at = diverge_at
        self.per_round = {"train/loss": jnp.arange(8.0).reshape(2, 4)}
        self.nan_round = {"train/loss": jnp.array([[1.0] * 4, [1.0, np.nan, 1.0, 1.0]])}

    def member(self, tree, i):
        return jax.tree.map(lambda a: a[i], tree) if isinstance(tree, dict) else tree

    def pulled(self, tree):
        return jax.device_get(tree)

    def gathered(self, tree):
        return tree

    def epoch(self, state):
        return state.epoch

    def step(self, state):
        return state.step

    def frozen(self, state):
        return []

    def rounds_per_epoch(self, num_train):
        return 4

    def compile_epoch(self, state, data):
        def epoch(s):
            new = FakeState(s.epoch + 1, s.step + 4)
            return new, self.nan_round if new.epoch == self.diverge_at else self.per_round
        return epoch

    def evaluate(self, state, data):
        self.evaluated_at.append(state.epoch)
        return [{"test/recon_mse": np.float32(0.5 - 0.01 * i - 0.001 * state.epoch)} for i in range(2)]


class RecordingWriter:
    def __init__(self):
        self.scalars: list[tuple[int, dict]] = []
        self.flushes = 0

    def write_scalars(self, step, scalars):
        self.scalars.append((step, dict(scalars)))

    def flush(self):
        self.flushes += 1


class FakeCheckpointer:
    directory = Path("ckpt")
    best = ""

    def __init__(self):
        self.saved: list[int] = []

    def latest_epoch(self):
        return self.saved[-1] if self.saved else None

    def save(self, epoch, state, config, metrics=None):
        self.saved.append(epoch)


def _run(tmp_path, program, **overrides):
    config = base_config()
    config.update({**dict(epochs=5, eval_every_epochs=2, checkpoint_every_epochs=2, log_every_steps=3), **overrides})
    data = dataclasses.make_dataclass("Data", ["train_x"])(np.zeros((16, 28, 28), np.uint8))
    reporter = Reporter(total_epochs=config.epochs, rounds_per_epoch=4, quiet=True, is_main=True)
    return Run(config, tmp_path, program, data, [RecordingWriter(), RecordingWriter()], FakeCheckpointer(), reporter)


def test_hooks_fire_exactly_when_due_and_metrics_are_pulled_once_per_epoch(tmp_path, monkeypatch):
    pulls = []
    real_get = jax.device_get
    monkeypatch.setattr(driver.jax, "device_get", lambda x: pulls.append(1) or real_get(x))
    fired: dict[str, list[int]] = {"a": [], "b": [], "end": []}
    hooks = [driver.eval_hook(2),
             Hook("a", lambda run, s: fired["a"].append(s.epoch), every=2, at_start=True, at_last=True),
             Hook("b", lambda run, s: fired["b"].append(s.epoch), every=3),
             Hook("end", lambda run, s: fired["end"].append(s.epoch), at_end=True)]
    program = FakeProgram()
    run = _run(tmp_path, program)
    finals = driver.train(run, FakeState(), hooks)
    assert program.evaluated_at == [0, 2, 4, 5]
    assert fired == {"a": [0, 2, 4, 5], "b": [3], "end": [5]}
    assert run.ckpt.saved == [2, 4, 5]
    assert len(pulls) == 5  # one device_get per epoch, none per round or per member
    assert finals == [{"test/recon_mse": pytest.approx(0.495)}, {"test/recon_mse": pytest.approx(0.485)}]
    # member b's train windows: rounds [4, 5, 6] then [7], at global steps 3 and 4 of each epoch
    train_b = [(step, r["train/loss"]) for step, r in run.writers[1].scalars if "train/loss" in r]
    assert train_b[:2] == [(3, pytest.approx(5.0)), (4, pytest.approx(7.0))]
    assert [step for step, _ in train_b] == [3, 4, 7, 8, 11, 12, 15, 16, 19, 20]
    evals_a = [(step, r["epoch"]) for step, r in run.writers[0].scalars if "test/recon_mse" in r]
    assert evals_a == [(0, 0), (8, 2), (16, 4), (20, 5)]
    summary = run.reporter.summary(final=finals[0], workdir=tmp_path, paths={})  # an end hook is timed by its name
    assert all(re.search(rf"[(,] {name} [\d.]+ s", summary) for name in ("checkpoint", "end")), summary


def test_a_member_frozen_before_a_resume_stays_marked_diverged(tmp_path):
    """A sweep member whose step fell behind (frozen by divergence before the run was stopped): the resumed
    run knows it from the state, marks it in the finals and does not stop on it."""
    program = FakeProgram()
    program.frozen = lambda state: [1]
    finals = driver.train(_run(tmp_path, program), FakeState(epoch=2, step=8), [driver.eval_hook(2)])
    assert "diverged" not in finals[0] and finals[1]["diverged"] == 1.0


def test_a_finished_run_trains_nothing_and_reports_its_numbers(tmp_path, capsys):
    from mnist_ae.run import lifecycle

    lifecycle.record_end(tmp_path, 20)  # its end-of-run stages were done
    fired = []
    program = FakeProgram()
    run = _run(tmp_path, program)
    finals = driver.train(run, FakeState(epoch=5, step=20),
                          [driver.eval_hook(2), Hook("end", lambda r, s: fired.append(s.epoch), at_end=True)])
    assert program.evaluated_at == [5] and fired == [] and run.ckpt.saved == []  # no end hooks: nothing redone
    assert run.writers[0].scalars == []
    assert len(finals) == 2
    assert "already trained to epoch 5" in capsys.readouterr().err


def test_a_finished_run_whose_end_of_run_stages_were_cut_short_runs_them_once_more(tmp_path, capsys):
    """A stop during the analysis or the report (no end record after the last start): the rerun trains
    nothing, runs every end-of-run stage, writes the end record; the next rerun only reports."""
    from mnist_ae.run import lifecycle

    fired = []
    hooks = [driver.eval_hook(2), Hook("end", lambda r, s: fired.append(s.epoch), at_end=True)]
    program = FakeProgram()
    finals = driver.train(_run(tmp_path, program), FakeState(epoch=5, step=20), hooks)
    assert fired == [5] and program.evaluated_at == [5] and len(finals) == 2
    assert "a stop cut its end-of-run stages short" in capsys.readouterr().err
    assert lifecycle.ended(tmp_path, 20) and not lifecycle.ended(tmp_path, 24)
    driver.train(_run(tmp_path, FakeProgram()), FakeState(epoch=5, step=20), hooks)
    assert fired == [5] and "already trained" in capsys.readouterr().err


def test_a_diverging_member_stops_the_run_and_is_named(tmp_path):
    run = _run(tmp_path, FakeProgram(diverge_at=3))
    with pytest.raises(driver.TrainingDiverged, match=r"in epoch 3 in member b .*epoch 2\) is kept"):
        driver.train(run, FakeState(), [driver.eval_hook(2)])
    assert run.ckpt.saved == [2]


def _epoch_lines(tmp_path, program, **overrides) -> tuple[Run, list[str]]:
    """A stacked run of `program` trained with its evals every 2 epochs, and the live lines it printed."""
    import io

    program.stacked = True
    run = _run(tmp_path, program, **overrides)
    out = io.StringIO()
    run.reporter = Reporter(total_epochs=5, rounds_per_epoch=4, stream=out, is_main=True)
    driver.train(run, FakeState(), [driver.eval_hook(2)])
    return run, [line for line in out.getvalue().splitlines() if line.startswith("epoch ")]


def test_a_sweep_s_live_line_names_the_member_whose_numbers_it_shows(tmp_path):
    """Member b has the lower test MSE (0.49 vs 0.50 in FakeProgram.evaluate): the line says so."""
    _, lines = _epoch_lines(tmp_path, FakeProgram())
    assert len(lines) == 5 and all("best b: train/loss" in line for line in lines[1:]), lines
    assert "test/recon_mse 0.485" in lines[-1]  # b's final value, 0.5 - 0.01 - 0.005


# ----------------------------------------------------------------------------- what the driver does around the epochs


class EventWriter(RecordingWriter):
    """Also the order of scalars and flushes."""

    def __init__(self):
        super().__init__()
        self.events: list[str] = []

    def write_scalars(self, step, scalars):
        super().write_scalars(step, scalars)
        self.events.append("train" if "train/loss" in scalars else "eval")

    def flush(self):
        super().flush()
        self.events.append("flush")


class SavingCheckpointer(FakeCheckpointer):
    best = "test/recon_mse"

    def __init__(self):
        super().__init__()
        self.ranked: dict[int, dict | None] = {}

    def save(self, epoch, state, config, metrics=None):
        super().save(epoch, state, config, metrics)
        self.ranked[epoch] = metrics


def test_the_summary_times_each_phase_within_the_wall_time_and_writers_flush_before_and_after(tmp_path):
    run = _run(tmp_path, FakeProgram(), epochs=4, eval_every_epochs=2, checkpoint_every_epochs=1)
    run.writers, run.ckpt = [EventWriter(), EventWriter()], SavingCheckpointer()
    finals = driver.train(run, FakeState(), [driver.eval_hook(2), Hook("end", lambda r, s: [{"x": 1.0}, {"x": 2.0}],
                                                                        at_end=True)])
    assert [f["x"] for f in finals] == [1.0, 2.0]  # an end hook's numbers, merged per member
    summary = run.reporter.summary(final=finals[0], workdir=tmp_path, paths={})
    wall, parts = re.search(r"wall time +([\d.]+) s \((.*)\)", summary).groups()
    times = {name: float(t) for name, t in re.findall(r"(\w+) ([\d.]+) s", parts)}
    assert {"eval", "train", "checkpoint", "end"} <= times.keys() and max(times.values()) <= float(wall) + 0.05
    assert re.search(r"after training +[\d.]+ s, [\d.]+x the training's", summary)  # marked when the epochs ended
    events = run.writers[0].events  # flushed once the writers are built (before the first epoch) and at the end
    assert events[0] == "eval" and events[1] == "flush" and events[2] == "train" and events[-1] == "flush"
    speeds = [r["train/steps_per_s"] for _, r in run.writers[0].scalars if "train/steps_per_s" in r]
    assert speeds and min(speeds) > 4  # 4 rounds in far less than a second
    # ranked for the best checkpoint only where this state was evaluated (epochs 2 and 4)
    assert {e: m is not None for e, m in run.ckpt.ranked.items()} == {1: False, 2: True, 3: False, 4: True}


def test_a_signal_stops_at_the_epoch_boundary_with_a_checkpoint_or_before_the_first_epoch(tmp_path):
    from mnist_ae.errors import Interrupted

    def stop(run, state):
        run.stop.signum = 15

    run = _run(tmp_path, FakeProgram())  # checkpoints every 2 epochs: epoch 1 gets one because of the stop
    with pytest.raises(Interrupted, match="after epoch 1; checkpoint kept") as stopped:
        driver.train(run, FakeState(), [driver.eval_hook(2), Hook("stop", stop, every=1)])
    assert run.ckpt.saved == [1] and stopped.value.exit_code == 143
    for start in (0, 2):  # a signal before the first epoch (at step 0, or right after a resume)
        run = _run(tmp_path, FakeProgram())
        run.stop.signum = 2
        where = "before the first epoch" if start == 0 else f"after epoch {start}"
        with pytest.raises(Interrupted, match=where):
            driver.train(run, FakeState(epoch=start, step=4 * start), [driver.eval_hook(2)])
        assert run.ckpt.saved == []


def test_a_stacked_sweep_freezes_a_diverging_member_once_and_stops_only_when_all_diverged(tmp_path, capsys):
    program = FakeProgram(diverge_at=2)
    program.stacked = True
    run = _run(tmp_path, program)
    finals = driver.train(run, FakeState(), [driver.eval_hook(2)])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "diverged" in line]
    assert len(warnings) == 1 and "member b diverged in epoch 2 (train/loss is not finite)" in warnings[0]
    assert run.diverged == {1} and finals[1]["diverged"] == 1.0 and "diverged" not in finals[0]
    assert [s for s, r in run.writers[1].scalars if "train/loss" in r][-1] < 8  # b's windows stop at its freeze
    program = FakeProgram(diverge_at=2)
    program.stacked = True
    program.nan_round = {"train/loss": jnp.full((2, 4), np.nan)}
    with pytest.raises(driver.TrainingDiverged, match="in epoch 2 in member a"):
        driver.train(_run(tmp_path, program), FakeState(), [driver.eval_hook(2)])


def test_an_evaluation_that_is_not_finite_stops_the_run(tmp_path):
    program = FakeProgram()
    program.evaluate = lambda state, data: [{"test/recon_mse": np.float32(np.nan if state.epoch == 2 else 0.5)}] * 2
    with pytest.raises(driver.TrainingDiverged, match="at evaluation after epoch 2 in member a"):
        driver.train(_run(tmp_path, program), FakeState(), [driver.eval_hook(2)])


def test_hooks_at_one_step_share_one_encoding_of_the_test_set(tmp_path):
    calls = []
    program = FakeProgram()
    program.test_codes = lambda state, data: calls.append(state.step) or np.zeros((3, 2))
    hooks = [Hook(f"h{i}", lambda run, state: run.test_codes(state), every=2, at_start=True) for i in range(2)]
    driver.train(_run(tmp_path, program), FakeState(), hooks)
    assert calls == [0, 8, 16]


def test_only_shown_end_hooks_print_a_line_and_a_close_error_after_a_failure_is_logged(tmp_path, caplog):
    import io

    out = io.StringIO()
    run = _run(tmp_path, FakeProgram(), epochs=1)
    run.reporter = Reporter(total_epochs=1, rounds_per_epoch=4, stream=out, is_main=True)
    driver.train(run, FakeState(), [Hook("quiet end", lambda r, s: None, at_end=True),
                                    Hook("long end", lambda r, s: None, at_end=True, shown=True)])
    assert re.search(r"^long end \.\.\. [\d.]+ s$", out.getvalue(), re.M) and "quiet end ..." not in out.getvalue()

    class Broken:
        def close(self):
            raise OSError("disk gone")

    with pytest.raises(ValueError, match="the body's error"), caplog.at_level("ERROR"):
        with driver.closing_all(Broken()):
            raise ValueError("the body's error")
    assert "closing after an error failed too" in caplog.text and "disk gone" in caplog.text


def test_the_live_line_skips_a_diverged_member_and_shows_its_members_last_window(tmp_path):
    """Member a diverges in epoch 2 (frozen, NaN windows): the line shows b, with b's last train window of
    the epoch (log_every_steps=1: windows 4, 5, 6, 7 of member b's rounds)."""
    program = FakeProgram(diverge_at=2)
    program.nan_round = {"train/loss": jnp.array([[np.nan] * 4, [4.0, 5.0, 6.0, 7.0]])}
    run, lines = _epoch_lines(tmp_path, program, log_every_steps=1)
    assert run.diverged == {0} and all("best b: train/loss 7" in line for line in lines[1:]), lines
    run, lines = _epoch_lines(tmp_path, FakeProgram(diverge_at=2))  # now b, better by test MSE, diverges
    assert run.diverged == {1} and all("best a:" in line for line in lines[2:]), lines


def test_a_frozen_members_evaluation_is_not_checked_and_its_finals_are_marked_on_every_path(tmp_path):
    """Frozen before a resume, with NaN test metrics: the resumed run trains on, and so does a rerun that
    only finishes the end-of-run stages (its finals from a fresh evaluation)."""
    program = FakeProgram()
    program.frozen = lambda state: [1]
    program.evaluate = lambda state, data: [{"test/recon_mse": np.float32(0.5)}, {"test/recon_mse": np.float32(np.nan)}]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    finals = driver.train(_run(tmp_path / "a", program), FakeState(epoch=2, step=8), [driver.eval_hook(2)])
    assert finals[1]["diverged"] == 1.0 and "diverged" not in finals[0]
    finals = driver.train(_run(tmp_path / "b", program), FakeState(epoch=5, step=20), [driver.eval_hook(2)])
    assert finals[1]["diverged"] == 1.0 and "diverged" not in finals[0]  # the end stages' rerun


def test_an_at_last_hook_fires_only_after_the_last_epoch_and_metrics_are_evaluated_once_a_step(tmp_path):
    fired = []
    program = FakeProgram()
    hooks = [driver.eval_hook(2), Hook("last", lambda r, s: fired.append(s.epoch), at_last=True),
             Hook("reads", lambda r, s: r.metrics(s), every=2, at_start=True)]
    driver.train(_run(tmp_path, program), FakeState(), hooks)
    assert fired == [5] and program.evaluated_at == [0, 2, 4, 5]
