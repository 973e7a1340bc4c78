"""scripts/photo_detector_pages.py: photos of one formula line become detector pages whose region is the ink."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from script_helpers import load_script
from typer.testing import CliRunner

from susik.models.detector_data import read_pages


@pytest.fixture(scope="module")
def script():
    return load_script("photo_detector_pages.py")


def _photo(path: Path, ink: tuple[int, int, int, int], ruled: bool = False) -> None:
    image = np.full((60, 240, 3), 200, np.uint8)
    if ruled:
        image[50:52, :] = 90  # a ruled line across the whole photo
    x0, y0, x1, y1 = ink
    for x in range(x0, x1 - 6, 14):  # a row of letter-sized strokes
        cv2.rectangle(image, (x, y0), (x + 6, y1), (30, 30, 30), -1)
    cv2.imwrite(str(path), image)


def test_the_region_is_the_ink_without_a_ruled_line(script, tmp_path):
    _photo(tmp_path / "a.png", (20, 12, 200, 40), ruled=True)
    page = script.photo_page(tmp_path / "a.png")
    (x0, y0), _, (x1, y1), _ = page["regions"][0]["quad"]
    assert (x0, y0) == (20, 12) and 190 <= x1 <= 200 and y1 == 40
    assert page["regions"][0]["kind"] == "handwritten" and page["orientation"] == 0
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((40, 90), 200, np.uint8))
    assert script.photo_page(tmp_path / "blank.png") is None


def test_every_other_photo_joins_the_pages_and_training_reads_them(script, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    lines = []
    for number in range(5):
        _photo(folder / f"{number}.png", (10 + number, 10, 150, 30))
        lines.append(json.dumps({"image": f"{number}.png", "latex": "x", "kind": "handwritten", "source": "hme100k",
                                 "license": "research use only"}))
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    cv2.imwrite(str(tmp_path / "page.jpg"), np.full((100, 100, 3), 230, np.uint8))
    quad = [[10, 10], [40, 10], [40, 20], [10, 20]]
    page = {"image": "page.jpg", "orientation": 0, "regions": [{"quad": quad, "polygon": quad, "kind": "printed"}]}
    (tmp_path / "pages.jsonl").write_text(json.dumps(page) + "\n")
    runner = CliRunner()
    args = [str(folder / "train.jsonl"), "--add-to", str(tmp_path / "pages.jsonl"), "--out",
            str(tmp_path / "mixed.jsonl"), "--every", "2", "--first", "1"]
    result = runner.invoke(_app(script), args)
    assert result.exit_code == 0, result.output
    written = [json.loads(line) for line in (tmp_path / "mixed.jsonl").read_text().splitlines()]
    assert written[0] == page
    assert [Path(p["image"]).name for p in written[1:]] == ["1.png", "3.png"]  # 0, 2, 4 stay out as the check
    assert {(p["source"], p["license"]) for p in written[1:]} == {("hme100k", "research use only")}
    assert [p.polygons[0][0][0] for p in read_pages(tmp_path / "mixed.jsonl")[1:]] == [11, 13]
    assert runner.invoke(_app(script), [*args, "--repeat", "3"]).exit_code == 0
    again = [json.loads(line) for line in (tmp_path / "mixed.jsonl").read_text().splitlines()]
    assert again[1:] == [written[1]] * 3 + [written[2]] * 3
    elsewhere = args[:4] + [str(tmp_path / "photos" / "mixed.jsonl")] + args[5:]
    assert runner.invoke(_app(script), elsewhere).exit_code != 0  # relative page images would not resolve


def _app(script):
    import typer

    app = typer.Typer()
    app.command()(script.main)
    return app
