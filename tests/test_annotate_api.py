"""The labeling app's HTTP API on a tiny generated dataset: list, filter, save, review, prelabel, guide."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from susik.annotate.app import create_app
from susik.annotate.prelabel import prelabel
from susik.annotate.store import BASELINE, SIDECAR, Dataset, read_events
from susik.data.manifest import PageRegion, PageSample, read_manifest, write_manifest
from susik.data.version import diff
from susik.latex import normalize
from susik.results import Page, Quad, Region

QUAD = [[40.0, 30.0], [200.0, 34.0], [198.0, 80.0], [38.0, 76.0]]


def make_dataset(folder: Path, labeled: bool = True) -> Path:
    """Two small page photos (white paper, dark strokes) and their manifest: the first labeled, one new."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for index in range(2):
        image = np.full((240, 320, 3), 245, np.uint8)
        cv2.putText(image, f"x+{index}=2", (50, 70), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (20, 20, 20), 2)
        cv2.imwrite(str(folder / f"page{index}.png"), image)
        regions = ()
        if labeled and index == 0:
            regions = (PageRegion(quad=tuple(map(tuple, QUAD)), latex="x+0=2", kind="printed"),)
        samples.append(
            PageSample(
                image=f"page{index}.png",
                width=320,
                height=240,
                orientation=0,
                regions=regions,
                source="test",
                license="CC0",
            )
        )
    write_manifest(folder / "manifest.jsonl", samples)
    return folder


@pytest.fixture
def client(tmp_path):
    dataset = Dataset(make_dataset(tmp_path / "ds"))
    with TestClient(create_app(dataset, spec_path=Path("specs/dataset.yaml"))) as client:
        yield client, dataset


def test_list_and_filter_by_status(client):
    http, _ = client
    body = http.get("/api/items").json()
    assert [(item["image"], item["status"]) for item in body["items"]] == [
        ("page0.png", "pre-annotated"),
        ("page1.png", "new"),
    ]
    assert body["counts"]["new"] == 1 and body["total"] == 2
    assert [item["image"] for item in http.get("/api/items?status=new").json()["items"]] == ["page1.png"]
    assert http.get("/api/items?status=bogus").json()["error"] == "invalid_status"


