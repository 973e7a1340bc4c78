"""Server robustness and HTTP overhead: fuzzed bad uploads against a live server, then memory after load.

    .venv/bin/python benchmarks/bench_serve.py [--fuzz 1000] [--fake] [--seed 0]

Starts `susik serve` (stand-in models with --fake) on a free 127.0.0.1 port in a child process, sends
`--fuzz` corrupted uploads (bytes overwritten past the signature, truncations, random bodies behind real
signatures, wrong formats, oversized bodies), and prints the answer codes, whether the server is still
alive and healthy, and its resident memory before and after. Latency and throughput: `susik bench`.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from susik.serve.bench import free_port, start_server
from susik.serve.fakes import sample_photo


def current_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def bad_uploads(count: int, rng: np.random.Generator) -> list[bytes]:
    seeds = [sample_photo(320, 240, ext) for ext in (".jpg", ".png", ".webp", ".bmp")]
    made = []
    for index in range(count):
        data = np.frombuffer(seeds[index % len(seeds)], np.uint8).copy()
        action = index % 5
        if action == 0:
            spots = rng.integers(8, len(data), size=int(rng.integers(1, 64)))
            data[spots] = rng.integers(0, 256, size=len(spots), dtype=np.uint8)
        elif action == 1:
            data = data[: int(rng.integers(0, len(data)))]
        elif action == 2:
            data = np.concatenate(
                [data[:12], rng.integers(0, 256, size=int(rng.integers(0, 20_000)), dtype=np.uint8)]
            )
        elif action == 3:
            data = rng.integers(0, 256, size=int(rng.integers(0, 5_000)), dtype=np.uint8)
        else:  # a header that claims a huge image
            data = data.copy()
            if bytes(data[:4]) == b"\x89PNG":
                data[16:24] = np.frombuffer((60_000).to_bytes(4, "big") * 2, np.uint8)
        made.append(data.tobytes())
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fuzz", type=int, default=1000)
    parser.add_argument("--fake", action="store_true", help="stand-in models (the HTTP stack alone)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    uploads = bad_uploads(args.fuzz, np.random.default_rng(args.seed))
    with tempfile.TemporaryDirectory(prefix="susik-bench-") as scratch:
        port = free_port()
        server = start_server(port, Path(scratch), args.fake)
        url = f"http://127.0.0.1:{port}"
        try:
            rss_before = current_rss_mb(server.pid)
            codes: collections.Counter = collections.Counter()
            start = time.perf_counter()
            with httpx.Client(base_url=url, timeout=30) as client:
                for data in uploads:
                    codes[client.post("/v1/recognize", files={"file": ("x", data)}).status_code] += 1
                oversized = client.post("/v1/recognize", files={"file": ("x", bytes(16_000_000))})
                codes[oversized.status_code] += 1
                healthy = client.get("/readyz").status_code == 200
                good = client.post("/v1/recognize", files={"file": ("x", sample_photo())}).status_code
            wall = time.perf_counter() - start
            result = {
                "uploads": len(uploads) + 1,
                "codes": dict(sorted(codes.items())),
                "server_errors": sum(n for code, n in codes.items() if code >= 500),
                "alive_and_ready": healthy and server.poll() is None,
                "good_upload_after": good,
                "rss_mb_before": rss_before,
                "rss_mb_after": current_rss_mb(server.pid),
                "seconds": round(wall, 1),
                "fake_models": args.fake,
            }
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
