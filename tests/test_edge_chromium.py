"""On-device mode in headless Chromium: the server's recognizer runs in the page (onnxruntime-web, WASM) and
reads generated crops exactly as the server's crop mode does, without uploading them; with the bundled
detector it reads whole generated pages as the server's page mode does."""

import base64
import contextlib
import json
import shutil

import cv2
import httpx
import numpy as np
import pytest
from browser import headless_chromium, needs_chromium, serve_in_thread
from recognizer_helpers import draw_crop, random_text
from shapely.geometry import Polygon

from susik.data.compose import ComposerConfig, FormulaCrop, PageComposer
from susik.one_formula import OneFormulaReader
from susik.pipeline import Pipeline
from susik.runtime.detector import OnnxDetector, load_detector_record
from susik.runtime.orient import DeskewOrienter
from susik.runtime.recognizer import OnnxRecognizer
from susik.serve import Settings, create_app
from susik.serve.app import Pipelines
from susik.serve.edge import find_ort
from susik.serve.fakes import sample_photo

pytestmark = needs_chromium
READ_ALL = """
const [crops, done] = arguments;
(async () => {
  await window.susikEdge.ready();
  const out = [];
  for (const data of crops) {
    const blob = await (await fetch(`data:image/png;base64,${data}`)).blob();
    const crop = await window.susikEdge.readCrop(blob);
    out.push([crop.latex, crop.confidence]);
  }
  return out;
})().then(done, (error) => done(`error: ${error.message}`));
"""
READ_PAGES = READ_ALL.replace("""const crop = await window.susikEdge.readCrop(blob);
    out.push([crop.latex, crop.confidence]);""", "out.push(await window.susikEdge.readPage(blob));")
READ_IN_CROP_MODE = READ_ALL.replace("""const crop = await window.susikEdge.readCrop(blob);
    out.push([crop.latex, crop.confidence]);""", 'out.push(await (await window.susikEdge.read(blob, "crop")).json());')
