"""Tiny generated eval sets and fake predictors for the eval tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from susik.results import Page, Quad, Recognition, Region

# (drawn text, reference LaTeX, kind, conditions, the fake model's answer)
CROPS = [
    ("x+1", r"x+1", "printed", ["clean"], r"x+1"),  # exact
    ("a^2", r"a^{2}", "handwritten", ["blur"], r"a^{3}"),  # 1 token edit of 3
    ("1/2", r"\frac{1}{2}", "printed", ["blur", "shadow"], r"\frac12"),  # exact after normalisation
    ("y=3", r"y=3", "printed", [], ""),  # empty answer: 3 edits of 3
    ("sqrt", r"\sqrt{x}", "handwritten", ["clean"], r"\sqrt{x}+"),  # 1 token edit of 5
]


def draw(text: str) -> np.ndarray:
    image = np.full((40, 120), 255, np.uint8)
    cv2.putText(image, text, (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 0, 2)
    return image


def crop_manifest(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (text, latex, kind, conditions, _) in enumerate(CROPS):
        cv2.imwrite(str(root / f"c{index}.png"), draw(text))
        lines.append({"image": f"c{index}.png", "latex": latex, "kind": kind, "conditions": conditions,
                      "source": "test", "license": "CC0"})
    return write_lines(root / "manifest.jsonl", lines)


def write_lines(path: Path, lines: Iterable[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


class FakeRecognizer:
    """Answers in manifest order, whatever the crop."""

    def __init__(self, answers: Iterable[str]) -> None:
        self.answers = iter(answers)
        self.calls = 0

    def __call__(self, crops: list[np.ndarray]) -> list[Recognition]:
        self.calls += 1
        return [Recognition(next(self.answers), 0.5) for _ in crops]


def box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


# page 0: A read right, B found but misread, C spurious; page 1: its one formula missed.
PAGES = [
    {"truth": [(box(0, 0, 100, 50), "x"), (box(0, 100, 100, 150), "y")],
     "guess": [(box(0, 0, 100, 50), "x"), (box(5, 100, 100, 150), "z"), (box(150, 150, 190, 190), "w")],
     "conditions": ["blur"]},
    {"truth": [(box(20, 20, 120, 60), r"\frac{1}{2}")], "guess": [], "conditions": []},
]


def page_manifest(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, page in enumerate(PAGES):
        image = np.full((200, 200, 3), 255, np.uint8)
        for quad, _ in page["truth"]:
            cv2.rectangle(image, tuple(map(int, quad[0])), tuple(map(int, quad[2])), (0, 0, 0), 1)
        cv2.imwrite(str(root / f"p{index}.png"), image)
        lines.append({"image": f"p{index}.png", "width": 200, "height": 200, "orientation": 0,
                      "regions": [{"quad": q, "latex": latex, "kind": "printed"} for q, latex in page["truth"]],
                      "conditions": page["conditions"], "source": "test", "license": "CC0"})
    return write_lines(root / "manifest.jsonl", lines)


class FakePipeline:
    def __init__(self) -> None:
        self.pages = iter(PAGES)

    def __call__(self, images: list[np.ndarray]) -> list[Page]:
        out = []
        for _ in images:
            page = next(self.pages)
            regions = tuple(Region(Quad(tuple(map(tuple, q))), tuple(map(tuple, q)), latex, 0.9, "printed")
                            for q, latex in page["guess"])
            out.append(Page(200, 200, 0, regions, {"total": 1.0}))
        return out
