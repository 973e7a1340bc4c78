"""The HTTP API on fake stages: contract, guards, errors, timeouts, overload, API keys, metrics, fuzzing."""

import hashlib
import threading
import time
import zlib

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from susik.serve import Pipelines, Settings, create_app
from susik.serve.fakes import FAKE_LATEX, fake_pipelines, sample_photo

PHOTO = sample_photo(320, 240)


def make_client(tmp_path, factory=None, **overrides) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", **overrides)
    app = create_app(settings, pipeline_factory=factory or (lambda _settings: fake_pipelines()))
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as client:
        yield client


def upload(client, data=PHOTO, mode=None, name="photo.jpg", content_type="image/jpeg", consent=None, **kw):
    form = {key: value for key, value in (("mode", mode), ("consent", consent)) if value is not None} or None
    return client.post("/v1/recognize", files={"file": (name, data, content_type)}, data=form, **kw)


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and isinstance(body["detail"], str) and set(body) == {"error", "detail"}
    assert "Traceback" not in response.text


def test_recognize_page_returns_regions_request_id_and_stores_everything(client):
    response = upload(client, consent="true")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["width"], body["height"], body["orientation"], body["model_version"]) == (
        320,
        240,
        0,
        "fake-1",
    )
    assert [r["latex"] for r in body["regions"]] == [FAKE_LATEX] * 2
    assert [r["kind"] for r in body["regions"]] == ["printed", "handwritten"]
    assert body["regions"][0]["quad"] == [[32.0, 36.0], [288.0, 36.0], [288.0, 84.0], [32.0, 84.0]]
    assert {"detect", "rectify", "recognize", "total", "decode", "store", "wait", "server"} <= set(
        body["timings_ms"]
    )

    store = client.app.state.serve.store
    row = store.request(body["request_id"])
    assert (row.status, row.mode, row.model_version) == ("done", "page", "fake-1")
    assert row.page["regions"] == body["regions"]
    digest = hashlib.sha256(PHOTO).hexdigest()
    assert row.image_sha256 == digest and row.image_path == f"{digest[:2]}/{digest}.jpg"
    assert (store.image_dir / row.image_path).read_bytes() == PHOTO
    assert (row.consent, row.source, row.license) == (True, "api", Settings().collection_license)


def test_without_consent_the_result_is_kept_but_never_the_photo(client):
    body = upload(client, consent="false").json()
    row = client.app.state.serve.store.request(body["request_id"])
    assert (row.status, row.consent, row.image_path, row.license) == ("done", False, None, None)
    assert row.page["regions"] == body["regions"] and row.image_sha256 == hashlib.sha256(PHOTO).hexdigest()
    assert upload(client).status_code == 200  # consent left out: the same as false
    assert not [path for path in client.app.state.serve.store.image_dir.rglob("*") if path.is_file()]
    bad = client.post("/v1/recognize", files={"file": ("a.jpg", PHOTO)}, data={"source": "Web Page!"})
    assert_error(bad, 422, "invalid_request")


def test_same_photo_twice_is_two_requests_but_one_image_file(client):
    first, second = upload(client, consent="true").json(), upload(client, mode="crop", consent="true").json()
    assert first["request_id"] != second["request_id"]
    assert len(second["regions"]) == 1 and second["regions"][0]["quad"][2] == [320.0, 240.0]
    images = [path for path in client.app.state.serve.store.image_dir.rglob("*") if path.is_file()]
    assert len(images) == 1


