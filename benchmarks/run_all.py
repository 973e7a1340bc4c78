"""Runs every benchmark that needs no GPU, one after another, printing their figures.

    .venv/bin/python benchmarks/run_all.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Each entry: script and its arguments; the quality benchmarks need ../shared/data and the bundled models.
BENCHMARKS = [
    ("bench_render.py", ["--n", "4096"]),
    ("bench_synth.py", ["--n", "100"]),
    ("bench_handwriting.py", []),
    ("bench_recognizer_speed.py", []),
    ("bench_recognizer_quality.py", []),
    ("bench_pipeline.py", []),
    ("bench_detector_ends.py", []),
    ("bench_closeups.py", []),
    ("bench_serve.py", []),
]


def main() -> int:
    failed = []
    for script, args in BENCHMARKS:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / script), *args], check=False).returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
