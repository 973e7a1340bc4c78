"""Label Studio / COCO round trips, the CLI around them, and inter-annotator agreement."""

import json
import time

import pytest
from test_annotate_api import make_dataset
from typer.testing import CliRunner

from susik.annotate.agreement import agreement_report, compare, region_iou
from susik.annotate.interop import (
    InteropError,
    export_coco,
    export_labelstudio,
    from_coco,
    from_labelstudio,
    import_coco,
    import_labelstudio,
    to_labelstudio,
)
from susik.annotate.store import Dataset, Event
from susik.cli import app
from susik.data.manifest import PageRegion, PageSample, read_manifest, write_manifest

# awkward coordinates on purpose: percent conversion must not lose them
REGIONS = (
    PageRegion(
        quad=((10.123, 20.456), (300.789, 22.001), (299.5, 90.25), (11.0, 88.75)),
        latex=r"\frac{a}{b}",
        kind="printed",
    ),
    PageRegion(
        quad=((50.0, 120.0), (250.0, 110.0), (255.0, 180.0), (52.0, 190.0)),
        polygon=((50.0, 120.0), (150.0, 105.0), (250.0, 110.0), (255.0, 180.0), (52.0, 190.0)),
        latex="x^2 + 한",
        kind="handwritten",
    ),
)
PAGE = PageSample(
    image="p.jpg",
    width=333,
    height=217,
    orientation=90,
    regions=REGIONS,
    conditions=("perspective", "blur"),
    source="test",
    license="CC0",
)
EMPTY = PageSample(
    image="q.jpg", width=100, height=50, orientation=0, regions=(), source="test", license="CC0"
)


def same_pages(got: list[PageSample], want: list[PageSample]) -> None:
    assert len(got) == len(want)
    for page, expected in zip(got, want):
        assert page.model_dump(exclude={"regions"}) == expected.model_dump(exclude={"regions"})
        assert len(page.regions) == len(expected.regions)
        for region, reference in zip(page.regions, expected.regions):
            assert (region.latex, region.kind) == (reference.latex, reference.kind)
            for (x, y), (rx, ry) in zip(region.quad, reference.quad, strict=True):
                assert abs(x - rx) < 0.01 and abs(y - ry) < 0.01
            assert region.polygon == reference.polygon


def test_labelstudio_round_trip(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [PAGE, EMPTY])
    (task, empty) = to_labelstudio(manifest)
    result = task["annotations"][0]["result"]
    shapes = [r for r in result if r["type"] == "polygonlabels"]
    texts = [r for r in result if r["type"] == "textarea"]
    assert [s["id"] for s in shapes] == [t["id"] for t in texts]  # region and transcription share the id
    assert shapes[0]["value"]["points"][0] == pytest.approx([10.123 / 333 * 100, 20.456 / 217 * 100])
    assert shapes[1]["value"]["polygonlabels"] == ["handwritten"]
    assert len(shapes[1]["value"]["points"]) == 5  # Label Studio shows the polygon drawn, not its quad
    assert task["data"]["shapes"] == {
        "r1": {"quad": [list(p) for p in REGIONS[1].quad], "polygon": [list(p) for p in REGIONS[1].polygon]}
    }
    assert texts[1]["value"]["text"] == ["x^2 + 한"]
    assert (shapes[0]["original_width"], shapes[0]["original_height"]) == (333, 217)
    assert empty["annotations"] == [] and task["predictions"] == []

    out = tmp_path / "ls.json"
    assert export_labelstudio(manifest, out) == 2
    assert import_labelstudio(out, tmp_path / "back.jsonl") == 2
    same_pages(list(read_manifest(tmp_path / "back.jsonl")), [PAGE, EMPTY])


