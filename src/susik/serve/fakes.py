"""Stand-in stages for tests, demos and HTTP benchmarks of the server alone (no trained model needed)."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np

from susik.pipeline import Detection, PageDetections, Pipeline
from susik.results import Quad, Recognition
from susik.serve.app import Pipelines, create_app
from susik.serve.settings import Settings

FAKE_LATEX = r"\frac{a}{b}+x^{2}"


class FixedRecognizer:
    """Reads every crop as the same LaTeX, after an optional delay per batch (to simulate model time); the
    confidences are handed out in turn, crop after crop."""

    def __init__(self, latex: str = FAKE_LATEX, delay_s: float = 0.0, confidences: tuple[float, ...] = (0.9,)) -> None:
        self.latex = latex
        self.delay_s = delay_s
        self.confidences = confidences
        self.batches: list[int] = []
        self._read = 0

    def __call__(self, crops: list[np.ndarray]) -> list[Recognition]:
        self.batches.append(len(crops))
        if self.delay_s:
            time.sleep(self.delay_s)
        readings = [Recognition(self.latex, self.confidences[(self._read + i) % len(self.confidences)])
                    for i in range(len(crops))]
        self._read += len(crops)
        return readings


class TwoRegionDetector:
    """Finds two formulas on every page: the upper and the lower middle band."""

    def __call__(self, images: list[np.ndarray]) -> list[PageDetections]:
        pages = []
        for image in images:
            height, width = image.shape[:2]
            found = []
            for top, bottom, kind in ((0.15, 0.35, "printed"), (0.6, 0.8, "handwritten")):
                corners = (
                    (0.1 * width, top * height),
                    (0.9 * width, top * height),
                    (0.9 * width, bottom * height),
                    (0.1 * width, bottom * height),
                )
                found.append(Detection(Quad(corners), corners, kind, 0.95))
            pages.append(PageDetections(0, tuple(found)))
        return pages


class NoFormulaDetector:
    """Finds nothing on any page (a photo the page reading misses)."""

    def __call__(self, images: list[np.ndarray]) -> list[PageDetections]:
        return [PageDetections(0, ()) for _ in images]


def sample_photo(width: int = 640, height: int = 480, extension: str = ".jpg") -> bytes:
    """An encoded photo-like page with two lines of math in the bands `TwoRegionDetector` finds."""
    page = np.full((height, width, 3), (236, 240, 244), np.uint8)
    scale = min(width / 320, height / 240)  # text fills about 70% of the width
    for text, top in (("x^2 + 2x + 1 = 0", 0.3), ("y = (a+b)/2", 0.75)):
        cv2.putText(
            page,
            text,
            (int(0.15 * width), int(top * height)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (40, 40, 40),
            max(1, round(2 * scale)),
            cv2.LINE_AA,
        )
    ok, encoded = cv2.imencode(extension, page)
    if not ok:
        raise ValueError(f"cannot encode {extension}")
    return encoded.tobytes()


def fake_pipelines(latex: str = FAKE_LATEX, delay_s: float = 0.0, model_version: str = "fake-1",
                   confidences: tuple[float, ...] = (0.9,), page_finds_nothing: bool = False) -> Pipelines:
    recognizer = FixedRecognizer(latex, delay_s, confidences)
    detector = NoFormulaDetector() if page_finds_nothing else TwoRegionDetector()
    return Pipelines(Pipeline(detector, recognizer), Pipeline.for_crops(recognizer), model_version)


def fake_factory(_settings: Settings) -> Pipelines:
    """A module-level factory (picklable by reference, for Ray Serve replicas)."""
    return fake_pipelines()


def create_fake_app():
    """`uvicorn --factory susik.serve.fakes:create_fake_app`: settings from SUSIK_*, model delay from
    SUSIK_FAKE_DELAY_S (the crash test holds a request in inference while it kills the server)."""
    delay = float(os.environ.get("SUSIK_FAKE_DELAY_S", "0"))
    return create_app(Settings(), pipeline_factory=lambda _settings: fake_pipelines(delay_s=delay))
