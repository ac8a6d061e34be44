"""`--task analyze` on a run's checkpoint reproduces the analysis made at the end of training."""

from __future__ import annotations

import json
import re

import pytest

from mnist_ae import build
from mnist_ae.analyze import run_analyze
from mnist_ae.config import ConfigError, base_config
from mnist_ae.train import run_training

from conftest import tiny


def test_analyze_task_reproduces_end_of_training_numbers(tmp_path, capsys):
    final = run_training(tiny(epochs=1, test_limit=300, analyze_at_end=True), tmp_path, "none", quiet=True)
    at_end = json.loads((tmp_path / "analysis" / "metrics.json").read_text())
    assert final["analysis/knn5_accuracy"] == at_end["codes"]["knn5_accuracy"]  # in the end-of-run summary
    capsys.readouterr()
    cli = base_config()
    cli.task = "analyze"
    again = run_analyze(cli, tmp_path, "none")
    out = capsys.readouterr().out  # timed phases, then a summary with the headline numbers and paths
    assert "analysis (PCA, t-SNE, quality numbers) ... " in out and "encoding and evaluating the test set" in out
    shown = dict(re.findall(r"^\s+(analysis/\S+)\s+([0-9.]+)\s*$", out, re.M))
    assert float(shown["analysis/knn5_accuracy"]) == pytest.approx(again["codes"]["knn5_accuracy"], abs=1e-3)
    assert str(tmp_path / "analysis" / "metrics.json") in out
    for key in ("knn5_accuracy", "logreg_accuracy", "pca_explained_variance_2", "probe_accuracy", "trustworthiness"):
        assert again["codes"][key] == pytest.approx(at_end["codes"][key], abs=1e-6), key
        assert 0.0 <= again["codes"][key] <= 1.0
    assert again["codes"]["knn5_accuracy"] > 0.3
    assert (tmp_path / "analysis" / "tsne_2d.png").stat().st_size > 0


def test_analyze_without_a_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint in .*train first"):
        run_analyze(base_config(), tmp_path, "none")


def test_analyze_takes_the_data_location_from_the_command_line_only_when_given(tmp_path):
    from mnist_ae.analyze import run_config
    from mnist_ae.checkpoint import Checkpointer
    from mnist_ae.core.steps import init_state

    trained = tiny(data_dir=str(tmp_path / "moved_away"))
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=1)
    ckpt.save(1, init_state(build.learner(trained), 0), trained)
    ckpt.close()
    cli = base_config()
    cli.task = "analyze"
    assert run_config(tmp_path, cli).data_dir == str(tmp_path / "moved_away")  # not given: the run's own
    cli.data_dir = "data/mnist"
    config = run_config(tmp_path, cli)
    assert config.data_dir == "data/mnist" and config.latent_dim == trained.latent_dim


def test_analyze_refuses_a_run_with_too_few_test_digits_before_any_work(tmp_path):
    from mnist_ae.analyze import run_config
    from mnist_ae.checkpoint import Checkpointer
    from mnist_ae.core.steps import init_state

    trained = tiny(test_limit=50)  # trained without the end-of-run analysis
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=1)
    ckpt.save(1, init_state(build.learner(trained), 0), trained)
    ckpt.close()
    cli = base_config()
    cli.task = "analyze"
    with pytest.raises(ConfigError, match=r"would see 50 test codes \(test_limit=50"):
        run_config(tmp_path, cli)
