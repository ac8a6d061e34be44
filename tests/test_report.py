"""report.html and compare.html, read back as HTML and figure JSON: sections, point counts against the
config, the confusion matrix against the run's own eval, the Procrustes alignment against numpy."""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import chex
import numpy as np
import pytest

from helpers import command_in_process, eval_records, read_jsonl, run_once, tiny, tiny_sweep
from mnist_ae.config import FIELDS

SECTIONS = ["Config", "Provenance", "Final numbers", "Training and test curves", "Over training",
            "Reconstructions", "The latent space forming", "Maps of the codes", "The codes",
            "Confused pairs (either way round)", "Histograms", "Statistics per unit",
            "Outliers: farthest from their class centroid"]


class Parsed(HTMLParser):
    """Headings, images, figure JSON by target div id, JSON scripts by id, table rows, slider data."""

    def __init__(self, text: str):
        super().__init__()
        self.headings, self.images, self.figures, self.scripts, self.rows = [], [], {}, {}, []
        self._in: tuple[str, dict] | None = None
        self._text = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag in ("h1", "h2", "h3", "script", "tr", "td", "th"):
            if tag in ("td", "th") and self._in and self._in[0] == "tr":
                self._in[1].setdefault("cells", []).append("")
                return
            self._in, self._text = (tag, attrs), ""

    def handle_data(self, data):
        if self._in and self._in[0] == "tr" and "cells" in self._in[1]:
            self._in[1]["cells"][-1] += data
        else:
            self._text += data

    def handle_endtag(self, tag):
        if not self._in or tag != self._in[0]:
            return
        name, attrs = self._in
        if name.startswith("h"):
            self.headings.append(self._text.strip())
        elif name == "script" and attrs.get("type") == "application/json":
            value = json.loads(self._text)
            self.scripts[attrs["id"]] = value
            if "data-target" in attrs:
                self.figures[attrs["data-target"]] = value
        elif name == "tr":
            self.rows.append(attrs.get("cells", []))
        self._in = None


def values(field) -> np.ndarray:
    """A Plotly array: a list, or numpy's bytes as {"dtype", "bdata"}."""
    if isinstance(field, dict):
        flat = np.frombuffer(base64.b64decode(field["bdata"]), dtype=field["dtype"])
        return flat.reshape([int(n) for n in field["shape"].split(",")]) if "shape" in field else flat
    return np.asarray(field)


def points(figure: dict) -> int:
    return sum(len(values(t["x"])) for t in figure["data"])


def titled(parsed: Parsed, start: str) -> dict:
    """The figure whose title starts with `start`."""
    return next(f for f in parsed.figures.values() if f["layout"].get("title", {}).get("text", "").startswith(start))


