"""Recognizer quality on the shared validation sets: ExpRate, <=1 / <=2 token errors, CER, BLEU, plus timing
and peak memory. Prints figures; it is not a test.

    .venv/bin/python benchmarks/bench_recognizer_quality.py                       # bundled ONNX model
    .venv/bin/python benchmarks/bench_recognizer_quality.py --model runs/rec/export
    .venv/bin/python benchmarks/bench_recognizer_quality.py --predictions crohme2013=preds.jsonl

Sets (each skipped with a note when its manifest is missing):
  crohme2013     CROHME 2013 test set, our validation set; canvases cropped to the ink as in training
  crohme_train   CROHME train, prepared the same way: a fit check (with crohme2013 it shows memorisation)
  im2latex_val   real im2latex-100k crops (printed, arXiv)
  hme100k_train  real phone photos; a *training* set when the model trained on it, so read it as a fit check
  hme100k_heldout the photos `scripts/prepare_recognizer_data.py --hme-holdout N` kept out of training: unseen
                 real photos, but only for a model none of whose stages trained on them (not in the default list)
  synthetic_val  the frozen, augmented held-out set of scripts/prepare_recognizer_data.py
  page_printed, page_handwritten
                 the regions of held-out synthetic pages 0-199 cut from their true quads as the pipeline cuts
                 them (photographed with the page, a margin around each; handwriting from CROHME 2013):
                   susik release crops work/det/val/manifest_report.jsonl --out work/recdata/page_regions_val \
                       --margin 0.1   # manifest_report.jsonl: the first 200 lines of the page manifest
                 the end-to-end figure of bench_pipeline.py less what the detector loses

`--predictions SET=FILE` scores a JSON-lines file of `{"image", "latex"}` (image as in the set's manifest)
instead of running a model, e.g. the predictions.jsonl of `susik eval recognize`.
"""

from __future__ import annotations

import json
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from susik.data.crops import CropDataset, CropReadError, plain_handwritten_label, restore_crohme
from susik.eval.confidence import confidence_quality
from susik.eval.metrics import RecognitionMetrics, SampleScore, aggregate, score_sample
from susik.latex import normalize_latex
from susik.runtime.decoding import with_rescue

console = Console(width=130)  # a full table in logs and pipes, not 80 columns
Prepare = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EvalSet:
    manifest: Path
    prepare: Prepare | None = None
    kind: str | None = None  # only the samples of this kind
    spread: bool = False  # with a limit, samples evenly across the manifest instead of its first ones
    label: Callable[[str], str] | None = None  # the reference as training saw it


def _sets(data: Path, synthetic_val: Path, hme_heldout: Path, page_regions: Path) -> dict[str, EvalSet]:
    return {
        "crohme2013": EvalSet(data / "crohme" / "val2013.jsonl", restore_crohme),
        # Ordered by subset (the first 1,051 are KAIST): spread, so a limit reads every writer group; its MathBrush
        # labels without the `\\mbox` wrappers training dropped.
        "crohme_train": EvalSet(data / "crohme" / "train.jsonl", restore_crohme, spread=True,
                                label=plain_handwritten_label),
        "im2latex_val": EvalSet(data / "im2latex" / "val.jsonl"),
        "hme100k_train": EvalSet(data / "hme100k" / "train.jsonl"),
        "hme100k_heldout": EvalSet(hme_heldout),
        "synthetic_val": EvalSet(synthetic_val),
        "page_printed": EvalSet(page_regions, kind="printed"),
        "page_handwritten": EvalSet(page_regions, kind="handwritten"),
    }


