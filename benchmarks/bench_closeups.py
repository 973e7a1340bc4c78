"""The detector on close-up photos, where text is larger than on a whole worksheet. Prints figures; it is not a test.

A student photographs one problem from close by, so its text reaches the detector two to four times as large
as on a whole-page photo. Four checks:

- text only: lines of Korean and English sentences (not the page generator's own) in each installed Nanum font,
  at several text heights as the detector sees them, on grey paper with noise: every region found is false;
- close-ups: a window of 35-55% of a held-out page's width around one of its formulas, cut at the page's own
  pixels (the detector sees it about 1.4x as large as the whole page): recall of the formulas wholly inside at
  IoU 0.5, and regions found that match none of them and do not lie on a formula the window cuts;
- photographed: windows of 30-50% of the width enlarged to 1600 px wide, as a phone photo of that part of the
  sheet fills the frame (2-3.5x as large as the whole page at the detector's input); the same figures;
- filling the frame: one formula cut with a little paper around it and enlarged to 1800 px wide, as a photo of
  that formula alone: the share where exactly one region is found and matches it (IoU 0.5), and the share read
  exactly end to end, read as one crop, and read as the crop mode reads it (`susik.one_formula`: the whole
  photo or the formula found in it, whichever reads surer), printed and handwritten.

    .venv/bin/python benchmarks/bench_closeups.py
    .venv/bin/python benchmarks/bench_closeups.py --detector runs/x/export/detector --limit 100
    .venv/bin/python benchmarks/bench_closeups.py --param closeup_letters_above=0    # without the shrinking
"""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from susik.eval.detect_match import match_regions
from susik.eval.metrics import score_sample
from susik.one_formula import OneFormulaReader
from susik.pipeline import Pipeline
from susik.runtime.detector import DetectParams, OnnxDetector
from susik.runtime.image_io import load_image
from susik.runtime.orient import DeskewOrienter
from susik.runtime.recognizer import OnnxRecognizer

FONT_DIR = Path("/usr/share/fonts/truetype/nanum")
FONTS = ("NanumGothic.ttf", "NanumMyeongjo.ttf", "NanumBarunGothic.ttf", "NanumSquareR.ttf")
SENTENCES = (
    "다음 물음에 답하시오.", "철수는 사과를 세 개 샀습니다.", "영희의 키는 몇 센티미터입니까?",
    "그림과 같이 삼각형의 넓이를 구하여라.", "두 점 사이의 거리를 구하시오.", "옳은 것을 모두 고르시오.",
    "Answer the questions below.", "The train leaves at noon and arrives late.", "Explain your reasoning.",
)
TEXT_HEIGHTS = (12, 20, 28, 36, 44)


def text_page(font_path: Path, size: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), size)
    width, pitch = min(1152, 26 * size), int(2.2 * size)
    height = min(1152, pitch * 6 + 2 * size)
    paper = float(rng.uniform(190, 235))
    image = Image.new("L", (width, height), int(paper))
    draw = ImageDraw.Draw(image)
    for row in range(6):
        text = " ".join(SENTENCES[int(i)] for i in rng.permutation(len(SENTENCES))[:2])
        draw.text((size, size + row * pitch), text, fill=int(paper - rng.uniform(120, 170)), font=font)
    gray = np.asarray(image, np.float32) + rng.normal(0, 3, (height, width))
    gray = cv2.GaussianBlur(np.clip(gray, 0, 255).astype(np.uint8), (3, 3), 0)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def text_only(model: OnnxDetector, seed: int) -> dict:
    fonts = [FONT_DIR / name for name in FONTS if (FONT_DIR / name).is_file()]
    if not fonts:
        return {"note": f"no Nanum fonts in {FONT_DIR} (Debian fonts-nanum)"}
    rng = np.random.default_rng(seed)
    report = {"fonts": [font.name for font in fonts], "images_per_height": len(fonts)}
    for size in TEXT_HEIGHTS:
        found = [len(model([text_page(font, size, rng)])[0].detections) for font in fonts]
        report[f"false_regions_at_{size}px"] = sum(found)
    return report


def read_records(pages: Path, limit: int | None) -> list[dict]:
    return [json.loads(line) for line in pages.read_text(encoding="utf-8").splitlines() if line.strip()][:limit]