# a calibration map in the served record: the browser must report the server's calibrated confidence
CALIBRATION = {"geomean": 1.09, "minimum": 1.32, "bias": -2.9, "fitted_on": "test"}


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    if find_ort(settings) is None:
        pytest.skip("onnxruntime-web not installed: run scripts/setup.sh (npm ci)")
    bundle = tmp_path_factory.mktemp("calibrated") / "recognizer"
    shutil.copytree(tiny_bundle, bundle)
    record = json.loads((bundle / "record.json").read_text())
    record["decode"]["calibration"] = CALIBRATION
    (bundle / "record.json").write_text(json.dumps(record))
    recognizer = OnnxRecognizer.load(bundle, threads=1)
    page = Pipeline(OnnxDetector.load(threads=1), recognizer, DeskewOrienter())  # the bundled detector
    crop = Pipeline.for_crops(recognizer)
    app = create_app(settings, lambda _: Pipelines(page, crop, "tiny-1", recognizer_dir=bundle))
    with serve_in_thread(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def crops() -> list[np.ndarray]:
    """Both resize paths (taller and shorter than the model's 32 px), inverted, noisy, wide, colour, blank, in
    shadow."""
    rng = np.random.default_rng(3)
    images = [draw_crop(random_text(rng), float(rng.uniform(0.4, 3.0)), int(rng.integers(1, 4))) for _ in range(8)]
    images.append(255 - draw_crop("12+x=7", 1.5, 3))
    noisy = draw_crop("x-9=40", 2.0).astype(np.float64) * 0.7 + rng.normal(50, 10, (1, 1))
    images.append(np.clip(noisy + rng.normal(0, 8, noisy.shape), 0, 255).astype(np.uint8))
    images.append(cv2.resize(draw_crop("1+2+3+4+5+6"), None, fx=3.0, fy=1.0))
    images.append(cv2.cvtColor(draw_crop("7x=0", 2.5), cv2.COLOR_GRAY2BGR) * np.array([1.0, 0.8, 0.6]))
    images.append(np.full((40, 90), 200, np.uint8))  # blank: no reading, on either side
    shadowed = draw_crop("y=2x", 2.0, 3)
    shadowed[:, : shadowed.shape[1] // 3] //= 2  # a shadow's edge across a formula (flattened on both sides)
    images.append(shadowed)
    blank_in_shadow = np.full((40, 90), 210, np.uint8)
    blank_in_shadow[:, :40] = 100  # no ink, only a shadow's edge: blank on both sides
    images.append(blank_in_shadow)
    return [image.astype(np.uint8) for image in images]


def server_reading(url: str, png: bytes) -> tuple[str, float]:
    response = httpx.post(f"{url}/v1/recognize", files={"file": ("c.png", png)}, data={"mode": "crop"}, timeout=30)
    response.raise_for_status()
    (region,) = response.json()["regions"]
    return region["latex"], region["confidence"]


def server_latex(url: str, png: bytes) -> str:
    return server_reading(url, png)[0]


def test_in_browser_latex_and_confidence_equal_the_servers(server, browser, tiny_bundle):
    _, url = server
    pngs = [cv2.imencode(".png", image)[1].tobytes() for image in crops()]
    expected = [server_reading(url, png) for png in pngs]
    assert len({latex for latex, _ in expected}) >= 4  # the tiny model reads crops differently: the check has teeth
    browser.set_script_timeout(120)
    browser.get(url)
    got = browser.execute_async_script(READ_ALL, [base64.b64encode(png).decode() for png in pngs])
    assert [latex for latex, _ in got] == [latex for latex, _ in expected]
    assert np.allclose([c for _, c in got], [c for _, c in expected], rtol=0, atol=6e-5)  # the server rounds to 4
    assert expected[-1] == ("", 0.0)
    raw = OnnxRecognizer.load(tiny_bundle, threads=1)([cv2.imdecode(np.frombuffer(pngs[0], np.uint8), 0)])[0]
    assert abs(raw.confidence - expected[0][1]) > 1e-3  # the served confidence is the calibrated one


def test_the_page_reads_on_device_and_uploads_nothing(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app, url = server
    photo = tmp_path / "crop.png"
    photo.write_bytes(cv2.imencode(".png", draw_crop("3x+1=10", 2.0))[1].tobytes())
    expected = server_latex(url, photo.read_bytes())
    served_before = len(app.state.serve.store.request_facts())
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    toggle = browser.find_element(By.ID, "on-device")
    wait.until(lambda _: toggle.is_enabled())
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=crop]").click()
    toggle.click()
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    wait.until(lambda d: "read on this device" in d.find_element(By.ID, "status").text)
    assert browser.find_element(By.CSS_SELECTOR, ".formula .source").get_property("value") == expected
    assert len(app.state.serve.store.request_facts()) == served_before  # nothing reached the server

    page = tmp_path / "page.png"
    page.write_bytes(sample_photo(extension=".png"))
    expected = server_page(url, page.read_bytes())["regions"]
    served_before = len(app.state.serve.store.request_facts())
    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=page]").click()
    browser.find_element(By.ID, "photo").send_keys(str(page))
    wait.until(lambda d: f"{len(expected)} formulas · " in d.find_element(By.ID, "status").text)
    assert "read on this device" in browser.find_element(By.ID, "status").text
    assert len(browser.find_elements(By.CSS_SELECTOR, ".formula .source")) == len(expected)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#overlay polygon")) == len(expected)
    assert len(app.state.serve.store.request_facts()) == served_before


def test_edge_routes_serve_the_champions_files(server, tiny_bundle):
    _, url = server
    manifest = httpx.get(f"{url}/v1/edge/recognizer").json()
    assert manifest["model_version"] == "tiny-1"
    assert manifest["one_formula"] is None  # this server's crop mode reads the whole image alone
    assert manifest["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    encoder = httpx.get(f"{url}{manifest['files']['encoder']}")
    assert encoder.content == (tiny_bundle / "encoder.onnx").read_bytes()
    assert "immutable" in encoder.headers["cache-control"]
    assert httpx.get(f"{url}/v1/edge/recognizer/0000/encoder").status_code == 404
    assert httpx.get(f"{url}/static/ort/ort.wasm.min.mjs").headers["content-type"].startswith("text/javascript")


def pages() -> list[bytes]:
    """The fake photo (Hershey text the detector splits into many pieces), upright and turned a quarter, a
    composed worksheet photographed with a turn and a perspective, and a part of it from closer by: PNG, so both
    sides decode the same pixels.
    The worksheet has its text lines: on a page of formulas alone the bundled detector is unsure of the turn
    (0.87 < the 0.9 it needs) and the pages would not exercise the orientation path at all."""
    rng = np.random.default_rng(4)
    photo = cv2.imdecode(np.frombuffer(sample_photo(800, 600, ".png"), np.uint8), cv2.IMREAD_COLOR)
    crops = [FormulaCrop(draw_crop(random_text(rng, 3, 8), 1.5, 2), "", "printed") for _ in range(6)]
    config = ComposerConfig(long_side=(900, 1000), font_scale=(0.03, 0.036), paper_kinds=("plain",))
    composed = [PageComposer(config).compose(crops, rng, conditions).image
                for conditions in (["rotation90"], ["perspective"])]
    # the first worksheet's top-left enlarged 1.3x: letters of 21-26 px, so the detector confirms its regions with
    # a second, smaller pass (the fake photos' letters are a close-up's: those are shrunk before the first)
    height, width = composed[0].shape[:2]
    closer = cv2.resize(composed[0][: round(height / 1.3), : round(width / 1.3)], (width, height))
    images = [photo, np.ascontiguousarray(np.rot90(photo)), *composed, closer]
    return [cv2.imencode(".png", image)[1].tobytes() for image in images]


def server_page(url: str, png: bytes) -> dict:
    response = httpx.post(f"{url}/v1/recognize", files={"file": ("p.png", png)}, data={"mode": "page"}, timeout=60)
    response.raise_for_status()
    return response.json()


def iou(a: list[list[float]], b: list[list[float]]) -> float:
    first, second = Polygon(a), Polygon(b)
    return first.intersection(second).area / first.union(second).area


def alone(recognizer: OnnxRecognizer, png: bytes) -> list[str]:
    """The server's page pipeline, each crop read alone as the browser does (`crop_by_crop`): the server reads a
    page's crops as one padded batch, and a random-weight model's near-ties can tip either way in a batch. Its own
    quads, not the response's (rounded to 0.01 px, enough to change a crop)."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    pipeline = Pipeline(OnnxDetector.load(threads=1), recognizer, DeskewOrienter(), crop_by_crop=True)
    return [region.latex for region in pipeline([image])[0].regions]


def test_in_browser_pages_match_the_servers(server, browser, tiny_bundle):
    app, url = server
    pngs = pages()
    expected = [server_page(url, png) for png in pngs]
    served_before = len(app.state.serve.store.request_facts())
    browser.set_script_timeout(240)
    browser.get(url)
    got = browser.execute_async_script(READ_PAGES, [base64.b64encode(png).decode() for png in pngs])
    assert not isinstance(got, str), got
    assert len(app.state.serve.store.request_facts()) == served_before  # nothing was uploaded
    assert {page["orientation"] for page in expected} >= {0, 90}
    assert sum(len(page["regions"]) for page in expected) >= 12
    for theirs, ours in zip(expected, got, strict=True):
        assert ours["orientation"] == theirs["orientation"]
        assert len(ours["regions"]) == len(theirs["regions"])
        for region, mine in zip(theirs["regions"], ours["regions"], strict=True):
            assert iou(region["quad"], mine["quad"]) >= 0.9
            assert mine["kind"] == region["kind"]
        assert set(ours["ms"]) == {"decode_image", "detect", "rectify", "orient", "recognize"}
    recognizer = OnnxRecognizer.load(tiny_bundle, threads=1)
    readings = [alone(recognizer, png) for png in pngs]
    pairs = [(region["latex"], reading) for page, page_readings in zip(got, readings)
             for region, reading in zip(page["regions"], page_readings, strict=True)]
    # Quads agree to ~1e-4 px and crops to one grey level on ~0.01% of pixels (OpenCV's SIMD warps): a
    # random-weight model's near-ties may still tip on one of them.
    assert sum(mine == theirs for mine, theirs in pairs) >= 0.9 * len(pairs), pairs


def test_edge_routes_serve_the_bundled_detector(server):
    _, url = server
    manifest = httpx.get(f"{url}/v1/edge/detector").json()
    record = load_detector_record()
    assert manifest["version"] == record.version and manifest["params"] == record.params.model_dump()
    model = httpx.get(f"{url}{manifest['files']['model']}")
    assert model.content == record.file("model").read_bytes()
    assert "immutable" in model.headers["cache-control"]
    assert httpx.get(f"{url}/v1/edge/detector/0000/model").status_code == 404


@contextlib.contextmanager
def _serving_with(decode: dict, tiny_bundle, folder):
    """The tiny bundle with `decode` changed in its record, served for crops."""
    bundle = folder / "recognizer"
    shutil.copytree(tiny_bundle, bundle)
    record = json.loads((bundle / "record.json").read_text())
    record["decode"].update(decode)
    (bundle / "record.json").write_text(json.dumps(record))
    settings = Settings(data_dir=folder / "data")
    if find_ort(settings) is None:
        pytest.skip("onnxruntime-web not installed: run scripts/setup.sh (npm ci)")
    crop = Pipeline.for_crops(OnnxRecognizer.load(bundle, threads=1))
    app = create_app(settings, lambda _: Pipelines(crop, crop, "tiny-changed", recognizer_dir=bundle))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def beam_server(tiny_bundle, tmp_path_factory):
    """Beam search of width 3 in the record: server and page must both search."""
    with _serving_with({"beam": 3}, tiny_bundle, tmp_path_factory.mktemp("beam")) as url:
        yield url


@pytest.fixture(scope="module")
def thicken_server(tiny_bundle, tmp_path_factory):
    """Every reading rescued by beam search and looked at again with thickened strokes (rescued too), then
    stretched sideways twice (greedily): server and page must both look, each look searched the same way."""
    decode = {"rescue_below": 1.0, "thicken_below": 1.0, "thin_core_share": 1.0,  # every crop counts as thin
              "widen_below": 1.0, "widen_factors": [1.2, 1.4]}
    with _serving_with(decode, tiny_bundle, tmp_path_factory.mktemp("thicken")) as url:
        yield url


def _reads_as_the_server_but_not_as_plain_greedy(url: str, browser, tiny_bundle) -> None:
    images = crops()
    pngs = [cv2.imencode(".png", image)[1].tobytes() for image in images]
    expected = [server_latex(url, png) for png in pngs]
    greedy = [reading.latex for reading in OnnxRecognizer.load(tiny_bundle, threads=1)(images)]
    assert expected != greedy  # the record's decoding reads some crops otherwise: the check has teeth
    browser.set_script_timeout(120)
    browser.get(url)
    got = browser.execute_async_script(READ_ALL, [base64.b64encode(png).decode() for png in pngs])
    assert [latex for latex, _ in got] == expected


def test_in_browser_beam_search_reads_as_the_servers(beam_server, browser, tiny_bundle):
    _reads_as_the_server_but_not_as_plain_greedy(beam_server, browser, tiny_bundle)


def test_in_browser_second_look_reads_as_the_servers(thicken_server, browser, tiny_bundle):
    _reads_as_the_server_but_not_as_plain_greedy(thicken_server, browser, tiny_bundle)


@pytest.fixture(scope="module")
def one_formula_server(tiny_bundle, tmp_path_factory):
    """Crop mode that looks for the formula too, and takes the region it finds nearest the centre whatever the
    confidences (a margin of -1): the random-weight model's confidences would decide otherwise at random."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("one"))
    if find_ort(settings) is None:
        pytest.skip("onnxruntime-web not installed: run scripts/setup.sh (npm ci)")
    recognizer = OnnxRecognizer.load(tiny_bundle, threads=1)
    page = Pipeline(OnnxDetector.load(threads=1), recognizer, DeskewOrienter())
    crop = OneFormulaReader(page, Pipeline.for_crops(recognizer), prefer_found_by=-1.0)
    app = create_app(settings, lambda _: Pipelines(page, crop, "tiny-one", recognizer_dir=tiny_bundle))
    with serve_in_thread(app) as url:
        yield url


def test_in_browser_crop_mode_finds_the_formula_as_the_servers(one_formula_server, browser):
    url = one_formula_server
    assert httpx.get(f"{url}/v1/edge/recognizer").json()["one_formula"] == {"prefer_found_by": -1.0}
    pngs = [pages()[-1], cv2.imencode(".png", np.full((60, 200), 235, np.uint8))[1].tobytes()]
    expected = [httpx.post(f"{url}/v1/recognize", files={"file": ("p.png", png)}, data={"mode": "crop"},
                           timeout=60).json() for png in pngs]
    browser.set_script_timeout(240)
    browser.get(url)
    got = browser.execute_async_script(READ_IN_CROP_MODE, [base64.b64encode(png).decode() for png in pngs])
    assert not isinstance(got, str), got
    found, blank = expected
    whole = [[0, 0], [found["width"], 0], [found["width"], found["height"]], [0, found["height"]]]
    assert len(found["regions"]) == 1 and iou(found["regions"][0]["quad"], whole) < 0.2  # a formula, not the photo
    assert blank["regions"][0]["quad"] == [[0, 0], [200, 0], [200, 60], [0, 60]]  # nothing found: the whole image
    for theirs, ours in zip(expected, got, strict=True):
        assert ours["source"] == "device" and ours["orientation"] == theirs["orientation"]
        (region,), (mine,) = theirs["regions"], ours["regions"]
        assert iou(region["quad"], mine["quad"]) >= 0.9 and mine["kind"] == region["kind"]
    assert {"detect", "recognize", "total"} <= set(got[0]["timings_ms"])
