"""Soak: a paced, bounded load against a live server for minutes; errors, latency and memory per minute.

    .venv/bin/python benchmarks/bench_soak.py [--minutes 10] [--rate 10] [--page-share 0.1] [--fake]

Starts `susik serve` (bundled models; stand-ins with --fake) on a free 127.0.0.1 port in a child process and
sends `--rate` requests a second from a few keep-alive clients for `--minutes` (crop mode, with
`--page-share` of them whole photos), then prints one row per minute (requests, errors, p50/p95, server RSS)
and the verdicts of the issue's targets: 0 errors and flat memory. "Flat" means the server's RSS grows by
less than 5% from the end of the first minute (warm-up: arenas and ONNX buffers settle) to the end, and its
least-squares slope over the same span (at least 4 minutes) is under 1 MB/min. The pacing is open-loop: a late request does not
postpone the next one, so a server slower than `--rate` shows up as rising latency, not as a lower load.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from susik.serve.bench import free_port, start_server
from susik.serve.fakes import sample_photo

RSS_EVERY_S = 5.0
WARM_UP_S = 60.0
MIN_JUDGED_S = 240.0  # a slope over less than this is mostly allocator noise


@dataclass(frozen=True)
class Outcome:
    sent_at: float  # seconds since the start
    latency_ms: float
    status: str


def current_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


def _send(client: httpx.Client, image: bytes, mode: str, start: float) -> Outcome:
    sent = time.perf_counter()
    try:
        response = client.post("/v1/recognize", files={"file": ("image", image)}, data={"mode": mode})
        status = str(response.status_code)
    except httpx.HTTPError as error:
        status = type(error).__name__
    return Outcome(sent - start, (time.perf_counter() - sent) * 1000, status)


def soak(url: str, pid: int, minutes: float, rate: float, page_share: float, clients: int) -> tuple[
        list[Outcome], list[tuple[float, float]]]:
    crop, photo = sample_photo(480, 160), sample_photo(640, 480)
    duration = minutes * 60
    total = int(duration * rate)
    every_page = round(1 / page_share) if page_share > 0 else 0
    rss: list[tuple[float, float]] = []
    done = threading.Event()

    def sample_memory() -> None:
        while not done.wait(RSS_EVERY_S):
            rss.append((time.perf_counter() - start, current_rss_mb(pid)))

    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=60)
        return local.client

    def one(index: int) -> Outcome:
        page = every_page and index % every_page == 0
        return _send(client(), photo if page else crop, "page" if page else "crop", start)

    start = time.perf_counter()
    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    futures = []
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for index in range(total):
            due = start + index / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            futures.append(pool.submit(one, index))
        outcomes = [future.result() for future in futures]
    done.set()
    rss.append((time.perf_counter() - start, current_rss_mb(pid)))
    return outcomes, rss


def per_minute(outcomes: list[Outcome], rss: list[tuple[float, float]]) -> list[dict]:
    rows = []
    for minute in range(int(max(o.sent_at for o in outcomes) // 60) + 1):
        inside = [o for o in outcomes if minute * 60 <= o.sent_at < (minute + 1) * 60]
        ok = [o.latency_ms for o in inside if o.status == "200"]
        memory = [mb for t, mb in rss if t < (minute + 1) * 60]
        rows.append({
            "minute": minute + 1,
            "requests": len(inside),
            "errors": len(inside) - len(ok),
            "p50_ms": round(float(np.percentile(ok, 50)), 1) if ok else None,
            "p95_ms": round(float(np.percentile(ok, 95)), 1) if ok else None,
            "rss_mb": round(memory[-1], 1) if memory else None,
        })
    return rows


def memory_verdict(rss: list[tuple[float, float]]) -> dict:
    settled = [(t, mb) for t, mb in rss if t >= WARM_UP_S]
    if not settled or settled[-1][0] - settled[0][0] < MIN_JUDGED_S:
        return {"flat": None, "why": f"under {MIN_JUDGED_S / 60:g} minutes after the warm-up: too short to judge"}
    times = np.array([t for t, _ in settled]) / 60
    values = np.array([mb for _, mb in settled])
    slope = float(np.polyfit(times, values, 1)[0])
    growth = float(values[-1] / values[0] - 1)
    return {"flat": bool(growth < 0.05 and slope < 1.0), "rss_after_warm_up_mb": round(float(values[0]), 1),
            "rss_end_mb": round(float(values[-1]), 1), "rss_peak_mb": round(max(mb for _, mb in rss), 1),
            "growth": round(growth, 4), "slope_mb_per_min": round(slope, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=10.0, help="requests a second (open loop)")
    parser.add_argument("--page-share", type=float, default=0.1, help="share of whole-photo requests")
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive connections at most")
    parser.add_argument("--fake", action="store_true", help="stand-in models: the HTTP stack alone")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    if not 0 < args.minutes <= 60 or not 0 < args.rate <= 200:
        parser.error("--minutes in (0, 60] and --rate in (0, 200]: the soak is bounded")
    with tempfile.TemporaryDirectory() as data_dir:
        port = free_port()
        server = start_server(port, Path(data_dir), args.fake)
        try:
            outcomes, rss = soak(f"http://127.0.0.1:{port}", server.pid, args.minutes, args.rate,
                                 args.page_share, args.clients)
            alive = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        finally:
            server.terminate()
            server.wait(timeout=30)
    errors: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.status != "200":
            errors[outcome.status] = errors.get(outcome.status, 0) + 1
    rows = per_minute(outcomes, rss)
    result = {
        "minutes": args.minutes, "rate": args.rate, "page_share": args.page_share, "fake": args.fake,
        "requests": len(outcomes), "errors": errors, "alive_after": alive,
        "sustained_rps": round(sum(1 for o in outcomes if o.status == "200") / (args.minutes * 60), 2),
        "memory": memory_verdict(rss), "per_minute": rows,
    }
    print(f"{'minute':>6} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8} {'RSS MB':>8}")
    for row in rows:
        print(f"{row['minute']:>6} {row['requests']:>8} {row['errors']:>6} {row['p50_ms'] or '-':>8} "
              f"{row['p95_ms'] or '-':>8} {row['rss_mb'] or '-':>8}")
    print(f"errors: {sum(errors.values())} {errors or ''} (target 0) · server alive after: {alive}")
    print(f"memory: {json.dumps(result['memory'])} (target: flat)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
