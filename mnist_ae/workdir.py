"""The run directory's files as programs read and write them.

Files a user opens (report.html, compare.html, figures) are written to a temporary file beside the
target and renamed over it, so a kill at any moment leaves the old file or the new one, never a torn
or empty one (a rename within a folder is atomic on POSIX). metrics.jsonl has one reader.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """`write(tmp)` fills a temporary file beside `path` (its folder made if needed), which then
    replaces `path`; on any error the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def parse_record(line: str) -> dict[str, Any] | None:
    """One metrics.jsonl line as a record, or None for a line that is not one: not JSON (a torn last line
    after a kill), not an object (`42`), or with a step that is not a number (garbage written by hand)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    step = record.get("step", 0)
    return record if isinstance(step, (int, float)) and not isinstance(step, bool) else None


def read_records(path: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's records in order, skipping what `parse_record` refuses, so a bad line can break
    neither a resume nor a report."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [record for record in map(parse_record, lines) if record is not None]
