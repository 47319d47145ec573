"""The report in a real browser (Debian's chromium, driven by selenium through chromium-driver): opened from
disk, every image loads, nothing is logged to the console, and a screenshot is kept as a test artifact
(``$MTBENCH_ARTIFACTS``, default the test's tmp dir). A missing figure must be caught.

Skipped only where chromium is not installed and not in CI; in CI (``CI`` set) a missing chromium fails."""
import os
import shutil
from pathlib import Path

import pytest

from mtbench.report.build import build_report
from tests.fake_runs import write_results, write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the browser test: apt-get install chromium chromium-driver (see .ci/run)")
    pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

CHECK_IMAGES = """return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
                       .map(i => i.getAttribute('src'));"""


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver, page: Path) -> tuple[list[str], list[str]]:
    """Load ``page`` from disk; the images that did not load and the console's errors."""
    driver.get(page.resolve().as_uri())
    broken = driver.execute_script(CHECK_IMAGES)
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return broken, errors


def test_report_in_chromium(tmp_path, browser):
    write_results(tmp_path, methods=("baseline",), seeds=(0, 1), ref_seeds=(0, 1), history_every=5)
    write_run(tmp_path, "mqt", ("semseg", "depth"), 0, status="failed")
    page = build_report(tmp_path, workers=1)
    n_images = page.read_text().count("<img ")
    assert n_images >= 4  # Δm vs cost, per-seed metrics, training, one qualitative grid per task

    broken, errors = _open(browser, page)
    assert browser.execute_script("return document.images.length") == n_images
    assert broken == [] and errors == [], (broken, errors)
    assert "mtbench report" in browser.title
    # a full-page screenshot, kept as an artifact
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(max(height, 900), 16000))
    artifacts = Path(os.environ.get("MTBENCH_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "report_screenshot.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    browser.set_window_size(1280, 900)

    # the same check fails when a figure is missing
    victim = sorted((page.parent / "fig").glob("*.png"))[0]
    victim.unlink()
    broken, errors = _open(browser, page)
    assert broken == [f"fig/{victim.name}"]
    assert any(victim.name in e for e in errors), errors