def _train(config, name: str):
    def produce(out: Path):
        from mnist_ae import tasks

        tasks.train_and_evaluate(config, out / name, "none", quiet=True)
        return str(out / name)
    return produce


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished tiny run with its analysis (t-SNE on 512 codes) and its end-of-run report."""
    config = tiny(analyze_at_end=True, latent_pictures=True, report_at_end=True)
    out, _ = run_once(tmp_path_factory, "report_run", _train(config, "run"))
    return out / "run"


@pytest.fixture(scope="module")
def other_run(tmp_path_factory) -> Path:
    out, _ = run_once(tmp_path_factory, "report_run_b", _train(tiny(latent_dim=4, seed=1), "run_b"))
    return out / "run_b"


# ----------------------------------------------------------------------------- latent space forming


def test_procrustes_undoes_a_hand_made_rotation_and_reflection():
    """A pure rotation too: a reflection is its own transpose, so only a rotation tells the alignment
    from its transpose (applied, a map turned by 0.7 rad came back turned by 1.4: the slider spun)."""
    from mnist_ae.report.forming import onto

    x_n2 = np.random.default_rng(0).normal(size=(50, 2))
    theta = 0.7
    rotate = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    chex.assert_trees_all_close(onto(x_n2 @ rotate, x_n2), x_n2, atol=1e-10)
    turned = x_n2 @ rotate @ np.diag([1.0, -1.0])  # rotated, then the second axis flipped
    chex.assert_trees_all_close(onto(turned, x_n2), x_n2, atol=1e-10)
    chex.assert_trees_all_close(onto(x_n2, x_n2), x_n2, atol=1e-10)


def test_each_map_has_unit_rms_radius_whatever_the_codes_scale_and_constant_codes_stay_at_zero():
    """Maps are compared by shape: codes of any spread (0.01 or 100) come out at RMS radius 1, and codes
    that do not vary (an untrained or collapsed encoder) give an all-zero map, not NaNs."""
    from mnist_ae.report.forming import pca_2d

    codes_nl = np.random.default_rng(2).normal(size=(200, 4))
    for scale in (0.01, 100.0):
        map_n2 = pca_2d(scale * codes_nl)
        assert np.sqrt(np.mean(np.sum(map_n2**2, axis=1))) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(pca_2d(np.ones((50, 4))), np.zeros((50, 2)))


def test_maps_of_the_same_codes_in_another_basis_come_out_aligned():
    """Codes turned by a random orthogonal matrix have the same PCA map up to signs: aligned, it is the same map."""
    from mnist_ae.report.forming import aligned_maps

    rng = np.random.default_rng(1)
    codes_nl = rng.normal(size=(300, 6)) * np.array([5.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    q_ll, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    first, second = aligned_maps([codes_nl, -codes_nl @ q_ll])
    centred = codes_nl - codes_nl.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)  # numpy's PCA, the reference
    reference = u[:, :2] * s[:2]
    reference /= np.sqrt(np.mean(np.sum(reference**2, axis=1)))
    chex.assert_trees_all_close(np.abs(first), np.abs(reference), atol=1e-4)
    chex.assert_trees_all_close(second, first, atol=1e-4)


# ----------------------------------------------------------------------------- report.html


def test_maps_saved_for_a_larger_test_set_are_not_used_for_a_smaller_one(tmp_path):
    """The analysis's coords.npz names test indices; a run's codes of fewer test digits (an analysis made
    elsewhere, on another test_limit) cannot use them, down to the first index past the end: the report
    falls back to the first codes and their PCA, whose points are exactly those codes'."""
    from mnist_ae.report.collect import points

    rng = np.random.default_rng(0)
    codes, labels = rng.normal(size=(50, 4)).astype(np.float32), rng.integers(0, 10, 50)
    (tmp_path / "analysis").mkdir()
    np.savez(tmp_path / "analysis" / "coords.npz", index=np.array([3, 50]), pca_2d=np.zeros((2, 2)))  # 50: past the end
    got = points(tmp_path, codes, labels, labels, np.zeros((50, 28, 28), np.uint8), subsample=0, seed=0)
    np.testing.assert_array_equal(got.index_n, np.arange(50))
    assert got.maps["pca_2d"].shape == (50, 2) and got.map3d[0] == "PCA" and got.map3d[2].shape == (50, 3)
    np.testing.assert_array_equal(got.map3d[1], np.arange(50))
    one_unit = points(tmp_path, codes[:, :1], labels, labels, np.zeros((50, 28, 28), np.uint8), subsample=0, seed=0)
    assert one_unit.maps["pca_2d"].shape == (50, 2) and one_unit.map3d[2].shape == (50, 3)  # padded with zeros
    assert not one_unit.maps["pca_2d"][:, 1].any() and not one_unit.map3d[2][:, 1:].any()
    np.testing.assert_allclose(np.abs(one_unit.maps["pca_2d"][:, 0]), np.abs(codes[:, 0] - codes[:, 0].mean()), rtol=1e-5)
    np.savez(tmp_path / "analysis" / "coords.npz", index=np.array([3, 49]), pca_2d=np.ones((2, 2)),
             pca_3d=np.ones((2, 3)))  # every index within
    kept = points(tmp_path, codes, labels, labels, np.zeros((50, 28, 28), np.uint8), subsample=0, seed=0)
    np.testing.assert_array_equal(kept.index_n, [3, 49])
    np.testing.assert_array_equal(kept.maps["pca_2d"], np.ones((2, 2)))


