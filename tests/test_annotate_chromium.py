"""The labeling page in headless Chromium: draw a quad, type LaTeX, see KaTeX, save, reload, export, import;
draw and edit a polygon; and the review page: walk, filter, reject with a comment, accept."""

from pathlib import Path

import cv2
import pytest
from browser import headless_chromium, needs_chromium, serve_in_thread
from test_annotate_api import QUAD, make_dataset

from susik.annotate.app import create_app, find_katex
from susik.annotate.interop import export_labelstudio, import_labelstudio
from susik.annotate.shapes import outline
from susik.annotate.store import SIDECAR, Dataset, read_events
from susik.data.manifest import PageRegion, read_manifest

SCREENSHOT = Path("/tmp/susik-annotate.png")
POLYGON_SCREENSHOT = Path("/tmp/susik-annotate-polygon.png")
REVIEW_SCREENSHOT = Path("/tmp/susik-annotate-review.png")  # docs/annotate_review.png is a copy
CORNERS = [(60.0, 40.0), (220.0, 44.0), (218.0, 90.0), (58.0, 86.0)]  # image pixels, clockwise from top-left
MOVED = (230.0, 100.0)  # where corner 3 is dragged to
LATEX = r"\sqrt{x}+\frac{1}{2}"
POLYGON = [(60.0, 40.0), (140.0, 30.0), (220.0, 44.0), (218.0, 90.0), (58.0, 86.0)]  # clicked in this order
# after: vertex 1 dragged to (140, 20), vertex 4 deleted, the midpoint of edge 2-3 (219, 67) dragged out
EDITED = [(60.0, 40.0), (140.0, 20.0), (220.0, 44.0), (235.0, 67.0), (218.0, 90.0)]

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


def shape_text(driver) -> str:
    """What the first region's panel says of its shape (quad, or polygon and its point count)."""
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, "#regions .shape").text


