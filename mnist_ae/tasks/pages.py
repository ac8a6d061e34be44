"""The page tasks: report.html for one run (its lock held, so no run writes it meanwhile) and
compare.html for several (it only reads them)."""

from __future__ import annotations

from pathlib import Path

from mnist_ae.report import compare as compare_page
from mnist_ae.report import task as report_page
from mnist_ae.tasks import entered


def report(workdir: Path) -> Path:
    workdir = workdir.expanduser().resolve()
    report_page.saved_task(workdir)  # before the lock: a folder with no run is named, not created
    with entered(workdir):
        return report_page.report(workdir)


def compare(workdirs: str, out: Path) -> Path:
    with entered(None):
        return compare_page.compare(workdirs, out)
