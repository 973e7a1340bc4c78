"""Online evaluation: what users' feedback says about each model version, and the dataset it yields."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
from rapidfuzz.distance import Levenshtein

from susik.data.manifest import CropSample, ManifestWriter, Sample
from susik.data.version import DatasetVersion, dataset_version
from susik.eval.confidence import confidence_quality
from susik.latex import normalize
from susik.pipeline import rectify
from susik.results import Quad
from susik.runtime.image_io import load_image
from susik.serve.canary import compare_versions, version_intervals
from susik.serve.store import CorrectedRegion, FeedbackFacts, RequestFacts

EXPORT_SOURCE = "susik-online"  # exported samples' source: f"{EXPORT_SOURCE}:{client}:{model version}"


def edit_distance(predicted: str, corrected: str) -> float:
    """Levenshtein distance of the normalised token sequences, divided by the longer length (0..1)."""
    return Levenshtein.normalized_distance(normalize(predicted), normalize(corrected))


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def _newest_per_region(feedback: Iterable[FeedbackFacts]) -> list[FeedbackFacts]:
    """A region's verdict is its newest feedback row with a verdict (a LaTeX or an acceptance)."""
    newest: dict[tuple[str, int], FeedbackFacts] = {}
    for row in feedback:
        if row.latex is not None or row.accepted is not None:
            newest[(row.request_id, row.region)] = row
    return list(newest.values())


def _verdicts(verdicts: list[FeedbackFacts]) -> dict:
    corrected = [row for row in verdicts if row.corrected]
    distances = [edit_distance(row.predicted_latex, row.latex or "") for row in corrected]
    return {
        "regions_with_feedback": len(verdicts),
        "corrected": len(corrected),
        "correction_rate": round(len(corrected) / len(verdicts), 4) if verdicts else None,
        "mean_edit_distance": round(float(np.mean(distances)), 4) if distances else None,
    }


def _confidence(verdicts: list[FeedbackFacts]) -> dict | None:
    """Does the served confidence still mean what it says on users' photos? A region its user left uncorrected
    counts as right: AUROC (corrected ones less sure), ECE, and the served and the observed rate side by side.
    None without both outcomes among the verdicts that carry a confidence."""
    rated = [row for row in verdicts if row.confidence is not None]
    right = [not row.corrected for row in rated]
    if len(set(right)) < 2:
        return None
    quality = confidence_quality([float(row.confidence) for row in rated], right)  # type: ignore[arg-type]
    return {"n": quality.n, "auroc": round(quality.auroc or 0.0, 4), "ece": round(quality.ece, 4),
            "mean_confidence": round(float(np.mean([row.confidence for row in rated])), 4),
            "uncorrected_rate": round(float(np.mean(right)), 4)}


def _slices(verdicts: list[FeedbackFacts], key: Callable[[FeedbackFacts], str]) -> dict:
    groups: dict[str, list[FeedbackFacts]] = defaultdict(list)
    for row in verdicts:
        groups[key(row)].append(row)
    return {name: _verdicts(rows) for name, rows in sorted(groups.items())}


def online_report(
    requests: list[RequestFacts],
    feedback: list[FeedbackFacts],
    voc_limit: int = 50,
    *,
    champion: str | None = None,
    challenger: str | None = None,
    seed: int = 0,
) -> dict:
    """Per model version: traffic, how often users correct it (overall, per mode and per kind), how far the
    corrections are from the prediction, whether the served confidence predicts the corrections, server and
    capture->display latency, and the newest free-text comments; with a `champion` and a `challenger` version, whether the challenger is better (see canary)."""
    rng = np.random.default_rng(seed)
    versions = sorted({row.model_version for row in requests})
    report, corrected, latency = {}, {}, {}
    for version in versions:
        mine = [row for row in feedback if row.model_version == version]
        verdicts = _newest_per_region(mine)
        display = [row.display_ms for row in mine if row.display_ms is not None]
        comments = [row for row in reversed(mine) if row.comment]
        version_requests = [row for row in requests if row.model_version == version]
        corrected[version] = [row.corrected for row in verdicts]
        latency[version] = [row.latency_ms for row in version_requests if row.latency_ms is not None]
        report[version] = {
            "requests": len(version_requests),
            "failed_requests": sum(row.status == "failed" for row in version_requests),
            "regions": sum(row.n_regions for row in version_requests),
            "feedback": len(mine),
            **_verdicts(verdicts),
            "confidence": _confidence(verdicts),
            **version_intervals(corrected[version], latency[version], rng),
            "display_ms_p50": _percentile(display, 50),
            "display_ms_p95": _percentile(display, 95),
            "slices": {
                "mode": _slices(verdicts, lambda row: row.mode),
                "kind": _slices(verdicts, lambda row: row.kind),
            },
            "voc": [
                {
                    "comment": row.comment,
                    "request_id": row.request_id,
                    "region": row.region,
                    "at": row.created_at.isoformat(),
                }
                for row in comments[:voc_limit]
            ],
        }
    result: dict = {"model_versions": report}
    if champion is not None and challenger is not None:
        result["comparison"] = compare_versions(champion, challenger, corrected, latency, rng)
    return result


def export_dataset(
    regions: Iterable[CorrectedRegion], out: Path, on_item: Callable[[], None] | None = None
) -> DatasetVersion:
    """Write user-labelled regions as a crop dataset (rectified crops, manifest.jsonl); return its version.

    Each sample carries the licence its user's consent granted; crops are named after their request (see
    `exported_request_id`) so a purge finds them again.
    """
    crops = out / "images"
    crops.mkdir(parents=True, exist_ok=True)
    with ManifestWriter(out / "manifest.jsonl") as writer:
        for region in regions:
            crop = rectify(load_image(region.image_path), Quad.from_json(region.quad), target_height=128)
            name = crops / f"{region.request_id}-{region.region}.png"
            if not cv2.imwrite(str(name), crop):
                raise OSError(f"cannot write {name}")
            writer.write(
                CropSample(
                    image=f"images/{name.name}",
                    latex=region.latex,
                    kind=region.kind,
                    source=f"{EXPORT_SOURCE}:{region.source}:{region.model_version}",
                    license=region.license,
                )
            )
            if on_item is not None:
                on_item()
    return dataset_version(out, use_cache=False)


def crop_request_id(name: str) -> str | None:
    """The request an exported crop file (`<request id>-<region>.png`) was cut from; None for other names."""
    stem, _, region = Path(name).stem.rpartition("-")
    return stem if stem and region.isdigit() else None


def exported_request_id(sample: Sample) -> str | None:
    """The request an exported sample was cut from; None for samples from anywhere else."""
    return crop_request_id(sample.image) if sample.source.startswith(f"{EXPORT_SOURCE}:") else None