def listed(driver) -> list[str]:
    """The item indices the review page lists (read in one go: the list is rebuilt after each verdict)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#items li')].map((li) => li.dataset.index)"
    )


def test_draw_edit_save_reload_a_polygon(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    dataset, url = server
    wait = WebDriverWait(browser, 10)
    browser.get(url + "/?item=1")  # the review page's edit link opens an item directly
    wait.until(lambda d: d.find_element(By.ID, "title").text == "page1.png")
    browser.find_element(By.ID, "annotator").send_keys("kim")

    browser.find_element(By.ID, "draw-polygon").click()
    for x, y in POLYGON:
        click_image_point(browser, x, y)
    click_image_point(browser, *POLYGON[0])  # back on the first point: closed
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#shapes polygon.outline")) == 1)
    assert shape_text(browser) == "polygon · 5 points"
    browser.switch_to.active_element.send_keys("x+1=2")
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#handles circle.vertex")) == 5)

    drag_image_point(browser, POLYGON[1], (140.0, 20.0))  # move a vertex
    click_image_point(browser, *POLYGON[4])  # pick a vertex, then Delete removes it
    ActionChains(browser).send_keys(Keys.DELETE).perform()
    wait.until(lambda d: shape_text(d) == "polygon · 4 points")
    drag_image_point(browser, (219.0, 67.0), (235.0, 67.0))  # an edge's midpoint dragged out: a new vertex
    wait.until(lambda d: shape_text(d) == "polygon · 5 points")
    assert not browser.find_elements(By.CSS_SELECTOR, "#shapes polygon.derived")  # edited: no quad yet
    browser.find_element(By.ID, "save").click()
    wait.until(lambda d: "saved" in d.find_element(By.ID, "status").text)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#shapes polygon.derived")) == 1)
    browser.save_screenshot(str(POLYGON_SCREENSHOT))

    (page,) = [p for p in read_manifest(dataset.manifest) if p.image == "page1.png"]
    (region,) = page.regions
    assert region.latex == "x+1=2"
    want_quad, want_polygon = outline(EDITED, 0)
    assert len(region.polygon) == 5
    for (x, y), (want_x, want_y) in zip(region.polygon, want_polygon, strict=True):
        assert abs(x - want_x) < 1.5 and abs(y - want_y) < 1.5
    for (x, y), (want_x, want_y) in zip(region.quad, want_quad, strict=True):
        assert abs(x - want_x) < 3 and abs(y - want_y) < 3  # the quad derived from it, on the server

    browser.refresh()
    wait.until(lambda d: d.find_element(By.ID, "title").text == "page1.png")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#shapes polygon.outline"))
    drawn = browser.find_element(By.CSS_SELECTOR, "#shapes polygon.outline").get_attribute("points")
    assert drawn == " ".join(f"{x:g},{y:g}" for x, y in region.polygon)
    assert shape_text(browser) == "polygon · 5 points"
    assert "unsaved" not in browser.find_element(By.ID, "item-status").text


@pytest.fixture
def reviewed_server(tmp_path):
    if find_katex() is None:
        pytest.skip("KaTeX not installed: run scripts/setup.sh (npm ci)")
    folder = make_dataset(tmp_path / "ds")
    page = cv2.imread(str(folder / "page0.png"))
    cv2.putText(page, "y=3x-1", (60, 170), cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 1.5, (90, 40, 20), 2)  # by hand
    cv2.imwrite(str(folder / "page0.png"), page)
    dataset = Dataset(folder)
    written = outline(((52.0, 128.0), (140.0, 122.0), (215.0, 134.0), (212.0, 186.0), (50.0, 184.0)), 0)
    regions = (
        PageRegion(quad=tuple(map(tuple, QUAD)), latex=r"x+0=2", kind="printed"),
        PageRegion(quad=written[0], polygon=written[1], latex=r"y=3x-1", kind="handwritten"),
    )
    dataset.save(0, regions, 0, "kim", 40.0)
    polygon = ((38.0, 30.0), (120.0, 24.0), (200.0, 34.0), (198.0, 80.0), (38.0, 76.0))
    quad1, polygon1 = outline(polygon, 0)
    dataset.save(
        1, (PageRegion(quad=quad1, polygon=polygon1, latex=r"x+1=2", kind="handwritten"),), 0, "lee", 25
    )
    with serve_in_thread(create_app(dataset)) as url:
        yield dataset, url


def test_review_walk_filter_reject_accept(reviewed_server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    dataset, url = reviewed_server
    wait = WebDriverWait(browser, 10)
    browser.get(url + "/review")
    wait.until(lambda d: listed(d) == ["0", "1"])  # annotated items, by default
    wait.until(lambda d: d.find_element(By.ID, "title").text == "page0.png")
    wait.until(lambda d: d.execute_script("return document.querySelector('#rows img.crop').naturalWidth") > 0)
    assert browser.find_elements(By.CSS_SELECTOR, "#rows .rendered .katex")  # typeset, beside the crop
    assert browser.find_element(By.CSS_SELECTOR, "#rows code").text == "x+0=2"

    annotator = Select(browser.find_element(By.ID, "filter-annotator"))
    assert [o.text for o in annotator.options] == ["anyone", "kim", "lee"]
    annotator.select_by_visible_text("lee")
    wait.until(lambda d: listed(d) == ["1"] and d.find_element(By.ID, "title").text == "page1.png")
    assert "polygon" in browser.find_element(By.CSS_SELECTOR, "#rows td:last-child").text
    Select(browser.find_element(By.ID, "filter-annotator")).select_by_visible_text("anyone")
    wait.until(lambda d: listed(d) == ["0", "1"] and d.find_element(By.ID, "title").text == "page0.png")

    browser.find_element(By.ID, "reviewer").send_keys("rev")
    ActionChains(browser).send_keys(Keys.ESCAPE).send_keys("x").perform()  # reject, no reason: refused
    wait.until(lambda d: "say what is wrong" in d.find_element(By.ID, "status").text)
    assert dataset.item(0).status == "annotated"
    browser.find_element(By.ID, "comment").send_keys("the 0 is a 6")
    browser.find_element(By.ID, "reject").click()
    # page0 leaves the "annotated" list; the walk goes on to page1
    wait.until(lambda d: listed(d) == ["1"] and d.find_element(By.ID, "title").text == "page1.png")
    ActionChains(browser).send_keys("a").perform()
    wait.until(lambda d: "nothing more to review" in d.find_element(By.ID, "status").text)
    assert [item.status for item in dataset.items()] == ["rejected", "reviewed"]
    reviews = [e for e in read_events(dataset.sidecar) if e.type == "review"]
    assert [(e.image, e.annotator, e.verdict, e.comment) for e in reviews] == [
        ("page0.png", "rev", "rejected", "the 0 is a 6"),
        ("page1.png", "rev", "accepted", ""),
    ]

    Select(browser.find_element(By.ID, "filter-status")).select_by_visible_text("all")
    wait.until(lambda d: listed(d) == ["0", "1"] and d.find_element(By.ID, "title").text == "page0.png")
    history = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#history li")]
    assert (
        len(history) == 2 and "saved by kim" in history[0] and "rejected by rev: “the 0 is a 6”" in history[1]
    )
    browser.save_screenshot(str(REVIEW_SCREENSHOT))

    browser.find_element(By.ID, "edit").click()  # the annotator's side: the reason shows with the item
    wait.until(lambda d: d.find_element(By.ID, "title").text == "page0.png")
    wait.until(lambda d: "the 0 is a 6" in d.find_element(By.ID, "item-status").text)
