"""The photo pipeline: detection quality on held-out synthetic pages, end-to-end exact match, the HME100K
real-photo check, and speed on a 12-MP photo with 5 formulas. Prints figures; it is not a test.

    .venv/bin/python benchmarks/bench_pipeline.py                          # everything that is available
    .venv/bin/python benchmarks/bench_pipeline.py --pages work/det/val/manifest.jsonl --limit 100
    .venv/bin/python benchmarks/bench_pipeline.py --detector runs/x/export/detector --no-e2e --no-hme
    .venv/bin/python benchmarks/bench_pipeline.py --param crop_margin_along=0 --param crop_margin_across=0
    .venv/bin/python benchmarks/bench_pipeline.py --limit 200 --no-hme --no-speed --attribution

Quality: a prediction is correct when matched one-to-one to a true region at polygon IoU >= 0.5; each page
counts in the slice of every condition it shows. End to end (`susik.eval.detection`): e2e_recall = true
regions whose matched prediction reads exactly right (normalised tokens) over all true regions; e2e_exact is
the F1 of such exact reads (spurious regions count against it too). `--attribution` tells the detector's share of
the loss from the recognizer's: each true region is also read from its own quad, and each kind's formulas are
counted as read / misread / missed, each split by whether the true quad's crop reads right. HME100K: every photo
holds one handwritten formula line, cropped tightly, so "found" = exactly one region whose quad spans >= 75% of
the photo's width and crosses its middle row. `--hme-every 2` also checks the even-numbered photos alone: the ones
a detector trained with `scripts/photo_detector_pages.py --every 2 --first 1` never saw. Speed: a composed 12-MP page
(3000 x 4000) holding 5 formulas, decoded from JPEG bytes each run; p50 of per-stage wall times and process
CPU time (all threads) since the machine is shared: the load average is printed beside them.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from susik.eval.detection import RegionGuess, RegionTruth, aggregate_pages, score_page
from susik.latex.labels import split_reading_label, strip_sentence_punctuation
from susik.pipeline import Pipeline, rectify
from susik.results import Quad, Recognition
from susik.runtime.decoding import with_rescue
from susik.runtime.detector import DetectParams, OnnxDetector, widen_quad
from susik.runtime.image_io import load_image
from susik.runtime.orient import DeskewOrienter

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _exact(prediction: str, reference: str) -> bool:
    from susik.eval.metrics import score_sample

    return score_sample(prediction, reference).exact


def truth_readings(pipeline: Pipeline, image: np.ndarray, regions: list[dict]) -> list[str]:
    """Each true region read from its own quad, cut as the pipeline cuts a detected one (the detector's crop
    margins, the orienter, the label and punctuation rules): what a perfect detector would give the recognizer."""
    params = pipeline.detector.params
    size = (image.shape[1], image.shape[0])
    crops = [rectify(image, Quad.from_json(widen_quad(np.asarray(r["quad"], float), params.crop_margin_along,
                                                      params.crop_margin_across, size).tolist())) for r in regions]
    if pipeline.orienter is not None:
        crops = pipeline.orienter(crops)
    readings = pipeline.recognizer(crops) if crops else []
    return [split_reading_label(strip_sentence_punctuation(r.latex))[1] for r in readings]


def quality(pipeline: Pipeline, manifest: Path, limit: int | None, e2e: bool, attribution: bool = False) -> dict:
    """P/R/F1, orientation and kind accuracy, e2e exact match: overall and per condition slice. `attribution`
    also reads every true region from its true quad and sorts each formula not read right by where it was lost:
    not found, found but cut so that it misreads (its true quad reads right), or misread either way."""
    folder = manifest.parent
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = records[:limit]
    slices: dict[str, dict] = defaultdict(lambda: {"scores": [], "turn": 0})
    kind_right = kind_total = 0
    # per kind of true region: how many, how many found, how many found and read exactly
    by_kind: dict[str, dict[str, int]] = defaultdict(lambda: {"regions": 0, "found": 0, "read": 0})
    lost: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in records:
        image = load_image(folder / record["image"])
        if e2e:
            page = pipeline([image])[0]
            guesses = [RegionGuess(region.polygon, region.latex) for region in page.regions]
            kinds = [region.kind for region in page.regions]
            orientation = page.orientation
        else:
            found = pipeline.detector([image])[0]
            guesses = [RegionGuess(d.polygon, "") for d in found.detections]
            kinds, orientation = [d.kind for d in found.detections], found.orientation
        truth = [RegionTruth(r["polygon"] or r["quad"], r["latex"]) for r in record["regions"]]
        score = score_page(guesses, truth)
        from_truth = truth_readings(pipeline, image, record["regions"]) if e2e and attribution else None
        for j, i in enumerate(score.match_of_truth):
            kind = record["regions"][j]["kind"]
            tally = by_kind[kind]
            tally["regions"] += 1
            read = False
            if i is not None:
                kind_total += 1
                kind_right += kinds[i] == kind
                tally["found"] += 1
                if e2e:
                    read = _exact(guesses[i].latex, truth[j].latex)
                    tally["read"] += read
            if from_truth is not None:
                truth_read = _exact(from_truth[j], truth[j].latex)
                where = ("read" if read else "misread" if i is not None else "missed") + (
                    ", true quad reads right" if truth_read else ", true quad misreads too")
                lost[kind][where] += 1
        for name in ["all", *record["conditions"]]:
            slices[name]["scores"].append(score)
            slices[name]["turn"] += orientation == record["orientation"]
    table = {}
    for name, entry in slices.items():
        figures = aggregate_pages(entry["scores"])
        table[name] = {"pages": figures.n, "regions": sum(s.truths for s in entry["scores"]),
                       "precision": round(figures.precision, 4), "recall": round(figures.recall, 4),
                       "f1": round(figures.f1, 4), "orientation_acc": round(entry["turn"] / figures.n, 4)}
        if e2e:
            table[name].update(e2e_exact=round(figures.e2e_exact, 4), e2e_recall=round(figures.e2e_recall, 4))
    overall = table.pop("all")
    kinds_table = {kind: {"regions": t["regions"], "found": round(t["found"] / t["regions"], 4),
                          **({"read": round(t["read"] / t["regions"], 4)} if e2e else {}),
                          **({"attribution": dict(sorted(lost[kind].items()))} if kind in lost else {})}
                   for kind, t in sorted(by_kind.items())}
    return {**overall, "kind_acc": round(kind_right / max(kind_total, 1), 4), "by_kind": kinds_table,
            "slices": dict(sorted(table.items()))}


def hme_check(pipeline: Pipeline, manifest: Path, limit: int | None, e2e: bool, every: int = 1) -> dict:
    """The HME100K photos (every `every`-th from the first: those `scripts/photo_detector_pages.py --every N
    --first 1` left out of the detector's training) read one by one."""
    folder = manifest.parent
    records = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = records[::every][:limit]
    found_one = exact = exact_whole = region_counts = handwritten = 0
    whole = Pipeline.for_crops(pipeline.recognizer)
    for record in records:
        image = load_image(folder / record["image"])
        height, width = image.shape[:2]
        page = pipeline([image])[0]
        region_counts += len(page.regions)
        if len(page.regions) == 1:
            quad = np.asarray(page.regions[0].quad.points)
            spans = np.ptp(quad[:, 0]) >= 0.75 * width and quad[:, 1].min() <= height / 2 <= quad[:, 1].max()
            if spans:
                found_one += 1
                handwritten += page.regions[0].kind == "handwritten"
                exact += e2e and _exact(page.regions[0].latex, record["latex"])
        if e2e:
            exact_whole += _exact(whole([image])[0].regions[0].latex, record["latex"])
    n = max(len(records), 1)
    report = {"photos": len(records), "exactly_one_covering": round(found_one / n, 4),
              "mean_regions": round(region_counts / n, 3), "covering_called_handwritten": handwritten}
    if e2e:
        report.update(e2e_exact=round(exact / n, 4), whole_photo_as_crop_exact=round(exact_whole / n, 4))
    return report


def twelve_mp_photo(seed: int = 7) -> tuple[bytes, int]:
    """A composed worksheet page with 5 printed formulas, photographed at 3000 x 4000, as JPEG bytes."""
    from susik.data.compose import ComposerConfig, FormulaCrop, PageComposer
    from susik.data.corpus import K12Generator
    from susik.data.render import RenderConfig, TexRenderer

    rng = np.random.default_rng(seed)
    formulas = K12Generator(rng).batch(8)
    rendered = [r for r in TexRenderer(RenderConfig(dpi_min=600, dpi_max=600)).render(formulas, rng) if r][:5]
    crops = [FormulaCrop(r.image, r.latex, "printed") for r in rendered]
    composer = PageComposer(ComposerConfig(long_side=(3900, 3900), two_column_share=0.0))
    page = composer.compose(crops, rng, ("perspective", "shadow"))
    image = cv2.resize(page.image, (3000, 4000), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return encoded.tobytes(), len(page.regions)


def speed(pipeline: Pipeline, repeats: int) -> dict:
    photo, n_formulas = twelve_mp_photo()
    pipeline([load_image(photo)])  # warm-up: sessions, allocations
    stages: dict[str, list[float]] = defaultdict(list)
    found = []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        image = load_image(photo)
        loaded = time.perf_counter()
        page = pipeline([image])[0]
        stages["load"].append((loaded - start) * 1000)
        for name, ms in page.timings_ms.items():
            stages["pipeline_" + name if name == "total" else name].append(ms)
        stages["end_to_end"].append((time.perf_counter() - start) * 1000)
        stages["end_to_end_cpu"].append((time.process_time() - start_cpu) * 1000)
        found.append(len(page.regions))
    return {"photo": "3000x4000 JPEG", "formulas": n_formulas, "regions_found": statistics.median(found),
            "p50_ms": {name: round(statistics.median(values), 1) for name, values in stages.items()},
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(
    detector: Annotated[Path | None, typer.Option(help="detector folder/record (default: models/detector)")] = None,
    recognizer: Annotated[str, typer.Option(help="recognizer name, folder or record")] = "recognizer",
    pages: Annotated[Path, typer.Option(help="held-out page manifest")] = Path("work/det/val/manifest.jsonl"),
    limit: Annotated[int | None, typer.Option(help="score at most this many synthetic pages")] = None,
    hme: Annotated[Path, typer.Option(help="HME100K manifest")] = SHARED / "hme100k" / "train.jsonl",
    long_side: Annotated[int | None, typer.Option(help="override the detector's long side")] = None,
    param: Annotated[list[str] | None, typer.Option(help="override a detector param: NAME=VALUE (repeatable)")] = None,
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads per stage")] = 2,
    repeats: Annotated[int, typer.Option(help="timed runs of the 12-MP photo")] = 10,
    e2e: Annotated[bool, typer.Option(help="run the recognizer (end-to-end figures)")] = True,
    attribution: Annotated[bool, typer.Option(
        help="also read each true region from its true quad: where each formula not read right was lost")] = False,
    run_hme: Annotated[bool, typer.Option("--hme-check/--no-hme", help="the HME100K real-photo check")] = True,
    hme_every: Annotated[int, typer.Option(min=1, help="also the check on every N-th photo from the first: those a "
                                           "detector trained with scripts/photo_detector_pages.py --every N never "
                                           "saw")] = 1,
    run_speed: Annotated[bool, typer.Option("--speed/--no-speed", help="the 12-MP timing")] = True,
    rescue_below: Annotated[float | None, typer.Option(help="override the record's decode.rescue_below (0: greedy)")] = None,
    rescue_beam: Annotated[int | None, typer.Option(help="override the record's decode.rescue_beam")] = None,
    thicken_below: Annotated[float | None, typer.Option(
        help="override the record's decode.thicken_below (0: no second look with thickened strokes)")] = None,
    widen_below: Annotated[float | None, typer.Option(
        help="override the record's decode.widen_below (0: no second look stretched sideways)")] = None,
    out: Annotated[Path | None, typer.Option(help="also write the figures to this JSON file")] = None,
) -> None:
    found = OnnxDetector.load(detector, threads)
    overrides = dict(item.split("=", 1) for item in param or [])
    if long_side is not None:
        overrides["long_side"] = str(long_side)
    if overrides:
        found.params = DetectParams.model_validate({**found.params.model_dump(), **overrides})
    report: dict = {"detector_params": found.params.model_dump()}
    pipeline = Pipeline(found, lambda crops: [Recognition("", 0.0) for _ in crops], DeskewOrienter())
    if e2e:
        from susik.models.registry import ModelNotFoundError
        from susik.runtime.recognizer import OnnxRecognizer

        try:
            reader = OnnxRecognizer.load(recognizer, threads)
            reader.decode = with_rescue(reader.decode, rescue_below, rescue_beam, thicken_below, widen_below)
            report["decode"] = reader.decode.model_dump()
            pipeline = Pipeline(found, reader, DeskewOrienter())
        except ModelNotFoundError as error:
            report["note"] = f"no recognizer ({error}); detection figures only"
            print(report["note"])
            e2e = False
    if pages.is_file():
        report["synthetic"] = quality(pipeline, pages, limit, e2e, attribution)
        overall = {k: v for k, v in report["synthetic"].items() if k != "slices"}
        print(json.dumps({"synthetic": overall}))
        for name, figures in report["synthetic"]["slices"].items():
            print(f"  {name:<12} " + "  ".join(f"{k} {v}" for k, v in figures.items()))
    if run_hme and hme.is_file():
        report["hme100k"] = hme_check(pipeline, hme, None, e2e)
        print(json.dumps({"hme100k": report["hme100k"]}))
        if hme_every > 1:
            report["hme100k_held_out"] = hme_check(pipeline, hme, None, e2e, hme_every)
            print(json.dumps({"hme100k_held_out": report["hme100k_held_out"]}))
    if run_speed:
        report["speed_12mp"] = speed(pipeline, repeats)
        print(json.dumps({"speed_12mp": report["speed_12mp"]}))
    if out is not None:
        out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    typer.run(main)
