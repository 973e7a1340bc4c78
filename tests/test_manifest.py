"""Manifest records, the streaming reader and the atomic writer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from susik.data.manifest import (
    CropSample,
    ManifestError,
    ManifestReader,
    ManifestWriter,
    PageSample,
    find_manifest,
    image_path,
    read_manifest,
    write_manifest,
)

QUAD = [[1.0, 2.0], [30.0, 2.0], [30.0, 12.0], [1.0, 12.0]]


def _crop(**changes) -> CropSample:
    raw = {"image": "crops/a.png", "latex": r"\frac{1}{2}", "source": "synth", "license": "CC0"}
    raw.update(changes)
    return CropSample.model_validate(raw)


def _page(**changes) -> PageSample:
    raw = {
        "image": "pages/p.jpg", "width": 640, "height": 480, "orientation": 90,
        "regions": [{"quad": QUAD, "polygon": QUAD[:3], "latex": "x^2", "kind": "handwritten"},
                    {"quad": QUAD, "latex": "y", "kind": "printed"}],
        "conditions": ["rotation90", "blur"], "source": "synth", "license": "CC0",
    }
    raw.update(changes)
    return PageSample.model_validate(raw)


def test_round_trip_keeps_every_record(tmp_path: Path):
    records = [_crop(), _crop(image="b.png", kind="printed", conditions=["jpeg", "blur"]), _page(),
               _page(regions=[], conditions=[])]
    path = tmp_path / "manifest.jsonl"
    assert write_manifest(path, records) == 4
    assert list(read_manifest(path)) == records


def test_lines_follow_the_contract(tmp_path: Path):
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, [_crop(), _page(conditions=[])])
    crop, page = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    assert crop == {"image": "crops/a.png", "latex": r"\frac{1}{2}", "source": "synth", "license": "CC0"}
    assert list(page) == ["image", "width", "height", "orientation", "regions", "conditions", "source",
                          "license"]
    assert page["conditions"] == []
    assert page["regions"][0]["polygon"] == QUAD[:3]
    assert "polygon" not in page["regions"][1]


def test_page_kind_follows_its_regions():
    assert _page().kind == "mixed"
    assert _page(regions=[{"quad": QUAD, "latex": "x", "kind": "printed"}]).kind == "printed"
    assert _page(regions=[]).kind is None


@pytest.mark.parametrize(
    ("model", "changes", "message"),
    [
        (_crop, {"source": ""}, "source"),
        (_crop, {"license": None}, "license"),
        (_crop, {"kind": "typed"}, "kind"),
        (_crop, {"conditions": ["fog"]}, "conditions"),
        (_crop, {"colour": "red"}, "colour"),
        (_page, {"orientation": 45}, "orientation"),
        (_page, {"width": 0}, "width"),
        (_page, {"regions": [{"quad": QUAD[:3], "latex": "x", "kind": "printed"}]}, "quad"),
        (_page, {"regions": [{"quad": QUAD, "polygon": QUAD[:2], "latex": "x", "kind": "printed"}]},
         "polygon"),
    ],
)
def test_records_reject_bad_fields(model, changes: dict, message: str):
    with pytest.raises(ValidationError, match=message):
        model(**changes)


def test_a_record_without_source_or_license_is_rejected():
    with pytest.raises(ValidationError, match="license"):
        CropSample.model_validate({"image": "a.png", "latex": "x", "source": "s"})
    with pytest.raises(ValidationError, match="source"):
        CropSample.model_validate({"image": "a.png", "latex": "x", "license": "l"})


def _lines(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "Expecting property name"),
        ('["a list"]', "expected a JSON object"),
        ('{"image": "a.png", "latex": "x", "source": "s"}', "license: Field required"),
        ('{"image": "a.png", "latex": "x", "source": "s", "license": "l", "lable": "y"}',
         "lable: unknown field"),
    ],
)
def test_a_malformed_line_names_file_and_line(tmp_path: Path, bad: str, message: str):
    good = _crop().to_json_line()
    path = _lines(tmp_path, good, "", bad, good)
    records = read_manifest(path)
    assert next(records) == _crop()
    with pytest.raises(ManifestError) as caught:
        next(records)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert message in str(caught.value)


def test_skip_invalid_counts_the_bad_lines_and_goes_on(tmp_path: Path):
    good = _crop().to_json_line()
    reader = ManifestReader(_lines(tmp_path, "oops", good, "{}", good), skip_invalid=True)
    assert len(list(reader)) == 2
    assert [str(error).split(": ")[0].rsplit(":", 1)[1] for error in reader.skipped] == ["1", "3"]


def test_missing_manifest_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ManifestError, match="cannot read"):
        list(read_manifest(tmp_path / "absent.jsonl"))


def test_writer_leaves_the_old_manifest_when_writing_fails(tmp_path: Path):
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, [_crop()])
    before = path.read_bytes()
    with pytest.raises(RuntimeError), ManifestWriter(path) as writer:
        writer.write(_crop(image="b.png"))
        writer.write(_crop(image="c.png"))
        raise RuntimeError("crash mid-write")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl"]  # no temp file left


def test_writer_creates_nothing_when_the_first_write_fails(tmp_path: Path):
    path = tmp_path / "new" / "manifest.jsonl"
    with pytest.raises(RuntimeError), ManifestWriter(path) as writer:
        writer.write(_crop())
        raise RuntimeError("crash")
    assert list(path.parent.iterdir()) == []


def test_writer_makes_the_manifest_visible_only_on_close(tmp_path: Path):
    path = tmp_path / "manifest.jsonl"
    writer = ManifestWriter(path)
    writer.write(_crop())
    assert not path.exists()
    writer.close()
    assert list(read_manifest(path)) == [_crop()]
    assert path.stat().st_mode & 0o777 == 0o644


def test_writer_resolves_image_paths_against_the_manifest_folder(tmp_path: Path):
    data = tmp_path / "data"
    inside, outside = data / "images" / "a.png", tmp_path / "elsewhere" / "b.png"
    path = data / "manifest.jsonl"
    write_manifest(path, [_crop(image=str(inside)), _crop(image=str(outside)), _crop(image="rel/c.png")])
    written = [sample.image for sample in read_manifest(path)]
    assert written == ["images/a.png", outside.as_posix(), "rel/c.png"]
    assert [image_path(path, s) for s in read_manifest(path)] == [inside, outside, data / "rel" / "c.png"]
    write_manifest(path, [_crop(image=str(outside))], paths="relative")
    assert next(read_manifest(path)).image == "../elsewhere/b.png"
    write_manifest(path, [_crop(image=str(inside))], paths="absolute")
    assert next(read_manifest(path)).image == inside.as_posix()


def test_find_manifest_accepts_a_folder_or_a_file(tmp_path: Path):
    write_manifest(tmp_path / "other.jsonl", [_crop()])
    assert find_manifest(tmp_path) == tmp_path / "other.jsonl"
    write_manifest(tmp_path / "manifest.jsonl", [_crop()])
    assert find_manifest(tmp_path) == tmp_path / "manifest.jsonl"
    assert find_manifest(tmp_path / "other.jsonl") == tmp_path / "other.jsonl"
    with pytest.raises(ManifestError, match="no such"):
        find_manifest(tmp_path / "nothing")
    (tmp_path / "manifest.jsonl").unlink()
    write_manifest(tmp_path / "third.jsonl", [_crop()])
    with pytest.raises(ManifestError, match="name one"):
        find_manifest(tmp_path)
