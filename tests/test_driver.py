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
    config.update(dict(epochs=5, eval_every_epochs=2, checkpoint_every_epochs=2, log_every_steps=3, **overrides))
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


def test_a_sweep_s_live_line_names_the_member_whose_numbers_it_shows(tmp_path):
    """Member b has the lower test MSE (0.49 vs 0.50 in FakeProgram.evaluate): the line says so."""
    import io

    program = FakeProgram()
    program.stacked = True
    run = _run(tmp_path, program)
    out = io.StringIO()
    run.reporter = Reporter(total_epochs=5, rounds_per_epoch=4, stream=out, is_main=True)
    driver.train(run, FakeState(), [driver.eval_hook(2)])
    lines = [line for line in out.getvalue().splitlines() if line.startswith("epoch ")]
    assert len(lines) == 5 and all("best b: train/loss" in line for line in lines[1:]), lines
    assert "test/recon_mse 0.485" in lines[-1]  # b's final value, 0.5 - 0.01 - 0.005
