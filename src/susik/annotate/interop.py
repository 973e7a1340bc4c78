"""Label Studio task JSON and COCO, to and from page manifests.

Label Studio (the primary format, since its own COCO export drops transcriptions): one task per page; each
region is a `polygonlabels` result (the quad's 4 points in percent 0-100 of the image, label = kind) plus a
per-region `textarea` result with the same `id` holding the LaTeX. Human labels go under `annotations`, model
proposals (pre-annotations from the sidecar) under `predictions` with `model_version` and `score`. Page fields
that Label Studio has no place for (orientation, conditions, provenance, a region's extra polygon) ride in the
task's `data`.

COCO: one image per page, one annotation per region with `segmentation` = [the quad, flattened clockwise],
category = kind, and the LaTeX in an extra `latex` attribute.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from susik.annotate.store import SIDECAR, read_events
from susik.data.manifest import PageRegion, PageSample, read_manifest, write_manifest

FROM_KIND, FROM_TEXT, TO_IMAGE = "kind", "transcription", "image"
KINDS = ("printed", "handwritten")


class InteropError(ValueError):
    """A file that is not the expected Label Studio / COCO shape; the message says where."""


def _pages(manifest: Path) -> list[PageSample]:
    samples = list(read_manifest(manifest))
    pages = [sample for sample in samples if isinstance(sample, PageSample)]
    if len(pages) != len(samples):
        raise InteropError(f"{manifest}: not a page manifest (crop records found)")
    return pages


# --- Label Studio ---


def _ls_results(
    regions: Iterable[PageRegion], width: int, height: int, scores: Iterable[float] = ()
) -> list[dict]:
    results = []
    scores = list(scores)
    for index, region in enumerate(regions):
        rid = f"r{index}"
        points = [[x / width * 100.0, y / height * 100.0] for x, y in region.quad]
        common = {
            "id": rid,
            "to_name": TO_IMAGE,
            "original_width": width,
            "original_height": height,
            "image_rotation": 0,
        }
        shape = {
            **common,
            "from_name": FROM_KIND,
            "type": "polygonlabels",
            "value": {"points": points, "closed": True, "polygonlabels": [region.kind]},
        }
        if index < len(scores):
            shape["score"] = scores[index]
        text = {
            **common,
            "from_name": FROM_TEXT,
            "type": "textarea",
            "value": {"points": points, "closed": True, "text": [region.latex]},
        }
        results += [shape, text]
    return results


def to_labelstudio(manifest: str | Path, image_prefix: str = "") -> list[dict]:
    """Label Studio tasks for a page manifest, with the sidecar's pre-annotations as predictions."""
    manifest = Path(manifest)
    events = read_events(manifest.parent / SIDECAR)
    tasks = []
    for number, page in enumerate(_pages(manifest), start=1):
        mine = [event for event in events if event.image == page.image]
        data = {
            "image": image_prefix + page.image,
            "width": page.width,
            "height": page.height,
            "orientation": page.orientation,
            "conditions": list(page.conditions),
            "source": page.source,
            "license": page.license,
        }
        polygons = {f"r{i}": [list(p) for p in r.polygon] for i, r in enumerate(page.regions) if r.polygon}
        if polygons:
            data["polygons"] = polygons
        task: dict = {"id": number, "data": data, "annotations": [], "predictions": []}
        saves = [event for event in mine if event.type == "save"]
        if page.regions or saves:
            task["annotations"].append(
                {
                    "result": _ls_results(page.regions, page.width, page.height),
                    "lead_time": sum(event.seconds for event in saves),
                    "ground_truth": any(e.type == "review" and e.verdict == "accepted" for e in mine),
                }
            )
        for event in (e for e in mine if e.type == "prelabel"):
            score = sum(event.scores) / len(event.scores) if event.scores else None
            task["predictions"].append(
                {
                    "model_version": event.model_version or "unknown",
                    "score": score,
                    "result": _ls_results(event.regions, page.width, page.height, event.scores),
                }
            )
        tasks.append(task)
    return tasks


def _ls_regions(result: list[dict], polygons: dict, where: str) -> tuple[PageRegion, ...]:
    shapes: dict[str, dict] = {}
    texts: dict[str, str] = {}
    for item in result:
        kind = item.get("type")
        if kind in ("polygonlabels", "polygon"):
            shapes[item["id"]] = item
        elif kind == "textarea":
            texts[item["id"]] = "".join(item["value"].get("text", []))
    regions = []
    for rid, item in shapes.items():
        value, width, height = item["value"], item["original_width"], item["original_height"]
        points = value["points"]
        if len(points) != 4:
            raise InteropError(f"{where}: region {rid} has {len(points)} points; susik regions are quads")
        labels = value.get("polygonlabels") or ["printed"]
        if labels[0] not in KINDS:
            raise InteropError(f"{where}: region {rid}: unknown kind {labels[0]!r} (expected {KINDS})")
        quad = tuple((x / 100.0 * width, y / 100.0 * height) for x, y in points)
        polygon = polygons.get(rid)
        regions.append(
            PageRegion(
                quad=quad,
                polygon=tuple(map(tuple, polygon)) if polygon else None,
                latex=texts.get(rid, ""),
                kind=labels[0],
            )
        )
    return tuple(regions)