def test_prelabels_become_predictions_and_are_not_imported_as_labels(tmp_path):
    folder = make_dataset(tmp_path / "ds", labeled=False)
    dataset = Dataset(folder)
    proposal = PageRegion(quad=((1.0, 1.0), (9.0, 1.0), (9.0, 5.0), (1.0, 5.0)), latex="z", kind="printed")
    dataset.add_prelabels(
        [
            Event(
                type="prelabel",
                image="page0.png",
                at=time.time(),
                regions=(proposal,),
                model_version="rec-abc",
                scores=(0.75,),
            )
        ]
    )
    dataset.save(1, REGIONS, 0, "ann", 30.0)
    first, second = to_labelstudio(dataset.manifest, image_prefix="/data/local-files/?d=")
    assert first["data"]["image"] == "/data/local-files/?d=page0.png"
    (prediction,) = first["predictions"]
    assert (prediction["model_version"], prediction["score"]) == ("rec-abc", 0.75)
    assert prediction["result"][0]["score"] == 0.75
    assert first["annotations"] == []
    assert second["annotations"][0]["lead_time"] == 30.0
    pages = from_labelstudio([first, second], image_prefix="/data/local-files/?d=")
    assert pages[0].image == "page0.png" and pages[0].regions == ()
    assert [r.latex for r in pages[1].regions] == [r.latex for r in REGIONS]
    assert second["annotations"][0]["ground_truth"] is False
    dataset.review(1, "rev", "accepted", 2.0)
    assert to_labelstudio(dataset.manifest)[1]["annotations"][0]["ground_truth"] is True
    dataset.save(1, REGIONS[:1], 0, "ann", 5.0)  # changed after the review: not ground truth any more
    assert to_labelstudio(dataset.manifest)[1]["annotations"][0]["ground_truth"] is False


def labelstudio_task(value: dict, kind: str = "polygonlabels", data: dict | None = None) -> dict:
    """A task as Label Studio writes it for a region drawn in its own editor (a 200 x 100 image)."""
    shape = {
        "id": "a",
        "type": kind,
        "from_name": "kind",
        "to_name": "image",
        "original_width": 200,
        "original_height": 100,
        "value": value,
    }
    text = {**shape, "type": "textarea", "from_name": "transcription", "value": {"text": ["y"]}}
    return {
        "id": 1,
        "data": {"image": "x.png", "width": 200, "height": 100, **(data or {})},
        "annotations": [{"result": [shape, text]}],
    }


def test_labelstudio_polygon_drawn_there_gets_a_quad():
    # percent of 200 x 100: a pentagon, counter-clockwise on screen
    points = [[10, 20], [10, 60], [50, 70], [60, 40], [50, 10]]
    (page,) = from_labelstudio([labelstudio_task({"points": points, "polygonlabels": ["handwritten"]})])
    (region,) = page.regions
    assert (region.latex, region.kind) == ("y", "handwritten")
    assert region.polygon == ((20.0, 20.0), (100.0, 10.0), (120.0, 40.0), (100.0, 70.0), (20.0, 60.0))
    xs, ys = zip(*region.quad, strict=True)
    assert region.quad[0] == min(region.quad, key=sum)  # an upright page: starts at the top-left
    assert min(xs) <= 20 and max(xs) >= 120 and min(ys) <= 10 and max(ys) >= 70  # it bounds the polygon


def test_labelstudio_polygon_edited_there_gets_a_new_quad(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [PAGE])
    (task,) = to_labelstudio(manifest)
    shape = task["annotations"][0]["result"][2]
    shape["value"]["points"][1] = [40.0, 30.0]  # a vertex dragged in Label Studio
    (page,) = from_labelstudio([task])
    untouched, edited = page.regions
    assert untouched == REGIONS[0].model_copy(update={"quad": untouched.quad})  # quad-only: as drawn
    dragged = (round(40.0 / 100 * 333, 2), round(30.0 / 100 * 217, 2))
    assert dragged in edited.polygon and len(edited.polygon) == 5
    assert edited.quad != REGIONS[1].quad  # derived again from the edited outline, not the stale one
    xs = [x for x, _ in edited.quad]
    assert min(xs) <= 50.0 and max(xs) >= 255.0