def test_final_numbers_come_from_the_hparams_record_else_the_last_eval():
    """An interrupted run has no hparams record: its finals are its last eval's test numbers, not a train
    window's; no eval at all gives none."""
    from mnist_ae.report.collect import finals_of

    evals = [{"step": 0, "test/recon_mse": 0.3}, {"step": 4, "train/recon_mse": 0.2},
             {"step": 8, "test/recon_mse": 0.2, "epoch": 1}, {"step": 9, "train/loss": 1.0},
             {"step": 12, "test/recon_mse": 0.1, "test/probe_accuracy": 0.9, "epoch": 2}, {"event": "start", "test/x": 1.0}]
    assert finals_of(evals) == {"test/recon_mse": 0.1, "test/probe_accuracy": 0.9}
    assert finals_of([*evals, {"hparams": {}, "metrics": {"test/recon_mse": 0.05}}]) == {"test/recon_mse": 0.05}
    assert finals_of([{"step": 4, "train/recon_mse": 0.2}]) == {}


def test_a_folder_that_is_no_sweep_member_has_no_member_codes(tmp_path):
    from mnist_ae.report.collect import member_codes_over_time, member_names

    assert member_names(tmp_path) == [] and member_codes_over_time(tmp_path / "run", 4) == []
    (tmp_path / "codes").mkdir()
    np.savez(tmp_path / "codes" / "step_0.npz", codes=np.zeros((2, 3, 4)), labels=np.zeros(3), members=["a", "b"])
    assert member_names(tmp_path) == ["a", "b"]


def test_a_run_section_is_named_by_its_folder_and_lists_its_starts(run_dir):
    from mnist_ae import api
    from mnist_ae.report.collect import run_data

    data = run_data(api.load(run_dir))
    assert data.name == run_dir.name and run_data(api.load(run_dir), name="mine").name == "mine"
    assert data.starts and all(r["event"] == "start" for r in data.starts)
    assert len(data.starts) == sum(1 for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("event") == "start")


def test_the_end_of_run_report_holds_every_section_and_every_point(run_dir):
    from mnist_ae.analysis.embed import TSNE_3D_POINTS

    from mnist_ae.run.setup import summary_paths

    assert summary_paths(run_dir)["report.html"] == run_dir / "report.html"  # the summary points at it
    html = (run_dir / "report.html").read_text()
    assert "<script src=" not in html and "http://" not in html.replace("http://www.w3.org", "")
    assert 'id="plotly-2d"' in html and 'id="plotly-3d"' in html  # the 3-D map needs the 3-D bundle
    parsed = Parsed(html)
    assert [h for h in SECTIONS if h not in parsed.headings] == []
    # the first screen: the headline numbers, then the pictures; the config and provenance last
    order = parsed.headings
    assert order.index("Training and test curves") < order.index("Maps of the codes") < order.index("Final numbers") \
        < order.index("Config") < order.index("Provenance")
    head = html[html.index('<div class="headline">'):html.index("<h3>Training and test curves")]
    assert "test MSE" in head and "PCA&#x27;s test MSE" in head and "probe accuracy" in head and "kNN" in head
    assert str(run_dir) not in html  # no local path in a file meant to be shared
    assert points(titled(parsed, "PCA of 512 test codes")) == 512  # tiny(): test_limit=512, all analysed
    assert points(titled(parsed, "t-SNE of 512 test codes")) == 512
    assert points(titled(parsed, "t-SNE 3-D")) == min(512, TSNE_3D_POINTS)
    pca = titled(parsed, "PCA of 512")
    assert sorted(int(v) for t in pca["data"] for v in np.asarray(t["customdata"])[:, 1]) == list(range(512))
    assert all(img["src"].startswith("data:image/png;base64,") for img in parsed.images)
    # the slider: one position per eval (steps from metrics.jsonl), each map of report_codes=128 test codes
    slider = next(v for k, v in parsed.scripts.items() if k.startswith("steps"))
    assert slider["steps"] == [r["step"] for r in eval_records(run_dir)] == [0, 32, 64]
    assert [sum(len(c[0]) for c in frame) for frame in slider["frames"]] == [128, 128, 128]
    assert len(set(slider["images"])) == 3


