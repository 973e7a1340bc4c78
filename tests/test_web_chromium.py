"""The web page in headless Chromium: upload a photo, see regions and KaTeX, correct one, find it stored."""

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from susik.serve import Settings, create_app
from susik.serve.app import find_katex
from susik.serve.fakes import FAKE_LATEX, fake_pipelines, sample_photo

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
SCREENSHOT = Path("/tmp/susik-web.png")

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and CHROMEDRIVER), reason="needs Debian chromium + chromium-driver"
)


@pytest.fixture
def server(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    if find_katex(settings) is None:
        pytest.skip("KaTeX not installed: run scripts/setup.sh (npm ci)")
    app = create_app(settings, pipeline_factory=lambda _: fake_pipelines())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def test_upload_see_regions_and_katex_then_correct_a_formula(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app, url = server
    photo = tmp_path / "page.jpg"
    photo.write_bytes(sample_photo(2600, 1950))  # a phone-sized photo: shrunk in the browser
    wait = WebDriverWait(browser, 10)
    browser.get(url)
    browser.find_element(By.ID, "photo").send_keys(str(photo))

    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#formulas .formula .katex-html")) == 2)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#overlay polygon.region")) == 2
    assert browser.find_element(By.CSS_SELECTOR, "#overlay").get_dom_attribute("viewBox") == "0 0 2048 1536"
    tex = browser.find_elements(
        By.CSS_SELECTOR, ".formula .rendered annotation[encoding='application/x-tex']"
    )
    assert [node.get_attribute("textContent") for node in tex] == [FAKE_LATEX] * 2
    assert "2 formulas" in browser.find_element(By.ID, "status").text

    first = browser.find_elements(By.CSS_SELECTOR, ".formula")[0]
    source = first.find_element(By.CSS_SELECTOR, ".source")
    source.clear()
    source.send_keys(r"\sqrt{x}+1")
    preview = first.find_element(By.CSS_SELECTOR, ".rendered annotation")
    wait.until(
        lambda d: preview.get_attribute("textContent") == r"\sqrt{x}+1"
    )  # live preview, typeset by KaTeX
    assert first.find_elements(By.CSS_SELECTOR, ".rendered .sqrt")
    first.find_element(By.CSS_SELECTOR, ".comment").send_keys("the root was missing")
    first.find_element(By.CSS_SELECTOR, "button.correct").click()
    wait.until(lambda d: "saved" in first.find_element(By.CSS_SELECTOR, ".note").text)
    browser.save_screenshot(str(SCREENSHOT))

    store = app.state.serve.store
    (request_id,) = {fact.request_id for fact in store.feedback_facts()}
    (row,) = store.feedback_for(request_id)
    assert (row.region, row.latex, row.corrected, row.comment) == (
        0,
        r"\sqrt{x}+1",
        True,
        "the root was missing",
    )
    assert row.display_ms is not None and 0 < row.display_ms < 10_000
