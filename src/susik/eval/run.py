"""One evaluation run end to end: read the manifest, predict (or read predictions), score, summarise, and
write DIR/metrics.json, DIR/predictions.jsonl, DIR/scores.jsonl and DIR/report.html."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from susik.data.manifest import find_manifest, read_manifest
from susik.eval.evaluate import (
    CropPredictor,
    Evaluation,
    PagePredictor,
    Task,
    compile_rates,
    predict_lines,
    read_predictions,
    score_all,
    score_line,
    summarise,
    write_jsonl,
)
from susik.eval.report import write_report


@dataclass(frozen=True)
class EvalOptions:
    fields: Sequence[str] | None = None  # slice fields; None = the defaults for the task
    resamples: int = 1000
    seed: int = 0
    iou: float = 0.5
    limit: int | None = None  # evaluate the first `limit` samples only
    batch_size: int = 16
    report_limit: int = 200
    compile_check: bool = False
    katex: Path | None = None


def run_evaluation(
    task: Task,
    data: Path,
    out: Path,
    *,
    predictor: CropPredictor | PagePredictor | None = None,
    predictions: Path | None = None,
    options: EvalOptions = EvalOptions(),
    run_info: dict[str, Any] | None = None,
    advance: Callable[[int], None] = lambda _: None,
) -> Evaluation:
    """Exactly one of `predictor` and `predictions` gives the answers."""
    if (predictor is None) == (predictions is None):
        raise ValueError("give exactly one of a predictor and a predictions file")
    manifest = find_manifest(data)
    samples = list(read_manifest(manifest))[: options.limit]
    started = time.perf_counter()
    if predictor is not None:
        lines = predict_lines(samples, manifest, predictor, task, options.batch_size, advance)
    else:
        lines = read_predictions(predictions, samples)  # type: ignore[arg-type]
        advance(len(samples))
    predict_s = time.perf_counter() - started
    scored = score_all(samples, lines, manifest, task, options.fields, options.iou)
    metrics = summarise(task, scored, np.random.default_rng(options.seed), options.resamples, options.iou)
    if options.compile_check and task == "recognize":
        metrics["compiles"] = compile_rates(scored)
    metrics["run"] = {
        "task": task, "data": str(manifest), "samples": len(samples), "seed": options.seed,
        "resamples": options.resamples, "predict_s": round(predict_s, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(run_info or {}),
    }
    evaluation = Evaluation(task, scored, metrics)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_jsonl(out / "predictions.jsonl", lines)
    write_jsonl(out / "scores.jsonl", (score_line(item) for item in scored))
    write_report(evaluation, out, title=f"susik eval {task}: {manifest.name}", limit=options.report_limit,
                 katex=options.katex)
    return evaluation
