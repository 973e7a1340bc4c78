"""Evaluate a recognizer on a crop manifest or a page pipeline on a page manifest.

Predictions come from an injected predictor (so tests use a fake one) or from an existing predictions file.
Every sample is scored once; metrics, 95% bootstrap intervals and dumb baselines are then aggregated for
the whole set and for every slice from those per-sample scores. Baselines are computed on the same samples:
- recognize: "empty" (predict nothing) and "most_frequent" (always the slice's most common reference);
- detect: "empty" (no region) and "whole_page" (one region covering the page, read as the most frequent
  formula), so an imbalanced set or a lenient IoU cannot hide behind a good-looking score.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from susik.data.manifest import CropSample, PageSample, Sample, image_path
from susik.eval import bootstrap
from susik.eval.confidence import confidence_quality
from susik.eval.detection import PageScore, RegionGuess, RegionTruth, aggregate_pages, score_page
from susik.eval.metrics import SampleScore, aggregate, score_sample, score_tokens
from susik.eval.slices import group, slice_values
from susik.latex import normalize
from susik.results import Page, Recognition

Task = Literal["recognize", "detect"]
RECOGNIZE_KEYS = ("n", "exp_rate", "le1", "le2", "cer", "norm_edit_distance", "bleu")
DETECT_KEYS = ("n", "precision", "recall", "f1", "e2e_exact")
CropPredictor = Callable[[list[np.ndarray]], list[Recognition]]
PagePredictor = Callable[[list[np.ndarray]], list[Page]]


class EvalError(ValueError):
    """Input that cannot be evaluated; the message says which and why in one line."""


@dataclass(frozen=True)
class Scored:
    """One sample: its manifest record, the prediction line as written, its score and its slices."""

    index: int
    sample: Sample
    prediction: dict[str, Any]
    score: SampleScore | PageScore
    slices: dict[str, tuple[str, ...]]
    image: Path

    @property
    def correct(self) -> bool:
        return self.score.exact if isinstance(self.score, SampleScore) else self.score.correct


@dataclass
class Evaluation:
    task: Task
    scored: list[Scored]
    metrics: dict[str, Any] = field(default_factory=dict)


# --- predictions ----------------------------------------------------------------------------------------


def predict_lines(
    samples: Sequence[Sample],
    manifest: Path,
    predictor: CropPredictor | PagePredictor,
    task: Task,
    batch_size: int = 16,
    advance: Callable[[int], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """One prediction line per sample: `{"image", "latex", "confidence"}` (recognize) or `{"image", **page}`
    (detect); an unreadable image gives `{"image", "error"}` and is scored as an empty answer."""
    from susik.runtime.image_io import ImageLoadError, load_image

    lines: list[dict[str, Any]] = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        images: dict[int, np.ndarray] = {}
        out: dict[int, dict[str, Any]] = {}
        for offset, sample in enumerate(chunk):
            try:
                images[offset] = load_image(image_path(manifest, sample))
            except ImageLoadError as error:
                out[offset] = {"image": sample.image, "error": str(error)}
        results = predictor(list(images.values())) if images else []
        for offset, result in zip(images, results, strict=True):
            if task == "recognize":
                out[offset] = {"image": chunk[offset].image, "latex": result.latex,
                               "confidence": round(float(result.confidence), 4)}
            else:
                out[offset] = {"image": chunk[offset].image, **result.to_json()}
        lines.extend(out[offset] for offset in range(len(chunk)))
        advance(len(chunk))
    return lines


def read_predictions(path: Path, samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Prediction lines from a JSONL file, matched to the samples by their `image` as in the manifest
    (repeated images are matched in order)."""
    by_image: dict[str, list[dict[str, Any]]] = {}
    try:
        with Path(path).open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise EvalError(f"{path}:{number}: not JSON: {error.msg}") from error
                    if not isinstance(record, dict) or "image" not in record:
                        raise EvalError(f"{path}:{number}: a prediction line needs an \"image\" field")
                    by_image.setdefault(str(record["image"]), []).append(record)
    except OSError as error:
        raise EvalError(f"{path}: cannot read: {error.strerror or error}") from error
    lines = []
    for sample in samples:
        queue = by_image.get(sample.image)
        if not queue:
            raise EvalError(f"{path}: no prediction for image {sample.image!r} of the manifest")
        lines.append(queue.pop(0))
    return lines


