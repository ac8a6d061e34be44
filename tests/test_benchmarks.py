"""benchmarks/gpu_suite.py end to end on tiny settings: every row there, its numbers positive and consistent.

The script runs as a user runs it, in a subprocess, under the suite's quick-compile XLA flags
(conftest.py): about a dozen programs compile in a third of the time, and the test checks the rows'
consistency, not their speed.
"""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest

from helpers import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from gpu_suite import TINY  # noqa: E402


def _tables(text: str) -> list[list[dict[str, str]]]:
    """The markdown tables printed, each as rows keyed by its header."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):
            header = [c.strip() for c in lines[i - 1].strip("|").split("|")]
            body = itertools.takewhile(lambda row: row.startswith("| "), lines[i + 1:])
            tables.append([dict(zip(header, (c.strip() for c in row.strip("|").split("|")))) for row in body])
    return tables


@pytest.mark.slow
def test_gpu_suite_tiny_prints_every_row_with_consistent_numbers():
    run = subprocess.run([sys.executable, "benchmarks/gpu_suite.py", "--tiny", "--markdown"], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    out = out[out.index("device: "):]  # after the job's own summary lines, if any came first
    assert out.splitlines()[0].startswith("device: ")
    train, analysis, layouts = _tables(out)
    per_member = TINY["train_limit"] // 256 * 256  # whole batches of 256 per epoch
    expected = [("default job", 1), ("MLP epoch", 1), ("conv epoch", 1), ("one run epoch", 1),
                ("5-member sweep", 5), ("50-member sweep", 50)]
    assert [(name, int(r["members"])) for r, (name, _) in zip(train, expected) if r["what"].startswith(name)] \
        == expected
    for r, (_, members) in zip(train, expected):
        seconds, samples, rate = float(r["s"]), int(r["samples"]), float(r["samples/s"])
        assert seconds > 0 and rate > 0
        assert samples == members * per_member  # one epoch each (the job: --tiny's 1 epoch)
        # both printed rounded: the rate to a whole number (0.5 off at most) and the seconds to 4 significant
        # digits (5e-4 relative at most, which the rate recomputed from them carries): the sum of the two
        # bounds, not the larger (a 53.0 printed against 53.5005 recomputed failed with pytest.approx's max)
        assert abs(rate - samples / seconds) <= 0.5 + 5e-4 * samples / seconds
    one_s = float(train[3]["s"])
    assert float(train[3]["x one run"]) == 1.0
    for r in train[4:]:
        assert float(r["x one run"]) == pytest.approx(float(r["s"]) / one_s, rel=2e-2, abs=6e-3)
    for r in train[1:]:
        assert float(r["compile s"]) > 0
    assert float(train[1]["GFLOP/s"]) > 0 and float(train[2]["GFLOP/s"]) > 0

    stages = {r["analysis stage"]: float(r["s"]) for r in analysis}
    assert {"pca", "tsne_2d", "tsne_3d", "quality_codes", "figures_tables", "total"} <= set(stages)
    assert all(s > 0 for s in stages.values())
    assert stages["total"] >= max(s for k, s in stages.items() if k != "total")
    job_s = float(train[0]["s"])
    assert stages["total"] < job_s  # the analysis is part of the job it was timed in
    for r in analysis:
        assert float(r["share of the job"]) == pytest.approx(float(r["s"]) / job_s, abs=6e-3)
    # the 16-member sweep by member layout: on this process's one device, the one layout, no collective
    assert [(r["layout"], r["collectives per round"]) for r in layouts] == [("1 device", "0")]
    rate, epoch_s = float(layouts[0]["samples/s (all members)"].replace(",", "")), float(layouts[0]["epoch s"])
    assert rate == pytest.approx(16 * per_member / epoch_s, rel=2e-2) and float(layouts[0]["eval s"]) > 0
