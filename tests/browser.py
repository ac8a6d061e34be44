"""A real browser for tests: Debian's Chromium driven by Playwright, network blocked and recorded,
console errors collected. Shared by every browser test (`from browser import open_browser`).

Install: `apt-get install chromium` and `pip install -e '.[dev]'` (Playwright's own browser download
is not used). Without them the test is skipped, which CI=1 turns into a failure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Software WebGL (3-D plots, scattergl) on machines without a GPU; headless Chromium refuses it otherwise.
ARGS = ("--enable-unsafe-swiftshader", "--use-angle=swiftshader", "--no-sandbox")


@dataclasses.dataclass
class Browser:
    """The open browser and what it saw: console errors, uncaught exceptions, blocked requests."""

    browser: Any
    context: Any
    errors: list[str] = dataclasses.field(default_factory=list)
    requests: list[str] = dataclasses.field(default_factory=list)  # every request outside `allow` (blocked)

    def new_page(self) -> Any:
        page = self.context.new_page()
        page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        return page


@contextlib.contextmanager
def open_browser(viewport: tuple[int, int] = (1280, 900),
                 allow: tuple[str, ...] = ("file:", "data:", "blob:")) -> Iterator[Browser]:
    """Chromium where every request whose URL does not start with one of `allow` is aborted and recorded
    (a local server's tests add e.g. "http://127.0.0.1:PORT/")."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' (Playwright)")
    if not shutil.which(CHROMIUM):
        pytest.skip("no Chromium: apt-get install chromium")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=list(ARGS))
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        state = Browser(browser, context)

        def block(route: Any) -> None:
            state.requests.append(route.request.url)
            route.abort()

        context.route(lambda url: not url.startswith(allow), block)
        try:
            yield state
        finally:
            browser.close()
