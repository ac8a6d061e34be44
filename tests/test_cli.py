"""launch.py end to end on a tiny config, and one-line errors for bad input before any compute."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import command_in_process

REPO = Path(__file__).resolve().parents[1]
# The end-of-run analysis, latent pictures and report (2 s of a launch's 6-8 s) off: this module checks
# the command line; they have their own tests, in process (test_hooks, test_report, test_latent_pictures).
TINY = ["--config.train_limit=1024", "--config.test_limit=256", "--config.hidden=32,16",
        "--config.latent_dim=4", "--config.batch_size=64", "--config.epochs=2", "--config.grid_digits=4",
        "--config.projector_points=32", "--config.analyze_at_end=False", "--config.latent_pictures=False",
        "--config.report_at_end=False"]


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


@pytest.mark.slow
def test_a_diverged_run_is_one_line_with_status_1(tmp_path):
    """The errors raised after the heavy imports are told from a crash by their classes, which the CLI
    looks up only among the modules already imported (so a refusal before them imports no JAX)."""
    result = launch("--task", "reconstruction", "--workdir", str(tmp_path / "run"), "--log_framework", "none",
                    *TINY, "--config.learning_rate=1e30", "--config.epochs=1")
    _assert_one_error_line(result, "diverged")  # TrainingDiverged, raised where JAX runs


@pytest.mark.slow
def test_a_diverging_sweep_member_is_frozen_and_named_the_others_finish_and_the_sweep_ends_in_one_line(tmp_path):
    """Member lr 1e30 diverges in its first epoch: one warning naming it while the others train on, its
    checkpointed state frozen at its last finite values, its row in the table, and at the end one error
    line (SomeDiverged) with status 1. That the healthy member is untouched by it, bit for bit, is
    tests/test_sweep.py's."""
    import jax
    import numpy as np

    from mnist_ae import build
    from mnist_ae.checkpoint import Checkpointer

    workdir = tmp_path / "run"
    result = launch("--task", "sweep", "--workdir", str(workdir), "--log_framework", "none", *TINY,
                    "--config.epochs=1", "--config.latent_dims=4", "--config.seeds=0",
                    "--config.learning_rates=1e-2,1e30")
    _assert_one_error_line(result, "1 of 2 sweep members diverged")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "member latent4_seed0_lr1e+30 diverged in epoch 1" in warnings[0]
    ckpt = Checkpointer(workdir / "checkpoints", 3)
    config = ckpt.run_config()
    state = ckpt.restore(jax.eval_shape(lambda: build.sweep_setup(config).initial_states(config)))
    ckpt.close()
    steps = jax.device_get(state.step)
    assert steps[0] == 1024 // 64 and steps[1] < 1024 // 64  # frozen in its first epoch, at its last finite state
    assert all(bool(np.isfinite(leaf).all()) for leaf in jax.tree.leaves(state.params))
    table = (workdir / "sweep_results.md").read_text().splitlines()
    assert table[-1].startswith("| 4 | 1e+30 | 1 | 1 | diverged")


def _assert_one_error_line(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--task", "bogus"], "unknown task 'bogus'"),
    (["--config.latnt_dim=3"], "did you mean 'latent_dim'"),
    (["--config.latent_dim=0"], "latent_dim=0"),
    (["--config.learning_rate=-1e-3"], "learning rate must be a positive finite number"),
    (["--config.batch_size=5000", "--config.train_limit=1000"], "batch_size=5000"),
    (["--config.dataset=cifar"], "unknown dataset 'cifar'"),
    (["--workdir", "/proc/forbidden/run"], "pass a writable --workdir"),
    (["--log_framework", "tensorbored"], "unknown --log_framework"),
    (["--config.data_dir=/nonexistent"], "/nonexistent"),
    (["--config", "experiments/nope.py"], "config file experiments/nope.py does not exist"),
    (["--config", "BAD_SYNTAX"], "failed to load: SyntaxError"),
    (["--task", "sweep", "--config", "experiments/classification.py"], "the config's task is 'classification'"),
    (["--config.test_limit=50"], "the analysis would see 50 test codes"),
    (["--task", "sweep", "--config.learning_rates=()"], "give one or more positive finite rates"),
])
def test_bad_input_fails_with_one_line_and_no_traceback(tmp_path, args, message, monkeypatch, capsys):
    """In this process (an exception other than the exit would fail the test, as a traceback would); a whole
    process's single line is test_bad_input's."""
    workdir = [] if "--workdir" in args else ["--workdir", str(tmp_path / "run")]
    if "BAD_SYNTAX" in args:
        (tmp_path / "bad.py").write_text("def get_config(:\n")
        args = [str(tmp_path / "bad.py") if a == "BAD_SYNTAX" else a for a in args]
    monkeypatch.chdir(REPO)  # experiments/ and data/ as a user in the checkout names them
    assert command_in_process([*workdir, *args], monkeypatch) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_quiet_prints_only_the_summary_and_it_matches_metrics_jsonl(tmp_path):
    result = launch("--workdir", str(tmp_path), "--log_framework", "none", "--quiet", *TINY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("final metrics") and "epoch " not in result.stdout
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "test/recon_mse" in r][-1]
    shown = dict(re.findall(r"^\s+(test/\S+)\s+([0-9.]+)\s*$", result.stdout, re.M))
    assert float(shown["test/recon_mse"]) == pytest.approx(last["test/recon_mse"], rel=1e-3)
    assert float(shown["test/probe_accuracy"]) == pytest.approx(last["test/probe_accuracy"], rel=1e-3)
    # the wall time counts from launch.py's first line: the imports are its start-up, before the data
    startup = re.search(r"wall time +[\d.]+ s \(start-up ([\d.]+) s, data ", result.stdout).group(1)
    assert float(startup) > 0.5  # importing JAX alone takes longer


