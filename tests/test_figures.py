"""Figures a person looks at: axis-labelled embedding plots, the training curves, and what a run leaves
in its workdir (curves.png, confusion.png, labelled reconstruction grids) - checked against the records
and arrays they draw, not against another rendering."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import read_jsonl, tb_accumulator, tiny_run
from mnist_ae import render
from mnist_ae.analysis import digit_figures, figures


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib Figure each figure function saves (it is freed after saving otherwise)."""
    seen = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, path, tight=True: (seen.append(fig), save(fig, path, tight))[1])
    return seen


def test_embedding_plots_name_their_axes(tmp_path, drawn):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 50)
    figures.scatter_2d(rng.normal(size=(50, 2)), labels, [str(i) for i in range(10)], "PCA", tmp_path / "a.png", "PC")
    figures.scatter_3d(rng.normal(size=(50, 3)), labels, [str(i) for i in range(10)], "t", tmp_path / "b.png", "t-SNE")
    flat, deep = drawn[0].axes[0], drawn[1].axes[0]
    assert (flat.get_xlabel(), flat.get_ylabel()) == ("PC 1", "PC 2")
    assert (deep.get_xlabel(), deep.get_ylabel(), deep.get_zlabel()) == ("t-SNE 1", "t-SNE 2", "t-SNE 3")


def test_training_curves_draw_every_logged_point_unsmoothed(tmp_path, drawn):
    records = [{"step": s, "train/recon_mse": 1.0 / s, "train/probe_accuracy": 0.1 * s} for s in (4, 8, 12)]
    records += [{"step": s, "test/recon_mse": 0.5 - 0.01 * s, "test/probe_accuracy": 0.02 * s} for s in (0, 12)]
    figures.training_curves(records, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").is_file()
    panels = drawn[0].axes
    assert [ax.get_ylabel() for ax in panels] == ["recon_mse", "probe_accuracy"]
    assert all(ax.get_xlabel() == "training step" for ax in panels)
    lines = {line.get_label(): line.get_xydata().tolist() for line in panels[0].get_lines()}
    assert lines == {"train": [[4, 0.25], [8, 0.125], [12, 1 / 12]], "test": [[0, 0.5], [12, 0.38]]}


def test_digit_rows_put_each_rows_digits_in_its_cells_under_their_labels(tmp_path, drawn):
    rng = np.random.default_rng(0)
    rows = [(f"row {r}", rng.uniform(-1, 1, size=(3, 28, 28))) for r in range(2)]
    digit_figures.digit_rows(rows, tmp_path / "rows.png", "title", ["a", "b", "c"])
    (ax,) = drawn[0].axes
    (image,) = ax.get_images()
    canvas, step = np.ma.getdata(image.get_array()), 28 + digit_figures._DIGIT_GAP
    for r, (_, images) in enumerate(rows):
        for c in range(3):
            np.testing.assert_array_equal(canvas[r * step:r * step + 28, c * step:c * step + 28], images[c])
    assert np.isnan(canvas[28:step]).all() and np.isnan(canvas[:, 28:step]).all()  # the gaps: no digit
    assert [t.get_text() for t in ax.get_yticklabels()] == ["row 0", "row 1"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    np.testing.assert_allclose(ax.get_yticks(), [13.5, step + 13.5])  # each label at its row's middle
    assert Image.open(tmp_path / "rows.png").size[0] > 3 * 28


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return tiny_run(tmp_path_factory, epochs=2)[0]


def test_a_run_leaves_its_curves_confusion_and_labelled_grids(finished):
    evals = [r for r in read_jsonl(finished / "metrics.jsonl") if "test/recon_mse" in r]
    curves = Image.open(finished / "curves.png")
    assert curves.size[0] >= 900 and curves.size[1] >= 300  # two panels side by side
    confusion = np.asarray(Image.open(finished / "confusion.png").convert("RGB"))
    expected = render.confusion_image(np.eye(10, dtype=int), [str(i) for i in range(10)], "x")
    assert confusion.shape == expected.shape  # the 10-class layout, 60 px cells
    # One grid per eval, each the enlarged labelled layout: 3x the plain 2 x 4-digit grid plus margins.
    grids = sorted((finished / "reconstructions").glob("step_*.png"))
    assert [int(p.stem[5:]) for p in grids] == [r["step"] for r in evals]
    height = Image.open(grids[-1]).size[1]
    assert height == 36 + 3 * (2 * 28 + 2) + 8
    # TensorBoard shows the same labelled image at each eval.
    images = tb_accumulator(finished / "tb").Images("views/reconstructions")
    assert [e.step for e in images] == [r["step"] for r in evals] and images[-1].height == height
