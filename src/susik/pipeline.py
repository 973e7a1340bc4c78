"""Pipeline = detect -> rectify -> orient -> recognize, composed from injected stages."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from susik.latex.labels import split_reading_label, strip_sentence_punctuation
from susik.results import Kind, Page, Quad, Recognition, Region
from susik.runtime.label_gap import cut_quad, label_end


@dataclass(frozen=True)
class Detection:
    """One formula found on a page, in the page's pixel coordinates."""

    quad: Quad
    polygon: tuple[tuple[float, float], ...]
    kind: Kind
    score: float
    crop_quad: Quad | None = None  # the quad to cut for the recognizer, with context around `quad`; None: `quad`
    # Crops to read again when the first reading is less sure than `recrop_below`; the surest reading is kept.
    recrop_quads: tuple[Quad, ...] = ()
    recrop_below: float = 0.0


@dataclass(frozen=True)
class PageDetections:
    orientation: int  # clockwise degrees the page was turned from upright: 0, 90, 180, 270
    detections: tuple[Detection, ...]


class Detector(Protocol):
    def __call__(self, images: list[np.ndarray]) -> list[PageDetections]: ...


class Recognizer(Protocol):
    def __call__(self, crops: list[np.ndarray]) -> list[Recognition]: ...


class Orienter(Protocol):
    """Turns each crop upright (0/90/180/270 and small skew)."""

    def __call__(self, crops: list[np.ndarray]) -> list[np.ndarray]: ...


class WholeImageDetector:
    """The detector for input that is already one formula crop: the whole image is the region."""

    def __init__(self, kind: Kind = "printed") -> None:
        self.kind = kind

    def __call__(self, images: list[np.ndarray]) -> list[PageDetections]:
        pages = []
        for image in images:
            height, width = image.shape[:2]
            corners = ((0.0, 0.0), (float(width), 0.0), (float(width), float(height)), (0.0, float(height)))
            detection = Detection(Quad(corners), corners, self.kind, 1.0)
            pages.append(PageDetections(0, (detection,)))
        return pages


def _edge(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(a - b)))


def rectify(image: np.ndarray, quad: Quad, target_height: int = 64) -> np.ndarray:
    """Perspective-warp a quad (clockwise from the formula's top-left) to an upright crop.

    The crop keeps the quad's aspect ratio and is never upscaled beyond `target_height * 2`: the recognizer
    resizes it anyway, and a bounded size keeps warping cheap on 12-MP photos.
    """
    points = np.asarray(quad.points, dtype=np.float32)
    width = max(_edge(points[0], points[1]), _edge(points[3], points[2]))
    height = max(_edge(points[0], points[3]), _edge(points[1], points[2]))
    scale = min(1.0, (target_height * 2) / max(height, 1.0))
    out_w, out_h = max(2, round(width * scale)), max(2, round(height * scale))
    target = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(points, target)
    return cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_AREA,
                               borderMode=cv2.BORDER_REPLICATE)


def _after_label(image: np.ndarray, detection: Detection) -> tuple[Quad, tuple[tuple[float, float], ...]]:
    """A labelled region's quad and polygon from the space after its label on (`susik.runtime.label_gap`)."""
    start = label_end(rectify(image, detection.quad))
    if start is None:
        return detection.quad, detection.polygon
    quad = cut_quad(detection.quad, start)
    return quad, quad.points


