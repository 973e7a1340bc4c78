"""Synthesis throughput: worksheet pages/s through `susik synth` (render + compose + degrade + JPEG), peak RSS.

    .venv/bin/python benchmarks/bench_synth.py [--n 200] [--workers 2] [--coverage]

The wall-clock rate depends on what else runs on the machine, so CPU seconds are printed beside it.
`--coverage` also prints `susik data stats` of the written set against the spec.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from susik.data.synth import SynthConfig, synthesize, write_pages
from susik.spec.dataset import load_spec


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--spec", type=Path, default=Path("specs/dataset.yaml"))
    parser.add_argument("--out", type=Path, default=None, help="keep the pages here (default: a temp dir)")
    parser.add_argument("--coverage", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        out = args.out or Path(scratch)
        start_wall, start_cpu = time.perf_counter(), _cpu_seconds()
        written, failures = write_pages(
            synthesize(load_spec(args.spec).pages, args.n, args.seed, SynthConfig(), workers=args.workers),
            out, SynthConfig().jpeg_quality)
        wall, cpu = time.perf_counter() - start_wall, _cpu_seconds() - start_cpu
        peak_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"pages: {written} in {wall:.1f} s wall on {args.workers} workers -> {written / wall:.2f} pages/s")
        print(f"cpu: {cpu:.1f} s -> {written / cpu:.2f} pages per CPU-second "
              f"(x{os.cpu_count()} cores = {written / cpu * (os.cpu_count() or 1):.1f} pages/s on idle cores)")
        print(f"TeX-rejected formulas (replaced): {failures}")
        print(f"peak RSS: main {peak_main:.0f} MB, largest worker {peak_child:.0f} MB")
        if args.coverage:
            from typer.testing import CliRunner

            from susik.cli import app

            result = CliRunner().invoke(app, ["data", "stats", str(out / "manifest.jsonl"), "--spec",
                                              str(args.spec), "--total", str(written)])
            print(result.output)


if __name__ == "__main__":
    main()