def test_the_inlined_plotly_js_bundles_are_the_version_the_plotly_package_writes_for():
    """The figures' JSON is written by the installed plotly package for its own plotly.js; the page draws
    it with the bundles in mnist_ae/report/plotly_js (tools/plotly/build.sh): the same version, and the
    2-D bundle really lacks the 3-D scatter (that is what makes it quick to evaluate)."""
    import gzip
    import re

    from plotly.offline import get_plotlyjs

    from mnist_ae.report.page import BUNDLES

    version = re.search(r"plotly\.js v(\d+\.\d+\.\d+)", get_plotlyjs()[:300]).group(1)
    code = {b: gzip.decompress((BUNDLES / f"plotly-{b}.min.js.gz").read_bytes()).decode() for b in ("2d", "3d")}
    assert code["2d"].startswith(f"/* plotly.js v{version}, traces: scatter, scattergl, heatmap, bar ")
    assert code["3d"].startswith(f"/* plotly.js v{version}, traces: scatter, scattergl, heatmap, bar, scatter3d ")
    assert 'name:"scatter3d"' not in code["2d"] and 'name:"scatter3d"' in code["3d"]


def test_the_confusion_matrix_agrees_with_the_runs_own_eval(run_dir):
    parsed = Parsed((run_dir / "report.html").read_text())
    confusion = titled(parsed, "Probe confusion")["data"][0]
    counts = values(confusion["z"]).astype(np.int64)
    chex.assert_shape(counts, (10, 10))
    assert counts.sum() == 512
    final = eval_records(run_dir)[-1]["test/probe_accuracy"]  # computed on the device by the run's eval
    assert np.trace(counts) / 512 == pytest.approx(final, abs=1e-6)


