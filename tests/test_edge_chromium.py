"""On-device mode in headless Chromium: the server's recognizer runs in the page (onnxruntime-web, WASM) and
reads generated crops exactly as the server's crop mode does, without uploading them."""

import base64

import cv2
import httpx
import numpy as np
import pytest
from browser import headless_chromium, needs_chromium, serve_in_thread
from recognizer_helpers import draw_crop, random_text

from susik.pipeline import Pipeline
from susik.runtime.recognizer import OnnxRecognizer
from susik.serve import Settings, create_app
from susik.serve.app import Pipelines
from susik.serve.edge import find_ort

pytestmark = needs_chromium
READ_ALL = """
const [crops, done] = arguments;
(async () => {
  await window.susikEdge.ready();
  const out = [];
  for (const data of crops) {
    const blob = await (await fetch(`data:image/png;base64,${data}`)).blob();
    out.push((await window.susikEdge.readCrop(blob)).latex);
  }
  return out;
})().then(done, (error) => done(`error: ${error.message}`));
"""


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    if find_ort(settings) is None:
        pytest.skip("onnxruntime-web not installed: run scripts/setup.sh (npm ci)")
    crop = Pipeline.for_crops(OnnxRecognizer.load(tiny_bundle, threads=1))
    app = create_app(settings, lambda _: Pipelines(None, crop, "tiny-1", recognizer_dir=tiny_bundle))
    with serve_in_thread(app) as url:
        yield app, url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with headless_chromium(tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def crops() -> list[np.ndarray]:
    """Both resize paths (taller and shorter than the model's 32 px), inverted, noisy, wide, colour, blank."""
    rng = np.random.default_rng(3)
    images = [draw_crop(random_text(rng), float(rng.uniform(0.4, 3.0)), int(rng.integers(1, 4))) for _ in range(8)]
    images.append(255 - draw_crop("12+x=7", 1.5, 3))
    noisy = draw_crop("x-9=40", 2.0).astype(np.float64) * 0.7 + rng.normal(50, 10, (1, 1))
    images.append(np.clip(noisy + rng.normal(0, 8, noisy.shape), 0, 255).astype(np.uint8))
    images.append(cv2.resize(draw_crop("1+2+3+4+5+6"), None, fx=3.0, fy=1.0))
    images.append(cv2.cvtColor(draw_crop("7x=0", 2.5), cv2.COLOR_GRAY2BGR) * np.array([1.0, 0.8, 0.6]))
    images.append(np.full((40, 90), 200, np.uint8))  # blank: no reading, on either side
    return [image.astype(np.uint8) for image in images]


def server_latex(url: str, png: bytes) -> str:
    response = httpx.post(f"{url}/v1/recognize", files={"file": ("c.png", png)}, data={"mode": "crop"}, timeout=30)
    response.raise_for_status()
    (region,) = response.json()["regions"]
    return region["latex"]


def test_in_browser_latex_equals_the_servers(server, browser):
    _, url = server
    pngs = [cv2.imencode(".png", image)[1].tobytes() for image in crops()]
    expected = [server_latex(url, png) for png in pngs]
    assert len(set(expected)) >= 4  # the tiny model reads different crops differently: the check has teeth
    browser.set_script_timeout(120)
    browser.get(url)
    got = browser.execute_async_script(READ_ALL, [base64.b64encode(png).decode() for png in pngs])
    assert got == expected
    assert expected[-1] == ""


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

    browser.find_element(By.CSS_SELECTOR, "input[name=mode][value=page]").click()
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    wait.until(lambda d: "one formula" in d.find_element(By.ID, "status").text)


def test_edge_routes_serve_the_champions_files(server, tiny_bundle):
    _, url = server
    manifest = httpx.get(f"{url}/v1/edge/recognizer").json()
    assert manifest["model_version"] == "tiny-1"
    assert manifest["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    encoder = httpx.get(f"{url}{manifest['files']['encoder']}")
    assert encoder.content == (tiny_bundle / "encoder.onnx").read_bytes()
    assert "immutable" in encoder.headers["cache-control"]
    assert httpx.get(f"{url}/v1/edge/recognizer/0000/encoder").status_code == 404
    assert httpx.get(f"{url}/static/ort/ort.wasm.min.mjs").headers["content-type"].startswith("text/javascript")