class Pipeline:
    """Reads photos: detection, rectification and orientation are called once per batch; the recognizer once
    per image (with all of that image's crops), so an image's reading never depends on the other images of a
    batch: the int8 decoder scales its activations per call, and read in one call with other requests' crops,
    3% of 300 held-out crops read differently than alone (same accuracy). `independent_pages=False` reads the
    crops of all images in one call instead: more throughput for many one-formula images, at that cost;
    `crop_by_crop=True` reads each crop in a call of its own, as the browser does (parity checks).
    `split_labels` takes a problem or choice label ("(1)", "C.") that a region's reading starts with off its
    LaTeX into `Region.label`, drops regions that read as a label alone, and drops the sentence's comma or full
    stop a reading ends with (the page mode; crops keep their readings whole)."""

    def __init__(self, detector: Detector, recognizer: Recognizer, orienter: Orienter | None = None,
                 *, independent_pages: bool = True, crop_by_crop: bool = False, split_labels: bool = True) -> None:
        self.detector = detector
        self.recognizer = recognizer
        self.orienter = orienter
        self.independent_pages = independent_pages
        self.crop_by_crop = crop_by_crop
        self.split_labels = split_labels

    @classmethod
    def default(cls, threads: int | None = None) -> Pipeline:
        """The bundled models in models/: ONNX detector, deskew orienter, ONNX recognizer."""
        from susik.runtime.detector import OnnxDetector  # the runtime imports this module: import late
        from susik.runtime.orient import DeskewOrienter
        from susik.runtime.recognizer import OnnxRecognizer

        return cls(OnnxDetector.load(threads=threads), OnnxRecognizer.default(threads), DeskewOrienter())

    @classmethod
    def for_crops(cls, recognizer: Recognizer) -> Pipeline:
        """A pipeline for images that are each one formula crop: its reading is kept whole, label and all."""
        return cls(WholeImageDetector(), recognizer, split_labels=False)

    def __call__(self, images: list[np.ndarray]) -> list[Page]:
        if not images:
            return []
        clock = _Clock()
        found = clock.time("detect", lambda: self.detector(images))
        crops = clock.time("rectify", lambda: [
            rectify(image, detection.crop_quad or detection.quad)
            for image, page in zip(images, found) for detection in page.detections
        ])
        if self.orienter is not None:
            crops = clock.time("orient", lambda: self.orienter(crops))
        per_image = [len(page.detections) for page in found]
        readings = clock.time("recognize", lambda: self._read(crops, per_image)) if crops else []
        if any(detection.recrop_quads for page in found for detection in page.detections):
            readings = clock.time("recognize", lambda: self._read_again(images, found, readings))
        readings = iter(readings)
        pages = []
        for image, page in zip(images, found):
            regions = []
            for detection in page.detections:
                reading = next(readings)
                # A problem number read with its formula is text beside it (the annotation rule): keep it apart,
                # and a region that held the number alone holds no formula. So is the sentence's punctuation.
                label, latex = None, reading.latex
                if self.split_labels:
                    label, latex = split_reading_label(strip_sentence_punctuation(reading.latex))
                if label is None:
                    regions.append(Region(detection.quad, detection.polygon, latex, reading.confidence,
                                          detection.kind))
                elif latex:  # the region covered the label too: it now starts after the label's space
                    quad, polygon = _after_label(image, detection)
                    regions.append(Region(quad, polygon, latex, reading.confidence, detection.kind, label))
            height, width = image.shape[:2]
            pages.append(Page(width, height, page.orientation, tuple(regions), clock.per_image(len(images))))
        return pages

    def _read(self, crops: list[np.ndarray], per_image: list[int]) -> list[Recognition]:
        if self.crop_by_crop:
            return [self.recognizer([crop])[0] for crop in crops]
        if not self.independent_pages:
            return self.recognizer(crops)
        readings: list[Recognition] = []
        start = 0
        for count in per_image:
            if count:
                readings.extend(self.recognizer(crops[start : start + count]))
            start += count
        return readings

    def _read_again(self, images: list[np.ndarray], found: list[PageDetections],
                    readings: list[Recognition]) -> list[Recognition]:
        """Each reading less sure than its detection's `recrop_below`, read again from every one of its recrop
        quads (read per image as `_read` reads); the surest reading is kept. Sureness is the recognizer's raw score
        (`Recognition.look_score`): compared on the calibrated scale, the gate tuned at 0.92 chose worse (pages 0-199
        e2e 0.604 raw, 0.598-0.605 calibrated at gates 0.5-1)."""
        readings = list(readings)
        first = 0
        for image, page in zip(images, found):
            again = [(first + i, quad) for i, detection in enumerate(page.detections)
                     if readings[first + i].look_score < detection.recrop_below
                     for quad in detection.recrop_quads]
            first += len(page.detections)
            if not again:
                continue
            crops = [rectify(image, quad) for _, quad in again]
            if self.orienter is not None:
                crops = self.orienter(crops)
            for (index, _), other in zip(again, self._read(crops, [len(crops)]), strict=True):
                if other.look_score > readings[index].look_score:
                    readings[index] = other
        return readings


class _Clock:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    def time(self, stage, work):
        """Run `work`, adding its wall time to `stage`'s."""
        start = time.perf_counter()
        result = work()
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - start) * 1000
        return result

    def per_image(self, count: int) -> dict[str, float]:
        stages = {stage: ms / count for stage, ms in self.ms.items()}
        return {**stages, "total": sum(stages.values())}
