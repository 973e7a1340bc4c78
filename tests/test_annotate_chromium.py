"""The labeling page in headless Chromium: draw a quad, type LaTeX, see KaTeX, save, reload, export, import."""

from pathlib import Path

import pytest
from browser import headless_chromium, needs_chromium, serve_in_thread
from test_annotate_api import make_dataset

from susik.annotate.app import create_app, find_katex
from susik.annotate.interop import export_labelstudio, import_labelstudio
from susik.annotate.store import SIDECAR, Dataset, read_events
from susik.data.manifest import read_manifest

SCREENSHOT = Path("/tmp/susik-annotate.png")
CORNERS = [(60.0, 40.0), (220.0, 44.0), (218.0, 90.0), (58.0, 86.0)]  # image pixels, clockwise from top-left
MOVED = (230.0, 100.0)  # where corner 3 is dragged to
LATEX = r"\sqrt{x}+\frac{1}{2}"

pytestmark = needs_chromium


@pytest.fixture
def server(tmp_path):
    if find_katex() is None:
        pytest.skip("KaTeX not installed: run scripts/setup.sh (npm ci)")
    dataset = Dataset(make_dataset(tmp_path / "ds"))
    with serve_in_thread(create_app(dataset)) as url:
        yield dataset, url


@pytest.fixture
def browser(tmp_path):
    with headless_chromium(tmp_path / "chromium", "1400,800") as driver:
        yield driver


def on_screen(driver, x: float, y: float) -> tuple[int, int]:
    """Where image pixel (x, y) is in the viewport, whatever the zoom and pan."""
    client_x, client_y = driver.execute_script(
        "const m = document.getElementById('canvas').getScreenCTM();"
        "return [m.a * arguments[0] + m.e, m.d * arguments[1] + m.f];",
        x,
        y,
    )
    return round(client_x), round(client_y)


def click_image_point(driver, x: float, y: float) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver)
    actions.w3c_actions.pointer_action.move_to_location(*on_screen(driver, x, y))
    actions.w3c_actions.pointer_action.click()
    actions.perform()


def drag_image_point(driver, start: tuple[float, float], end: tuple[float, float]) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    actions = ActionChains(driver)
    pointer = actions.w3c_actions.pointer_action
    pointer.move_to_location(*on_screen(driver, *start))
    pointer.pointer_down()
    pointer.move_to_location(*on_screen(driver, *end))
    pointer.pointer_up()
    actions.perform()


def test_draw_type_render_save_reload_export_import(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    dataset, url = server
    wait = WebDriverWait(browser, 10)
    browser.get(url)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#items li")) == 2)
    wait.until(lambda d: d.find_element(By.ID, "title").text == "page0.png")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#shapes polygon.quad")) == 1  # the existing label
    browser.find_element(By.ID, "annotator").send_keys("kim")
    browser.find_elements(By.CSS_SELECTOR, "#items li")[1].click()
    wait.until(lambda d: d.find_element(By.ID, "title").text == "page1.png")
    assert "new" in browser.find_element(By.ID, "item-status").text

    browser.find_element(By.ID, "draw").click()
    for x, y in CORNERS:
        click_image_point(browser, x, y)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#shapes polygon.quad")) == 1)
    latex_box = browser.find_element(By.CSS_SELECTOR, "#regions .latex")
    assert browser.switch_to.active_element == latex_box  # a new quad asks for its LaTeX at once
    latex_box.send_keys(LATEX)
    wait.until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "#regions .rendered annotation").get_attribute("textContent")
            == LATEX
        )
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#regions .rendered .sqrt")  # typeset by KaTeX, not echoed
    shapes = "#shapes polygon.quad"
    ActionChains(browser).send_keys(Keys.ESCAPE).send_keys("d").perform()  # leave the box; delete the region
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, shapes))
    ActionChains(browser).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()  # undo
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, shapes)) == 1)
    assert browser.find_element(By.CSS_SELECTOR, "#regions .latex").get_attribute("value") == LATEX
    canvas = browser.find_element(By.ID, "canvas")
    width_before = float(canvas.get_dom_attribute("viewBox").split()[2])
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -300).perform()  # zoom in
    wait.until(lambda d: float(canvas.get_dom_attribute("viewBox").split()[2]) < width_before)
    click_image_point(browser, 140.0, 65.0)  # select the region: its corner handles appear
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#handles circle")) == 4)
    drag_image_point(browser, CORNERS[2], MOVED)

    browser.refresh()  # the tab dies before a save: the edits come back from the draft
    wait.until(lambda d: d.find_element(By.ID, "title").text == "page0.png")
    browser.find_elements(By.CSS_SELECTOR, "#items li")[1].click()
    wait.until(lambda d: "unsaved edits restored" in d.find_element(By.ID, "item-status").text)
    assert browser.find_element(By.CSS_SELECTOR, "#regions .latex").get_attribute("value") == LATEX
    browser.find_element(By.CSS_SELECTOR, "#regions .kind").send_keys("handwritten")
    browser.find_element(By.CSS_SELECTOR, "#conditions input[value='blur']").click()
    browser.find_element(By.ID, "save").click()
    wait.until(lambda d: "saved" in d.find_element(By.ID, "status").text)
    browser.save_screenshot(str(SCREENSHOT))

    (page,) = [p for p in read_manifest(dataset.manifest) if p.image == "page1.png"]
    (region,) = page.regions
    assert (region.latex, region.kind, page.conditions) == (LATEX, "handwritten", ("blur",))
    for (x, y), (want_x, want_y) in zip(region.quad, [*CORNERS[:2], MOVED, CORNERS[3]], strict=True):
        assert abs(x - want_x) < 1.5 and abs(y - want_y) < 1.5  # one screen pixel of rounding at this zoom
    (event,) = read_events(dataset.folder / SIDECAR)
    assert event.annotator == "kim" and 0 < event.seconds < 60

    browser.refresh()
    wait.until(lambda d: "annotated" in d.find_element(By.ID, "counts").text)
    browser.find_elements(By.CSS_SELECTOR, "#items li")[1].click()
    wait.until(lambda d: d.find_element(By.ID, "title").text == "page1.png")
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#regions .latex").get_attribute("value") == LATEX)
    assert "unsaved" not in browser.find_element(By.ID, "item-status").text  # the draft was cleared on save

    exported = tmp_path / "ls.json"
    export_labelstudio(dataset.manifest, exported)
    import_labelstudio(exported, tmp_path / "back.jsonl")
    back = list(read_manifest(tmp_path / "back.jsonl"))
    original = list(read_manifest(dataset.manifest))
    assert [p.image for p in back] == [p.image for p in original]
    for got, want in zip(back, original):
        assert [(r.latex, r.kind) for r in got.regions] == [(r.latex, r.kind) for r in want.regions]
        for a, b in zip(got.regions, want.regions):
            assert all(abs(p - q) < 0.01 for pa, pb in zip(a.quad, b.quad) for p, q in zip(pa, pb))
