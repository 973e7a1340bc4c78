"""Cut the labelled regions of a page manifest into a crop manifest: one upright crop per formula quad.

Synthetic pages carry exact quads, so their rectified regions are recognizer training and validation crops
photographed like the real thing (perspective, blur, shadows), not clean renderings. Crops inherit the
page's conditions, source and licence; the region's kind and LaTeX stay with each crop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2

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
from susik.runtime.image_io import load_image


def write_page_crops(pages: Path, out: Path, *, height: int = 64,
                     on_page: Callable[[], None] = lambda: None) -> int:
    """Write `out/manifest.jsonl` + `out/images/` from the page manifest `pages`; returns the crop count.

    `height` bounds the crop height at twice this (as at inference). File names follow page and region
    order, so the same pages always give byte-identical crops."""
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    with ManifestWriter(out / "manifest.jsonl") as writer:
        for page_number, page in enumerate(read_manifest(pages)):
            if not isinstance(page, PageSample):
                raise ManifestError(f"{pages}:{page_number + 1}: a crop, not a page")
            photo = load_image(image_path(pages, page))
            for region_number, region in enumerate(page.regions):
                crop = rectify(photo, Quad(region.quad), target_height=height)
                name = f"images/p{page_number:06d}_r{region_number:02d}.png"
                if not cv2.imwrite(str(out / name), crop):
                    raise OSError(f"cannot write {out / name}")
                writer.write(CropSample(image=name, latex=region.latex, kind=region.kind,
                                        conditions=page.conditions, source=page.source, license=page.license))
            on_page()
    return writer.count
