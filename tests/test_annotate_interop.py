"""Label Studio / COCO round trips, the CLI around them, and inter-annotator agreement."""

import json
import time

import pytest
from test_annotate_api import make_dataset
from typer.testing import CliRunner

from susik.annotate.agreement import agreement_report, compare, quad_iou
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


def test_labelstudio_rejects_non_quads():
    task = to_labelstudio_task_with_points(5)
    with pytest.raises(InteropError, match="5 points"):
        from_labelstudio([task])


def to_labelstudio_task_with_points(n: int) -> dict:
    points = [[10.0 * i, 5.0] for i in range(n)]
    shape = {
        "id": "a",
        "type": "polygonlabels",
        "from_name": "kind",
        "to_name": "image",
        "original_width": 100,
        "original_height": 100,
        "value": {"points": points, "polygonlabels": ["printed"]},
    }
    return {
        "id": 1,
        "data": {"image": "x.png", "width": 100, "height": 100},
        "annotations": [{"result": [shape]}],
    }


def test_coco_round_trip(tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    write_manifest(manifest, [PAGE, EMPTY])
    out = tmp_path / "coco.json"
    assert export_coco(manifest, out) == 2
    coco = json.loads(out.read_text())
    first = coco["annotations"][0]
    assert first["latex"] == r"\frac{a}{b}" and len(first["segmentation"][0]) == 8
    assert [c["name"] for c in coco["categories"]] == ["printed", "handwritten"]
    assert first["bbox"] == pytest.approx([10.123, 20.456, 300.789 - 10.123, 90.25 - 20.456])
    assert import_coco(out, tmp_path / "back.jsonl") == 2
    same_pages(list(read_manifest(tmp_path / "back.jsonl")), [PAGE, EMPTY])
    with pytest.raises(InteropError):
        from_coco({"images": []})


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


def test_quad_iou_and_matching():
    square = PageRegion(quad=((0, 0), (10, 0), (10, 10), (0, 10)), latex="a", kind="printed")
    shifted = PageRegion(quad=((5, 0), (15, 0), (15, 10), (5, 10)), latex="b", kind="handwritten")
    assert quad_iou(square, square) == pytest.approx(1.0)
    assert quad_iou(square, shifted) == pytest.approx(50 / 150)
    flat = PageRegion(quad=((0, 0), (10, 0), (10, 0), (0, 0)), latex="a", kind="printed")
    assert quad_iou(flat, flat) == 0.0  # zero area: no division by zero
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
