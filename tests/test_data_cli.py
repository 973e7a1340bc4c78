"""`susik data stats|version|diff|import` through the typer app, on tiny generated datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from susik.cli import app
from susik.data.manifest import CropSample, PageSample, image_path, read_manifest, write_manifest
from susik.data.version import dataset_version

runner = CliRunner()
QUAD = [[0, 0], [10, 0], [10, 4], [0, 4]]


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    # 20 pages: every kind × condition cell needs round(20 × 0.5 × 0.5) = 5
    raw = {
        "pages": {"total": 20, "min_per_cell": 1, "kinds": {"printed": 0.5, "handwritten": 0.5},
                  "conditions": {"clean": 0.5, "blur": 0.5}, "conditions_per_sample": {"min": 1, "max": 1},
                  "formulas_per_page": {"min": 1, "max": 2}, "distractor_lines": {"min": 0, "max": 0}},
        "crops": {"total": 4, "min_per_cell": 1, "kinds": {"printed": 1.0}, "conditions": {"clean": 1.0},
                  "conditions_per_sample": {"min": 1, "max": 1}},
        "answers": {"detector": {"region": ["quad", "polygon"]}, "recognizer": {"region": ["latex"],
                                                                                "crop": ["latex"]}},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _page(index: int, kind: str, condition: str) -> PageSample:
    return PageSample(image=f"p{index}.png", width=40, height=20, orientation=0, conditions=[condition],
                      regions=[{"quad": QUAD, "polygon": QUAD, "latex": r"\frac{a}{b}", "kind": kind}],
                      source="synth", license="CC0")


def _pages(tmp_path: Path) -> Path:
    cells = [("printed", "clean")] * 5 + [("printed", "blur")] * 2 + [("handwritten", "blur")] * 6
    path = tmp_path / "pages" / "manifest.jsonl"
    write_manifest(path, [_page(i, kind, condition) for i, (kind, condition) in enumerate(cells)])
    return path


def test_stats_shows_required_vs_present_and_the_missing_cells(tmp_path: Path, spec_path: Path):
    result = runner.invoke(app, ["data", "stats", str(_pages(tmp_path)), "--spec", str(spec_path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "13 pages; requirements for a set of 20" in out
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
            for line in out.splitlines() if line.startswith("│ ") and "/" in line}
    assert rows == {"clean": ["5/5", "0/5"], "blur": ["2/5", "6/5"]}
    assert "missing: 2 cells below requirement (8 samples short)" in out
    missing = [line.split("│")[1:6] for line in out.splitlines() if line.startswith("│ ") and "/" not in line]
    missing = [[cell.strip() for cell in row] for row in missing if len(row) == 5]
    assert ["handwritten", "clean", "5", "0", "5"] in missing
    assert ["printed", "blur", "5", "2", "3"] in missing
    assert "formulas per page" in out and "fraction 100%" in out


def test_stats_scales_requirements_and_reports_answer_gaps(tmp_path: Path, spec_path: Path):
    path = tmp_path / "crops.jsonl"
    write_manifest(path, [CropSample(image="a.png", latex="", kind="printed", conditions=["clean"],
                                     source="s", license="l"),
                          CropSample(image="b.png", latex="x", source="s", license="l")])
    result = runner.invoke(app, ["data", "stats", str(path), "--spec", str(spec_path), "--total", "40"])
    assert result.exit_code == 0, result.output
    assert "2 crops; requirements for a set of 40" in result.output
    assert "1/40" in result.output
    assert "not in any cell: 1 (no kind)" in result.output
    assert "answers: 1 crops lack what recognizer needs" in result.output


def test_stats_errors_are_one_line_with_file_and_line(tmp_path: Path, spec_path: Path):
    path = _pages(tmp_path)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"image": "x.png"}\n')
    result = runner.invoke(app, ["data", "stats", str(path), "--spec", str(spec_path)])
    assert result.exit_code == 1
    assert f"error: {path}:14: " in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["data", "stats", str(path), "--spec", str(tmp_path / "none.yaml")])
    assert result.exit_code == 1 and "none.yaml: cannot read" in result.output


def _images(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(name.encode())


def test_version_and_diff_commands(tmp_path: Path):
    folder = tmp_path / "set"
    _images(folder, ["a.png", "b.png"])
    samples = [CropSample(image=n, latex=n[0], source="s", license="l") for n in ("a.png", "b.png")]
    write_manifest(folder / "manifest.jsonl", samples)
    result = runner.invoke(app, ["data", "version", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == dataset_version(folder).digest
    assert "2 samples, 2 images" in result.output

    other = tmp_path / "other.jsonl"
    moved = [CropSample(image=str(folder / "a.png"), latex="a", source="s", license="l"),
             CropSample(image=str(folder / "b.png"), latex="B", source="s", license="l")]
    write_manifest(other, moved, paths="relative")
    result = runner.invoke(app, ["data", "diff", str(folder), str(other)])
    assert result.exit_code == 0, result.output
    assert "added 1, removed 1, changed 0, moved 1" in result.output
    assert "added: set/b.png" in result.output and "removed: b.png" in result.output
    assert "moved: a.png -> set/a.png" in result.output
    result = runner.invoke(app, ["data", "version", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "no such file or folder" in result.output


def test_import_folder_of_pairs(tmp_path: Path):
    src = tmp_path / "src"
    _images(src, ["one.png", "sub/two.jpg", "unlabelled.png", "blank.png"])
    (src / "one.png").with_suffix(".txt").write_text("x^{2}\n+1\n", encoding="utf-8")
    (src / "sub" / "two.txt").write_text(r"\sqrt{2}", encoding="utf-8")
    (src / "blank.txt").write_text("  \n", encoding="utf-8")
    out = tmp_path / "out" / "crops.jsonl"
    args = ["data", "import", "folder", str(src), "--out", str(out), "--source", "mine", "--license", "CC0",
            "--kind", "handwritten"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 2 samples" in result.output and "skipped 1" in result.output
    assert "blank.txt: empty label" in result.output
    samples = list(read_manifest(out))
    assert [(s.latex, s.source, s.license, s.kind) for s in samples] == [
        ("x^{2} +1", "mine", "CC0", "handwritten"), (r"\sqrt{2}", "mine", "CC0", "handwritten")]
    assert [image_path(out, s) for s in samples] == [src / "one.png", src / "sub" / "two.jpg"]

    result = runner.invoke(app, ["data", "import", "folder", str(src), "--out", str(out)])
    assert result.exit_code == 1 and "needs --source and --license" in result.output


def test_import_table(tmp_path: Path):
    _images(tmp_path / "t", ["img/a.png"])
    table = tmp_path / "t" / "labels.tsv"
    table.write_text("image\tlatex\nimg/a.png\t\\alpha\nimg/none.png\tb\n", encoding="utf-8")
    out = tmp_path / "t" / "manifest.jsonl"
    result = runner.invoke(app, ["data", "import", "folder", str(table), "--out", str(out), "--source", "t",
                                 "--license", "CC0"])
    assert result.exit_code == 0, result.output
    assert "labels.tsv:3: image not found" in result.output
    assert [(s.image, s.latex) for s in read_manifest(out)] == [("img/a.png", r"\alpha")]


def test_import_dataset_manifest_keeps_provenance_and_can_copy(tmp_path: Path):
    src = tmp_path / "crohme"
    _images(src, ["train/KAIST/a.png", "train/HAMEX/b.png"])
    lines = [
        {"image": "train/KAIST/a.png", "latex": "x^{2}", "source": "crohme-train", "license": "their words",
         "kind": "handwritten"},
        {"image": "train/HAMEX/b.png", "latex": r"\frac 1x"},
        {"image": "train/HAMEX/gone.png", "latex": "y"},
    ]
    (src / "train.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out" / "manifest.jsonl"
    result = runner.invoke(app, ["data", "import", "crohme", str(src / "train.jsonl"), "--out", str(out),
                                 "--copy"])
    assert result.exit_code == 0, result.output
    assert "wrote 2 samples" in result.output and "train.jsonl:3: image not found" in result.output
    samples = list(read_manifest(out))
    assert [(s.image, s.source, s.license, s.kind) for s in samples] == [
        ("images/crohme/train/KAIST/a.png", "crohme-train", "their words", "handwritten"),
        ("images/crohme/train/HAMEX/b.png", "crohme", "CC BY-NC-SA 3.0 (believed)", "handwritten"),
    ]
    assert image_path(out, samples[0]).read_bytes() == b"train/KAIST/a.png"

    result = runner.invoke(app, ["data", "import", "crohme", str(src / "train.jsonl"), "--out", str(out),
                                 "--license", "cleared"])
    assert result.exit_code == 0, result.output
    assert {s.license for s in read_manifest(out)} == {"cleared"}
    assert {s.image for s in read_manifest(out)} == {str(src / "train/KAIST/a.png"),
                                                     str(src / "train/HAMEX/b.png")}


def test_import_rejects_a_page_manifest(tmp_path: Path):
    path = _pages(tmp_path)
    result = runner.invoke(app, ["data", "import", "im2latex", str(path), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "manifest.jsonl:1: not a crop record" in result.output
    assert not (tmp_path / "o.jsonl").exists()
