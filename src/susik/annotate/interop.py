"""Label Studio task JSON and COCO, to and from page manifests.

Label Studio (the primary format, since its own COCO export drops transcriptions): one task per page; each
region is a `polygonlabels` result (its outline in percent 0-100 of the image: the polygon when it has one,
else the quad's 4 points; label = kind) plus a per-region `textarea` result with the same `id` holding the
LaTeX. Human labels go under `annotations`, model proposals (pre-annotations from the sidecar) under
`predictions` with `model_version` and `score`. Page fields that Label Studio has no place for (orientation,
conditions, provenance) ride in the task's `data`, and so does each polygon region's exact pixel shape
(`data.shapes[id] = {"quad", "polygon"}`), so a round trip loses nothing to percent rounding.

Import takes each task's latest annotation. A polygon whose points still match `data.shapes` comes back
exactly; one edited or drawn in Label Studio becomes a polygon with a derived quad (`shapes.outline`), except
that 4 points without a stored shape are a quad as drawn. `rectanglelabels` (x, y, width, height, rotation)
become quads.

COCO: one image per page, one annotation per region with `segmentation` = [the outline, flattened clockwise],
category = kind, and the LaTeX in an extra `latex` attribute; a polygon region also carries its `quad`. On
import, a segmentation of 8 numbers without `quad` is a quad; any other is a polygon whose quad is derived.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from susik.annotate.shapes import ShapeError, outline
from susik.annotate.store import SIDECAR, read_events, status_of
from susik.data.manifest import PageRegion, PageSample, read_manifest, write_manifest
from susik.runtime.orient import order_quad

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
        points = [[x / width * 100.0, y / height * 100.0] for x, y in region.polygon or region.quad]
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
        shapes = {
            f"r{i}": {"quad": [list(p) for p in r.quad], "polygon": [list(p) for p in r.polygon]}
            for i, r in enumerate(page.regions)
            if r.polygon
        }
        if shapes:
            data["shapes"] = shapes
        task: dict = {"id": number, "data": data, "annotations": [], "predictions": []}
        saves = [event for event in mine if event.type == "save"]
        if page.regions or saves:
            task["annotations"].append(
                {
                    "result": _ls_results(page.regions, page.width, page.height),
                    "lead_time": sum(event.seconds for event in saves),
                    "ground_truth": status_of(page, mine) == "reviewed",  # accepted as it is now
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


def _same_points(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(p, q, abs_tol=0.01) for pa, pb in zip(a, b) for p, q in zip(pa, pb, strict=True)
    )


def _rectangle(value: dict, width: float, height: float, orientation: int) -> tuple:
    """A Label Studio rectangle (percent; rotated by `rotation` degrees clockwise about its top-left)."""
    x, y = value["x"] / 100.0 * width, value["y"] / 100.0 * height
    w, h = value["width"] / 100.0 * width, value["height"] / 100.0 * height
    angle = math.radians(value.get("rotation", 0.0))
    cos, sin = math.cos(angle), math.sin(angle)
    corners = [
        (x + dx * cos - dy * sin, y + dx * sin + dy * cos) for dx, dy in ((0, 0), (w, 0), (w, h), (0, h))
    ]
    return tuple(map(tuple, order_quad(corners, orientation).tolist()))


def _ls_shape(item: dict, stored: dict | None, orientation: int) -> tuple[tuple, tuple | None]:
    """(quad, polygon) of one Label Studio shape result."""
    value, width, height = item["value"], item["original_width"], item["original_height"]
    if item["type"] in ("rectanglelabels", "rectangle"):
        return _rectangle(value, width, height, orientation), None
    points = [(x / 100.0 * width, y / 100.0 * height) for x, y in value["points"]]
    if stored is not None and _same_points(points, stored["polygon"]):
        return tuple(map(tuple, stored["quad"])), tuple(map(tuple, stored["polygon"]))
    if stored is None and len(points) == 4:
        return tuple(points), None
    return outline(points, orientation)


def _ls_regions(result: list[dict], shapes: dict, orientation: int, where: str) -> tuple[PageRegion, ...]:
    found: dict[str, dict] = {}
    texts: dict[str, str] = {}
    for item in result:
        kind = item.get("type")
        if kind in ("polygonlabels", "polygon", "rectanglelabels", "rectangle"):
            found[item["id"]] = item
        elif kind == "textarea":
            texts[item["id"]] = "".join(item["value"].get("text", []))
    regions = []
    for rid, item in found.items():
        value = item["value"]
        labels = value.get("polygonlabels") or value.get("rectanglelabels") or ["printed"]
        if labels[0] not in KINDS:
            raise InteropError(f"{where}: region {rid}: unknown kind {labels[0]!r} (expected {KINDS})")
        try:
            quad, polygon = _ls_shape(item, shapes.get(rid), orientation)
        except ShapeError as error:
            raise InteropError(f"{where}: region {rid}: {error}") from None
        regions.append(PageRegion(quad=quad, polygon=polygon, latex=texts.get(rid, ""), kind=labels[0]))
    return tuple(regions)


def from_labelstudio(tasks: list[dict], image_prefix: str = "") -> list[PageSample]:
    """Page records from Label Studio tasks: each task's latest annotation (predictions are not labels)."""
    pages = []
    for number, task in enumerate(tasks, start=1):
        where = f"task {task.get('id', number)}"
        try:
            data = task["data"]
            annotations = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
            orientation = data.get("orientation", 0)
            regions = (
                _ls_regions(annotations[-1]["result"], data.get("shapes", {}), orientation, where)
                if annotations
                else ()
            )
            image = data["image"].removeprefix(image_prefix)
            pages.append(
                PageSample(
                    image=image,
                    width=data["width"],
                    height=data["height"],
                    orientation=orientation,
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
            shape = region.polygon or region.quad
            xs, ys = [x for x, _ in shape], [y for _, y in shape]
            entry = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": KINDS.index(region.kind) + 1,
                "segmentation": [[coordinate for point in shape for coordinate in point]],
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "area": _shoelace(shape),
                "iscrowd": 0,
                "latex": region.latex,
            }
            if region.polygon:
                entry["quad"] = [list(point) for point in region.quad]
            annotations.append(entry)
    categories = [
        {"id": index + 1, "name": kind, "supercategory": "formula"} for index, kind in enumerate(KINDS)
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


def from_coco(coco: dict) -> list[PageSample]:
    try:
        kinds = {category["id"]: category["name"] for category in coco["categories"]}
        orientations = {image["id"]: image.get("orientation", 0) for image in coco["images"]}
        by_image: dict[int, list[PageRegion]] = {image["id"]: [] for image in coco["images"]}
        for entry in sorted(coco["annotations"], key=lambda a: a["id"]):
            flat = entry["segmentation"][0]
            points = tuple(zip(flat[0::2], flat[1::2], strict=True))
            if "quad" in entry:
                quad, polygon = tuple(map(tuple, entry["quad"])), points
            elif len(points) == 4:
                quad, polygon = points, None
            else:
                try:
                    quad, polygon = outline(points, orientations[entry["image_id"]])
                except ShapeError as error:
                    raise InteropError(f"annotation {entry['id']}: {error}") from None
            by_image[entry["image_id"]].append(
                PageRegion(
                    quad=quad, polygon=polygon, latex=entry.get("latex", ""), kind=kinds[entry["category_id"]]
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
    except InteropError:
        raise
    except (KeyError, TypeError, IndexError, ValueError) as error:  # ValueError: odd-length segmentation
        raise InteropError(f"not a COCO file with polygons: missing or malformed {error}") from None


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
