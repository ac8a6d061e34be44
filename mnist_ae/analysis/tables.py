"""The analysis tables as markdown (for RUN/analysis/*.md and TensorBoard / W&B text) and CSV."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """GitHub markdown table; floats to 4 decimals, None as an em dash."""

    def cell(value: Any) -> str:
        if value is None:
            return "—"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def quality_table(codes: Mapping[str, float], raw_pixels: Mapping[str, float]) -> str:
    """metric | codes | raw pixels, over the union of metric names (missing ones as a dash).

    The raw-pixel column is left out when there is no baseline, rather than shown all dashes.
    """
    names = list(codes) + [name for name in raw_pixels if name not in codes]
    header = ["metric", "codes"] + (["raw pixels"] if raw_pixels else [])
    rows = [
        [name, codes.get(name)] + ([raw_pixels.get(name)] if raw_pixels else []) for name in names
    ]
    return markdown_table(header, rows)


def confused_pairs_table(pairs: Sequence[tuple[str, str, int]] | None) -> str:
    """`quality.confused_pairs` as markdown; None (no probe confusion matrix) says so instead."""
    if pairs is None:
        return "No probe confusion matrix was given.\n"
    return markdown_table(["class", "class", "confusions (both ways)"], pairs)


def write_stats(stats: Sequence[Mapping[str, Any]], outdir: Path) -> str:
    """stats.csv and stats.md from `quality.dimension_stats`; returns the markdown."""
    header = list(stats[0])
    with open(outdir / "stats.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(stats)
    table = markdown_table(header, [list(row.values()) for row in stats])
    (outdir / "stats.md").write_text(table)
    return table
