"""report.html of every discovered command's smoke run, opened in headless Chromium (Debian's ``chromium``,
driven by playwright through ``executable_path``; nothing is downloaded).

For each page: no console error, every expected section present and none failed to render, the page under its
size cap, the 3D canvases drew non-blank pixels, and a toggle or slider changes what is shown. Screenshots go to
``$GEOCERT_TEST_ARTIFACTS/report-screens/`` (or pytest's temporary folder; the path is printed).
Skipped, with the reason, when playwright or a chromium binary is missing.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from geocert.plugins import discover
from geocert.report import MAX_PAGE_BYTES, write_report

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    PLUGINS = discover()

RUNS = [(p.name, cmd, args) for p in PLUGINS.values() for cmd, args in p.smoke.items()]

# sections each in-repo command's page must show (besides the core's "Run" and "Metrics")
EXPECTED = {
    "certify-pc": ["Certified clouds (3D)", "Certified accuracy", "Per shape"],
    "train-pc": ["Training", "Test accuracy"],
    "certify-seg": ["Certified segmentation", "Dice / IoU per class", "Certified accuracy", "Per image"],
    "train-seg": ["Training", "Test scores"],
    "train-denoiser": ["Training"],
    "sdf": ["SDF slices", "Zero-level mesh (3D)", "Error against the exact signed distance"],
    "render": ["Test views: rendered vs ground truth", "PSNR / SSIM / surface", "Orbit", "SDF slice and depth"],
    "train-nerf": ["Training", "Test views: PSNR / SSIM"],
    "segment2d": ["Image, scribbles and mask", "Connectivity"],
}
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                 "--no-sandbox"]


def _chromium() -> str | None:
    for cand in (os.environ.get("GEOCERT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("report browser tests need playwright (pip install -e '.[dev]'); not installed")
    exe = _chromium()
    if exe is None:
        pytest.skip("report browser tests need a chromium binary (Debian: apt-get install chromium; "
                    "or set GEOCERT_CHROMIUM); none found")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def screens(tmp_path_factory) -> Path:
    root = os.environ.get("GEOCERT_TEST_ARTIFACTS")
    path = Path(root) / "report-screens" if root else tmp_path_factory.mktemp("report-screens")
    path.mkdir(parents=True, exist_ok=True)
    print(f"report screenshots in {path}")
    return path


def _pixels_std(png: bytes) -> float:
    import imageio.v3 as iio

    return float(np.asarray(iio.imread(png))[..., :3].astype(np.float64).std())


def _open(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector("body[data-gc-ready='1']", timeout=60_000)
    return page, errors


def _check_canvases(page) -> int:
    """Every drawn WebGL plot (scatter3d / mesh3d) shows non-blank pixels. Returns how many were checked."""
    boxes = page.locator(".gc-plot .gl-container canvas")
    checked = 0
    for i in range(boxes.count()):
        box = boxes.nth(i)
        if not box.is_visible():
            continue
        box.scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        std = _pixels_std(box.screenshot())
        assert std > 3.0, f"3D canvas {i} looks blank (pixel std {std:.2f})"
        checked += 1
    return checked


def _slider_changes(page, slider) -> None:
    label = slider.locator(".gc-slider-label")
    before_label, before = label.inner_text(), slider.screenshot()
    slider.locator("input[type=range]").evaluate(
        "(el) => { el.value = el.value === el.max ? el.min : el.max;"
        " el.dispatchEvent(new Event('input', {bubbles: true})); }")
    page.wait_for_timeout(300)
    assert label.inner_text() != before_label, "the slider did not change the frame label"
    assert slider.screenshot() != before, "the slider did not change what is shown"


def _interact(page, command: str) -> None:
    """A toggle, slider or table sort changes what is shown."""
    views = page.locator(".gc-plot-box:has(button.gc-view-btn)")
    if views.count():  # certify-pc: certified -> clean colouring of the 3D cloud
        box = views.first
        plot = box.locator(".gc-plot")
        before = plot.screenshot()
        box.locator("button.gc-view-btn").last.click()
        page.wait_for_timeout(600)
        assert box.locator("button.gc-view-btn").last.get_attribute("aria-pressed") == "true"
        assert plot.screenshot() != before, "the view toggle did not change the 3D view"
        return
    sliders = page.locator(".gc-slider")
    for i in range(sliders.count()):
        if int(sliders.nth(i).locator("input[type=range]").get_attribute("max")) > 0:
            _slider_changes(page, sliders.nth(i))
            return
    rails = page.locator(".gc-plot .slider-rail-rect")
    if rails.count():  # sdf: plotly's slider over z
        plot = page.locator(".gc-plot:has(.slider-rail-rect)").first
        before = plot.screenshot()
        bb = rails.first.bounding_box()
        page.mouse.click(bb["x"] + bb["width"] * 0.1, bb["y"] + bb["height"] / 2)
        page.wait_for_timeout(500)
        assert plot.screenshot() != before, "the plotly slider did not change the slice shown"
        return
    # any page: the config toggle opens and shows the parameters
    details = page.locator("details:has(summary:has-text('config (the command'))").first
    assert not details.locator("pre").is_visible()
    details.locator("summary").click()
    assert details.locator("pre").is_visible(), "the config toggle did not show the parameters"


@pytest.mark.parametrize("plugin,command,args", RUNS, ids=[f"{p}:{c}" for p, c, _ in RUNS])
def test_report_in_browser(plugin, command, args, browser, screens, smoke_run):
    r, out, _ = smoke_run(command, args)  # the session's smoke run (tests/conftest.py), shared with the registry
    assert r.returncode == 0, f"{command} failed:\n{r.stderr[-3000:]}"
    report = write_report(out)
    assert report == out / "report.html" and report.is_file()
    size = report.stat().st_size
    assert size <= MAX_PAGE_BYTES, f"{command}: report is {size / 1e6:.1f} MB"
    html = report.read_text(encoding="utf-8")
    assert "could not render" not in html, f"{command}: a section failed"
    assert 'src="http' not in html and "src='http" not in html, "the page loads something from the network"

    page, errors = _open(browser, report)
    try:
        titles = page.locator("section.gc-section").evaluate_all("(els) => els.map(e => e.dataset.section)")
        for title in ["Run", "Metrics", *EXPECTED.get(command, [])]:
            assert title in titles, f"{command}: section {title!r} missing (have {titles})"
        assert page.locator(".gc-guarantee").count() or command.startswith("train"), "no guarantee sentence"
        n3d = _check_canvases(page)
        if command in ("certify-pc", "sdf"):
            assert n3d >= 1, f"{command}: no 3D view was drawn"
        page.screenshot(path=str(screens / f"{plugin}-{command}.png"), full_page=True)
        _interact(page, command)
        assert not errors, f"{command}: browser errors: {errors}"
    finally:
        page.close()
