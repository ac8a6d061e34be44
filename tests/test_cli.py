"""launch.py end to end on a tiny config, and one-line errors for bad input before any compute."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["--config.train_limit=1024", "--config.test_limit=256", "--config.hidden=32,16",
        "--config.latent_dim=4", "--config.batch_size=64", "--config.epochs=2", "--config.grid_digits=4",
        "--config.projector_points=32", "--config.analyze_at_end=False"]


def launch(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_launch_writes_metrics_and_checkpoints(tmp_path):
    result = launch("--task", "reconstruction", "--workdir", str(tmp_path), "--log_framework", "tensorboard", *TINY)
    assert result.returncode == 0, result.stderr
    # not a terminal: one plain line per epoch, no escape codes, nothing from third-party loggers
    assert [ln.split()[1] for ln in result.stdout.splitlines() if ln.startswith("epoch ")] == ["1/2", "2/2"]
    assert "\x1b[" not in result.stdout and result.stderr == ""
    assert "tensorboard --logdir" in result.stdout and (tmp_path / "run.log").exists()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "test/recon_mse" in r]
    assert [r["epoch"] for r in evals] == [0, 1, 2]
    assert all({"step", "epoch", "test/recon_mse", "test/probe_accuracy"} <= r.keys() for r in evals)
    assert evals[-1]["test/recon_mse"] < evals[0]["test/recon_mse"]
    train = [r for r in records if "train/recon_mse" in r]
    assert train and all("train/steps_per_s" in r and "train/probe_loss" in r for r in train)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(list((tmp_path / "reconstructions").glob("step_*.png"))) == 3


@pytest.mark.parametrize("args, message", [
    (["--task", "bogus"], "unknown task 'bogus'"),
    (["--config.latnt_dim=3"], "did you mean 'latent_dim'"),
    (["--config.latent_dim=0"], "latent_dim=0"),
    (["--config.learning_rate=-1e-3"], "learning rate must be positive"),
    (["--config.batch_size=5000", "--config.train_limit=1000"], "batch_size=5000"),
    (["--config.dataset=cifar"], "unknown dataset 'cifar'"),
    (["--workdir", "/proc/forbidden/run"], "pass a writable --workdir"),
    (["--log_framework", "tensorbored"], "unknown --log_framework"),
    (["--config.data_dir=/nonexistent"], "/nonexistent"),
])
def test_bad_input_fails_with_one_line_and_no_traceback(tmp_path, args, message):
    workdir = [] if "--workdir" in args else ["--workdir", str(tmp_path / "run")]
    result = launch(*workdir, *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_quiet_prints_only_the_summary_and_it_matches_metrics_jsonl(tmp_path):
    result = launch("--workdir", str(tmp_path), "--log_framework", "none", "--quiet", *TINY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("final metrics") and "epoch " not in result.stdout
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "test/recon_mse" in r][-1]
    shown = dict(re.findall(r"^\s+(test/\S+)\s+([0-9.]+)\s*$", result.stdout, re.M))
    assert float(shown["test/recon_mse"]) == pytest.approx(last["test/recon_mse"], rel=1e-3)
    assert float(shown["test/probe_accuracy"]) == pytest.approx(last["test/probe_accuracy"], rel=1e-3)


def test_help_and_list_name_every_task_and_experiment():
    help_text = launch("--help").stdout
    for task in ("reconstruction", "classification", "sweep", "analyze"):
        assert re.search(rf"^  {task} +\S", help_text, re.M)
    listing = launch("--list").stdout
    for path in (REPO / "experiments").glob("*.py"):
        assert path.name in listing
    assert listing.count("$ python launch.py") == len(list((REPO / "experiments").glob("*.py")))
    keys = launch("--config.help").stdout
    assert re.search(r"latent_dim\s+64\s", keys)
