"""compare.html: any set of runs side by side (overlaid curves, a sortable table of final numbers with
the config keys that differ and the winner per metric, the same test digits reconstructed by each,
the quality numbers side by side)."""

from __future__ import annotations

import glob
import json
from pathlib import Path
from typing import Any


from mnist_ae import render
from mnist_ae.config import FIELDS
from mnist_ae.metrics import best_indices
from mnist_ae.report import ReportError
from mnist_ae.workdir import RunDir, write_text_atomic

DIGITS = 10  # test digits reconstructed by every run


def expand(patterns: str) -> list[Path]:
    """Comma-separated paths and globs, in the order given; a sweep stands for its exported members."""
    paths: list[Path] = []
    for pattern in filter(None, (p.strip() for p in patterns.split(","))):
        matches = sorted(glob.glob(str(Path(pattern).expanduser())))
        if not matches and glob.has_magic(pattern):
            raise ReportError(f"--workdirs: {pattern!r} matches no folder: check the path")
        matches = matches or [pattern]  # a plain path that is missing: named by the error that reads it
        for match in map(Path, matches):
            members = sorted(p.parent for p in RunDir(match).members.glob("*/checkpoints"))
            for path in members or [match]:
                if path.resolve() not in [p.resolve() for p in paths]:
                    paths.append(path)
    if len(paths) < 2:
        raise ReportError(f"--workdirs {patterns!r} names {len(paths)} run(s): compare needs at least two")
    return paths


def _names(paths: list[Path]) -> list[str]:
    """Short unique labels: the folder name, with its parent when two share it."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def winners(rows: list[dict[str, float]], metrics: list[str]) -> dict[str, list[int]]:
    """metric -> the runs holding its best value (every one of a tie), for the scores two or more runs have
    (`mnist_ae.metrics`: descriptive numbers and baselines get none)."""
    return {m: best for m in metrics if (best := best_indices([r.get(m) for r in rows], m))}


def compare_html(paths: list[Path]) -> str:
    from mnist_ae.report import figures  # noqa: PLC0415  (JAX and matplotlib: after the paths are checked)
    from mnist_ae.report.collect import finals_of  # noqa: PLC0415
    from mnist_ae.report.page import Page, array_png, esc, img, table  # noqa: PLC0415
    from mnist_ae.report.task import load_trained, saved_task  # noqa: PLC0415

    for path in paths:
        if saved_task(path) != "reconstruction":
            raise ReportError(f"{path} is not an autoencoder run: compare takes reconstruction runs and sweep members")
    names = _names(paths)
    runs = [load_trained(p) for p in paths]
    records = [RunDir(p).records() for p in paths]
    configs = [{k: json.dumps(r.config.to_dict().get(k)) for k in FIELDS} for r in runs]
    differing = [k for k in FIELDS if len({c[k] for c in configs}) > 1]
    finals = [{k: float(v) for k, v in finals_of(rec).items() if "per_class" not in k} for rec in records]
    for final, path in zip(finals, paths):
        analysis = RunDir(path).analysis_metrics()
        if analysis.exists():
            codes = json.loads(analysis.read_text())["codes"]
            final.update({f"analysis/{k}": float(v) for k, v in codes.items() if isinstance(v, (int, float))})
    metrics = sorted({k for f in finals for k in f}, key=lambda k: (not k.startswith("test/"), k))  # test first
    best = winners(finals, metrics)
    header = ["run", *differing, *metrics]
    rows = [[name, *(configs[i][k] for k in differing), *(finals[i].get(m, "") for m in metrics)]
            for i, name in enumerate(names)]
    cells = {(i, 1 + len(differing) + j): "best" for j, m in enumerate(metrics) for i in best.get(m, [])}
    cells.update({(i, 1 + j): "differs" for i in range(len(rows)) for j in range(len(differing))})
    for (i, c) in [k for k, v in cells.items() if v == "best"]:
        rows[i][c] = f"{rows[i][c]:.4g} \u2605"

    page = Page(f"compare {len(paths)} runs: mnist_ae")
    page.add(f"<h1>{len(paths)} runs compared</h1>",
             "<p class=note>" + "<br>".join(f"{esc(n)}: {esc(p)}" for n, p in zip(names, paths)) + "</p>",
             "<h3>Final numbers</h3><p class=note>config keys that differ (highlighted) then the final metrics; "
             "\u2605 marks the best run per score, every one on a tie (lowest error or loss, highest accuracy or "
             "quality; none for descriptive numbers and baselines); "
             "click a header to sort</p>", '<div class="wide">' + table(header, rows, sortable=True, cell_class=cells) + "</div>",
             "<h3>Curves</h3>" + page.figure(figures.overlaid_curves(list(zip(names, records)))),
             "<h3>The same test digits, reconstructed by each run</h3>", _recon_table(runs, names, img, array_png))
    return page.html()


def _recon_table(runs: list[Any], names: list[str], img: Any, array_png: Any) -> str:
    """The first DIGITS test digits (top) and each run's reconstructions of them (below), a row per run."""
    from mnist_ae.report.collect import test_set  # noqa: PLC0415

    rows = []
    for name, run in zip(names, runs):
        images = test_set(run.config)[0][:DIGITS]
        grid = render.reconstruction_grid(images, run.reconstruct(images))
        rows.append(f"<tr><td>{name}</td><td>{img(array_png(grid), name, width=str(grid.shape[1] * 2))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def compare(patterns: str, out: str | Path = "runs/compare.html") -> Path:
    """Write the comparison page of the runs `patterns` names; returns its path."""
    return write_compare(expand(patterns), out)


def write_compare(paths: list[Path], out: str | Path) -> Path:
    """Write the comparison page of `paths` (as `expand` returns them); returns its path."""
    from mnist_ae.report.task import require_plotly  # noqa: PLC0415

    require_plotly()
    return write_text_atomic(Path(out).expanduser().resolve(), compare_html(paths))
