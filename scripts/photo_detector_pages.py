"""Real photos of one formula line as detector training pages: each photo one handwritten region, its ink's box.

HME100K's photos are tight crops of one formula line each (see ../shared/data/README.md). The detector learnt
synthetic pages only, and every fine-tune that showed it large formulas took real handwriting photographed from
close by for text (HME100K one covering region 94.8% -> 76.0% for stage 8's lone formulas). Mixing some of these
photos in keeps it honest; the others stay out as the check.

    .venv/bin/python scripts/photo_detector_pages.py ../shared/data/hme100k/train.jsonl \
        --add-to work/det/train_s7/manifest.jsonl --out work/det/train_s7/manifest_hme.jsonl --every 2 --first 1

The pages of `--add-to` come first, unchanged; then every `--every`-th photo from the `--first` (0-based), as
`{"image": absolute path, "orientation": 0, "regions": [one handwritten quad], "source", "license"}` (the
photo's own). Photos left out (with `--every 2
--first 1`: the even ones) are the held-out check (`benchmarks/bench_pipeline.py --hme-every 2`). A photo whose
ink cannot be found is skipped with a note. The region is the box of the photo's ink components at least 3 px tall,
leaving out a ruled line (wider than half the photo and under a tenth of its height): the photos are cropped to
their formula, so the box is the formula's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer

from susik.runtime.detector import ink_mask
from susik.runtime.image_io import ImageLoadError, load_image


def ink_box(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the ink's letter-sized components, inclusive; None without any."""
    height, width = gray.shape
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink_mask(gray), connectivity=8)
    x, y, w, h = (stats[1:, i] for i in range(4))
    keep = (h >= 3) & ~((w > width / 2) & (h < height / 10))
    if not keep.any():
        return None
    return int(x[keep].min()), int(y[keep].min()), int((x + w)[keep].max() - 1), int((y + h)[keep].max() - 1)


def photo_page(path: Path, source: str = "unknown", license: str = "unknown") -> dict | None:
    """A page record for the photo at `path`, carrying its sample's source and licence; None without ink."""
    image = load_image(path)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    box = ink_box(gray)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    quad = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    return {"image": str(path.resolve()), "width": gray.shape[1], "height": gray.shape[0], "orientation": 0,
            "regions": [{"quad": quad, "polygon": quad, "latex": "", "kind": "handwritten"}],
            "source": source, "license": license}


def main(
    photos: Annotated[Path, typer.Argument(help="manifest of photos of one handwritten formula line each")],
    out: Annotated[Path, typer.Option(help="the page manifest to write")],
    add_to: Annotated[Path | None, typer.Option(help="page manifest whose pages come first")] = None,
    every: Annotated[int, typer.Option(min=1, help="take every N-th photo")] = 2,
    first: Annotated[int, typer.Option(min=0, help="starting at this one (0-based)")] = 1,
    repeat: Annotated[int, typer.Option(min=1, help="write each photo's page this many times (its weight among "
                                        "the pages, which training draws evenly)")] = 1,
) -> None:
    lines = [line for line in photos.read_text(encoding="utf-8").splitlines() if line.strip()]
    written = skipped = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        if add_to is not None:
            if add_to.resolve().parent != out.resolve().parent:
                raise typer.BadParameter("--out must sit beside --add-to: its pages' images are relative to it")
            handle.write(add_to.read_text(encoding="utf-8").rstrip("\n") + "\n")
        for line in lines[first::every]:
            record = json.loads(line)
            path = photos.parent / record["image"]
            try:
                page = photo_page(path, record.get("source", "unknown"), record.get("license", "unknown"))
            except ImageLoadError as error:
                page = None
                print(f"skipped {path}: {error}")
            if page is None:
                skipped += 1
                continue
            handle.write((json.dumps(page) + "\n") * repeat)
            written += 1
    print(f"{written} photo pages written to {out}, each {repeat} time(s) ({skipped} skipped)")


if __name__ == "__main__":
    typer.run(main)