def flat(points) -> list[float]:
    return [value for point in points for value in point]


def test_labelstudio_rectangles_become_quads():
    square = {"x": 10, "y": 20, "width": 20, "height": 40, "rotation": 0, "rectanglelabels": ["printed"]}
    (page,) = from_labelstudio([labelstudio_task(square, "rectanglelabels")])
    assert flat(page.regions[0].quad) == pytest.approx(flat(((20, 20), (60, 20), (60, 60), (20, 60))))
    assert page.regions[0].polygon is None
    turned = {**square, "rotation": 90}  # clockwise about its top-left corner
    (page,) = from_labelstudio([labelstudio_task(turned, "rectanglelabels")])
    # still clockwise from the top-left
    assert flat(page.regions[0].quad) == pytest.approx(flat(((-20, 20), (20, 20), (20, 60), (-20, 60))))


def test_labelstudio_refuses_shapes_that_are_not_regions():
    line = {"points": [[10, 10], [50, 10]], "polygonlabels": ["printed"]}
    with pytest.raises(InteropError, match="task 1: region a: a polygon needs at least 3 points"):
        from_labelstudio([labelstudio_task(line)])
    bowtie = {"points": [[0, 0], [20, 20], [20, 0], [0, 20], [10, 30]], "polygonlabels": ["printed"]}
    with pytest.raises(InteropError, match="crosses itself"):
        from_labelstudio([labelstudio_task(bowtie)])
    with pytest.raises(InteropError, match="unknown kind"):
        from_labelstudio([labelstudio_task({"points": [[0, 0], [9, 0], [9, 9]], "polygonlabels": ["typed"]})])


def test_coco_round_trip(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [PAGE, EMPTY])
    out = tmp_path / "coco.json"
    assert export_coco(manifest, out) == 2
    coco = json.loads(out.read_text())
    first, second = coco["annotations"]
    assert first["latex"] == r"\frac{a}{b}" and len(first["segmentation"][0]) == 8 and "quad" not in first
    assert len(second["segmentation"][0]) == 10  # the polygon is the segmentation; its quad rides beside it
    assert second["quad"] == [list(point) for point in REGIONS[1].quad]
    assert [c["name"] for c in coco["categories"]] == ["printed", "handwritten"]
    assert first["bbox"] == pytest.approx([10.123, 20.456, 300.789 - 10.123, 90.25 - 20.456])
    assert import_coco(out, tmp_path / "back.jsonl") == 2
    same_pages(list(read_manifest(tmp_path / "back.jsonl")), [PAGE, EMPTY])
    with pytest.raises(InteropError):
        from_coco({"images": []})


def test_coco_polygon_from_elsewhere_gets_a_quad():
    pentagon = [20, 20, 20, 60, 100, 70, 120, 40, 100, 10]
    coco = {
        "images": [{"id": 7, "file_name": "x.png", "width": 200, "height": 100}],
        "categories": [{"id": 3, "name": "printed"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "segmentation": [pentagon]}],
    }
    (page,) = from_coco(coco)
    (region,) = page.regions
    assert region.polygon == ((20, 20), (100, 10), (120, 40), (100, 70), (20, 60))  # clockwise on screen
    assert region.latex == "" and len(region.quad) == 4
    coco["annotations"][0]["segmentation"] = [[0, 0, 10, 10, 20, 20]]
    with pytest.raises(InteropError, match="annotation 1: the polygon has no area"):
        from_coco(coco)


