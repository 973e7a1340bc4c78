"""Prometheus metrics, one registry per app (no process-global state, so tests can build many apps)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.4, 0.6, 1.0, 1.5, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "susik_http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "susik_http_request_seconds",
            "HTTP request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage = Histogram(
            "susik_stage_seconds",
            "pipeline stage latency per image",
            ["mode", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "susik_batch_size", "images per pipeline call", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queue_depth = Gauge("susik_queue_depth", "images waiting for inference", registry=self.registry)
        self.rejected = Counter(
            "susik_rejected",
            "requests refused before inference, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.feedback = Counter(
            "susik_feedback", "feedback rows by outcome", ["outcome"], registry=self.registry
        )
        self.correction_rate = Gauge(
            "susik_correction_rate",
            "corrected / feedback with a verdict, since this process started",
            registry=self.registry,
        )
        # calibrated: its mean is the expected exact-match rate, so a drop is new kinds of photo before any feedback
        self.confidence = Histogram(
            "susik_region_confidence",
            "served confidence of each region read, by kind",
            ["kind"],
            buckets=CONFIDENCE_BUCKETS,
            registry=self.registry,
        )
        self._verdicts, self._corrected, self._lock = 0, 0, threading.Lock()

    def observe_page(self, mode: str, timings_ms: dict[str, float], regions: Sequence[tuple[str, float]] = ()) -> None:
        """A page's stage timings and its regions' (kind, confidence)."""
        for stage, ms in timings_ms.items():
            self.stage.labels(mode, stage).observe(ms / 1000)
        for kind, confidence in regions:
            self.confidence.labels(kind).observe(confidence)

    def observe_feedback(self, corrected: bool, has_verdict: bool) -> None:
        outcome = "corrected" if corrected else "accepted" if has_verdict else "comment"
        self.feedback.labels(outcome).inc()
        if has_verdict:
            with self._lock:
                self._verdicts += 1
                self._corrected += corrected
                self.correction_rate.set(self._corrected / self._verdicts)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware counting requests per route template (not per raw path, which is unbounded)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        clock = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", None) or ("unmatched" if status == 404 else "other")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - clock)
