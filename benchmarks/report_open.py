"""Seconds until a report page is ready (its first screen drawn: `body[data-ready]`) on first opening, in
a fresh headless Chromium each time (Debian's, as the browser tests drive it; network blocked).

    python benchmarks/report_open.py runs/reconstruction/report.html [--times 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import open_browser  # noqa: E402

from timing import machine  # noqa: E402


def open_seconds(page_path: Path) -> tuple[float, list[str]]:
    """Seconds to ready in a new browser, and anything it requested or logged as an error."""
    with open_browser() as browser:
        page = browser.new_page()
        start = time.perf_counter()
        page.goto(page_path.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        return time.perf_counter() - start, browser.errors + browser.requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--times", type=int, default=5)
    args = parser.parse_args()
    print(machine())
    print(f"{args.page} ({args.page.stat().st_size / 1e6:.2f} MB)")
    for i in range(args.times):
        seconds, problems = open_seconds(args.page)
        print(f"open {i + 1}: ready in {seconds:.2f} s" + (f"  problems: {problems}" if problems else ""), flush=True)


if __name__ == "__main__":
    main()