def test_cli_round_trip_and_errors(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [PAGE])
    runner = CliRunner()
    ls, coco = tmp_path / "ls.json", tmp_path / "coco.json"
    assert runner.invoke(app, ["annotate", "export-labelstudio", str(manifest), str(ls)]).exit_code == 0
    assert (
        runner.invoke(app, ["annotate", "import-labelstudio", str(ls), str(tmp_path / "a.jsonl")]).exit_code
        == 0
    )
    assert runner.invoke(app, ["annotate", "export-coco", str(manifest), str(coco)]).exit_code == 0
    assert (
        runner.invoke(app, ["annotate", "import-coco", str(coco), str(tmp_path / "b.jsonl")]).exit_code == 0
    )
    same_pages(list(read_manifest(tmp_path / "a.jsonl")), [PAGE])
    same_pages(list(read_manifest(tmp_path / "b.jsonl")), [PAGE])
    ls.write_text("{not json")
    failed = runner.invoke(app, ["annotate", "import-labelstudio", str(ls), str(tmp_path / "c.jsonl")])
    assert failed.exit_code == 1 and "not JSON" in failed.output
    assert not (tmp_path / "c.jsonl").exists()
    missing = runner.invoke(app, ["annotate", str(tmp_path / "nowhere")])  # the app's shorthand form
    assert missing.exit_code == 1 and "no such folder" in missing.output


def test_region_iou_and_matching():
    square = PageRegion(quad=((0, 0), (10, 0), (10, 10), (0, 10)), latex="a", kind="printed")
    shifted = PageRegion(quad=((5, 0), (15, 0), (15, 10), (5, 10)), latex="b", kind="handwritten")
    assert region_iou(square, square) == pytest.approx(1.0)
    assert region_iou(square, shifted) == pytest.approx(50 / 150)
    flat = PageRegion(quad=((0, 0), (10, 0), (10, 0), (0, 0)), latex="a", kind="printed")
    assert region_iou(flat, flat) == 0.0  # zero area: no division by zero
    # two outlines in the same bounding quad: their polygons decide, not the quads they share
    upper = square.model_copy(update={"polygon": ((0, 0), (10, 0), (0, 10))})
    lower = square.model_copy(update={"polygon": ((10, 0), (10, 10), (0, 10))})
    assert region_iou(upper, lower) == pytest.approx(0.0)
    assert region_iou(upper, square) == pytest.approx(1.0)  # one has no polygon: quads
    pair = compare((square,), (square.model_copy(update={"latex": "b"}), shifted))
    assert (pair.ious, pair.same_kind) == ((pytest.approx(1.0),), 1)
    assert pair.edit == (1.0,)  # one token of one, replaced


def test_agreement_report_on_a_doubly_labeled_set(tmp_path):
    square = PageRegion(quad=((0, 0), (100, 0), (100, 40), (0, 40)), latex=r"\frac{1}{2}", kind="printed")
    nudged = PageRegion(quad=((2, 0), (100, 0), (100, 40), (2, 40)), latex=r"\frac 1 2", kind="printed")
    other = PageRegion(quad=((0, 100), (50, 100), (50, 140), (0, 140)), latex="x", kind="handwritten")

    def save(image, who, regions, seconds):
        return Event(type="save", image=image, at=0.0, annotator=who, regions=regions, seconds=seconds)

    events = [
        save("a.png", "kim", (square, other), 60),
        save("a.png", "lee", (nudged,), 30),
        save("b.png", "kim", (square,), 60),
    ]
    report = agreement_report(events)
    assert report["doubly_labeled_pages"] == 1 and report["pairs"] == 1
    assert report["region_f1"] == pytest.approx(2 / 3)
    assert report["mean_iou"] == pytest.approx(0.98)
    assert report["latex_exact"] == 1.0  # same formula after normalisation
    kim, lee = report["annotators"]
    assert (kim["annotator"], kim["items"], kim["seconds"], kim["items_per_hour"]) == ("kim", 2, 120, 60.0)
    assert (lee["items"], lee["regions"]) == (1, 1)

    folder = make_dataset(tmp_path / "ds")
    dataset = Dataset(folder)
    dataset.save(0, (square,), 0, "kim", 10.0)
    dataset.save(0, (nudged,), 0, "lee", 20.0)
    result = CliRunner().invoke(app, ["annotate", "agreement", str(folder)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["mean_iou"] == pytest.approx(0.98)