def _inside(points: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> bool:
    return bool((points[:, 0] >= x0).all() and (points[:, 0] < x1).all() and (points[:, 1] >= y0).all()
                and (points[:, 1] < y1).all())


def closeups(model: OnnxDetector, pages: Path, limit: int | None, seed: int, widths: tuple[float, float] = (0.35, 0.55),
             photo_width: int | None = None) -> dict:
    """Windows of `widths` of a page's width around one of its formulas; `photo_width` enlarges each window to
    that many pixels wide, as a phone photo of that part of the sheet fills the frame."""
    rng = np.random.default_rng(seed)
    records = read_records(pages, limit)
    whole = matched = extra = windows = 0
    for record in records:
        if not record["regions"]:
            continue
        image = load_image(pages.parent / record["image"])
        height, width = image.shape[:2]
        target = record["regions"][int(rng.integers(len(record["regions"])))]
        centre = np.asarray(target["quad"], float).mean(axis=0)
        w = int(width * rng.uniform(*widths))
        h = int(0.6 * w)
        x0 = int(np.clip(centre[0] - w * rng.uniform(0.3, 0.7), 0, max(0, width - w)))
        y0 = int(np.clip(centre[1] - h * rng.uniform(0.3, 0.7), 0, max(0, height - h)))
        x1, y1 = min(width, x0 + w), min(height, y0 + h)
        zoom = 1.0 if photo_width is None else photo_width / (x1 - x0)
        window = image[y0:y1, x0:x1]
        if zoom != 1.0:
            window = cv2.resize(window, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
        polygons = [np.asarray(r["polygon"] or r["quad"], float) for r in record["regions"]]
        full = [(p - (x0, y0)) * zoom for p in polygons if _inside(p, x0, y0, x1, y1)]
        cut = [(p - (x0, y0)) * zoom for p in polygons if not _inside(p, x0, y0, x1, y1)]
        found = [d.polygon for d in model([window])[0].detections]
        pairs = match_regions(found, full)
        paired = {guess for guess, _, _ in pairs}
        for index, polygon in enumerate(found):
            if index in paired:
                continue
            centre_of = np.asarray(polygon, np.float32).mean(axis=0)
            on_cut = any(cv2.pointPolygonTest(p.astype(np.float32), (float(centre_of[0]), float(centre_of[1])),
                                              False) >= 0 for p in cut)
            extra += not on_cut
        whole += len(full)
        matched += len(pairs)
        windows += 1
    return {"windows": windows, "formulas_inside": whole, "recall": round(matched / max(whole, 1), 4),
            "extra_regions": extra}


def frame_photos(pages: Path, limit: int | None, seed: int) -> Iterator[tuple[np.ndarray, dict, np.ndarray]]:
    """(photo, region, the region's polygon in the photo's pixels): one formula of each page cut with a margin of
    30% of its box's height around its box and enlarged to 1800 px wide, as a phone photo of that formula alone."""
    rng = np.random.default_rng(seed)
    for record in read_records(pages, limit):
        if not record["regions"]:
            continue
        image = load_image(pages.parent / record["image"])
        region = record["regions"][int(rng.integers(len(record["regions"])))]
        quad = np.asarray(region["quad"], float)
        (x0, y0), (x1, y1) = quad.min(axis=0), quad.max(axis=0)
        margin = 0.3 * (y1 - y0)
        x0, y0 = int(max(0, x0 - margin)), int(max(0, y0 - margin))
        x1, y1 = int(min(image.shape[1], x1 + margin)), int(min(image.shape[0], y1 + margin))
        zoom = 1800 / max(1, x1 - x0)
        photo = cv2.resize(image[y0:y1, x0:x1], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_CUBIC)
        yield photo, region, (np.asarray(region["polygon"] or region["quad"], float) - (x0, y0)) * zoom


def filling_the_frame(model: OnnxDetector, pages: Path, limit: int | None, seed: int,
                      recognizer: OnnxRecognizer | None) -> dict:
    """Photos of one formula alone (`frame_photos`), per kind: the share where exactly one region is found and it
    matches the formula (IoU 0.5, as on whole pages; a formula of a turned page stands upright or sideways) and,
    with a recognizer, the share read exactly end to end (that one region's reading), beside the shares read exactly
    as one crop (the whole photo) and in the crop mode a user gets by choosing it (`OneFormulaReader`)."""
    pipeline = Pipeline(model, recognizer, DeskewOrienter()) if recognizer is not None else None
    crops = Pipeline.for_crops(recognizer) if recognizer is not None else None
    one_formula = OneFormulaReader(pipeline, crops) if pipeline is not None and crops is not None else None
    tally: dict[str, dict[str, int]] = {}
    for photo, region, polygon in frame_photos(pages, limit, seed):
        counts = tally.setdefault(region["kind"], {"photos": 0, "found": 0, "read": 0, "read_as_crop": 0,
                                                       "read_in_crop_mode": 0})
        counts["photos"] += 1
        if pipeline is None:
            found = [d.polygon for d in model([photo])[0].detections]
            counts["found"] += len(found) == 1 and bool(match_regions(found, [polygon]))
            continue
        regions = pipeline([photo])[0].regions
        one = len(regions) == 1 and bool(match_regions([regions[0].polygon], [polygon]))
        counts["found"] += one
        counts["read"] += one and score_sample(regions[0].latex, region["latex"]).exact
        counts["read_as_crop"] += score_sample(crops([photo])[0].regions[0].latex, region["latex"]).exact
        counts["read_in_crop_mode"] += score_sample(one_formula([photo])[0].regions[0].latex, region["latex"]).exact
    report = {}
    for kind, counts in sorted(tally.items()):
        n = counts.pop("photos")
        report[kind] = {"photos": n, "one_matching_region": round(counts["found"] / n, 4)}
        if recognizer is not None:
            report[kind] |= {"read_exactly": round(counts["read"] / n, 4),
                             "read_exactly_as_crop": round(counts["read_as_crop"] / n, 4),
                             "read_exactly_in_crop_mode": round(counts["read_in_crop_mode"] / n, 4)}
    return report


def main(
    detector: Annotated[Path | None, typer.Option(help="detector folder/record (default: models/detector)")] = None,
    pages: Annotated[Path, typer.Option(help="held-out page manifest")] = Path("work/det/val/manifest.jsonl"),
    limit: Annotated[int | None, typer.Option(help="close-ups from at most this many pages")] = 200,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads")] = 2,
    seed: Annotated[int, typer.Option(help="draws the text, windows and fonts' order")] = 0,
    param: Annotated[list[str] | None, typer.Option(help="override a detector param: NAME=VALUE (repeatable)")] = None,
    out: Annotated[Path | None, typer.Option(help="also write the figures to this JSON file")] = None,
    read_with: Annotated[str, typer.Option(help="recognizer (name, folder or record) that reads the photos of one "
                                           "formula end to end; '' to time the detector alone")] = "recognizer",
) -> None:
    model = OnnxDetector.load(detector, threads=threads)
    if param:
        overrides = dict(item.split("=", 1) for item in param)
        model.params = DetectParams.model_validate({**model.params.model_dump(), **overrides})
    clock = time.perf_counter()
    report: dict = {"text_only": text_only(model, seed)}
    print(json.dumps({"text_only": report["text_only"]}))
    if pages.is_file():
        report["closeups"] = closeups(model, pages, limit, seed)
        print(json.dumps({"closeups": report["closeups"]}))
        report["photographed"] = closeups(model, pages, limit, seed, widths=(0.3, 0.5), photo_width=1600)
        print(json.dumps({"photographed": report["photographed"]}))
        recognizer = OnnxRecognizer.load(read_with, threads=threads) if read_with else None
        report["filling_the_frame"] = filling_the_frame(model, pages, limit, seed, recognizer)
        print(json.dumps({"filling_the_frame": report["filling_the_frame"]}))
    else:
        print(f"no page manifest at {pages}: close-ups skipped (see bench_pipeline.py for how to make it)")
    report["seconds"] = round(time.perf_counter() - clock, 1)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps({"seconds": report["seconds"], "peak_rss_mb": report["peak_rss_mb"]}))
    if out is not None:
        out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    typer.run(main)
