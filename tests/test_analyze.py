"""`--task analyze` on a run's checkpoint: the run's own config and codes, checked against numbers
computed here from the checkpointed parameters (not against another run of the analysis)."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from mnist_ae import build
from mnist_ae.analysis.pipeline import AnalysisResult
from mnist_ae.analysis.task import log_result, run_config
from mnist_ae.tasks import analyze as run_analyze
from mnist_ae.checkpoint import Checkpointer
from mnist_ae.config import ConfigError, base_config
from mnist_ae.core.state import TrainState
from mnist_ae.core.steps import encode, init_state

from helpers import tiny
from test_analysis import knn5_accuracy_numpy  # the independent numpy kNN, shared with the module tests


def save_run(workdir: Path, config: ml_collections.ConfigDict) -> TrainState:
    """A reconstruction run's checkpoint at epoch 1 with freshly initialised parameters (no training:
    the analysis only needs some encoder, and its codes are recomputed here)."""
    state = init_state(build.learner(config), config.seed)
    ckpt = Checkpointer(workdir / "checkpoints", keep=1)
    ckpt.save(1, state, config)
    ckpt.close()
    return state


def analyze_cli(**overrides) -> ml_collections.ConfigDict:
    cli = base_config()
    cli.update(dict(task="analyze", **overrides))
    return cli


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """`--task analyze` of a 300-code checkpoint (seed 2: the split must follow the run's seed), with
    what it printed, piped: (workdir, run config, its state, the returned metrics, the output)."""
    workdir = tmp_path_factory.mktemp("analysed")
    trained = tiny(test_limit=300, seed=2)
    state = save_run(workdir, trained)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        metrics = run_analyze(analyze_cli(), workdir, "none")
    return workdir, trained, state, metrics, out.getvalue()


@pytest.mark.slow
def test_a_subset_analysis_names_its_subset_and_keeps_the_full_one(analysed):
    """Issue 12's rule with all codes as the default: analysing 150 of the 300 codes afterwards writes
    analysis_subsample150/ and leaves the 300-code analysis/ as it was. (Mapped by scikit-learn, whose
    t-SNE compiles nothing: the exact one would compile three programs for the new size.)"""
    workdir, _, _, full, _ = analysed
    before = (workdir / "analysis" / "metrics.json").read_text()
    subset = run_analyze(analyze_cli(analysis_subsample=150, tsne_backend="sklearn"), workdir, "none", quiet=True)
    assert (full["settings"]["n_points"], subset["settings"]["n_points"]) == (300, 150)
    assert (workdir / "analysis" / "metrics.json").read_text() == before
    assert json.loads((workdir / "analysis_subsample150" / "metrics.json").read_text())["settings"]["n_points"] == 150


def test_analyze_task_scores_the_checkpointed_codes(analysed, mnist):
    tmp_path, trained, state, metrics, out = analysed  # timed phases, then a summary with the numbers and paths
    learner = build.learner(trained)
    images, labels = jnp.asarray(mnist.test_images[:300]), mnist.test_labels[:300].astype(np.int64)
    codes = np.asarray(jax.jit(functools.partial(encode, learner))(state.params["ae"], images))
    knn5 = knn5_accuracy_numpy(codes, labels, seed=2)
    probe = float(np.mean(np.asarray(jnp.argmax(learner.head.apply(state.params["probe"], codes), -1)) == labels))
    assert metrics["codes"]["knn5_accuracy"] == pytest.approx(knn5, abs=1e-6)  # float32, from the device
    assert metrics["codes"]["probe_accuracy"] == pytest.approx(probe, abs=1e-6)
    assert metrics["settings"]["n_points"] == 300 and metrics["settings"]["latent_dims"] == trained.latent_dim
    assert json.loads((tmp_path / "analysis" / "metrics.json").read_text())["codes"] == metrics["codes"]

    assert "analysis (PCA, t-SNE, quality numbers) ... " in out and "encoding and evaluating the test set" in out
    # Piped (capsys is no terminal): a line as each stage ends, its seconds matching metrics.json's timings.
    stages = dict(re.findall(r"^  analysis: (\S+) \.\.\. ([0-9.]+) s$", out, re.M))
    timings = {k: v for k, v in metrics["timings_s"].items() if k != "total"}
    assert set(stages) == set(timings) >= {"pca", "tsne_2d", "tsne_3d", "quality_codes", "figures_tables"}
    assert all(abs(float(stages[k]) - timings[k]) <= 0.051 for k in timings)
    assert out.index("analysis: pca") < out.index("analysis: tsne_2d") < out.index("final metrics")
    shown = dict(re.findall(r"^\s+(analysis/\S+)\s+([0-9.]+)\s*$", out, re.M))
    assert float(shown["analysis/knn5_accuracy"]) == pytest.approx(knn5, abs=5e-4)
    assert str(tmp_path / "analysis" / "metrics.json") in out
    assert (tmp_path / "analysis" / "tsne_2d.png").stat().st_size > 0


class RecordingWriter:
    """The writer calls log_result may make, recorded by kind."""

    def __init__(self) -> None:
        self.calls: dict[str, list] = {"images": [], "texts": [], "scalars": [], "embeddings": []}

    def write_images(self, step, images):
        self.calls["images"].append((step, dict(images)))

    def write_texts(self, step, texts):
        self.calls["texts"].append((step, dict(texts)))

    def write_scalars(self, step, scalars):
        self.calls["scalars"].append((step, dict(scalars)))

    def write_embeddings(self, step, *args, **kwargs):
        self.calls["embeddings"].append((step, args, kwargs))


def test_log_result_logs_figures_and_tables_and_no_2d_projector_embeddings(tmp_path):
    """The 2-D maps are figures already; as 2-column projector tensors they showed an empty canvas."""
    png = tmp_path / "pca_2d.png"
    Image.new("RGBA", (6, 4), (255, 0, 0, 255)).save(png)
    result = AnalysisResult(
        metrics={"codes": {"knn5_accuracy": 0.75, "dead_dims": 2}, "settings": {"tsne_backend": "sklearn"}},
        figures={"pca_2d": png}, tables={"quality": "| metric |\n"},
        coords_2d={"pca": np.zeros((4, 2), np.float32)}, index_n=np.arange(4))
    writer = RecordingWriter()
    log_result(writer, 7, result)
    [(step, images)] = writer.calls["images"]
    assert step == 7 and list(images) == ["views/analysis/pca_2d"]
    assert images["views/analysis/pca_2d"].shape == (4, 6, 3) and images["views/analysis/pca_2d"].dtype == np.uint8
    assert (images["views/analysis/pca_2d"] == [255, 0, 0]).all()
    assert writer.calls["texts"] == [(7, {"analysis/quality": "| metric |\n"})]
    assert writer.calls["scalars"] == []  # quality numbers are HParams metrics, not single-point charts
    assert writer.calls["embeddings"] == []


def test_analyze_without_a_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint in .*train first"):
        run_analyze(base_config(), tmp_path, "none")


def test_analyze_takes_the_data_location_from_the_command_line_only_when_given(tmp_path):
    trained = tiny(data_dir=str(tmp_path / "moved_away"))
    save_run(tmp_path, trained)
    assert run_config(tmp_path, analyze_cli()).data_dir == str(tmp_path / "moved_away")  # not given: the run's
    config = run_config(tmp_path, analyze_cli(data_dir="data/mnist"))
    assert config.data_dir == "data/mnist" and config.latent_dim == trained.latent_dim


def test_analyze_refuses_a_run_with_too_few_test_digits_before_any_work(tmp_path):
    save_run(tmp_path, tiny(test_limit=50))  # trained without the end-of-run analysis
    with pytest.raises(ConfigError, match=r"would see 50 test codes \(test_limit=50"):
        run_config(tmp_path, analyze_cli())
