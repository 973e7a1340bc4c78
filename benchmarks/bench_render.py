"""Rendering throughput: formulas/s through latex + dvipng on N worker processes, failures, peak RSS.

    .venv/bin/python benchmarks/bench_render.py [--n 8000] [--workers 2] [--batch-size 1024] [--profile]

Formulas are half corpus lines (../shared/data/corpus when present, else all generated) and half K-12
generated. The wall-clock rate depends on what else runs on the machine, so the CPU time the TeX tools and
workers used is printed too: formulas per CPU-second times the core count is the rate on idle cores.
`--profile` times the phases of one batch in this process: latex, dvipng, PNG decode + crop.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from susik.data.corpus import FormulaSource
from susik.data.render import (
    FONTS,
    RenderConfig,
    _crop,
    _format,
    _Page,
    _rasterise,
    _typeset,
    default_cache_dir,
    render_many,
    tex_safe,
)

DEFAULT_CORPUS = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "corpus" / "im2latex_train_formulas.txt"
)


def formulas(n: int, corpus: Path, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    source = FormulaSource(rng, corpus, 0.5) if corpus.exists() else FormulaSource(rng, generated_ratio=1.0)
    return [s.latex for s in source.take(n)]


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def profile(batch: list[str], config: RenderConfig) -> None:
    """Phase times for one batch in one font (latex starts up once per font present in a batch)."""
    font = config.fonts[0]
    pages = [_Page(i, f, config.sizes_pt[0]) for i, f in enumerate(batch) if tex_safe(f)]
    with tempfile.TemporaryDirectory() as tmp:
        fmt = _format(FONTS[font], default_cache_dir(), config.timeout_s)  # built outside the timing
        start = time.perf_counter()
        placed = _typeset(pages, FONTS[font], Path(tmp), config, fmt)
        latex_s = time.perf_counter() - start
        start = time.perf_counter()
        for dvi in {p.dvi for p in placed.values()}:
            _rasterise(dvi, config.dpi_max, 600)
        dvipng_s = time.perf_counter() - start
        start = time.perf_counter()
        for where in placed.values():
            image = cv2.imread(str(where.dvi.parent / f"{where.dvi.stem}-{where.physical_page}.png"), 0)
            _crop(image, config.margin_px)
        decode_s = time.perf_counter() - start
    n = len(batch)
    print(
        f"profile ({n} formulas, font {font}, {config.dpi_max} dpi): latex {latex_s:.2f}s "
        f"({1000 * latex_s / n:.2f} ms/formula incl. start-up), dvipng {dvipng_s:.2f}s "
        f"({1000 * dvipng_s / n:.2f} ms/formula), decode+crop {decode_s:.2f}s "
        f"({1000 * decode_s / n:.2f} ms/formula)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    config = RenderConfig()
    batch = formulas(args.n, args.corpus, args.seed)
    if args.profile:
        profile(batch[: args.batch_size], config)

    cpu_before, start = cpu_seconds(), time.perf_counter()
    failed = sum(
        r is None
        for r in render_many(batch, config, workers=args.workers, batch_size=args.batch_size, seed=args.seed)
    )
    wall = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_before
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "bench": "render",
        "n": args.n,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "formulas_per_s": round(args.n / wall, 1),
        "failed": failed,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "formulas_per_cpu_s": round(args.n / cpu, 1),
        "peak_rss_mb": {"main": round(rss_self, 1), "largest_child": round(rss_child, 1)},
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "fonts": config.fonts,
    }
    print(
        f"{result['formulas_per_s']} formulas/s on {args.workers} workers ({args.n} formulas in {wall:.1f}s, "
        f"{failed} failed); {result['formulas_per_cpu_s']} formulas per CPU-second; peak RSS "
        f"main {rss_self:.0f} MB, largest child {rss_child:.0f} MB; load average {result['load_avg_1m']}"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