def from_labelstudio(tasks: list[dict], image_prefix: str = "") -> list[PageSample]:
    """Page records from Label Studio tasks: each task's latest annotation (predictions are not labels)."""
    pages = []
    for number, task in enumerate(tasks, start=1):
        where = f"task {task.get('id', number)}"
        try:
            data = task["data"]
            annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
            regions = (
                _ls_regions(annotations[-1]["result"], data.get("polygons", {}), where) if annotations else ()
            )
            image = data["image"].removeprefix(image_prefix)
            pages.append(
                PageSample(
                    image=image,
                    width=data["width"],
                    height=data["height"],
                    orientation=data.get("orientation", 0),
                    regions=regions,
                    conditions=tuple(data.get("conditions", ())),
                    source=data.get("source", "labelstudio"),
                    license=data.get("license", "unspecified"),
                )
            )
        except (KeyError, TypeError) as error:
            raise InteropError(f"{where}: missing or malformed field {error}") from None
    return pages


# --- COCO ---


def to_coco(manifest: str | Path) -> dict:
    images, annotations = [], []
    for image_id, page in enumerate(_pages(Path(manifest)), start=1):
        images.append(
            {
                "id": image_id,
                "file_name": page.image,
                "width": page.width,
                "height": page.height,
                "orientation": page.orientation,
                "conditions": list(page.conditions),
                "source": page.source,
                "license": page.license,
            }
        )
        for region in page.regions:
            xs, ys = [x for x, _ in region.quad], [y for _, y in region.quad]
            entry = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": KINDS.index(region.kind) + 1,
                "segmentation": [[coordinate for point in region.quad for coordinate in point]],
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "area": _shoelace(region.quad),
                "iscrowd": 0,
                "latex": region.latex,
            }
            if region.polygon:
                entry["polygon"] = [list(point) for point in region.polygon]
            annotations.append(entry)
    categories = [
        {"id": index + 1, "name": kind, "supercategory": "formula"} for index, kind in enumerate(KINDS)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def from_coco(coco: dict) -> list[PageSample]:
    try:
        kinds = {category["id"]: category["name"] for category in coco["categories"]}
        by_image: dict[int, list[PageRegion]] = {image["id"]: [] for image in coco["images"]}
        for entry in sorted(coco["annotations"], key=lambda a: a["id"]):
            flat = entry["segmentation"][0]
            if len(flat) != 8:
                raise InteropError(f"annotation {entry['id']}: segmentation is not a quad (8 numbers)")
            polygon = entry.get("polygon")
            by_image[entry["image_id"]].append(
                PageRegion(
                    quad=tuple(zip(flat[0::2], flat[1::2], strict=True)),
                    polygon=tuple(map(tuple, polygon)) if polygon else None,
                    latex=entry.get("latex", ""),
                    kind=kinds[entry["category_id"]],
                )
            )
        return [
            PageSample(
                image=image["file_name"],
                width=image["width"],
                height=image["height"],
                orientation=image.get("orientation", 0),
                regions=tuple(by_image[image["id"]]),
                conditions=tuple(image.get("conditions", ())),
                source=image.get("source", "coco"),
                license=image.get("license", "unspecified"),
            )
            for image in coco["images"]
        ]
    except (KeyError, TypeError, IndexError) as error:
        raise InteropError(f"not a COCO file with quads: missing or malformed {error}") from None


def _shoelace(points: Iterable[tuple[float, float]]) -> float:
    points = list(points)
    twice = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]))
    return abs(twice) / 2.0


# --- files ---


def export_labelstudio(manifest: Path, out: Path, image_prefix: str = "") -> int:
    tasks = to_labelstudio(manifest, image_prefix)
    out.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
    return len(tasks)


def import_labelstudio(source: Path, out_manifest: Path, image_prefix: str = "") -> int:
    tasks = _load_json(source)
    if not isinstance(tasks, list):
        raise InteropError(f"{source}: expected a JSON list of Label Studio tasks")
    return write_manifest(out_manifest, from_labelstudio(tasks, image_prefix))


def export_coco(manifest: Path, out: Path) -> int:
    coco = to_coco(manifest)
    out.write_text(json.dumps(coco, ensure_ascii=False, indent=1), encoding="utf-8")
    return len(coco["images"])


def import_coco(source: Path, out_manifest: Path) -> int:
    coco = _load_json(source)
    if not isinstance(coco, dict):
        raise InteropError(f"{source}: expected a COCO JSON object")
    return write_manifest(out_manifest, from_coco(coco))


def _load_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InteropError(f"{path}: cannot read: {error.strerror or error}") from None
    except json.JSONDecodeError as error:
        raise InteropError(f"{path}: not JSON: {error}") from None
