"""`--task report` and the end-of-run hook: RUN/report.html for a run, an interrupted run or a sweep.

A sweep's page holds its results table, comparison figure and overlaid curves, then one section per
exported member (`RUN/members/<name>`, a standalone run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mnist_ae.report import ReportError
from mnist_ae.workdir import RunDir, write_text_atomic
from mnist_ae.report.collect import (RunData, codes_over_time, member_names, member_slice, pngs,
                                     run_data)

PLOTLY_MISSING = "the report needs plotly (the report extra): pip install -e '.[report]'"


def require_plotly() -> None:
    try:
        import plotly  # noqa: F401, PLC0415
    except ImportError:
        raise ReportError(PLOTLY_MISSING) from None


def saved_task(workdir: Path) -> str:
    """The task of the run in `workdir` (config.json), or a one-line ReportError saying what is missing."""
    if not workdir.is_dir():
        raise ReportError(f"no run in {workdir} (no such folder): pass --workdir of a run (e.g. runs/reconstruction)")
    run = RunDir(workdir)
    if run.config.exists():
        try:
            saved = json.loads(run.config.read_text())
        except ValueError:
            saved = None
        if not isinstance(saved, dict):
            raise ReportError(f"{run.config} is not a config (not a JSON object): rerun the run's training "
                              "command, which writes it again")
        return saved.get("task", "")
    if run.checkpoints.is_dir():  # an exported sweep member: its config is in its checkpoint
        return "reconstruction"
    raise ReportError(f"{workdir} is not a run (no config.json): pass the --workdir a training task wrote")


def load_trained(workdir: Path) -> Any:
    """The run's latest checkpoint through the Python API; its refusals become one-line ReportErrors."""
    from mnist_ae.api import load  # noqa: PLC0415
    from mnist_ae.checkpoint import CheckpointError  # noqa: PLC0415

    checkpoints = RunDir(workdir).checkpoints
    if not checkpoints.is_dir() or not any(checkpoints.iterdir()):
        raise ReportError(f"{workdir} has no checkpoint yet (nothing trained to report): let it finish an epoch, "
                          "or rerun its training command")
    try:
        return load(workdir)
    except CheckpointError as e:
        raise ReportError(str(e)) from None


def report(workdir: str | Path) -> Path:
    """Write RUN/report.html for the run (single, interrupted or sweep) in `workdir`; returns its path."""
    workdir = Path(workdir).expanduser().resolve()
    task = saved_task(workdir)
    require_plotly()
    if task == "sweep":
        text = sweep_html(workdir)
    elif task == "reconstruction":
        text = run_html(run_data(load_trained(workdir)))
    else:
        raise ReportError(f"{workdir} holds a {task!r} run: the report needs an autoencoder (a reconstruction "
                          "run or a sweep)")
    return write_text_atomic(RunDir(workdir).report, text)


def run_html(data: RunData) -> str:
    from mnist_ae.report.page import Page  # noqa: PLC0415
    from mnist_ae.report.sections import run_body  # noqa: PLC0415

    page = Page(f"{data.name}: mnist_ae report")
    page.add(f"<h1>{data.name}</h1>", run_body(page, data))  # no local path: the file is shared
    return page.html()


def sweep_members(workdir: Path, records: list[dict[str, Any]],
                  in_memory: dict[str, Any] | None = None) -> list[tuple[str, RunData | None]]:
    """Each member's data from `in_memory` (name -> TrainedRun, what the sweep just trained) or else its
    export (None while the sweep has not exported it yet); its codes over time are its slice of the
    sweep's, read once for all members."""
    names = member_names(workdir) or sorted({r["member"] for r in records if "member" in r})
    sweep_codes = codes_over_time(workdir)

    def member(i: int, name: str) -> RunData | None:
        trained = (in_memory or {}).get(name)
        if trained is None:
            member_dir = RunDir(workdir).member(name)
            if not member_dir.checkpoints.is_dir():
                return None
            trained = load_trained(member_dir.root)
        return run_data(trained, name, forming=member_slice(sweep_codes, i, trained.config.latent_dim))

    return [(name, member(i, name)) for i, name in enumerate(names)]


def sweep_html(workdir: Path, in_memory: dict[str, Any] | None = None) -> str:
    from mnist_ae.report import figures  # noqa: PLC0415
    from mnist_ae.report.page import Page, img, table  # noqa: PLC0415
    from mnist_ae.report.sections import config_table, provenance, run_body  # noqa: PLC0415

    run = RunDir(workdir)
    records = run.records()
    config = json.loads(run.config.read_text())
    members = sweep_members(workdir, records, in_memory)
    page = Page(f"{workdir.name}: mnist_ae sweep report")
    page.add(f"<h1>{workdir.name} (sweep of {len(members)})</h1>")
    results = run.sweep_results_json
    if results.exists():  # the overview first: quality per member (sortable), then the pictures
        saved = json.loads(results.read_text())["table"]
        page.add("<h3>Results (click a column to sort)</h3>" + table(saved["header"], saved["rows"], sortable=True))
    titles = {"comparison": "Reconstructions of every member", "member_maps": "2-D maps of every member's codes",
              "sweep_results": "Final numbers over the latent size",
              "anomaly_roc": "One-class ROC curves (AUROC per normal class)",
              "anomaly_digits": "The most and least anomalous test digits of each one-class member"}
    for name, png in {**pngs(workdir), **pngs(run.analysis())}.items():
        page.add(f"<h3>{titles.get(name, name.replace('_', ' '))}</h3>" + img(png, name))
    curves = [(name, [r for r in records if r.get("member") == name and "step" in r]) for name, _ in members]
    page.add("<h3>Curves of every member</h3>" + page.figure(figures.overlaid_curves(curves)))
    for name, data in members:
        page.add(f"<h2>Member {name}</h2>")
        page.add(run_body(page, data, with_provenance=False) if data is not None else
                 '<p class="note">not exported yet: a sweep exports its members when it finishes</p>')
    page.add("<h2>The sweep's config and provenance</h2>",
             "<h3>Config</h3><details><summary>open the config</summary>" + config_table(config) + "</details>",
             "<h3>Provenance</h3>" + provenance([r for r in records if r.get("event") == "start"]))
    return page.html()


def end_of_run(run: Any, state: Any) -> None:
    """The hook: report.html from the in-memory state, not from the checkpoints (a single run's last one
    may still be committing; a sweep's members restored from their exports took 0.3 s each): a sweep's
    members are the slices the export hook made (`Run.member_runs`)).
    Without plotly: one warning."""
    from mnist_ae import build  # noqa: PLC0415
    from mnist_ae.api import TrainedRun  # noqa: PLC0415

    try:
        require_plotly()
        if run.program.stacked:
            text = sweep_html(run.workdir, {
                m.name: TrainedRun(RunDir(run.workdir).member(m.name).root, single, int(s.epoch), s, build.learner(single))
                for m, (single, s) in zip(build.members(run.config), run.member_runs(state))})
        else:
            trained = TrainedRun(run.workdir, run.config, int(state.epoch), state, run.program.learner)
            text = run_html(run_data(trained))
        write_text_atomic(RunDir(run.workdir).report, text)
    except ReportError as e:
        run.reporter.warn(f"no report.html: {e}")
