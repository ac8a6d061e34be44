"""TensorBoard as a new user sees it, in a real browser (Debian's Chromium driven by Playwright, every
request outside the local server blocked), on the logdir of the default experiment shortened to one
epoch: the Scalars tab opens on the test and train curves, the Images tab shows the labelled
reconstruction grid, and the Projector opens on the codes (points drawn, a variance, no "NaN").

MNIST_AE_DOCS_SCREENSHOTS=1 also writes the screenshots to docs/ (docs/monitoring.md shows them); otherwise
they go to the test's tmp folder only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import open_browser
from helpers import REPO, free_port, run_once

pytestmark = pytest.mark.slow
TENSORBOARD = Path(sys.executable).parent / "tensorboard"  # what `pip install -e .` put beside python


def _default_run(out: Path) -> dict:
    """experiments/reconstruction.py (the README's first command) with epochs=1, on the first 2,000 test
    digits (the projector's own count), without the end-of-run analysis and report: the same TensorBoard
    tabs (the analysis adds its figures and tables there; tests/test_analyze.py checks what it logs),
    and about 25 s less."""
    import importlib.util

    from mnist_ae import tasks

    spec = importlib.util.spec_from_file_location("reconstruction", REPO / "experiments" / "reconstruction.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.epochs, config.test_limit = 1, config.projector_points
    config.analyze_at_end = config.report_at_end = False
    final = tasks.run(config, out / "run", log_framework="tensorboard", quiet=True)
    return {"test/recon_mse": final["test/recon_mse"]}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real TensorBoard server on the run's logdir: (base URL, run dir, final metrics)."""
    out, final = run_once(tmp_path_factory, "default_one_epoch", _default_run)
    port = free_port()
    log = (out / f"tensorboard-{port}.log").open("w")
    process = subprocess.Popen([str(TENSORBOARD), "--logdir", str(out / "run" / "tb"), "--port", str(port),
                                "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/data/plugins_listing", timeout=5).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"tensorboard did not start: {(out / f'tensorboard-{port}.log').read_text()[-500:]}")
                time.sleep(0.3)
        yield base, out / "run", final
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _shot(page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / name))
    if os.environ.get("MNIST_AE_DOCS_SCREENSHOTS"):
        shutil.copy(tmp_path / name, REPO / "docs" / name)


def test_the_first_readme_install_leaves_a_tensorboard_that_starts(server):
    """`pip install -e .` (no extras) brings the server the run's summary tells you to start: here it
    answers on its port with TensorBoard's page."""
    base, _, _ = server
    version = subprocess.run([str(TENSORBOARD), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and re.match(r"\d+\.\d+", version.stdout.strip())
    page = urllib.request.urlopen(f"{base}/", timeout=10).read().decode()
    assert "<tf-tensorboard" in page or "TensorBoard" in page


def test_scalars_open_on_the_test_and_train_curves(server, tmp_path):
    base, _, _ = server
    with open_browser(allow=(f"{base}/", "data:", "blob:")) as browser:
        page = browser.new_page()
        page.goto(f"{base}/#scalars")
        cards = page.locator("tf-scalar-card")
        cards.first.wait_for(timeout=30000)
        first = [cards.nth(i).evaluate("card => card.tag") for i in range(4)]
        page.wait_for_timeout(1500)  # the charts draw
        _shot(page, "tensorboard_scalars.png", tmp_path)
        assert browser.requests == [] and browser.errors == []
    assert all(tag.startswith(("test/", "train/")) for tag in first), first


def test_time_series_the_landing_page_opens_on_the_test_and_train_curves(server, tmp_path):
    """TensorBoard opens on Time Series, whose "All" view orders card groups alphabetically and mixes
    in images and histograms: the groups before the curves must be none (pictures are `views/*`, code
    histograms `z/*`)."""
    base, _, _ = server
    with open_browser(allow=(f"{base}/", "data:", "blob:")) as browser:
        page = browser.new_page()
        page.goto(f"{base}/")
        page.get_by_text(re.compile(r"^\s*\d+ cards?\s*$")).first.wait_for(timeout=30000)
        page.locator("line-chart canvas, line-chart svg").first.wait_for(timeout=30000)
        page.wait_for_timeout(4000)  # the charts draw (software WebGL in a worker)
        groups = page.evaluate("""[...document.querySelectorAll('*')]
            .filter(e => e.children.length === 0 && /^\\d+ cards?$/.test(e.textContent.trim()))
            .map(e => e.parentElement.textContent.replace(/\\d+ cards?/, '').trim())""")
        _shot(page, "tensorboard_timeseries.png", tmp_path)
        landing = page.url
        assert browser.requests == [] and browser.errors == []
    assert landing.endswith("#timeseries") and groups[:2] == ["test", "train"], (landing, groups)
    assert {"views", "z", "weights"} <= set(groups[2:]), groups


def test_the_images_tab_shows_the_labelled_reconstruction_grid(server, tmp_path):
    """The grid as served is the enlarged, labelled one (3x digits, a title band), not 298 x 58 px."""
    base, run, _ = server
    with open_browser(allow=(f"{base}/", "data:", "blob:")) as browser:
        page = browser.new_page()
        page.goto(f"{base}/#images&tagFilter=reconstructions")
        image = page.locator("tf-image-loader img").first
        image.wait_for(timeout=30000)
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        page.get_by_text("Show actual image size").click()  # the card shrinks it; at 100% the labels read
        page.wait_for_timeout(1000)
        _shot(page, "tensorboard_images.png", tmp_path)
        assert browser.requests == [] and browser.errors == []
    first, *_, png = sorted((run / "reconstructions").glob("step_*.png"))
    assert natural == list(Image.open(png).size) and natural[1] == 36 + 3 * (2 * 28 + 2) + 8
    if os.environ.get("MNIST_AE_DOCS_SCREENSHOTS"):  # docs/monitoring.md's before/after grids, from this run
        shutil.copy(first, REPO / "docs" / "reconstructions_step0.png")
        shutil.copy(png, REPO / "docs" / "reconstructions_final.png")


def test_the_projector_opens_on_the_codes_with_points_and_no_nan(server, tmp_path):
    base, _, _ = server
    with open_browser(allow=(f"{base}/", "data:", "blob:")) as browser:
        page = browser.new_page()
        page.goto(f"{base}/#projector")
        frame = page.frame_locator("iframe").frame_locator("iframe")  # plugin entry, then the projector
        variance = frame.get_by_text(re.compile("Total variance described")).first
        variance.wait_for(timeout=60000)
        page.wait_for_timeout(3000)  # the sprites load and the points are drawn
        text = variance.inner_text()
        shape = [frame.get_by_text(re.compile(rf"{what}: \d+")).first.inner_text() for what in ("Points", "Dimension")]
        box = frame.locator("canvas").first.bounding_box()
        _shot(page, "tensorboard_projector.png", tmp_path)
        pixels = np.asarray(Image.open(tmp_path / "tensorboard_projector.png").convert("L"))
        assert browser.requests == []
    assert "NaN" not in text and re.search(r"\d+(\.\d+)?%", text), text
    assert shape == ["Points: 2000", "Dimension: 64"], shape  # the codes: projector_points x latent_dim
    canvas = pixels[int(box["y"]) : int(box["y"] + box["height"]), int(box["x"]) : int(box["x"] + box["width"])]
    assert (canvas < 64).mean() > 0.01, "the projector's canvas shows no points"  # dark digit thumbnails on white


def test_the_graphs_tab_opens_on_the_encoder_decoder_and_probe(server, tmp_path):
    """The training round (`writers.graph`): the networks and each phase's update as collapsed boxes."""
    base, _, _ = server
    with open_browser(allow=(f"{base}/", "data:", "blob:")) as browser:
        page = browser.new_page()
        page.goto(f"{base}/#graphs")
        page.locator("svg g.node").first.wait_for(timeout=60000)
        page.wait_for_timeout(2000)  # the layout settles and the view fits
        labels = page.locator("svg g.node text").evaluate_all(  # the label's own text, not its <title> tooltip
            "ts => ts.map(t => [...t.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim())")
        _shot(page, "tensorboard_graph.png", tmp_path)
        assert browser.requests == [] and browser.errors == []
    assert {"encoder", "decoder", "probe", "ae_step", "probe_step"} <= set(labels), labels