def test_help_and_list_name_every_task_and_experiment():
    help_text = launch("--help").stdout
    tasks = ("reconstruction", "classification", "sweep", "analyze", "report", "compare")
    for task in tasks:
        assert re.search(rf"^  {task} +\S", help_text, re.M)
    alternatives = re.escape(" | ".join(tasks))
    assert re.search(rf"^  --task=VALUE +{alternatives} \(", help_text, re.M)  # all six on --task's line too
    # Every flag on one line with its meaning, and none of absl's noise.
    for flag in ("--workdir=VALUE", "--log_framework=VALUE", "--quiet", "--config=VALUE", "--verbose"):
        assert re.search(rf"^  {re.escape(flag)} +\S", help_text, re.M), flag
    assert "(default: 'None')" not in help_text and "(an integer)" not in help_text and "mnist_ae.cli:" not in help_text
    assert re.search(r"--log_framework=VALUE +tensorboard\|wandb\|both\|none  \(default tensorboard\)$", help_text, re.M)
    listing = launch("--list").stdout
    for path in (REPO / "experiments").glob("*.py"):
        assert path.name in listing
    assert listing.count("$ python launch.py") == len(list((REPO / "experiments").glob("*.py")))
    keys = launch("--config.help").stdout
    assert re.search(r"latent_dim\s+64\s", keys)


def test_the_task_comes_from_the_config_unless_given_and_a_mismatch_is_refused():
    import ml_collections

    from mnist_ae.cli import UsageError, resolve_task
    from mnist_ae.config import base_config

    classification = base_config()
    classification.task = "classification"
    assert resolve_task(classification, "reconstruction", task_given=False, config_given=True) == "classification"
    assert resolve_task(base_config(), "sweep", task_given=True, config_given=False) == "sweep"
    with pytest.raises(UsageError, match="--task sweep but the config's task is 'classification'"):
        resolve_task(classification, "sweep", task_given=True, config_given=True)
    with pytest.raises(UsageError, match="returned a int; it must return the full config"):
        resolve_task(3, "reconstruction", task_given=False, config_given=True)
    with pytest.raises(UsageError, match="returned a ConfigDict without 'task'"):
        resolve_task(ml_collections.ConfigDict({"epochs": 1}), "reconstruction", task_given=True, config_given=True)


def test_missing_optional_packages_are_config_errors(monkeypatch):
    import importlib.util

    from mnist_ae.config import ConfigError, base_config
    from mnist_ae.config_checks import validate

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a))
    config = base_config()
    config.tsne_backend = "umap"
    with pytest.raises(ConfigError, match=r"needs the umap package: pip install -e '\.\[tsne\]'"):
        validate(config)
    from mnist_ae.cli import UsageError, check_log_framework

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert check_log_framework("tensorboard") == "tensorboard"
    with pytest.raises(UsageError, match=r"--log_framework both needs the wandb package: pip install -e '\.\[wandb\]'"):
        check_log_framework("both")


@pytest.mark.parametrize("env, expected", [({}, "{cache}/jax"), pytest.param({"JAX_COMPILATION_CACHE_DIR": "{cache}/mine"}, "{cache}/mine", marks=pytest.mark.slow)])
def test_the_command_keeps_compiled_programs_in_the_users_cache_unless_told_otherwise(tmp_path, env, expected):
    """launch.py turns on JAX's persistent compilation cache in MNIST_AE_CACHE/jax (a user's own
    JAX_COMPILATION_CACHE_DIR wins), caching programs that take over 0.1 s to compile."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    clean.update({k: v.format(cache=tmp_path) for k, v in env.items()}, MNIST_AE_CACHE=str(tmp_path))
    code = ("import jax; from mnist_ae import cli; cli.use_compilation_cache(); "
            "print(jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)")
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [expected.format(cache=tmp_path), "0.1"]


@pytest.mark.parametrize("args, message", [
    (["--task", "bogus"], "error: unknown task 'bogus'"),
    (["--task", "compare", "--workdirs", "runs/typo*"], "error: --workdirs: 'runs/typo*' matches no folder"),
])
def test_a_command_refused_before_any_compute_imports_neither_jax_nor_orbax(args, message):
    """Refusals come in well under a second: the CLI never imports JAX or orbax to report them (compare
    imported JAX with its report modules, 1.2 s, before it looked at the paths)."""
    probe = (f"import sys; sys.argv = ['launch.py', *{args!r}]\n"
             "from mnist_ae.cli import main\n"
             "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'jax' in sys.modules, 'orbax.checkpoint' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["2", "False", "False"], result.stderr
    assert result.stderr.startswith(message)


def test_a_failed_write_names_the_checkpoints_a_rerun_resumes_from(tmp_path):
    """The committed step folders, not orbax's temporary one of the step that was being written."""
    from mnist_ae.cli import _committed_checkpoints

    assert _committed_checkpoints(None) == _committed_checkpoints(str(tmp_path)) == "no checkpoint was written"
    for name in ("1", "2.orbax-checkpoint-tmp-1733"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert _committed_checkpoints(str(tmp_path)) == "checkpoint 1 is intact"
    (tmp_path / "checkpoints" / "3").mkdir()
    assert _committed_checkpoints(str(tmp_path)) == "checkpoints 1, 3 are intact"