def test_item_and_image(client):
    http, _ = client
    item = http.get("/api/items/0").json()
    assert (item["width"], item["height"], item["orientation"]) == (320, 240, 0)
    assert item["regions"] == [{"quad": QUAD, "latex": "x+0=2", "kind": "printed"}]
    image = http.get("/api/items/1/image")
    assert image.status_code == 200
    assert cv2.imdecode(np.frombuffer(image.content, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
    missing = http.get("/api/items/7")
    assert missing.status_code == 404 and missing.json()["error"] == "unknown_item"


def test_save_writes_manifest_bumps_version_and_logs_time(client, tmp_path):
    http, dataset = client
    before = tmp_path / "before"
    shutil.copytree(dataset.folder, before)
    old_version = http.get("/api/version").json()["version"]
    region = {
        "quad": [[10, 10], [100, 12], [100, 50], [10, 48]],
        "latex": r"\frac{1}{2}",
        "kind": "handwritten",
    }
    saved = http.put(
        "/api/items/1", json={"regions": [region], "orientation": 90, "annotator": "ann", "seconds": 12.5}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["status"] == "annotated"
    assert saved.json()["version"] != old_version
    assert saved.json()["version"] == http.get("/api/version").json()["version"]

    page = list(read_manifest(dataset.manifest))[1]
    assert page.orientation == 90 and page.regions[0].latex == r"\frac{1}{2}"
    assert page.regions[0].quad == ((10, 10), (100, 12), (100, 50), (10, 48))
    change = diff(before, dataset.folder)
    assert [(c.image, c.fields) for c in change.changed] == [("page1.png", ("orientation", "regions"))]
    assert diff(dataset.folder / BASELINE, dataset.folder) == change  # the session's starting point is kept
    (event,) = read_events(dataset.folder / SIDECAR)
    assert (event.type, event.annotator, event.seconds) == ("save", "ann", 12.5)
    assert event.version == saved.json()["version"]
    # a fresh process sees the same state: nothing lived only in memory
    assert Dataset(dataset.folder).item(1).status == "annotated"


def test_conditions_are_set_or_kept(client):
    http, dataset = client
    assert "perspective" in http.get("/api/choices").json()["conditions"]
    body = {"regions": [], "orientation": 0, "annotator": "a", "conditions": ["blur", "shadow"]}
    assert http.put("/api/items/1", json=body).status_code == 200
    assert http.get("/api/items/1").json()["conditions"] == ["blur", "shadow"]
    del body["conditions"]
    assert http.put("/api/items/1", json=body).status_code == 200
    assert list(read_manifest(dataset.manifest))[1].conditions == ("blur", "shadow")
    body["conditions"] = ["foggy"]
    assert http.put("/api/items/1", json=body).status_code == 422


def test_bad_save_is_refused_and_changes_nothing(client):
    http, dataset = client
    before = dataset.manifest.read_bytes()
    three = {"quad": [[1, 1], [2, 2], [3, 3]], "latex": "x", "kind": "printed"}
    assert (
        http.put("/api/items/0", json={"regions": [three], "orientation": 0, "annotator": "a"}).status_code
        == 422
    )
    bad_kind = {"quad": QUAD, "latex": "x", "kind": "typed"}
    assert (
        http.put("/api/items/0", json={"regions": [bad_kind], "orientation": 0, "annotator": "a"}).status_code
        == 422
    )
    assert (
        http.put("/api/items/0", json={"regions": [], "orientation": 45, "annotator": "a"}).status_code == 422
    )
    assert dataset.manifest.read_bytes() == before
    assert not (dataset.folder / SIDECAR).exists()


def test_crash_while_writing_keeps_the_previous_manifest(client, monkeypatch):
    _, dataset = client
    before = dataset.manifest.read_bytes()

    def crash(*_args, **_kwargs):
        raise OSError("disk died")

    monkeypatch.setattr("susik.data.manifest.os.replace", crash)
    with pytest.raises(OSError):
        dataset.save(1, (), 0, "ann", 1.0)
    assert dataset.manifest.read_bytes() == before
    assert dataset.item(1).status == "new"  # memory matches the disk
    assert not (dataset.folder / SIDECAR).exists()  # nothing logged for a save that did not happen


def test_review_sets_status(client):
    http, _ = client
    assert http.post("/api/items/0/review", json={"reviewer": "rev", "verdict": "rejected"}).json()[
        "status"
    ] == ("rejected")
    assert http.post("/api/items/0/review", json={"reviewer": "rev", "verdict": "accepted"}).json()[
        "status"
    ] == ("reviewed")
    assert [i["image"] for i in http.get("/api/items?status=reviewed").json()["items"]] == ["page0.png"]


def test_review_history_comment_and_a_save_after_it(client):
    http, dataset = client
    body = {"regions": [{"quad": QUAD, "latex": "x+1=2", "kind": "printed"}], "orientation": 0}
    saved = http.put("/api/items/1", json={**body, "annotator": "kim", "seconds": 4}).json()
    rejected = http.post(
        "/api/items/1/review", json={"reviewer": "rev", "verdict": "rejected", "comment": " 1 is l? "}
    ).json()
    assert rejected["status"] == "rejected"
    save, review = rejected["history"]
    assert (save["type"], save["annotator"], save["regions"], save["version"]) == (
        "save",
        "kim",
        1,
        saved["version"],
    )
    assert (review["verdict"], review["annotator"], review["comment"]) == ("rejected", "rev", "1 is l?")
    assert review["version"] == saved["version"]  # the labels it judged; a review changes no label
    assert http.get("/api/version").json()["version"] == saved["version"]
    assert http.get("/api/items/1").json()["history"] == rejected["history"]
    (event,) = [e for e in read_events(dataset.sidecar) if e.type == "review"]
    assert event.comment == "1 is l?"

    # the annotator fixes it: changed labels need another review
    assert http.put("/api/items/1", json={**body, "annotator": "kim"}).json()["status"] == "annotated"
    long = {"reviewer": "rev", "verdict": "accepted", "comment": "x" * 2001}
    assert http.post("/api/items/1/review", json=long).status_code == 422


def test_filter_by_annotator(client):
    http, _ = client
    for index, who in ((0, "kim"), (1, "lee"), (1, "kim")):
        assert http.put(
            f"/api/items/{index}", json={"regions": [], "orientation": 0, "annotator": who}
        ).is_success
    body = http.get("/api/items").json()
    assert body["annotators"] == ["kim", "lee"]
    assert [item["annotators"] for item in body["items"]] == [["kim"], ["lee", "kim"]]
    assert [i["image"] for i in http.get("/api/items?annotator=lee").json()["items"]] == ["page1.png"]
    both = http.get("/api/items?annotator=kim&status=annotated").json()["items"]
    assert [i["image"] for i in both] == ["page0.png", "page1.png"]
    assert http.get("/api/items?annotator=nobody").json()["items"] == []


def test_polygon_alone_gets_its_quad_derived(client):
    http, dataset = client
    # a pentagon drawn counter-clockwise (on screen) on a page turned 90 degrees clockwise
    drawn = [[100, 200], [110, 120], [100, 30], [60, 40], [60, 200]]
    region = {"polygon": drawn, "latex": "y", "kind": "handwritten"}
    saved = http.put("/api/items/1", json={"regions": [region], "orientation": 90, "annotator": "a"})
    assert saved.status_code == 200, saved.text
    (back,) = saved.json()["regions"]
    (stored,) = list(read_manifest(dataset.manifest))[1].regions
    assert back == stored.model_dump(mode="json", exclude_none=True)
    xs, ys = zip(*back["quad"], strict=True)
    assert (min(xs), max(xs), min(ys), max(ys)) == pytest.approx((60, 110, 30, 200), abs=0.01)
    # turned 90 degrees clockwise, the formula's top-left is at the photo's top-right and it reads downwards
    assert back["quad"][0] == pytest.approx([110, 30], abs=0.01)
    assert back["quad"][1] == pytest.approx([110, 200], abs=0.01)
    # clockwise on screen, from the vertex nearest the quad's start
    assert back["polygon"] == [[100, 30], [110, 120], [100, 200], [60, 200], [60, 40]]

    # sent back unchanged (quad + polygon), it is stored as is
    again = http.put("/api/items/1", json={"regions": [back], "orientation": 90, "annotator": "a"})
    assert again.json()["regions"] == [back]


@pytest.mark.parametrize(
    ("polygon", "message"),
    [
        ([[0, 0], [10, 0]], "at least 3 points"),
        ([[0, 0], [10, 10], [20, 20]], "no area"),
        ([[0, 0], [20, 20], [20, 0], [0, 20]], "crosses itself"),
        ([[0, 0, 1], [10, 0, 1], [10, 10, 1]], "polygon.0"),
    ],
)
def test_bad_polygons_are_refused(client, polygon, message):
    http, dataset = client
    before = dataset.manifest.read_bytes()
    region = {"polygon": polygon, "latex": "x", "kind": "printed"}
    response = http.put("/api/items/1", json={"regions": [region], "orientation": 0, "annotator": "a"})
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert dataset.manifest.read_bytes() == before
    shapeless = {"latex": "x", "kind": "printed"}
    assert (
        http.put(
            "/api/items/1", json={"regions": [shapeless], "orientation": 0, "annotator": "a"}
        ).status_code
        == 422
    )


def test_crop_is_the_region_warped_upright(client):
    http, _ = client
    response = http.get("/api/items/0/regions/0/crop")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    crop = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert crop.shape == (46, 160)  # QUAD's longer edges: 160 x 46 px
    assert crop.min() < 60 and np.median(crop) > 200  # the dark "x+0=2" strokes on white paper
    assert http.get("/api/items/0/regions/1/crop").json()["error"] == "unknown_region"
    assert http.get("/api/items/1/regions/0/crop").status_code == 404


def test_pages_are_served(client):
    http, _ = client
    assert 'id="draw-polygon"' in http.get("/").text
    review = http.get("/review").text
    assert 'id="accept"' in review and 'id="filter-annotator"' in review
    assert "function decide" in http.get("/static/review.js").text


@pytest.mark.skipif(shutil.which("latex") is None, reason="needs TeX (texlive-latex-base)")
def test_compile_check(client):
    http, _ = client
    body = http.post("/api/compile", json={"latex": [r"\frac{1}{2}", r"\frac{1}{"]}).json()
    assert body == {"compiles": [True, False]}


def test_guide_is_generated_from_spec_and_conventions(client):
    http, _ = client
    page = http.get("/guide").text
    assert "perspective" in page and "formulas_per_page" not in page  # spec values, not raw keys
    assert "Formulas per page: 1–8" in page
    assert "\\lt" in page  # from the normaliser's docstring
    assert " ".join(normalize(r"\frac 1 2 + x^{2}")) in page  # the worked example, as compared


def test_prelabel_proposes_for_new_pages_only(tmp_path):
    dataset = Dataset(make_dataset(tmp_path / "ds"))
    seen = []

    def fake_model(images):
        seen.append(images[0].shape)
        quad = Quad(((5.0, 5.0), (60.0, 5.0), (60.0, 30.0), (5.0, 30.0)))
        return [Page(320, 240, 0, (Region(quad, (), "y=1", 0.8, "printed"),))]

    assert prelabel(dataset, fake_model, "fake-1") == 1
    assert seen == [(240, 320, 3)]
    assert dataset.item(1).status == "pre-annotated"
    with TestClient(create_app(Dataset(dataset.folder))) as http:
        item = http.get("/api/items/1").json()
    assert item["regions"] == []  # proposals are not labels
    assert item["prelabel"]["model_version"] == "fake-1"
    assert item["prelabel"]["regions"][0]["latex"] == "y=1" and item["prelabel"]["scores"] == [0.8]


def test_folder_of_images_gets_a_manifest(tmp_path):
    folder = make_dataset(tmp_path / "ds")
    (folder / "manifest.jsonl").unlink()
    dataset = Dataset(folder, license="CC0")
    assert [item.status for item in dataset.items()] == ["new", "new"]
    assert json.loads((folder / "manifest.jsonl").read_text().splitlines()[0])["license"] == "CC0"


def test_pages_can_be_listed_least_sure_proposal_first(tmp_path):
    dataset = Dataset(make_dataset(tmp_path / "ds", labeled=False))
    quad = Quad(((5.0, 5.0), (60.0, 5.0), (60.0, 30.0), (5.0, 30.0)))
    sureness = iter([(0.9, 0.7), (0.2,)])

    def fake_model(images):
        return [Page(320, 240, 0, tuple(Region(quad, (), "y=1", score, "printed") for score in next(sureness)))]

    assert prelabel(dataset, fake_model, "fake-1") == 2
    with TestClient(create_app(Dataset(dataset.folder))) as http:
        listed = http.get("/api/items").json()["items"]
        assert [(item["image"], item["least_sure"]) for item in listed] == [("page0.png", 0.7), ("page1.png", 0.2)]
        unsure = http.get("/api/items", params={"order": "unsure", "status": "pre-annotated"}).json()["items"]
        assert [item["image"] for item in unsure] == ["page1.png", "page0.png"]
        wrong = http.get("/api/items", params={"order": "random"})
        assert wrong.status_code == 422 and wrong.json()["error"] == "invalid_order"