def test_content_is_sniffed_not_taken_from_the_client(client):
    png = cv2.imencode(".png", np.full((40, 60, 3), 200, np.uint8))[1].tobytes()
    assert upload(client, png, name="photo.jpg", content_type="image/jpeg").status_code == 200
    assert_error(
        upload(client, b"<html>not an image</html>", content_type="image/png"), 415, "unsupported_media_type"
    )
    # A real GIF is refused too: only the formats phones upload are decoded.
    gif = b"GIF89a" + bytes(50)
    assert_error(upload(client, gif, content_type="image/gif"), 415, "unsupported_media_type")
    assert_error(upload(client, PHOTO[: len(PHOTO) // 3]), 422, "bad_image")
    assert_error(upload(client, b"\x89PNG\r\n\x1a\n" + bytes(40)), 422, "bad_image")


def test_body_over_the_limit_is_refused_by_declared_and_by_streamed_size(tmp_path):
    with make_client(tmp_path, max_upload_bytes=50_000) as client:
        assert upload(client).status_code == 200
        assert_error(upload(client, PHOTO + bytes(60_000)), 413, "payload_too_large")

        def chunks():  # no Content-Length: only the streamed count can stop it
            for _ in range(20):
                yield bytes(8_000)

        streamed = client.post(
            "/v1/recognize", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
        )
        assert_error(streamed, 413, "payload_too_large")
        assert client.get("/healthz").status_code == 200


def png_bomb(width: int, height: int, pixels: bool = True) -> bytes:
    """A grayscale PNG of the given size that compresses to almost nothing (without pixel data: just the
    header a decoder reads first)."""

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    rows = zlib.compress(bytes(width + 1) * height if pixels else b"", 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_pixel_count_is_checked_from_the_header_before_decoding(tmp_path):
    bomb = png_bomb(4000, 3000)
    assert len(bomb) < 40_000
    with make_client(tmp_path, max_image_pixels=10_000_000) as client:
        assert_error(upload(client, bomb, content_type="image/png"), 413, "image_too_large")
        assert upload(client, png_bomb(100, 80), content_type="image/png").status_code == 200
        # Past Pillow's own limit (2 x 89 M pixels) the header read itself refuses: still a 413.
        huge = png_bomb(20_000, 10_000, pixels=False)
        assert_error(upload(client, huge, content_type="image/png"), 413, "image_too_large")


def test_error_bodies_for_routing_and_validation(client):
    assert_error(client.get("/no/such/page"), 404, "not_found")
    assert_error(client.get("/v1/recognize"), 405, "method_not_allowed")
    assert_error(client.post("/v1/recognize", data={"mode": "page"}), 422, "invalid_request")
    assert_error(upload(client, mode="poster"), 422, "invalid_request")
    assert_error(
        client.post("/v1/feedback", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )


def test_feedback_contract(client):
    request_id = upload(client).json()["request_id"]
    correction = client.post(
        "/v1/feedback",
        json={
            "request_id": request_id,
            "region": 1,
            "latex": "y=2",
            "display_ms": 812.5,
            "comment": "the 2 was read as z",
        },
    )
    assert correction.status_code == 201 and correction.json()["corrected"] is True
    same = client.post("/v1/feedback", json={"request_id": request_id, "region": 0, "latex": r"\frac ab+x^2"})
    assert same.status_code == 201 and same.json()["corrected"] is False  # only spacing/braces differ
    assert (
        client.post(
            "/v1/feedback", json={"request_id": request_id, "region": 0, "accepted": True}
        ).status_code
        == 201
    )

    assert_error(
        client.post("/v1/feedback", json={"request_id": "f" * 32, "region": 0, "latex": "x"}),
        404,
        "unknown_request",
    )
    assert_error(
        client.post("/v1/feedback", json={"request_id": request_id, "region": 2, "latex": "x"}),
        422,
        "region_out_of_range",
    )
    for bad in (
        {"request_id": request_id, "region": 0},
        {"request_id": request_id, "region": -1, "latex": "x"},
        {"request_id": request_id, "region": 0, "latex": "x", "rating": 5},
        {"request_id": request_id, "region": 0, "latex": "x", "display_ms": -3},
        {"region": 0},
    ):
        assert_error(client.post("/v1/feedback", json=bad), 422, "invalid_request")

    rows = client.app.state.serve.store.feedback_for(request_id)
    assert [(r.region, r.latex, r.corrected, r.predicted_latex == FAKE_LATEX) for r in rows] == [
        (1, "y=2", True, True),
        (0, r"\frac ab+x^2", False, True),
        (0, None, False, True),
    ]
    assert rows[0].comment == "the 2 was read as z" and rows[0].display_ms == 812.5

    report = client.get("/v1/online/report").json()["model_versions"]["fake-1"]
    assert (report["requests"], report["feedback"], report["regions_with_feedback"], report["corrected"]) == (
        1,
        3,
        2,
        1,
    )
    assert report["correction_rate"] == 0.5 and report["display_ms_p50"] == 812.5
    assert report["voc"][0]["comment"] == "the 2 was read as z"


def test_not_ready_without_models_but_alive(tmp_path):
    def missing(_settings):
        raise FileNotFoundError("models/recognizer.onnx")

    with make_client(tmp_path, factory=missing) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert_error(ready, 503, "not_ready")
        assert "models/recognizer.onnx" in ready.json()["detail"]
        assert_error(upload(client), 503, "not_ready")
        assert client.get("/").status_code == 200


def test_recognizer_alone_serves_crops_and_says_why_pages_wait(tmp_path):
    crops_only = lambda _: Pipelines(None, fake_pipelines().crop, "rec-1", "no detector record")
    with make_client(tmp_path, factory=crops_only) as client:
        assert client.get("/readyz").json() == {"status": "ready", "model_version": "rec-1",
                                                "page_mode": "no detector record"}
        assert upload(client, mode="crop").json()["regions"][0]["latex"] == FAKE_LATEX
        refused = upload(client, mode="page")
        assert_error(refused, 503, "page_mode_unavailable")
        assert "no detector record" in refused.json()["detail"]


def test_timeout_answers_504_and_marks_the_request_failed(tmp_path):
    slow = lambda _: fake_pipelines(delay_s=0.6)
    with make_client(tmp_path, factory=slow, request_timeout_s=0.1) as client:
        assert_error(upload(client), 504, "timeout")
        facts = client.app.state.serve.store.request_facts()
        assert [(f.status, f.n_regions) for f in facts] == [("failed", 0)]


def test_a_failing_model_gives_500_json_and_the_server_goes_on(tmp_path):
    calls = []

    def flaky(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("onnx exploded")
        return fake_pipelines().page(images)

    with make_client(tmp_path, factory=lambda _: Pipelines(flaky, flaky, "flaky-1")) as client:
        failed = upload(client)
        assert_error(failed, 500, "inference_failed")
        assert "onnx" not in failed.text
        assert upload(client).status_code == 200


def test_full_queue_answers_503(tmp_path):
    pipelines = fake_pipelines(delay_s=0.5)
    with make_client(tmp_path, factory=lambda _: pipelines, max_queue=1, batch_max_size=1) as client:
        statuses = []

        def send():
            statuses.append(upload(client).status_code)

        threads = [threading.Thread(target=send) for _ in range(4)]
        threads[0].start()
        while not pipelines.page.recognizer.batches:  # the first is in inference: the queue is empty
            time.sleep(0.005)
        for thread in threads[1:]:
            thread.start()
        for thread in threads:
            thread.join()
        # One ran, one waited in the one-place queue, two were turned away at once.
        assert sorted(statuses) == [200, 200, 503, 503]
        assert 'susik_rejected_total{reason="overloaded"} 2.0' in client.get("/metrics").text


def test_concurrent_requests_share_a_pipeline_batch_and_each_photo_is_read_apart(tmp_path):
    pipelines = fake_pipelines(delay_s=0.05)
    detect, detector_batches = pipelines.page.detector, []

    def recording_detector(images):
        detector_batches.append(len(images))
        return detect(images)

    pipelines.page.detector = recording_detector
    with make_client(tmp_path, factory=lambda _: pipelines, batch_max_wait_ms=30) as client:
        threads = [threading.Thread(target=upload, args=(client,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(detector_batches) == 4 and max(detector_batches) >= 2  # several photos per pipeline call
        # ...whose recognizer calls hold one photo's 2 regions each: an answer never depends on batch mates
        assert pipelines.page.recognizer.batches == [2, 2, 2, 2]
        metrics = client.get("/metrics").text
        assert (
            "susik_batch_size_count" in metrics
            and 'susik_stage_seconds_count{mode="page",stage="recognize"}' in metrics
        )


def test_api_keys_and_rate_limit(tmp_path):
    with make_client(tmp_path, api_keys=["k1"], rate_limit_per_minute=2) as client:
        assert_error(upload(client), 401, "unauthorized")
        assert_error(upload(client, headers={"X-API-Key": "wrong"}), 401, "unauthorized")
        assert upload(client, headers={"X-API-Key": "k1"}).status_code == 200
        assert client.get("/v1/online/report", headers={"X-API-Key": "k1"}).status_code == 200
        assert_error(upload(client, headers={"X-API-Key": "k1"}), 429, "rate_limited")
        assert client.get("/healthz").status_code == 200  # probes never need a key


def test_metrics_count_requests_per_route_template(client):
    upload(client)
    client.get("/nope/1")
    client.get("/nope/2")
    text = client.get("/metrics").text
    assert 'susik_http_requests_total{method="POST",route="/v1/recognize",status="200"} 1.0' in text
    assert 'susik_http_requests_total{method="GET",route="unmatched",status="404"} 2.0' in text
    assert 'susik_stage_seconds_bucket{le="0.005",mode="page",stage="detect"}' in text
    # the fake reads both regions (one printed, one handwritten) at 0.9: in the le=0.9 bucket, not below 0.8
    assert 'susik_region_confidence_bucket{kind="printed",le="0.9"} 1.0' in text
    assert 'susik_region_confidence_bucket{kind="handwritten",le="0.8"} 0.0' in text


def test_fuzzed_uploads_get_4xx_or_a_result_never_a_crash(tmp_path):
    rng = np.random.default_rng(7)
    seeds = [
        PHOTO,
        sample_photo(120, 90, ".png"),
        sample_photo(120, 90, ".webp"),
        sample_photo(60, 40, ".bmp"),
    ]
    statuses = []
    with make_client(tmp_path) as client:
        for index in range(150):
            data = np.frombuffer(seeds[index % len(seeds)], np.uint8).copy()
            action = index % 3
            if action == 0:  # overwrite bytes past the signature
                spots = rng.integers(8, len(data), size=int(rng.integers(1, 30)))
                data[spots] = rng.integers(0, 256, size=len(spots), dtype=np.uint8)
            elif action == 1:  # truncate
                data = data[: int(rng.integers(0, len(data)))]
            else:  # random bytes behind a real signature
                data = np.concatenate(
                    [data[:12], rng.integers(0, 256, size=int(rng.integers(0, 4000)), dtype=np.uint8)]
                )
            statuses.append(upload(client, data.tobytes()).status_code)
        assert client.get("/healthz").status_code == 200
    assert all(status == 200 or 400 <= status < 500 for status in statuses), sorted(set(statuses))
    assert sum(400 <= status < 500 for status in statuses) > 50
