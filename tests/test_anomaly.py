"""One-class anomaly detection: AUROC and ROC against scikit-learn, class pools, one-class training that
sees only its class, and a one-class sweep's numbers, table and pictures."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mnist_ae import build, tasks
from mnist_ae.analysis import anomaly
from mnist_ae.config import ConfigError
from mnist_ae.config_checks import validate
from mnist_ae.core.loop import pool_indices
from mnist_ae.core.steps import per_image_errors
from mnist_ae.run import measures
from mnist_ae.workdir import RunDir, read_records

from helpers import restore_state, tb_accumulator, tiny, tiny_sweep


def test_auroc_and_the_roc_curve_are_scikit_learns():
    """Scores with many ties (rounded to one decimal): the ties count a half, as scikit-learn's does."""
    rng = np.random.default_rng(0)
    anomalous = rng.random(500) < 0.3
    scores = np.round(rng.normal(size=500) + anomalous, 1)
    assert anomaly.auroc(scores, anomalous) == pytest.approx(roc_auc_score(anomalous, scores), abs=1e-12)
    distinct = rng.normal(size=500) + anomalous
    fpr, tpr = anomaly.roc_curve(distinct, anomalous)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc_score(anomalous, distinct), abs=1e-12)
    assert anomaly.auroc(np.array([0.1, 0.9, 0.2]), np.array([True, False, False])) == 0.0  # the lowest: an anomaly
    fpr, tpr = anomaly.roc_curve(np.array([0.9, 0.1, 0.2]), np.array([True, False, False]))  # a lone anomaly, first
    assert list(tpr) == [0, 1, 1, 1] and list(fpr) == [0, 0, 0.5, 1]
    fpr, tpr = anomaly.roc_curve(np.array([0.9, 0.1, 0.2]), np.array([False, True, True]))  # a lone normal digit
    assert list(tpr) == [0, 0, 0.5, 1] and list(fpr) == [0, 1, 1, 1]


def test_pca_scores_are_a_direct_svd_reconstruction_error(mnist):
    """PCA fitted on 500 fours (numpy's SVD of the centred [-1, 1] pixels), each of 200 test digits
    projected on its first 8 axes: the score is the mean squared residual per pixel (float32 sums of 784
    squares: 1e-5 relative)."""
    train = mnist.train_images[:2000][mnist.train_labels[:2000] == 4][:500]
    test = mnist.test_images[:200]
    x = train.reshape(len(train), -1).astype(np.float64) / 127.5 - 1.0
    mean = x.mean(axis=0)
    axes = np.linalg.svd(x - mean, full_matrices=False)[2][:8].T
    centred = test.reshape(200, -1).astype(np.float64) / 127.5 - 1.0 - mean
    expected = np.mean(np.square(centred - centred @ axes @ axes.T), axis=1)
    np.testing.assert_allclose(anomaly.pca_scores(train, test, 8), expected, rtol=1e-5)


def test_the_roc_figure_names_its_axes_and_classes_and_draws_the_chance_line(tmp_path, monkeypatch):
    seen = []
    save = anomaly.save
    monkeypatch.setattr(anomaly, "save", lambda fig, path: (seen.append(fig), save(fig, path))[1])
    curves = [(name, np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.9, 1.0]), area) for name, area in (("0", 0.9), ("1", 0.75))]
    assert anomaly.roc_figure(curves, tmp_path / "roc.png").is_file()
    [ax] = seen[0].axes
    assert ax.get_xlabel() == "false positive rate (normal digits flagged)"
    assert ax.get_ylabel() == "true positive rate (anomalies flagged)"
    assert ax.get_title() == "one-class ROC curves (AUROC in the legend)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0 normal: 0.900", "1 normal: 0.750"]
    *classes, chance = ax.get_lines()  # a line per class, then the chance diagonal
    assert len(classes) == 2 and chance.get_xydata().tolist() == [[0, 0], [1, 1]] and chance.get_linestyle() == ":"


def test_the_extremes_figure_shows_each_classs_most_and_least_anomalous_digits(tmp_path, monkeypatch):
    rows_drawn = []
    monkeypatch.setattr(anomaly, "digit_rows", lambda rows, path, title: rows_drawn.append(rows) or path)
    images = np.arange(20, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)  # digit i is all i
    scores = np.random.default_rng(0).permutation(20).astype(float)
    anomaly.extremes_figure([("seven", scores, None)], images, tmp_path / "x.png")
    [(high, high_nhw), (low, low_nhw)] = rows_drawn[0]
    assert (high, low) == ("seven: most anomalous", "seven: most normal")
    by_score = np.argsort(scores)
    assert high_nhw.shape == low_nhw.shape == (anomaly.EXTREMES, 28, 28) and anomaly.EXTREMES == 8
    np.testing.assert_array_equal(high_nhw[:, 0, 0], (by_score[::-1][:8] / 127.5 - 1).astype(np.float32))
    np.testing.assert_array_equal(low_nhw[:, 0, 0], (by_score[:8] / 127.5 - 1).astype(np.float32))


