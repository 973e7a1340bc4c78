"""Sweep the detector's postprocessing thresholds and input size on held-out pages. Prints figures.

    .venv/bin/python benchmarks/tune_detector.py --detector models/detector --limit 100

The net runs once per page and long side; thresholds are swept on the cached maps (postprocessing is cheap),
so the sweep costs little more than one evaluation per size. Tune on pages the final benchmark does not
score (`--offset`), or the chosen thresholds flatter the reported F1.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated

import cv2
import typer

from susik.eval.detect_match import DetectionCounts, count_page
from susik.runtime.detector import DetectParams, OnnxDetector, detect_page


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main(
    detector: Annotated[Path | None, typer.Option(help="detector folder (default: models/detector)")] = None,
    pages: Annotated[Path, typer.Option()] = Path("work/det/val/manifest.jsonl"),
    limit: Annotated[int, typer.Option()] = 100,
    offset: Annotated[int, typer.Option(help="skip this many pages first")] = 200,
    long_sides: Annotated[str, typer.Option(help="comma-separated")] = "640,768,896",
    kernels: Annotated[str, typer.Option(help="kernel thresholds, comma-separated")] = "0.3,0.4,0.5",
    boxes: Annotated[str, typer.Option(help="box thresholds, comma-separated")] = "0.5,0.6,0.7",
    merge_gaps: Annotated[str, typer.Option(help="line-merge gaps in line heights, comma-separated (0: off)")] = "0",
    threads: int = 2,
) -> None:
    found = OnnxDetector.load(detector, threads)
    lines = pages.read_text(encoding="utf-8").splitlines()[offset : offset + limit]
    records = [json.loads(line) for line in lines]
    images = [cv2.imread(str(pages.parent / r["image"]), cv2.IMREAD_COLOR) for r in records]
    truths = [[r["polygon"] or r["quad"] for r in record["regions"]] for record in records]
    results = []
    for long_side in (int(x) for x in long_sides.split(",")):
        cached = []
        for image in images:
            outputs: list = []
            detect_page(image, lambda tensor, out=outputs: out.append(found._run(tensor)) or out[-1],
                        DetectParams(long_side=long_side))
            cached.append(outputs[0])
        for kernel, box, gap in itertools.product(_floats(kernels), _floats(boxes), _floats(merge_gaps)):
            if box < kernel:
                continue
            params = DetectParams(long_side=long_side, kernel_threshold=kernel, box_threshold=box, merge_gap=gap)
            total = DetectionCounts()
            for image, maps, truth in zip(images, cached, truths, strict=True):
                page = detect_page(image, lambda tensor, maps=maps: maps, params)
                total = total + count_page([d.polygon for d in page.detections], truth)
            results.append({"long_side": long_side, "kernel": kernel, "box": box, "merge_gap": gap, "precision": round(total.precision, 4),
                            "recall": round(total.recall, 4), "f1": round(total.f1, 4)})
            print(json.dumps(results[-1]))
    print("best:", json.dumps(max(results, key=lambda r: r["f1"])))


if __name__ == "__main__":
    typer.run(main)
