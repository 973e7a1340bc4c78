"""Cut the labelled regions of a page manifest into a crop manifest: one upright crop per formula quad.

Synthetic pages carry exact quads, so their rectified regions are recognizer training and validation crops
photographed like the real thing (perspective, blur, shadows), not clean renderings. Crops inherit the
page's conditions, source and licence; the region's kind and LaTeX stay with each crop (a handwritten
label without CROHME's `\\mbox` wrappers, as `susik.data.crops.write_restored_crohme` writes them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from susik.data.crops import plain_handwritten_label
from susik.data.manifest import (
    CropSample,
    ManifestError,
    ManifestWriter,
    PageSample,
    image_path,
    read_manifest,
)
from susik.pipeline import rectify
from susik.results import Quad
from susik.runtime.detector import reading_axes, widen_quad
from susik.runtime.image_io import load_image


def write_page_crops(pages: Path, out: Path, *, height: int = 64, margin: float = 0.0, run_on: float = 0.0,
                     on_page: Callable[[], None] = lambda: None) -> int:
    """Write `out/manifest.jsonl` + `out/images/` from the page manifest `pages`; returns the crop count.

    `height` bounds the crop height at twice this (as at inference). With `margin`, each quad first grows by
    a random share in [0, margin) of its line height along and across (each drawn apart): the pipeline cuts
    detected quads with a margin, and a detected quad is never exactly the true one. File names follow page
    and region order and the draws are seeded by the page number, so the same pages always give
    byte-identical crops."""
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    with ManifestWriter(out / "manifest.jsonl") as writer:
        for page_number, page in enumerate(read_manifest(pages)):
            if not isinstance(page, PageSample):
                raise ManifestError(f"{pages}:{page_number + 1}: a crop, not a page")
            photo = load_image(image_path(pages, page))
            rng = np.random.default_rng(page_number)
            for region_number, region in enumerate(page.regions):
                quad = region.quad
                if margin > 0:
                    along, across = rng.uniform(0, margin, 2)
                    grown = widen_quad(np.asarray(quad), along, across, (photo.shape[1], photo.shape[0]))
                    quad = tuple((float(x), float(y)) for x, y in grown)
                if run_on > 0 and rng.random() < 0.5:
                    quad = _run_on(np.asarray(quad, dtype=np.float64), rng.uniform(0.2, 1.0) * run_on,
                                   at_start=bool(rng.random() < 0.5), image_size=(photo.shape[1], photo.shape[0]))
                crop = rectify(photo, Quad(quad), target_height=height)
                name = f"images/p{page_number:06d}_r{region_number:02d}.png"
                if not cv2.imwrite(str(out / name), crop):
                    raise OSError(f"cannot write {out / name}")
                handwritten = region.kind == "handwritten"
                latex = plain_handwritten_label(region.latex) if handwritten else region.latex
                writer.write(CropSample(image=name, latex=latex, kind=region.kind,
                                        conditions=page.conditions, source=page.source, license=page.license))
            on_page()
    return writer.count


def _run_on(quad: np.ndarray, line_heights: float, at_start: bool,
            image_size: tuple[int, int]) -> tuple[tuple[float, float], ...]:
    """The quad (clockwise from the formula's top-left) carried past its start or its end along the line."""
    reading, downward = reading_axes(quad)
    line_height = float(np.hypot(*downward))
    if line_height == 0 or not reading.any():
        return tuple((float(x), float(y)) for x, y in quad)
    step = reading / float(np.hypot(*reading)) * line_heights * line_height
    moved = quad.copy()
    if at_start:
        moved[[0, 3]] -= step
    else:
        moved[[1, 2]] += step
    moved = np.clip(moved, 0, [image_size[0] - 1, image_size[1] - 1])
    return tuple((float(x), float(y)) for x, y in moved)