# --- scoring --------------------------------------------------------------------------------------------


def _region_guesses(line: dict[str, Any]) -> list[RegionGuess]:
    return [RegionGuess(region.get("polygon") or region["quad"], region.get("latex", ""))
            for region in line.get("regions", [])]


def _region_truths(sample: PageSample) -> list[RegionTruth]:
    return [RegionTruth(region.polygon or region.quad, region.latex) for region in sample.regions]


def score_all(
    samples: Sequence[Sample], lines: Sequence[dict[str, Any]], manifest: Path, task: Task,
    fields: Sequence[str] | None = None, iou: float = 0.5,
) -> list[Scored]:
    scored = []
    for index, (sample, line) in enumerate(zip(samples, lines, strict=True)):
        if task == "recognize":
            if not isinstance(sample, CropSample):
                raise EvalError(f"sample {index + 1} ({sample.image}) is a page: `eval recognize` needs crops")
            score: SampleScore | PageScore = score_sample(line.get("latex", ""), sample.latex)
        else:
            if not isinstance(sample, PageSample):
                raise EvalError(f"sample {index + 1} ({sample.image}) is a crop: `eval detect` needs pages")
            score = score_page(_region_guesses(line), _region_truths(sample), iou)
        scored.append(Scored(index, sample, dict(line), score, slice_values(sample, fields),
                             image_path(manifest, sample)))
    return scored


# --- aggregation ----------------------------------------------------------------------------------------


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in values.items()}


def _recognition_block(scores: Sequence[SampleScore], weights: np.ndarray) -> dict[str, Any]:
    metrics = asdict(aggregate(scores))
    distance = np.array([s.token_distance for s in scores])
    statistics = {
        "exp_rate": bootstrap.mean(distance == 0),
        "le1": bootstrap.mean(distance <= 1),
        "le2": bootstrap.mean(distance <= 2),
        "cer": bootstrap.ratio(np.array([s.char_distance for s in scores]),
                               np.array([s.reference_chars for s in scores]), empty=0.0),
        "norm_edit_distance": bootstrap.mean(np.array([s.norm_distance for s in scores])),
    }
    metrics["ci"] = {name: [round(v, 6) for v in bootstrap.confidence_interval(stat, weights)]
                     for name, stat in statistics.items()}
    references = [s.reference for s in scores]
    frequent, _ = Counter(references).most_common(1)[0]
    metrics["baselines"] = {
        "empty": _rounded(_core(asdict(aggregate([score_tokens([], r) for r in references])), RECOGNIZE_KEYS)),
        "most_frequent": {
            "latex": " ".join(frequent),
            **_rounded(_core(asdict(aggregate([score_tokens(frequent, r) for r in references])), RECOGNIZE_KEYS)),
        },
    }
    return _rounded(metrics)


