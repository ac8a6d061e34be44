"""The page tasks: report.html for one run (its lock held, so no run writes it meanwhile) and
compare.html for several (it only reads them). Their modules load JAX: imported once the command is
known to be one of these, and compare checks its paths before it computes anything."""

from __future__ import annotations

from pathlib import Path

from mnist_ae.tasks import entered


def report(workdir: Path) -> Path:
    from mnist_ae.report import task as report_page  # noqa: PLC0415

    workdir = workdir.expanduser().resolve()
    report_page.saved_task(workdir)  # before the lock: a folder with no run is named, not created
    with entered(workdir):
        return report_page.report(workdir)


def compare(workdirs: str, out: Path) -> Path:
    from mnist_ae.report import compare as compare_page  # noqa: PLC0415

    paths = compare_page.expand(workdirs)  # a path that names nothing is refused before `entered` loads JAX
    with entered(None):
        return compare_page.write_compare(paths, out)