def test_class_pools_hold_each_class_and_an_epoch_draws_only_its_pool():
    labels = np.array([0, 1, 1, 2, 1, 0, 2, 2, 2, 1])
    index, valid, per_epoch = build.class_pools(labels, [1, 0])
    np.testing.assert_array_equal(index, [[1, 2, 4, 9], [0, 5, 0, 0]])
    np.testing.assert_array_equal(valid, [[1, 1, 1, 1], [1, 1, 0, 0]])
    assert per_epoch == 2
    rng = jax.random.PRNGKey(0)
    epochs = [np.asarray(pool_indices(rng, jnp.asarray(e), jnp.asarray(index[0]), jnp.asarray(valid[0]), 1, 1, 3))
              for e in range(6)]
    for drawn in epochs:  # three distinct digits of class 1, never padding
        assert drawn.shape == (1, 1, 3) and len(set(drawn.ravel())) == 3 and set(drawn.ravel()) <= {1, 2, 4, 9}
    assert len({tuple(d.ravel()) for d in epochs}) > 1  # a fresh subset and order each epoch


@pytest.mark.slow  # second check: the one-class sweep and the pools are quick
def test_a_one_class_model_reconstructs_its_class_better_than_the_others(tmp_path, mnist):
    config = tiny(normal_class=1, epochs=8, latent_dim=4)
    tasks.train_and_evaluate(config, tmp_path, log_framework="none", quiet=True)
    state = restore_state(tmp_path, config)
    assert int(state.step) == 8 * ((mnist.train_labels[:2048] == 1).sum() // 64)  # its class's rounds only
    errors = np.asarray(per_image_errors(build.learner(config), state.params["ae"], jnp.asarray(mnist.test_images[:512])))
    ones = mnist.test_labels[:512] == 1
    assert errors[ones].mean() < 0.5 * errors[~ones].mean()
    assert anomaly.auroc(errors, ~ones) > 0.9


def test_a_one_class_sweep_reports_each_class_and_the_mean(tmp_path, monkeypatch, capsys):
    config = tiny_sweep(latent_dims=(4,), seeds=(0,), normal_classes=(0, 1), epochs=1, report_at_end=True)
    roc_figure, curves = anomaly.roc_figure, []
    monkeypatch.setattr(anomaly, "roc_figure", lambda drawn, path: curves.extend(drawn) or roc_figure(drawn, path))
    finals = tasks.run(config, tmp_path, log_framework="tensorboard", quiet=False)
    out = capsys.readouterr().out
    records = read_records(RunDir(tmp_path).metrics)
    per_member = {r["member"]: r["test/auroc"] for r in records if "test/auroc" in r and "step" in r}
    names = ["latent4_seed0_lr0.01_class0", "latent4_seed0_lr0.01_class1"]
    assert set(per_member) == set(names)
    [mean] = [r for r in records if "test/auroc_mean" in r]
    assert "member" not in mean and mean["test/auroc_mean"] == pytest.approx(np.mean(list(per_member.values())))
    assert f"one-class AUROC, mean over 2 classes: {mean['test/auroc_mean']:.4f}" in out
    assert re.search(rf"^{re.escape(measures.ANOMALY_PHASE)} \.\.\. [\d.]+ s$", out, re.M)
    # PCA fitted on each class's own training digits tells the other classes apart: 0.95 and 1.00 here (float64
    # numpy, no training); fitted on the other classes' digits class 0 gets 0.13, scoring the class itself 0.05
    assert all(f["baseline/pca_auroc"] > 0.8 for f in finals)
    assert [(name, auroc) for name, _, _, auroc in curves] == [("0", finals[0]["test/auroc"]), ("1", finals[1]["test/auroc"])]
    first, second = (tb_accumulator(RunDir(tmp_path).member(name).tensorboard).Tags()["images"] for name in names)
    assert {"views/anomaly/roc", "views/anomaly/digits"} <= set(first) and not {"views/anomaly/roc"} & set(second)
    table = RunDir(tmp_path).sweep_results.read_text()
    assert "| normal class |" in table and "| AUROC | PCA AUROC |" in table
    assert RunDir(tmp_path).anomaly_roc.exists() and RunDir(tmp_path).anomaly_digits.exists()
    assert "One-class ROC curves" in RunDir(tmp_path).report.read_text()


def test_one_class_runs_and_sweeps_get_the_anomaly_measures_and_others_do_not():
    for config in (tiny(normal_class=0), tiny(normal_class=9), tiny_sweep(normal_classes=(0, 1))):
        [hook] = measures.anomaly_hooks(config)
        assert hook.name == measures.ANOMALY_PHASE and hook.at_end
    assert measures.anomaly_hooks(tiny()) == [] and measures.anomaly_hooks(tiny_sweep()) == []


@pytest.mark.parametrize("overrides, message", [
    (dict(normal_class=10), "normal_class=10: give a class 0-9"),
    (dict(normal_classes=(1, 2)), "normal_classes=\\(1, 2\\): give classes 0-9 for a sweep's one-class members"),
    (dict(task="sweep", normal_classes=(1, 1)), "normal_classes repeats 1"),
])
def test_bad_classes_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(tiny(**overrides))
