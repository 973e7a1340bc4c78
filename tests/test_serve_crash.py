"""Kill -9 a real server mid-request: nothing it accepted may be lost (SQLite WAL, commit before answer)."""

import multiprocessing
import os
import signal
import socket
import sqlite3
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from susik.serve import Settings, create_app
from susik.serve.fakes import fake_pipelines, sample_photo


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serve(data_dir, port, delay_s):
    app = create_app(Settings(data_dir=data_dir), pipeline_factory=lambda _: fake_pipelines(delay_s=delay_s))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start_server(data_dir, port, delay_s):
    """uvicorn in a forked child: a real process to kill, without re-importing everything (seconds)."""
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(data_dir, port, delay_s))
    process.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not process.is_alive():
            pytest.fail(f"server exited with {process.exitcode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("server did not become ready in 30 s")


def rows(database):
    with sqlite3.connect(database) as db:
        return {row[0]: row[1:] for row in db.execute("SELECT id, status, image_path, page FROM requests")}


def test_kill_9_mid_request_loses_no_record(tmp_path):
    port, photo = _free_port(), sample_photo(200, 150)
    url = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port, delay_s=0.5)
    try:
        consent = {"consent": "true"}
        done = httpx.post(
            f"{url}/v1/recognize", files={"file": ("a.jpg", photo)}, data=consent, timeout=10
        ).json()
        feedback = httpx.post(
            f"{url}/v1/feedback",
            timeout=10,
            json={"request_id": done["request_id"], "region": 0, "latex": "x", "display_ms": 700},
        )
        assert feedback.status_code == 201

        # A second upload goes into (slow) inference; kill the server while it is there.
        def doomed():
            with pytest.raises(httpx.TransportError):  # the server dies before it answers
                httpx.post(f"{url}/v1/recognize", files={"file": ("b.png", other)}, data=consent, timeout=10)

        other = sample_photo(220, 150, ".png")
        threading.Thread(target=doomed, daemon=True).start()
        database = tmp_path / "susik.db"
        deadline = time.monotonic() + 5
        while len(rows(database)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(server.pid, signal.SIGKILL)
        server.join(timeout=10)
    finally:
        if server.is_alive():
            server.kill()

    after = rows(database)
    assert after[done["request_id"]][0] == "done" and after[done["request_id"]][2] is not None
    in_flight = [values for key, values in after.items() if key != done["request_id"]]
    assert [values[0] for values in in_flight] == ["received"]  # accepted, never answered, still on record
    assert (tmp_path / "images" / in_flight[0][1]).read_bytes() == other

    # A fresh server opens the crashed database and carries on.
    restarted = create_app(Settings(data_dir=tmp_path), pipeline_factory=lambda _: fake_pipelines())
    with TestClient(restarted) as client:
        report = client.get("/v1/online/report").json()["model_versions"]["fake-1"]
        assert (report["requests"], report["feedback"], report["corrected"]) == (2, 1, 1)
        verdict = {"request_id": done["request_id"], "region": 1, "accepted": True}
        again = client.post("/v1/feedback", json=verdict)
        assert again.status_code == 201