def test_config_lists_the_changed_keys_first(run_dir):
    parsed = Parsed((run_dir / "report.html").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    changed = {k for k, v in config.items() if (tuple(v) if isinstance(v, list) else v) != FIELDS[k].default}
    table = [row for row in parsed.rows if len(row) == 4 and row[0] in FIELDS]
    assert {row[0] for row in table[: len(changed)]} == changed and len(table) == len(FIELDS)


def test_report_task_on_an_interrupted_run_shows_its_epoch_and_the_newest_samples(run_dir, tmp_path, monkeypatch,
                                                                                   capsys):
    """A copy without its last checkpoint: the page says interrupted and shows the epoch it has. Of the
    sample grids a VAE keeps from each eval (three here, so neither the first nor the last two pass), the
    page shows the newest. The command line in this process (the launch in a subprocess is test_cli's)."""
    from mnist_ae.workdir import RunDir

    copy = tmp_path / "interrupted"
    shutil.copytree(run_dir, copy)
    shutil.rmtree(copy / "checkpoints" / "2")
    (copy / "report.html").unlink()
    run = RunDir(copy)
    run.samples.mkdir()
    for step in (0, 16, 32):
        shutil.copy(next(run.reconstructions.glob("*.png")), run.samples_png(step))
    assert command_in_process(["--task", "report", "--workdir", str(copy)], monkeypatch) == 0
    assert str(copy / "report.html") in capsys.readouterr().out
    page = (copy / "report.html").read_text()
    assert "interrupted: checkpoint of epoch 1 of 2" in page
    assert re.findall(r"a VAE&#x27;s samples at step ([\d,]+)\)", page) == ["32"]


@pytest.mark.parametrize("case, message", [
    ("missing", "no such folder"), ("not a run", "is not a run (no config.json)"),
    ("no checkpoint", "has no checkpoint yet"), ("no plotly", "pip install -e '.[report]'"),
])
def test_errors_are_one_line_exit_2(tmp_path, monkeypatch, capsys, case, message):
    workdir = tmp_path / "run"
    if case != "missing":
        workdir.mkdir()
    if case in ("no checkpoint", "no plotly"):
        (workdir / "config.json").write_text(json.dumps({"task": "reconstruction"}))
    if case == "no plotly":
        monkeypatch.setitem(sys.modules, "plotly", None)  # `import plotly` raises ImportError
    status = command_in_process(["--task", "report", "--workdir", str(workdir)], monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err


# ----------------------------------------------------------------------------- compare.html


def test_compare_marks_the_winner_and_the_differing_keys(run_dir, other_run, tmp_path):
    from mnist_ae.report.compare import compare

    out = compare(f"{run_dir},{other_run.parent}/run_*", tmp_path / "compare.html")
    assert 'id="plotly-3d"' not in out.read_text()  # no 3-D map: only the 2-D bundle is carried
    parsed = Parsed(out.read_text())
    header = next(row for row in parsed.rows if row and row[0] == "run")
    body = [row for row in parsed.rows if row and row[0] in ("run", "run_b") and len(row) == len(header)][1:]
    assert [row[0] for row in body] == ["run", "run_b"]
    assert {"latent_dim", "seed", "analyze_at_end"} <= set(header)
    mse = [eval_records(d)[-1]["test/recon_mse"] for d in (run_dir, other_run)]
    column = header.index("test/recon_mse")
    assert [row[column].endswith("\u2605") for row in body] == [m == min(mse) for m in mse]
    # every column: the star on the lowest error and the highest accuracy, on each of a tie, never on a
    # descriptive number (explained variance) or a baseline
    starred = 0
    for column, name in enumerate(header):
        if "/" not in name:  # the run's name and the config keys that differ
            continue
        stars = [row[column].endswith("\u2605") for row in body]
        values = [float(row[column].rstrip(" \u2605")) if row[column] else None for row in body]
        if name.startswith("baseline/") or "explained_variance" in name:
            assert not any(stars), name
        elif any(w in name for w in ("mse", "sse", "loss", "dead_dims")) and None not in values:
            assert stars == [v == min(values) for v in values], name
            starred += 1
        elif "accuracy" in name and "per_class" not in name and None not in values:
            assert stars == [v == max(values) for v in values], name
            starred += 1
    assert "test/recon_sse01" in header and starred >= 5
    curves = next(iter(parsed.figures.values()))
    assert {t["name"] for t in curves["data"]} == {"run", "run_b"}
    grids = [_png_pixels(img["src"]) for img in parsed.images if img["alt"] in ("run", "run_b")]
    assert len(grids) == 2
    # each run's row: the first test digits on top, the same for both runs (their reconstructions under them)
    from mnist_ae import render
    from mnist_ae.data import load_dataset

    digits = load_dataset("mnist").test_images[:10]
    top = render.reconstruction_grid(digits, digits)
    for grid in grids:
        chex.assert_shape(grid, top.shape[:2])
        np.testing.assert_array_equal(grid[:top.shape[0] // 2], top[:top.shape[0] // 2, :, 0])


def _png_pixels(src: str) -> np.ndarray:
    """The pixels of an image embedded as a data URL."""
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


def test_compare_names_sorts_highlights_and_refuses_as_documented(run_dir, other_run, tmp_path, monkeypatch):
    """Two runs in folders of one name are told apart by their parents; the config columns are exactly
    the keys that differ, highlighted; test metrics come first, then the analysis numbers; the table
    sorts. A run that is no autoencoder, or no plotly, is a one-line ReportError."""
    import shutil

    from mnist_ae.config import FIELDS
    from mnist_ae.report import ReportError
    from mnist_ae.report.compare import compare

    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    shutil.copytree(run_dir, a)
    shutil.copytree(other_run, b)
    analysis = json.loads((a / "analysis" / "metrics.json").read_text())
    analysis["codes"]["knn5_accuracy"] = 0.5  # as a later --task analyze leaves it: the page shows the latest
    (a / "analysis" / "metrics.json").write_text(json.dumps(analysis))
    text = compare(f"{a},{b}", tmp_path / "compare.html").read_text()
    parsed = Parsed(text)
    header = next(row for row in parsed.rows if row and row[0] == "run")
    body = [row for row in parsed.rows if row and row[0] in ("a/run", "b/run") and len(row) == len(header)]
    assert [row[0] for row in body] == ["a/run", "b/run"]
    configs = [json.loads((d / "config.json").read_text()) for d in (a, b)]
    differing = [k for k in FIELDS if configs[0].get(k) != configs[1].get(k)]
    assert {"latent_dim", "seed"} <= set(differing) and "batch_size" not in differing
    assert header[1:1 + len(differing)] == differing
    assert text.count('class="differs"') == 2 * len(differing)
    metrics = header[1 + len(differing):]
    tests = [m for m in metrics if m.startswith("test/")]
    assert tests and metrics[:len(tests)] == tests
    assert body[0][header.index("analysis/knn5_accuracy")].rstrip(" \u2605") == "0.5"
    assert "<table class=sortable><thead><tr><th>run</th>" in text
    classifier = tmp_path / "c" / "run"
    shutil.copytree(run_dir, classifier)
    (classifier / "config.json").write_text(json.dumps({**configs[0], "task": "classification"}))
    with pytest.raises(ReportError, match="is not an autoencoder run"):
        compare(f"{a},{classifier}", tmp_path / "compare.html")
    monkeypatch.setitem(sys.modules, "plotly", None)  # `import plotly` raises ImportError
    with pytest.raises(ReportError, match="needs plotly"):
        compare(f"{a},{b}", tmp_path / "other.html")
    assert not (tmp_path / "other.html").exists()


def test_compare_needs_two_runs(run_dir):
    from mnist_ae.report import ReportError
    from mnist_ae.report.compare import compare

    with pytest.raises(ReportError, match="compare needs at least two"):
        compare(str(run_dir))
    with pytest.raises(ReportError, match=r"^--workdirs: '.*/nothing\*' matches no folder: check the path$"):
        compare(f"{run_dir},{run_dir.parent}/nothing*")  # not "names 1 run(s)"


# ----------------------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_a_sweep_report_has_one_section_per_member(tmp_path, monkeypatch):
    from mnist_ae import build, tasks

    sliced = []  # each member is sliced once for the export and the report together
    real = build.member_run
    monkeypatch.setattr(build, "member_run", lambda config, member, state: sliced.append(member.name)
                        or real(config, member, state))
    tasks.train_sweep(tiny_sweep(report_at_end=True), tmp_path, "none", quiet=True)
    assert sorted(sliced) == sorted(m.name for m in build.members(tiny_sweep()))
    codes = np.load(tmp_path / "codes" / "step_0000000.npz")
    chex.assert_shape(codes["codes"], (4, 128, 5))  # members, report_codes, widest code
    parsed = Parsed((tmp_path / "report.html").read_text())
    members = [h for h in parsed.headings if h.startswith("Member ")]
    assert members == [f"Member latent{l}_seed{s}_lr0.01" for l in (2, 5) for s in (0, 1)]
    assert sum(1 for f in parsed.figures.values()
               if f["layout"].get("title", {}).get("text", "") == "PCA of 512 test codes") == 4
    assert "Results (click a column to sort)" in parsed.headings
    assert parsed.headings.index("Results (click a column to sort)") < parsed.headings.index(members[0])
    html = (tmp_path / "report.html").read_text()
    assert "--workdir RUN" not in html and html.count("no t-SNE: the sweep ran without its analysis") == 4
    # each member's section shows the latent space forming, from its slice of the sweep's saved codes
    sliders = [v for k, v in parsed.scripts.items() if k.startswith("steps")]
    assert len(sliders) == 4
    assert all([sum(len(c[0]) for c in frame) for frame in s["frames"]] == [128] * len(s["steps"]) for s in sliders)
    from mnist_ae.report.task import report

    # the end-of-run page, drawn from the members in memory, is the page `--task report` draws from their exports
    in_memory = (tmp_path / "report.html").read_text()
    assert report(tmp_path).read_text() == in_memory
    # an exported member's own page: the latent space forming from its slice of the sweep's saved codes
    alone = Parsed(report(tmp_path / "members" / "latent2_seed1_lr0.01").read_text())
    slider = next(v for k, v in alone.scripts.items() if k.startswith("steps"))
    assert slider["steps"] == sorted(int(p.stem.split("_")[1]) for p in (tmp_path / "codes").glob("step_*.npz"))
    assert [sum(len(c[0]) for c in frame) for frame in slider["frames"]] == [128] * len(slider["steps"])
    from mnist_ae.report.compare import compare

    page = Parsed(compare(str(tmp_path), tmp_path / "compare.html").read_text())  # a sweep: its members
    header = next(row for row in page.rows if row and row[0] == "run")
    body = [row for row in page.rows if len(row) == len(header) and row[0].startswith("latent")]
    assert [row[0] for row in body] == [f"latent{l}_seed{s}_lr0.01" for l in (2, 5) for s in (0, 1)]
    assert {"latent_dim", "seed"} <= set(header)
    finals = [r["metrics"]["test/recon_mse"] for r in read_jsonl(tmp_path / "metrics.jsonl") if "hparams" in r]
    column = [float(row[header.index("test/recon_mse")].rstrip(" \u2605")) for row in body]
    assert sorted(column) == pytest.approx(sorted(finals), abs=5e-5)  # shown with 4 digits


@pytest.mark.slow  # a fallback, in a subprocess
def test_a_run_without_plotly_finishes_and_says_what_to_install(tmp_path, monkeypatch, capsys):
    from mnist_ae import tasks

    monkeypatch.setitem(sys.modules, "plotly", None)  # `import plotly` raises ImportError
    final = tasks.train_and_evaluate(tiny(epochs=1, report_at_end=True), tmp_path, "none", quiet=True)
    assert "test/recon_mse" in final and not (tmp_path / "report.html").exists()
    out = capsys.readouterr()
    assert "no report.html: the report needs plotly (the report extra): pip install -e '.[report]'" in out.out + out.err
    assert len(list((tmp_path / "codes").glob("step_*.npz"))) == 2  # the codes are saved all the same


def test_overlaid_curves_say_which_line_is_train_and_which_is_test():
    """The legend names the runs; the faint lines are each run's train windows, which the figure says."""
    from mnist_ae.report import figures

    records = [{"step": s, "train/recon_mse": 1.0 / (s + 1), "test/recon_mse": 1.1 / (s + 1)} for s in (0, 10)]
    fig = figures.overlaid_curves([("a", records), ("b", records)])
    assert fig.layout.legend.title.text == figures.OVERLAID_NOTE
    faint = [t for t in fig.data if t.opacity < 1]
    assert faint and all(t.mode == "lines" and "train/" in t.hovertemplate for t in faint)
    assert [t.name for t in fig.data if t.showlegend] == ["a", "b"]
