"""report.html and compare.html in a real Chromium with the network blocked: no console errors, every
image decoded, the maps hold every point, the step slider moves the grid and the latent map.

Screenshots: `REPORT_SCREENSHOTS=docs pytest tests/test_report_browser.py` writes docs/report.png and
docs/compare.png (docs/analysis-and-report.md's); otherwise they go to the test's tmp folder.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from browser import open_browser
from test_report import other_run, run_dir  # noqa: F401  (the shared runs, as fixtures)

pytestmark = pytest.mark.slow
READY_S = 60  # generous: a loaded 2-core CI machine; docs/analysis-and-report.md's load time is measured, not asserted


def _open(browser, path: Path):
    page = browser.new_page()
    start = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=READY_S * 1000)
    seconds = time.perf_counter() - start
    page.evaluate("drawAll()")  # the figures below the fold too (drawn lazily, when scrolled to)
    return page, seconds


def _images_decoded(page) -> list[str]:
    """The src (head) of every <img> whose natural width is 0 (not decoded)."""
    return page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                         ".map(i => i.alt || i.src.slice(0, 40))")


def _shot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("REPORT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=False)
    assert (folder / name).stat().st_size > 10_000


def _hover_shows_the_digit(page) -> None:
    """The mouse on one point of the PCA map (the rightmost, so no other point is as close): the thumbnail
    box shows that point's cell of the sprite."""
    page.evaluate("document.querySelector('.map').scrollIntoView()")
    x, y, row, cols = page.evaluate("""() => {
        const gd = document.querySelector('.map'), l = gd._fullLayout, r = gd.getBoundingClientRect();
        let t = gd._fullData[0], i = 0;
        for (const u of gd._fullData) for (let k = 0; k < u.x.length; k++) if (u.x[k] > t.x[i]) { t = u; i = k; }
        const x = l.xaxis.l2p(t.x[i]) + l._size.l + r.left, y = l.yaxis.l2p(t.y[i]) + l._size.t + r.top;
        return [x, y, t.customdata[i][0], +gd.dataset.cols]; }""")
    page.mouse.move(x + 40, y + 40)
    page.mouse.move(x, y)
    page.wait_for_function("document.getElementById('hover-thumb').style.display === 'block'", timeout=10_000)
    shown = page.evaluate("document.getElementById('hover-thumb').style.backgroundPosition")
    assert shown == f"{-(row % cols) * 84}px {-(row // cols) * 84}px"


def test_report_in_chromium(run_dir, tmp_path):  # noqa: F811
    with open_browser() as browser:
        page, seconds = _open(browser, run_dir / "report.html")
        print(f"report.html ready in {seconds:.2f} s")
        assert browser.errors == [] and browser.requests == []
        assert _images_decoded(page) == []
        counts = page.evaluate("""[...document.querySelectorAll('.map')].map(d => [d.layout.title.text,
                                  d._fullData.reduce((n, t) => n + t.x.length, 0)])""")  # x as plotted
        assert ["PCA of 512 test codes", 512] in counts and ["t-SNE of 512 test codes", 512] in counts
        three_d = page.evaluate("""(() => { const d = document.querySelector('.map3d');  // drawn by the 3-D bundle
                                   return [d._fullData[0].type, d._fullData.reduce((n, t) => n + t.x.length, 0)]; })()""")
        assert three_d == ["scatter3d", 512]
        # every 2-D figure drawn in plotly_white, which the page sets once (the figures' JSON carries plotly's empty
        # template): its "white" plot area, where the empty template gives "#fff" and plotly's default "#E5ECF6"
        looks = page.evaluate("[...document.querySelectorAll('.plot:not([data-lib=\"3d\"])')].map(d => d._fullLayout.plot_bgcolor)")
        assert looks and set(looks) == {"white"}
        before = page.evaluate("""() => [document.querySelector('img.recon').src,
                                         JSON.stringify(document.querySelector('.forming')._fullData.map(t => Array.from(t.x)))]""")
        _hover_shows_the_digit(page)
        page.evaluate("[...document.querySelectorAll('h3')].find(h => h.textContent === 'Over training').scrollIntoView()")
        _shot(page, "report.png", tmp_path)  # the step slider, the grids and the latent space forming
        page.locator(".slider input").first.fill("0")  # step 0: the untrained model
        after = page.evaluate("""() => [document.querySelector('img.recon').src,
                                        JSON.stringify(document.querySelector('.forming')._fullData.map(t => Array.from(t.x)))]""")
        assert after[0] != before[0] and after[1] != before[1]
        assert page.locator(".slider .step").first.text_content() == "step 0"
        assert browser.errors == [] and browser.requests == []


def test_compare_in_chromium(run_dir, other_run, tmp_path):  # noqa: F811
    from mnist_ae.report.compare import compare

    out = compare(f"{run_dir},{other_run}", tmp_path / "compare.html")
    with open_browser() as browser:
        page, seconds = _open(browser, out)
        print(f"compare.html ready in {seconds:.2f} s")
        assert browser.errors == [] and browser.requests == [] and _images_decoded(page) == []
        traces = page.evaluate("document.querySelector('.plot').data.map(t => t.name)")
        assert set(traces) == {"run", "run_b"}
        _shot(page, "compare.png", tmp_path)
        column = page.evaluate("[...document.querySelectorAll('table.sortable th')].findIndex(t => "
                               "t.textContent === 'test/recon_mse')")
        header = page.locator("table.sortable th").nth(column)
        orders = []
        for _ in range(2):  # ascending, then descending
            header.click()
            orders.append(page.evaluate("[...document.querySelectorAll('table.sortable tbody tr')]"
                                        ".map(r => r.children[0].textContent)"))
        assert orders[0] == orders[1][::-1]
        assert browser.errors == []
