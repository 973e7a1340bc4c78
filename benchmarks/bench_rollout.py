"""A promotion under load: does the server swap to a new champion without failing or stalling requests?

    nice -n 19 .venv/bin/python benchmarks/bench_rollout.py [--users 4] [--duration 120] [--swaps 4]

Registers the bundled recognizer twice in a temporary MLflow store (versions 1 and 2; the same weights, but
each version is its own download and its own ONNX Runtime load), makes version 1 the champion, and starts
`susik serve` on a free 127.0.0.1 port following the registry (SUSIK_MODEL_SOURCE=registry, poll 1 s). A
bounded headless Locust run (benchmarks/locustfile.py: crops, pages and corrections) loads it. From
`--first-swap-at` seconds on, every `--every` seconds version 2 is promoted to champion or
`susik models rollback` brings version 1 back, alternately (`--swaps` in all; each loads the model afresh).
With `--canary-share`, version 2 is also the challenger from the start.

Prints the failed requests over the whole run (target 0); recognize p95 during the swaps (a swap window runs
from the promotion until 3 s after the server reports the new version) against steady state (all other
requests after the warm-up; target <= 1.5x); the server's peak RSS; the per-version traffic the store saw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from susik.eval.tracking import promote, register_model, rollback
from susik.models.registry import REPO_MODELS
from susik.serve.bench import free_port, machine, peak_rss_mb, start_server

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
AFTER_SWAP_S = 3.0  # requests still settling after the swap count as "during the swap"


def _p95(values: list[float]) -> float | None:
    return round(float(np.percentile(values, 95)), 1) if values else None


def _p50(values: list[float]) -> float | None:
    return round(float(np.percentile(values, 50)), 1) if values else None


def _wait_for_version(url: str, version: str, timeout_s: float) -> float:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if httpx.get(f"{url}/readyz", timeout=10).json().get("model_version") == version:
            return time.time()
        time.sleep(0.05)
    raise RuntimeError(f"the server did not switch to {version} within {timeout_s:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--users", type=int, default=4, help="Locust users (each waits 0.5-1.5 s between actions)"
    )
    parser.add_argument("--duration", type=int, default=120, help="seconds of load")
    parser.add_argument("--swaps", type=int, default=4, help="promotions and rollbacks, alternately")
    parser.add_argument("--first-swap-at", type=float, default=30, help="seconds into the load")
    parser.add_argument("--every", type=float, default=20, help="seconds between swaps")
    parser.add_argument("--warmup", type=float, default=10, help="seconds left out of the steady window")
    parser.add_argument("--canary-share", type=float, default=0.0, help="version 2's share as challenger")
    args = parser.parse_args()
    last_swap = args.first_swap_at + (args.swaps - 1) * args.every
    if args.swaps < 1 or not args.warmup < args.first_swap_at or last_swap > args.duration - 10:
        parser.error("need swaps >= 1, warmup < first-swap-at, and the last swap 10 s before the end")

    with tempfile.TemporaryDirectory(prefix="susik-rollout-") as scratch:
        root = Path(scratch)
        uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
        started = time.perf_counter()
        for _ in range(2):
            register_model("recognizer", REPO_MODELS / "recognizer", uri=uri)
        promote("recognizer", "1", "champion", uri)
        if args.canary_share:
            promote("recognizer", "2", "challenger", uri)
        registry_s = time.perf_counter() - started
        settings = {
            "SUSIK_MODEL_SOURCE": "registry",
            "SUSIK_TRACKING_URI": uri,
            "SUSIK_REGISTRY_POLL_S": "1",
            "SUSIK_CANARY_SHARE": str(args.canary_share),
        }
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = start_server(port, root / "data", fake=False, env=settings, timeout_s=300)
        log = root / "requests.csv"
        try:
            locust = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "locust",
                    "-f",
                    str(LOCUSTFILE),
                    "--headless",
                    "-u",
                    str(args.users),
                    "-r",
                    str(args.users),
                    "-t",
                    f"{args.duration}s",
                    "--host",
                    url,
                    "--only-summary",
                    "--exit-code-on-error",
                    "0",
                ],
                env={**os.environ, "SUSIK_LOCUST_LOG": str(log)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            load_start = time.time()
            swaps = []  # (promoted, served) times
            for index in range(args.swaps):
                time.sleep(max(0.0, load_start + args.first_swap_at + index * args.every - time.time()))
                promoted = time.time()
                if index % 2 == 0:
                    promote("recognizer", "2", "champion", uri)
                else:
                    rollback("recognizer", "champion", uri)
                swaps.append((promoted, _wait_for_version(url, f"recognizer@v{2 - index % 2}", timeout_s=60)))
            _, errors = locust.communicate(timeout=args.duration + 120)
            if locust.returncode != 0:
                raise RuntimeError(f"locust failed: {errors.decode(errors='replace')[-800:]}")
            rss = peak_rss_mb(server.pid)
            report = httpx.get(f"{url}/v1/online/report", timeout=60).json()
        finally:
            server.terminate()
            server.wait(timeout=30)
        rows = [line.split(",") for line in log.read_text().splitlines()]

    recognize = [
        (float(end), float(ms), failed == "1") for end, name, ms, failed in rows if "recognize" in name
    ]
    failed = sum(failed == "1" for *_, failed in rows)

    def in_swap(end: float) -> bool:
        return any(promoted <= end < served + AFTER_SWAP_S for promoted, served in swaps)

    ok_requests = [(end, ms) for end, ms, bad in recognize if not bad and end >= load_start + args.warmup]
    during = [ms for end, ms in ok_requests if in_swap(end)]
    steady = [ms for end, ms in ok_requests if not in_swap(end)]
    steady_p95, during_p95 = _p95(steady), _p95(during)
    result = {
        "machine": machine(),
        "users": args.users,
        "duration_s": args.duration,
        "canary_share": args.canary_share,
        "registry_setup_s": round(registry_s, 1),
        "requests": len(rows),
        "failed_requests": failed,
        "swaps": len(swaps),
        "promotion_to_served_s": [round(served - promoted, 2) for promoted, served in swaps],
        "recognize_p50_ms": {"steady": _p50(steady), "during_swaps": _p50(during)},
        "recognize_p95_ms": {"steady": steady_p95, "during_swaps": during_p95},
        "recognize_n": {"steady": len(steady), "during_swaps": len(during)},
        "swap_over_steady_p95": round(during_p95 / steady_p95, 2) if steady_p95 and during_p95 else None,
        "server_peak_rss_mb": rss,
        "served_per_version": {
            version: {
                key: row[key] for key in ("requests", "failed_requests", "latency_ms_p50", "latency_ms_p95")
            }
            for version, row in report["model_versions"].items()
        },
    }
    print(json.dumps(result, indent=2))
    ok = failed == 0 and result["swap_over_steady_p95"] is not None and result["swap_over_steady_p95"] <= 1.5
    print(
        f"targets: 0 failed requests ({failed}); swap p95 <= 1.5x steady ({result['swap_over_steady_p95']}x)"
        f" -> {'met' if ok else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
