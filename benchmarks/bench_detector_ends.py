"""Where the detector's regions end against their formulas' (`susik.eval.region_ends`): the share of matched
regions that start late (a leading minus or letter cut off), stop short, or reach half a line height into the
neighbouring text, per kind. F1 at IoU 0.5 hides these; the recognizer pays for them. Prints figures; it is
not a test.

    .venv/bin/python benchmarks/bench_detector_ends.py --pages work/det/tune_all.jsonl
    .venv/bin/python benchmarks/bench_detector_ends.py --detector runs/x/export/detector --limit 100

The detector's own region (its quad), not the recognizer's crop with its margin, is compared with the truth.
"""

from __future__ import annotations

import json
import resource
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import typer

from susik.eval.detect_match import match_regions
from susik.eval.region_ends import EdgeOffsets, edge_offsets, summarize
from susik.runtime.detector import OnnxDetector
from susik.runtime.image_io import load_image


def main(
    detector: Annotated[Path | None, typer.Option(help="detector folder/record (default: models/detector)")] = None,
    pages: Annotated[Path, typer.Option(help="page manifest with true quads")] = Path("work/det/val/manifest.jsonl"),
    limit: Annotated[int | None, typer.Option(help="score at most this many pages")] = None,
    short: Annotated[float, typer.Option(help="line heights short of an end that count as a miss")] = 0.1,
    reach: Annotated[float, typer.Option(help="line heights past an end that count as reaching")] = 0.5,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads")] = 1,
    out: Annotated[Path | None, typer.Option(help="also write the figures to this JSON file")] = None,
) -> None:
    if not pages.is_file():  # as bench_pipeline: nothing to measure on a machine without held-out pages
        print(f"no page manifest at {pages}: `susik train detector --config configs/detector_small.yaml` makes "
              "the held-out pages (its generate_val), or pass --pages")
        return
    model = OnnxDetector.load(detector, threads=threads)
    records = [json.loads(line) for line in pages.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]
    offsets: dict[str, list[EdgeOffsets]] = defaultdict(list)
    missed: dict[str, int] = defaultdict(int)
    clock = time.perf_counter()
    for record in records:
        found = model([load_image(pages.parent / record["image"])])[0].detections
        truths = record["regions"]
        matches = match_regions([d.polygon for d in found], [r["polygon"] or r["quad"] for r in truths])
        matched = {truth: guess for guess, truth, _ in matches}
        for index, truth in enumerate(truths):
            if index not in matched:
                missed[truth["kind"]] += 1
                continue
            offsets[truth["kind"]].append(edge_offsets(truth["quad"], found[matched[index]].quad.points))
    report: dict = {"pages": len(records), "short": short, "reach": reach}
    for kind in sorted(set(offsets) | set(missed)):
        report[kind] = {**summarize(offsets[kind], short, reach).to_json(), "missed": missed[kind]}
    report["seconds"] = round(time.perf_counter() - clock, 1)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report))
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    typer.run(main)
