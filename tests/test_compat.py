"""Checkpoints written before the run-lifecycle redesign (tests/fixtures, commit a40b62b) still restore,
evaluate to the numbers that code reported, and resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import pytest

from mnist_ae import build, parallel, tasks
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.config import base_config
from mnist_ae.run import program as program_lib
from mnist_ae.run.device_data import load_data

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "v1_final_metrics.json").read_text())


def _saved_config(workdir: Path):
    ckpt = Checkpointer(workdir / "checkpoints", 1)
    try:
        saved = ckpt.saved_config()
    finally:
        ckpt.close()
    config = base_config()
    config.update({k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})
    return config


@pytest.mark.parametrize("name, make", [("run_v1", program_lib.single_program),
                                        ("sweep_v1", program_lib.sweep_program)])
def test_an_old_checkpoint_restores_and_evaluates_to_its_reported_metrics(name, make):
    workdir = FIXTURES / name
    config = _saved_config(workdir)
    mesh = parallel.make_mesh(1)
    program, template = make(config, mesh)
    ckpt = Checkpointer(workdir / "checkpoints", 1)
    try:
        state = ckpt.restore(template)
    finally:
        ckpt.close()
    assert program.epoch(state) == 1 and program.step(state) == 4  # 256 examples / batch 64
    metrics = program.evaluate(state, load_data(config, mesh))
    expected = EXPECTED["run"] if name == "run_v1" else EXPECTED["sweep"]
    expected = [expected] if isinstance(expected, dict) else expected
    assert len(metrics) == len(expected)
    for got, want in zip(metrics, expected):
        assert float(got["test/recon_mse"]) == pytest.approx(want["test/recon_mse"], rel=1e-6)
        assert float(got["test/probe_accuracy"]) == pytest.approx(want["test/probe_accuracy"], abs=1e-9)


@pytest.mark.slow  # second check: old checkpoints restore and evaluate in the quick tier
def test_an_old_run_resumes_to_a_later_epoch(tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(FIXTURES / "run_v1", workdir)
    config = _saved_config(workdir)
    config.epochs = 2
    tasks.train_and_evaluate(config, workdir, "none", quiet=True)
    ckpt = Checkpointer(workdir / "checkpoints", 1)
    try:
        assert ckpt.latest_epoch() == 2
        state = ckpt.restore(jax.eval_shape(lambda: build.initial_state(config)))
    finally:
        ckpt.close()
    assert int(state.step) == 8 and int(state.epoch) == 2
