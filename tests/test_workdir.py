"""Atomic writes of the files a user opens: a kill, or an error mid-write, never leaves a torn file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from mnist_ae import render
from mnist_ae.workdir import write_atomic, write_text_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = write_text_atomic(tmp_path / "deep" / "report.html", "old page")

    def half_then_fail(tmp):
        tmp.write_text("half a pa")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, half_then_fail)
    assert path.read_text() == "old page"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    write_text_atomic(path, "new page")
    assert path.read_text() == "new page" and sorted(p.name for p in path.parent.iterdir()) == ["report.html"]


def test_a_png_is_replaced_whole(tmp_path, monkeypatch):
    """save_png goes through the temporary file: while it is being written, the old PNG is still whole."""
    path = tmp_path / "grid.png"
    render.save_png(np.zeros((4, 6, 3), np.uint8), path)
    seen = []
    original = Image.Image.save

    def watching(self, fp, *args, **kwargs):
        seen.append(Image.open(path).size)  # the old one, readable mid-write
        return original(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", watching)
    render.save_png(np.full((8, 5, 3), 255, np.uint8), path)
    assert seen == [(6, 4)] and Image.open(path).size == (5, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png"]


def test_a_run_directory_names_its_files_and_a_members_records_are_its_sweeps_tagged_lines(tmp_path):
    from mnist_ae.workdir import RunDir

    sweep = RunDir(tmp_path)
    member = sweep.member("latent2_seed0_lr0.001")
    assert member.sweep == sweep and sweep.sweep is None and member.root == tmp_path / "members" / member.root.name
    assert sweep.analysis(10_000, 0) == sweep.analysis(10_000, 20_000) == tmp_path / "analysis"
    assert sweep.analysis(10_000, 2_000) == tmp_path / "analysis_subsample2000"
    assert sweep.codes_npz(32) == tmp_path / "codes" / "step_0000032.npz"
    lines = [{"event": "start", "from_step": 0}, {"step": 0, "member": member.root.name, "test/recon_mse": 1.0},
             {"step": 0, "member": "latent5_seed0_lr0.001", "test/recon_mse": 2.0}]
    sweep.metrics.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert member.records() == lines[:2]  # the start (provenance) and its own lines, nobody else's
    member.root.mkdir(parents=True)
    member.metrics.write_text(json.dumps({"step": 0, "test/recon_mse": 3.0}) + "\n")  # a sweep from before
    assert member.records() == [{"step": 0, "test/recon_mse": 3.0}]


def test_a_run_directory_is_a_value_whatever_the_path_type_and_its_names_are_the_readmes(tmp_path):
    """RunDir("x") and RunDir(Path("x")) are one key of a dict; every file it names under the root is one the
    README's "What a run writes" lists (or a sweep's, in docs/sweeps.md)."""
    from helpers import REPO
    from mnist_ae.workdir import RunDir

    run = RunDir(str(tmp_path))
    assert {run: 1}[RunDir(tmp_path)] == 1 and run.metrics == tmp_path / "metrics.jsonl"
    with pytest.raises(AttributeError):  # frozen: a RunDir never points elsewhere once made
        run.root = tmp_path / "other"
    documented = (REPO / "README.md").read_text() + (REPO / "docs" / "sweeps.md").read_text()
    for name in ("metrics", "config", "log", "lock", "checkpoints", "tensorboard", "report", "curves", "confusion",
                 "reconstructions", "codes", "latent", "comparison", "sweep_results", "sweep_results_json",
                 "sweep_results_plot", "members", "wandb"):
        path = getattr(run, name)
        assert path.parent == tmp_path and path.name in documented, name


def test_an_analysis_without_a_subsample_is_of_every_code_and_names_its_numbers(tmp_path):
    from mnist_ae.workdir import RunDir

    run = RunDir(tmp_path)
    assert run.analysis(500) == run.analysis(500, 500) == run.analysis() == tmp_path / "analysis"
    assert run.analysis(500, 499) == tmp_path / "analysis_subsample499"
    assert run.analysis_metrics(500) == tmp_path / "analysis" / "metrics.json"
    assert run.analysis_metrics(500, 100) == tmp_path / "analysis_subsample100" / "metrics.json"


def test_an_atomic_write_makes_the_folders_it_needs(tmp_path):
    path = write_text_atomic(tmp_path / "a" / "b" / "notes.txt", "hello")
    assert path.read_text() == "hello" and sorted(p.name for p in path.parent.iterdir()) == ["notes.txt"]


def test_the_lock_makes_its_run_folder_and_holds_only_the_current_holder(tmp_path):
    import os

    from mnist_ae.errors import WorkdirBusy
    from mnist_ae.workdir import RunDir, check_free, locked

    root = tmp_path / "runs" / "new"
    for _ in range(2):
        with locked(root):
            with pytest.raises(WorkdirBusy, match=f"is in use by pid {os.getpid()} on "):
                check_free(root)
    lines = RunDir(root).lock.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pid {os.getpid()} on ")  # the last holder, not a history
    check_free(root)  # released when the block ended


def test_a_write_that_fails_without_a_file_name_is_named_and_leaves_nothing(tmp_path):
    def full_disk(tmp):
        tmp.write_text("partial")
        raise OSError(28, "No space left on device")

    (tmp_path / "report.html").write_text("the old report")
    with pytest.raises(OSError) as error:
        write_atomic(tmp_path / "report.html", full_disk)
    assert (error.value.errno, error.value.filename) == (28, str(tmp_path / "report.html"))
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    assert (tmp_path / "report.html").read_text() == "the old report"
