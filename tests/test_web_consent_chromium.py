"""The web page's consent checkbox in headless Chromium: off by default; only a ticked box keeps the photo."""

import pytest
from browser import headless_chromium, needs_chromium, serve_in_thread

from susik.serve import Settings, create_app
from susik.serve.fakes import fake_pipelines, sample_photo

pytestmark = needs_chromium


@pytest.fixture
def server(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "data"), pipeline_factory=lambda _: fake_pipelines())
    with serve_in_thread(app) as url:
        yield app, url


def test_photo_is_kept_only_when_the_consent_box_is_ticked(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app, url = server
    store = app.state.serve.store
    photos = [tmp_path / "first.jpg", tmp_path / "second.jpg"]
    photos[0].write_bytes(sample_photo(320, 240))
    photos[1].write_bytes(sample_photo(360, 240))

    def upload(photo):
        browser.find_element(By.ID, "photo").send_keys(str(photo))
        WebDriverWait(browser, 10).until(lambda d: "request " in d.find_element(By.ID, "status").text)
        request_id = browser.find_element(By.ID, "status").text.rsplit("request ", 1)[1]
        browser.execute_script("document.getElementById('status').textContent = ''")  # next wait is fresh
        return store.request(request_id)

    with headless_chromium(tmp_path / "chromium") as browser:
        browser.get(url)
        box = browser.find_element(By.ID, "consent")
        assert not box.is_selected()  # off by default
        unticked = upload(photos[0])
        assert (unticked.status, unticked.consent, unticked.image_path, unticked.source) == (
            "done", False, None, "web"
        )
        assert not [path for path in store.image_dir.rglob("*") if path.is_file()]

        browser.find_element(By.CSS_SELECTOR, "label#consent-choice").click()  # the label toggles the box
        assert box.is_selected()
        ticked = upload(photos[1])
        assert (ticked.consent, ticked.source, ticked.license) == (True, "web", Settings().collection_license)
        assert (store.image_dir / ticked.image_path).read_bytes() == photos[1].read_bytes()
