"""The eval report: token diff, and the page in headless Chromium with KaTeX renderings side by side."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from eval_helpers import CROPS, FakeRecognizer, crop_manifest

from susik.eval.report import find_katex, token_diff
from susik.eval.run import EvalOptions, run_evaluation

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
SCREENSHOT = Path("/tmp/susik-eval-report.png")


@pytest.mark.parametrize(
    ("reference", "prediction", "expected"),
    [
        (["a", "^", "2"], ["a", "^", "3"], "a ^ <del>2</del> <ins>3</ins>"),
        (["x"], [], "<del>x</del>"),
        ([], ["<"], "<ins>&lt;</ins>"),
        ([], [], "<i>(both empty)</i>"),
    ],
)
def test_token_diff(reference, prediction, expected):
    assert token_diff(reference, prediction) == expected


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and CHROMEDRIVER), reason="needs chromium + chromium-driver")
def test_report_renders_truth_and_prediction_side_by_side(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    if find_katex() is None:
        pytest.skip("KaTeX not installed: run npm ci")
    manifest = crop_manifest(tmp_path / "data")
    run_evaluation("recognize", manifest, tmp_path / "out", predictor=FakeRecognizer([a for *_, a in CROPS]),
                   options=EvalOptions(resamples=100))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get((tmp_path / "out" / "report.html").as_uri())
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".gt .katex-html"))
        row = driver.find_element(By.ID, "s1")  # a^{2} read as a^{3}
        image = row.find_element(By.TAG_NAME, "img")
        truth = row.find_element(By.CSS_SELECTOR, ".gt .katex-html")
        guess = row.find_element(By.CSS_SELECTOR, ".pred .katex-html")
        assert "a" in truth.text and "2" in truth.text and "3" in guess.text
        assert driver.execute_script("return arguments[0].naturalWidth", image) > 0
        # side by side: one row, image left of the truth, left of the prediction
        assert image.location["x"] < truth.location["x"] < guess.location["x"]
        assert abs(truth.location["y"] - guess.location["y"]) < 40
        assert len(driver.find_elements(By.CSS_SELECTOR, ".katex-error")) == 0
        driver.execute_script("arguments[0].scrollIntoView()", row)
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
    assert SCREENSHOT.stat().st_size > 10_000
