"""Locust scenario for the susik API: phone users sending formula crops and pages, sometimes correcting one.

Headless, bounded in time, against a server on this machine only:

    .venv/bin/susik serve --port 8000 &          # or, for the HTTP stack alone:
    .venv/bin/uvicorn --factory susik.serve.fakes:create_fake_app --port 8000 &
    .venv/bin/locust -f benchmarks/locustfile.py --headless -u 20 -r 5 -t 60s --host http://127.0.0.1:8000 \
        --csv /tmp/susik-locust

Users wait 0.5-1.5 s between actions (a person looking at the result); raise -u to raise the load. The
sustained QPS is the highest total RPS whose p95 stays <= 1 s with < 1% failures (see the --csv stats).
With SUSIK_LOCUST_LOG=path, every request is also written there as a CSV line (end time, name, ms, failed):
benchmarks/bench_rollout.py reads it to split latencies into time windows.
"""

from __future__ import annotations

import os
import random
import time
from urllib.parse import urlparse

from locust import HttpUser, between, events, task

from susik.serve.fakes import sample_photo

LOCAL = {"127.0.0.1", "localhost", "::1"}


@events.init.add_listener
def _local_only(environment, **_kwargs) -> None:
    host = urlparse(environment.host or "").hostname
    if host not in LOCAL:
        raise SystemExit(f"this scenario only targets a local server (127.0.0.1), not {host!r}")


@events.init.add_listener
def _request_log(environment, **_kwargs) -> None:
    path = os.environ.get("SUSIK_LOCUST_LOG")
    if not path:
        return
    log = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the whole run

    @environment.events.request.add_listener
    def _write(name, response_time, exception, **_request) -> None:
        log.write(f"{time.time():.3f},{name},{response_time:.1f},{int(exception is not None)}\n")


CROP, PAGE = sample_photo(480, 160), sample_photo(1280, 960)


class PhoneUser(HttpUser):
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.last: dict | None = None

    def _recognize(self, mode: str, image: bytes) -> None:
        with self.client.post(
            "/v1/recognize",
            files={"file": ("photo.jpg", image, "image/jpeg")},
            data={"mode": mode},
            name=f"/v1/recognize [{mode}]",
            catch_response=True,
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code}: {answer.text[:120]}")
                return
            self.last = answer.json()

    @task(8)
    def crop(self) -> None:
        self._recognize("crop", CROP)

    @task(2)
    def page(self) -> None:
        self._recognize("page", PAGE)

    @task(1)
    def correct(self) -> None:
        if not self.last or not self.last["regions"]:
            return
        region = random.randrange(len(self.last["regions"]))
        self.client.post(
            "/v1/feedback",
            json={
                "request_id": self.last["request_id"],
                "region": region,
                "latex": "x^{2}+1",
                "display_ms": random.uniform(150, 900),
            },
        )
