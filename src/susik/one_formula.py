"""A photo of one formula (the crop mode of the server and the web page): read whole, and found as on a page.

A student who frames one formula often catches its neighbours too: a line of text above and below, the
problem's number, a formula beside it. Read as one crop, such a photo is squeezed into one line and misread.
The page reading finds the formula in it; the found region nearest the photo's centre replaces the whole
photo's reading when it is surer by `prefer_found_by` (calibrated confidence). A tight crop keeps its whole
reading: the recognizer was trained on crops, and a region the detector cuts out of a tight crop reads no
better. Measured in `benchmarks/bench_closeups.py` (filling the frame) and the model card.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import cv2
import numpy as np

from susik.results import Page, Point

ReadPages = Callable[[list[np.ndarray]], list[Page]]

# Chosen on held-out pages 0-199 (photos of one formula, tight page regions and synthetic crops): with no margin
# the found region won where the whole reading was right as often as the other way round on tight crops.
PREFER_FOUND_BY = 0.1


def central_region(polygons: Sequence[Sequence[Point]], width: int, height: int) -> int | None:
    """The index of the polygon the image's centre lies in (the largest, if several hold it), else of the
    nearest one; None without polygons."""
    centre = (width / 2, height / 2)
    best, best_key = None, None
    for index, polygon in enumerate(polygons):
        contour = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
        distance = cv2.pointPolygonTest(contour, centre, True)  # > 0 inside, < 0 outside, by how far
        key = (1, abs(cv2.contourArea(contour))) if distance >= 0 else (0, distance)
        if best_key is None or key > best_key:
            best, best_key = index, key
    return best


def _add(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {stage: a.get(stage, 0.0) + b.get(stage, 0.0) for stage in a | b}


class OneFormulaReader:
    """Each image is a photo of one formula: one region per page, the whole image's reading or the found one's.

    `whole` reads an image as one crop (`Pipeline.for_crops`), `page` as a photo of a page (`Pipeline`). The
    page reading runs only where it could win: a whole reading surer than `1 - prefer_found_by` stands.
    """

    def __init__(self, page: ReadPages, whole: ReadPages, prefer_found_by: float = PREFER_FOUND_BY) -> None:
        self.page = page
        self.whole = whole
        self.prefer_found_by = prefer_found_by

    def __call__(self, images: list[np.ndarray]) -> list[Page]:
        wholes = self.whole(images)
        unsure = [i for i, page in enumerate(wholes) if self._beatable(page)]
        found = dict(zip(unsure, self.page([images[i] for i in unsure]) if unsure else [], strict=True))
        return [self._choose(page, found.get(i)) for i, page in enumerate(wholes)]

    def _beatable(self, whole: Page) -> bool:
        return not whole.regions or whole.regions[0].confidence + self.prefer_found_by < 1.0

    def _choose(self, whole: Page, found: Page | None) -> Page:
        if found is None:
            return whole
        timings = _add(whole.timings_ms, found.timings_ms)
        pick = central_region([region.polygon for region in found.regions], whole.width, whole.height)
        if pick is not None:
            region = found.regions[pick]
            if not whole.regions or region.confidence > whole.regions[0].confidence + self.prefer_found_by:
                return replace(whole, orientation=found.orientation, regions=(region,), timings_ms=timings)
        return replace(whole, timings_ms=timings)
