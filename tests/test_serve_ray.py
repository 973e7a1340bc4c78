"""The app on Ray Serve with 2 local replicas (extra `[scale]`; skipped without Ray)."""

import socket
import sqlite3

import httpx
import pytest

from susik.serve import Settings
from susik.serve.fakes import fake_factory, sample_photo

ray = pytest.importorskip("ray", reason="Ray Serve is the optional [scale] extra")
pytestmark = pytest.mark.slow


def test_two_replicas_serve_the_same_api_and_share_the_store(tmp_path):
    from ray import serve

    from susik.serve.ray_backend import serve_on_ray

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        serve_on_ray(Settings(data_dir=tmp_path), "127.0.0.1", port, replicas=2, replica_cpus=0.5,
                     pipeline_factory=fake_factory, blocking=False)
        deployment = serve.status().applications["susik"].deployments["Susik"]
        assert deployment.replica_states == {"RUNNING": 2}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            answers = [client.post("/v1/recognize", files={"file": ("p.jpg", sample_photo(320, 240))})
                       for _ in range(12)]
            assert [answer.status_code for answer in answers] == [200] * 12
            ids = [answer.json()["request_id"] for answer in answers]
            # Feedback may reach the other replica: both use the one store.
            for request_id in ids[:4]:
                verdict = {"request_id": request_id, "region": 0, "accepted": True}
                assert client.post("/v1/feedback", json=verdict).status_code == 201
            assert client.get("/readyz").json()["model_version"] == "fake-1"
        with sqlite3.connect(tmp_path / "susik.db") as db:
            assert db.execute("SELECT count(*) FROM requests WHERE status = 'done'").fetchone() == (12,)
            assert db.execute("SELECT count(*) FROM feedback").fetchone() == (4,)
    finally:
        serve.shutdown()
        ray.shutdown()
