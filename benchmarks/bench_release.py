"""Release pipeline timings: the tiny profile end to end, a re-run with nothing changed, a re-run after a
requirements change (gate and promotion only). Each run is `susik release` as a user types it, in a fresh
git repository holding dvc.yaml, specs/, the configs the profile names and its tiny inputs.

    nice .venv/bin/python benchmarks/bench_release.py [--keep DIR]

Wall time depends on what else runs on the machine, so the CPU seconds of all the processes are printed
beside it; each stage is a fresh `susik` process, and its start-up is part of every figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUSIK = Path(sys.executable).parent / "susik"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _scaffold(root: Path) -> None:
    (root / "specs").mkdir(parents=True)
    (root / "configs").mkdir()
    shutil.copy(REPO / "dvc.yaml", root)
    for name in ("dataset.yaml", "requirements.yaml"):
        shutil.copy(REPO / "specs" / name, root / "specs")
    for name in ("release_tiny.yaml", "recognizer_tiny.yaml", "detector_small.yaml"):
        shutil.copy(REPO / "configs" / name, root / "configs")
    subprocess.run([str(SUSIK), "release", "tiny-inputs", "--repo", str(root)], check=True, capture_output=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)


def _release(root: Path, label: str) -> dict:
    wall, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run([str(SUSIK), "release", "--config", "configs/release_tiny.yaml"], cwd=root,
                          capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - wall, _children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"{label}: susik release failed: {done.stderr.strip().splitlines()[-1:]}")
    summary = json.loads((root / "release/last_run.json").read_text())
    print(f"{label:<28} {wall:7.1f} s wall  {cpu:7.1f} s CPU  ran {len(summary['ran']):2d}, "
          f"unchanged {len(summary['skipped']):2d}", flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="build the repository here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="susik-release-") as scratch:
        root = args.keep or Path(scratch) / "repo"
        _scaffold(root)
        first = _release(root, "tiny profile, end to end")
        for stage, seconds in first["ran"].items():
            print(f"  {stage:<26} {seconds:6.1f} s")
        _release(root, "nothing changed")
        requirements = root / "specs/requirements.yaml"
        requirements.write_text(requirements.read_text().replace("qps: 5", "qps: 4"))
        changed = _release(root, "requirements changed")
        print(f"  re-ran: {', '.join(changed['ran'])}")


if __name__ == "__main__":
    main()
