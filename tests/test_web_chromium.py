"""The web page in headless Chromium: upload a photo, see regions and KaTeX, correct one, find it stored."""

from pathlib import Path

import pytest
from browser import headless_chromium, needs_chromium, serve_in_thread

from susik.serve import Settings, create_app
from susik.serve.app import find_katex
from susik.serve.fakes import FAKE_LATEX, fake_pipelines, sample_photo

SCREENSHOT = Path("/tmp/susik-web.png")

pytestmark = needs_chromium


@pytest.fixture
def server(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    if find_katex(settings) is None:
        pytest.skip("KaTeX not installed: run scripts/setup.sh (npm ci)")
    app = create_app(settings, pipeline_factory=lambda _: fake_pipelines())
    with serve_in_thread(app) as url:
        yield app, url


@pytest.fixture
def browser(tmp_path):
    with headless_chromium(tmp_path / "chromium", "1200,900") as driver:
        yield driver


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
    offer = browser.find_element(By.ID, "offer")  # two regions: it may be one formula
    assert offer.is_displayed() and "One formula alone in the photo?" in offer.text
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


def _read_a_page(tmp_path, browser, **fake) -> None:
    """Upload a photo to a server whose fake pipelines are made with `fake`; wait for both formulas' KaTeX."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings = Settings(data_dir=tmp_path / "data")
    if find_katex(settings) is None:
        pytest.skip("KaTeX not installed: run scripts/setup.sh (npm ci)")
    app = create_app(settings, pipeline_factory=lambda _: fake_pipelines(**fake))
    photo = tmp_path / "page.jpg"
    photo.write_bytes(sample_photo(800, 600))
    with serve_in_thread(app) as url:
        browser.get(url)
        browser.find_element(By.ID, "photo").send_keys(str(photo))
        WebDriverWait(browser, 10).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#formulas .formula .katex-html")) == 2)


def test_a_problem_number_read_with_a_formula_shows_beside_it(tmp_path, browser):
    from selenium.webdriver.common.by import By

    _read_a_page(tmp_path, browser, latex=r"(1)x^{2}=4")
    labels = browser.find_elements(By.CSS_SELECTOR, "#formulas .formula .problem-label")
    assert [(node.text, node.is_displayed()) for node in labels] == [("(1)", True)] * 2
    sources = browser.find_elements(By.CSS_SELECTOR, "#formulas .formula .source")
    assert [node.get_property("value") for node in sources] == ["x^{2}=4"] * 2


def test_an_unsure_reading_asks_to_be_checked(tmp_path, browser):
    from selenium.webdriver.common.by import By

    _read_a_page(tmp_path, browser, confidences=(0.93, 0.31))
    checks = browser.find_elements(By.CSS_SELECTOR, "#formulas .formula .check")
    assert [(node.is_displayed(), node.text) for node in checks] == [
        (False, ""), (True, "check this: 31% likely right")]
    outlines = browser.find_elements(By.CSS_SELECTOR, "#overlay polygon.region")
    assert ["unsure" in node.get_dom_attribute("class") for node in outlines] == [False, True]
    assert "2 formulas · 1 to check · " in browser.find_element(By.ID, "status").text


def test_a_photo_where_the_page_reading_finds_nothing_can_be_read_as_one_formula(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    settings = Settings(data_dir=tmp_path / "data")
    if find_katex(settings) is None:
        pytest.skip("KaTeX not installed: run scripts/setup.sh (npm ci)")
    app = create_app(settings, pipeline_factory=lambda _: fake_pipelines(page_finds_nothing=True))
    photo = tmp_path / "one.jpg"
    photo.write_bytes(sample_photo(800, 300))
    wait = WebDriverWait(browser, 10)
    with serve_in_thread(app) as url:
        browser.get(url)
        browser.find_element(By.ID, "photo").send_keys(str(photo))
        wait.until(lambda d: d.find_element(By.ID, "offer").is_displayed())
        assert "0 formulas" in browser.find_element(By.ID, "status").text
        assert "No formula found" in browser.find_element(By.ID, "offer").text
        assert not browser.find_elements(By.CSS_SELECTOR, "#formulas .formula")
        browser.find_element(By.ID, "as-one-formula").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#formulas .formula .katex-html")) == 1)
        assert browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=crop]").is_selected()
        assert "1 formula · " in browser.find_element(By.ID, "status").text
        assert not browser.find_element(By.ID, "offer").is_displayed()  # read as one formula: nothing to offer