def _core(metrics: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {key: metrics[key] for key in keys}


def _whole_page_score(scored: Scored, latex: str, iou: float) -> PageScore:
    sample = scored.sample
    assert isinstance(sample, PageSample)
    corners = ((0.0, 0.0), (sample.width, 0.0), (sample.width, sample.height), (0.0, sample.height))
    return score_page([RegionGuess(corners, latex)], _region_truths(sample), iou)


def _detection_block(items: Sequence[Scored], weights: np.ndarray, iou: float) -> dict[str, Any]:
    scores: list[PageScore] = [item.score for item in items]  # type: ignore[misc]
    metrics = asdict(aggregate_pages(scores))
    matched, exact, predictions, truths = (np.array([getattr(s, name) for s in scores], float)
                                           for name in ("matched", "exact", "predictions", "truths"))
    statistics = {
        "precision": bootstrap.ratio(matched, predictions),
        "recall": bootstrap.ratio(matched, truths),
        "f1": bootstrap.f1(matched, predictions, truths),
        "e2e_exact": bootstrap.f1(exact, predictions, truths),
    }
    metrics["ci"] = {name: [round(v, 6) for v in bootstrap.confidence_interval(stat, weights)]
                     for name, stat in statistics.items()}
    references = Counter(tuple(normalize(r.latex)) for item in items for r in item.sample.regions)  # type: ignore[union-attr]
    frequent = " ".join(references.most_common(1)[0][0]) if references else ""
    empty = [PageScore(0, 0, 0, s.truths) for s in scores]
    metrics["baselines"] = {
        "empty": _rounded(_core(asdict(aggregate_pages(empty)), DETECT_KEYS)),
        "whole_page": {"latex": frequent, **_rounded(_core(
            asdict(aggregate_pages([_whole_page_score(item, frequent, iou) for item in items])), DETECT_KEYS))},
    }
    matched = [_matched_readings(item) for item in items]
    pairs = [score for readings in matched for score in readings.values()]
    if pairs:
        metrics["recognition_on_matched"] = _rounded(asdict(aggregate(pairs)))
    # every predicted region's confidence against whether it is a true formula read exactly (a spurious one is wrong)
    regions = [(region.get("confidence"), i in readings and readings[i].exact)
               for item, readings in zip(items, matched) for i, region in enumerate(item.prediction.get("regions", []))]
    if regions and all(isinstance(confidence, int | float) for confidence, _ in regions):
        metrics["confidence"] = _confidence_block([c for c, _ in regions], [right for _, right in regions])
    return _rounded(metrics)


def _matched_readings(item: Scored) -> dict[int, SampleScore]:
    """Each predicted region matched to a true one (by its index among the predictions): its reading's score."""
    return {
        j_pred: score_sample(item.prediction["regions"][j_pred].get("latex", ""), region.latex)
        for region, j_pred in zip(item.sample.regions, item.score.match_of_truth)  # type: ignore[union-attr]
        if j_pred is not None
    }


def _confidence_block(confidences: Sequence[float], right: Sequence[bool]) -> dict[str, Any]:
    quality = confidence_quality(confidences, right)
    return {**_rounded(asdict(quality)), "exact_at_coverage": _rounded(quality.exact_at_coverage),
            "reliability": [_rounded(asdict(b)) for b in quality.reliability]}


def block(task: Task, items: Sequence[Scored], rng: np.random.Generator, resamples: int, iou: float = 0.5) -> dict:
    """Metrics, `ci` and `baselines` of a group of scored samples."""
    weights = bootstrap.draws(len(items), rng, resamples)
    if task == "recognize":
        metrics = _recognition_block([item.score for item in items], weights)  # type: ignore[arg-type]
        confidences = [item.prediction.get("confidence") for item in items]
        if all(isinstance(value, int | float) for value in confidences):  # predictions files may lack them
            metrics["confidence"] = _confidence_block(confidences, [item.correct for item in items])  # type: ignore[arg-type]
        return metrics
    return _detection_block(items, weights, iou)


def summarise(
    task: Task, scored: Sequence[Scored], rng: np.random.Generator, resamples: int = bootstrap.DEFAULT_RESAMPLES,
    iou: float = 0.5,
) -> dict[str, Any]:
    """metrics.json content: the contract keys first, then ci, baselines and slices (field -> value -> block)."""
    if not scored:
        raise EvalError("the manifest has no samples")
    metrics = block(task, scored, rng, resamples, iou)
    groups = group([item.slices for item in scored])
    metrics["slices"] = {
        name: {value: block(task, [scored[i] for i in indices], rng, resamples, iou)
               for value, indices in values.items()}
        for name, values in groups.items()
    }
    return metrics


def compile_rates(scored: Iterable[Scored]) -> dict[str, float]:
    """Share of predictions and of references that typeset with TeX (one latex run each)."""
    from susik.latex.validity import compile_check

    items = [item for item in scored if isinstance(item.sample, CropSample)]
    predictions = compile_check([item.prediction.get("latex", "") for item in items])
    references = compile_check([item.sample.latex for item in items])  # type: ignore[union-attr]
    return {"prediction": round(sum(predictions) / len(items), 6),
            "reference": round(sum(references) / len(items), 6)}


# --- files ----------------------------------------------------------------------------------------------


def score_line(item: Scored) -> dict[str, Any]:
    """scores.jsonl: what `eval compare` needs to pair runs sample by sample, without the images."""
    base = {"index": item.index, "image": item.sample.image,
            "correct": item.correct, "slices": {k: list(v) for k, v in item.slices.items()}}
    score = item.score
    if isinstance(score, SampleScore):
        return {**base, "token_distance": score.token_distance, "char_distance": score.char_distance,
                "reference_chars": score.reference_chars, "norm_distance": round(score.norm_distance, 6)}
    return {**base, "matched": score.matched, "exact": score.exact, "predictions": score.predictions,
            "truths": score.truths}


def write_jsonl(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
