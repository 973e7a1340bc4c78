"""HTTP load measurement: latency per stage and end to end, throughput against concurrency, peak memory.

Clients are threads in this process, so on a small machine they share the cores with the server: the
figures are what one machine delivers to local callers, a lower bound for remote ones.
"""

from __future__ import annotations

import itertools
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    port: int, data_dir: Path, fake: bool, timeout_s: float = 120, env: Mapping[str, str] | None = None
) -> subprocess.Popen:
    """`susik serve` in a child process (so its memory is measurable on its own); waits for /readyz.
    `env`: more SUSIK_* settings for it."""
    factory = "susik.serve.fakes:create_fake_app" if fake else "susik.serve.app:create_app"
    env = {**os.environ, "SUSIK_DATA_DIR": str(data_dir), **(env or {})}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            factory,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode(errors='replace')[-500:]}")
        try:
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if ready.status_code == 200:
                return process
            if ready.status_code == 503:
                process.terminate()
                raise RuntimeError(f"server not ready: {ready.json().get('detail')}")
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server not ready after {timeout_s:g} s")


def peak_rss_mb(pid: int) -> float | None:
    """The process's high-water resident memory (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    return {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 95, 99)}


def run_level(
    url: str,
    mode: str,
    images: list[bytes],
    concurrency: int,
    total: int,
    on_done: Callable[[], None] | None = None,
) -> dict:
    """`total` requests from `concurrency` threads, each on its own keep-alive connection."""
    tickets = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    stages: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while (ticket := next(tickets)) < total:
                image = images[ticket % len(images)]
                start = time.perf_counter()
                try:
                    response = client.post(
                        "/v1/recognize", files={"file": ("image", image)}, data={"mode": mode}
                    )
                    status = str(response.status_code)
                except httpx.HTTPError as error:
                    response, status = None, type(error).__name__
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    if response is not None and response.status_code == 200:
                        latencies.append(elapsed)
                        for stage, ms in response.json()["timings_ms"].items():
                            stages[stage].append(ms)
                    else:
                        errors[status] += 1
                if on_done is not None:
                    on_done()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": total,
        "errors": dict(errors),
        "error_rate": round(sum(errors.values()) / total, 4),
        "rps": round(len(latencies) / wall, 2),
        "latency_ms": _percentiles(latencies),
        "stages_ms": {stage: _percentiles(values) for stage, values in sorted(stages.items())},
    }


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
