"""On-device reading in headless Chromium against the server: the share of generated crops whose in-browser
LaTeX equals the server's crop mode, and the in-browser latency per crop. Prints figures; it is not a test.

    .venv/bin/python benchmarks/bench_edge.py [--n 200] [--seed 0]

Crops are K-12 formulas rendered by TeX (susik.data.render), PNG-encoded; the server (bundled models, on a
loopback port) reads each with POST /v1/recognize mode=crop, one at a time, and the page reads the same bytes
with `window.susikEdge.readCrop` (onnxruntime-web, WASM, one thread). Latency is the page's own clock from
the encoded image to the LaTeX: decode + preprocess + encoder + greedy decoder steps, after 3 warm-up crops.
Targets (specs, issue 10): >= 99% identical, crop p50 <= 150 ms on a 2-core machine. The load average is
printed: other jobs on the machine inflate the latency.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import cv2
import httpx
import numpy as np
import typer
import uvicorn

from susik.data.corpus import K12Generator
from susik.data.render import TexRenderer
from susik.serve import Settings, create_app

WARM_UP = 3
READ = """
const [crops, done] = arguments;
(async () => {
  await window.susikEdge.ready();
  const out = [];
  for (const data of crops) {
    const blob = await (await fetch(`data:image/png;base64,${data}`)).blob();
    const start = performance.now();
    const crop = await window.susikEdge.readCrop(blob);
    out.push({ latex: crop.latex, ms: performance.now() - start, parts: crop.ms });
  }
  return out;
})().then(done, (error) => done({ error: error.message }));
"""


def rendered_crops(n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    generator = K12Generator(rng)
    images: list[bytes] = []
    renderer = TexRenderer()
    while len(images) < n:
        formulas = [generator.sample() for _ in range(n - len(images))]
        for rendered in renderer.render(formulas, rng):
            if rendered is not None:
                images.append(cv2.imencode(".png", rendered.image)[1].tobytes())
    return images[:n]


def serve(app) -> tuple[uvicorn.Server, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def chromium(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def main(
    n: Annotated[int, typer.Option(help="generated crops")] = 200,
    seed: Annotated[int, typer.Option(help="formula and rendering seed")] = 0,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads of the server")] = 1,
) -> None:
    start = time.perf_counter()
    pngs = rendered_crops(n, seed)
    print(f"rendered {len(pngs)} crops in {time.perf_counter() - start:.1f} s")
    with tempfile.TemporaryDirectory() as scratch:
        app = create_app(Settings(data_dir=Path(scratch) / "data", onnx_threads=threads))
        server, url = serve(app)
        try:
            server_latex = []
            for png in pngs:
                response = httpx.post(f"{url}/v1/recognize", files={"file": ("c.png", png)}, data={"mode": "crop"},
                                      timeout=60)
                response.raise_for_status()
                server_latex.append(response.json()["regions"][0]["latex"])
            print(f"load average before the browser: {os.getloadavg()}")
            driver = chromium(Path(scratch) / "chromium")
            try:
                driver.set_script_timeout(3600)
                driver.get(url)
                encoded = [base64.b64encode(png).decode() for png in pngs]
                warm = driver.execute_async_script(READ, encoded[:WARM_UP])
                if isinstance(warm, dict):
                    raise SystemExit(f"in-browser reading failed: {warm['error']}")
                results = driver.execute_async_script(READ, encoded)
            finally:
                driver.quit()
        finally:
            server.should_exit = True
    print(f"load average after: {os.getloadavg()}")
    same = [r["latex"] == s for r, s in zip(results, server_latex, strict=True)]
    ms = [r["ms"] for r in results]
    quantiles = statistics.quantiles(ms, n=20)
    parts = {key: statistics.median(r["parts"][key] for r in results) for key in results[0]["parts"]}
    print(f"identical to the server: {sum(same)}/{len(same)} = {100 * sum(same) / len(same):.1f}% (target >= 99%)")
    print(f"in-browser crop latency: p50 {statistics.median(ms):.0f} ms, p95 {quantiles[18]:.0f} ms "
          f"(target p50 <= 150 ms); medians per part: "
          + ", ".join(f"{key} {value:.1f} ms" for key, value in parts.items()))
    tokens = [len(s) for s in server_latex]
    print(f"LaTeX length (characters): median {statistics.median(tokens):.0f}, max {max(tokens)}")
    for r, s in [(r, s) for r, s, ok in zip(results, server_latex, same, strict=True) if not ok][:5]:
        print(f"  differs: server {s!r}\n           device {r['latex']!r}")


if __name__ == "__main__":
    typer.run(main)
