"""Files a user opens (report.html, compare.html, figures): written to a temporary file beside the
target and renamed over it, so a kill at any moment leaves the old file or the new one, never a torn
or empty one (a rename within a folder is atomic on POSIX)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


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
