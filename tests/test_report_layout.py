"""The report's layout in Chromium: a page of many WebGL maps (a sweep's report) keeps every map drawn
through a full scroll without running out of WebGL contexts (a browser keeps about 16 and blanks the
oldest beyond that: the default sweep's report lost its first member's maps), and no figure is wider
than its column."""

from __future__ import annotations

import numpy as np
import pytest

from browser import open_browser
from mnist_ae.report import figures
from mnist_ae.report.page import Page

pytestmark = pytest.mark.slow
MAPS = 30  # the default sweep's report draws 36 figures, most of them WebGL maps


def test_thirty_webgl_maps_keep_every_figure_drawn_through_a_full_scroll(tmp_path):
    rng = np.random.default_rng(0)
    page = Page("many maps")
    names = [str(c) for c in range(10)]
    for i in range(MAPS):  # every fifth a rotatable 3-D map, as each member section of a sweep has one
        fig = (figures.scatter_3d(rng.normal(size=(200, 3)), rng.integers(0, 10, 200), None, names, f"map {i}")
               if i % 5 == 4 else figures.scatter_map(rng.normal(size=(200, 2)), rng.integers(0, 10, 200), None,
                                                      names, f"map {i}"))
        page.add(f"<h3>map {i}</h3>", page.figure(fig, css_class="plot map"))
    path = tmp_path / "maps.html"
    path.write_text(page.html())
    with open_browser() as browser:
        tab = browser.new_page()
        messages: list[str] = []
        tab.on("console", lambda m: messages.append(m.text))
        tab.goto(path.as_uri())
        tab.wait_for_selector("body[data-ready='1']", timeout=60_000)
        ids = tab.evaluate("[...document.querySelectorAll('.map')].map(d => d.id)")
        assert len(ids) == MAPS
        for order in (ids, ids[::-1]):  # down to the bottom, then back up to the top
            for div_id in order:
                tab.evaluate(f"document.getElementById('{div_id}').scrollIntoView()")
                tab.wait_for_function("id => { const d = document.getElementById(id);"
                                      "return Boolean(d._fullLayout && d.querySelector('canvas')); }",
                                      arg=div_id, timeout=30_000)
        live = tab.evaluate("[...document.querySelectorAll('.map')].filter(d => d._fullLayout).length")
        assert not [m for m in messages if "WebGL" in m], messages
        assert live <= tab.evaluate("GL_LIVE"), live  # the others gave their contexts back
        assert not browser.errors and not browser.requests


@pytest.mark.parametrize("width", [1280, 1920])
def test_the_codes_heatmaps_fit_their_columns_side_by_side(tmp_path, width):
    """A 64-unit correlation heatmap was 780 px wide in a 582-px column, under the confusion matrix beside it."""
    rng = np.random.default_rng(0)
    names = [str(c) for c in range(10)]
    units = [str(u) for u in range(64)]
    page = Page("heatmaps")
    page.add('<div class="grid"><div>' + page.figure(figures.heatmap(rng.uniform(-1, 1, (64, 64)), "corr", units, units))
             + "</div><div>" + page.figure(figures.heatmap(rng.integers(0, 99, (10, 10)), "confusion", names, names,
                                                           counts=True)) + "</div></div>")
    path = tmp_path / "heatmaps.html"
    path.write_text(page.html())
    with open_browser(viewport=(width, 1000)) as browser:
        tab = browser.new_page()
        tab.goto(path.as_uri())
        tab.wait_for_selector("body[data-ready='1']", timeout=60_000)
        tab.evaluate("drawAll()")
        sizes = tab.evaluate("""[...document.querySelectorAll('.plot')].map(d =>
            [d.querySelector('.main-svg').getBoundingClientRect().width, d.parentElement.clientWidth])""")
        assert len(sizes) == 2 and all(w <= room + 1 for w, room in sizes), sizes
        boxes = tab.evaluate("[...document.querySelectorAll('.grid > div')].map(d => { const r = "
                             "d.getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; })")
        (l1, r1, t1, b1), (l2, r2, t2, b2) = boxes
        assert not (l1 < r2 - 1 and l2 < r1 - 1 and t1 < b2 - 1 and t2 < b1 - 1)  # side by side or stacked