def _load(dataset: CropDataset, limit: int | None, chosen: EvalSet) -> tuple[list, list, list, int]:
    """Images (None where unreadable), references and manifest image paths of the first `limit` samples (of
    `chosen.kind`, when given; every n-th, so that `limit` of them span the manifest, when `chosen.spread`)."""
    prepare, kind = chosen.prepare, chosen.kind
    step = max(1, len(dataset) // limit) if chosen.spread and limit else 1
    images, references, names, unreadable, taken = [], [], [], 0, 0
    for index in range(0, len(dataset), step):
        if limit is not None and taken >= limit:
            break
        try:
            record = dataset.record(index)
        except CropReadError:
            unreadable += 1
            taken += 1
            continue
        if kind is not None and record.kind != kind:
            continue
        taken += 1
        try:
            image, _ = dataset[index]
            images.append(prepare(image) if prepare else image)
        except CropReadError:
            images.append(None)
            unreadable += 1
        references.append(chosen.label(record.latex) if chosen.label else record.latex)
        names.append(record.image)
    return images, references, names, unreadable


def _predict(recognizer, images: list, batch: int) -> tuple[list[str], list[float], list[float], float]:
    """Predicted LaTeX, confidence and raw (uncalibrated) confidence per image ('', 0, 0 where unreadable) and the
    seconds spent in the recognizer."""
    predictions, confidences, raw = [""] * len(images), [0.0] * len(images), [0.0] * len(images)
    readable = [i for i, image in enumerate(images) if image is not None]
    seconds = 0.0
    for start in range(0, len(readable), batch):
        chunk = readable[start : start + batch]
        began = time.perf_counter()
        results = recognizer([images[i] for i in chunk])
        seconds += time.perf_counter() - began
        for i, result in zip(chunk, results, strict=True):
            predictions[i], confidences[i], raw[i] = result.latex, result.confidence, result.look_score
    return predictions, confidences, raw, seconds


def _read_predictions(path: Path) -> dict[str, str]:
    table: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                record = json.loads(line)
                table[record["image"]] = record.get("latex") or ""
    return table


def _most_frequent_baseline(references: list[str]) -> float:
    """ExpRate of always answering the most frequent (normalised) reference: what imbalance alone earns."""
    counts = Counter(normalize_latex(reference) for reference in references)
    return counts.most_common(1)[0][1] / len(references)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(
    model: str = typer.Option("recognizer", help="bundled model name, model folder or record.json"),
    predictions: list[str] = typer.Option([], help="SET=FILE: score this predictions file instead of a model"),
    sets: str = typer.Option("crohme2013,crohme_train,im2latex_val,hme100k_train,synthetic_val,page_printed,"
                             "page_handwritten", help="comma-separated"),
    data: Path = typer.Option(Path("/work/shared/data"), help="the shared real data"),
    synthetic_val: Path = typer.Option(Path("work/recdata/synthetic_val/manifest.jsonl")),
    hme_heldout: Path = typer.Option(Path("work/recdata/hme100k_heldout.jsonl"),
                                     help="photos kept out by prepare_recognizer_data.py --hme-holdout"),
    page_regions: Path = typer.Option(Path("work/recdata/page_regions_val/manifest.jsonl"),
                                      help="regions cut from held-out synthetic pages (see above)"),
    limit: int | None = typer.Option(None, min=1, help="first N samples of each set"),
    threads: int = typer.Option(2, min=1, help="ONNX Runtime intra-op threads"),
    batch: int = typer.Option(16, min=1),
    rescue_below: float | None = typer.Option(None, help="override the record's decode.rescue_below (0: greedy)"),
    rescue_beam: int | None = typer.Option(None, help="override the record's decode.rescue_beam"),
    thicken_below: float | None = typer.Option(
        None, help="override the record's decode.thicken_below (0: no second look with thickened strokes)"),
    widen_below: float | None = typer.Option(
        None, help="override the record's decode.widen_below (0: no second look stretched sideways)"),
    widen_factors: str | None = typer.Option(None, help="override the record's decode.widen_factors: 1.15,1.3"),
    out: Path | None = typer.Option(None, help="also write the figures as JSON here"),
) -> None:
    available = _sets(data, synthetic_val, hme_heldout, page_regions)
    chosen = [name.strip() for name in sets.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in available]
    if unknown:
        console.print(f"error: unknown set(s) {unknown}; choose from {sorted(available)}")
        raise typer.Exit(2)
    given: dict[str, Path] = {}
    for item in predictions:
        name, _, path = item.partition("=")
        if name not in available or not path:
            console.print(f"error: --predictions wants SET=FILE with SET in {sorted(available)}, got {item!r}")
            raise typer.Exit(2)
        given[name] = Path(path)

    recognizer = None
    load_seconds = 0.0
    if any(name not in given for name in chosen):
        from susik.models.registry import ModelNotFoundError
        from susik.runtime.recognizer import OnnxRecognizer

        began = time.perf_counter()
        try:
            recognizer = OnnxRecognizer.load(model, threads=threads)
            factors = tuple(float(factor) for factor in widen_factors.split(",")) if widen_factors else None
            recognizer.decode = with_rescue(recognizer.decode, rescue_below, rescue_beam, thicken_below, widen_below,
                                            factors)
        except ModelNotFoundError as exc:
            console.print(f"error: {exc}")
            raise typer.Exit(1) from None
        load_seconds = time.perf_counter() - began

    table = Table(title=f"recognizer quality ({'predictions' if recognizer is None else model})")
    for column in ("set", "n", "ExpRate", "<=1", "<=2", "CER", "BLEU", "norm ED", "base", "unread", "AUROC",
                   "ECE", "top 80%", "ms/crop"):
        table.add_column(column, justify="left" if column == "set" else "right")
    report: dict = {"model": model if recognizer else None, "load_seconds": round(load_seconds, 2), "sets": {},
                    "decode": recognizer.decode.model_dump() if recognizer else None}
    for name in chosen:
        chosen_set = available[name]
        manifest = chosen_set.manifest
        if not manifest.is_file():
            console.print(f"[yellow]skipped {name}: {manifest} not found[/]")
            continue
        images, references, names, unreadable = _load(CropDataset(manifest), limit, chosen_set)
        seconds, quality, raw_quality = None, None, None
        if name in given:
            table_of = _read_predictions(given[name])
            outputs = [table_of.get(image, "") for image in names]
            unreadable += sum(image not in table_of for image in names)
        else:
            outputs, confidences, raw, seconds = _predict(recognizer, images, batch)
        scores: list[SampleScore] = [score_sample(p, r) for p, r in zip(outputs, references, strict=True)]
        metrics: RecognitionMetrics = aggregate(scores)
        if seconds is not None:
            quality = confidence_quality(confidences, [score.exact for score in scores])
            raw_quality = confidence_quality(raw, [score.exact for score in scores])  # before the record's map
        baseline = _most_frequent_baseline(references)
        decoded = sum(image is not None for image in images)
        ms = 1000 * seconds / decoded if seconds is not None and decoded else None
        table.add_row(name, str(metrics.n), f"{metrics.exp_rate:.1%}", f"{metrics.le1:.1%}", f"{metrics.le2:.1%}",
                      f"{metrics.cer:.3f}", f"{metrics.bleu:.3f}", f"{metrics.norm_edit_distance:.3f}",
                      f"{baseline:.1%}", str(unreadable),
                      "-" if quality is None or quality.auroc is None else f"{quality.auroc:.3f}",
                      "-" if quality is None else f"{quality.ece:.3f}",
                      "-" if quality is None else f"{quality.exact_at_coverage['80%']:.1%}",
                      "-" if ms is None else f"{ms:.1f}")
        report["sets"][name] = {**asdict(metrics), "most_frequent_baseline": baseline, "unreadable": unreadable,
                                "confidence": None if quality is None else asdict(quality),
                                "raw_confidence": None if raw_quality is None else asdict(raw_quality),
                                "ms_per_crop": ms, "manifest": str(manifest)}
    report["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    console.print(table)
    console.print("AUROC = how often a right reading is surer than a wrong one (0.5: the confidence ranks nothing); "
                  "ECE = gap between confidence and exact match, over 10 bins; top 80% = ExpRate of the surest 80%")
    console.print("base = ExpRate of always answering the most frequent formula; ms/crop = recognizer wall "
                  f"time / decoded crops (batch {batch}, {threads} threads); model load {load_seconds:.1f} s; "
                  f"peak RSS {report['peak_rss_mib']:.0f} MiB")
    if out:
        out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    typer.run(main)
