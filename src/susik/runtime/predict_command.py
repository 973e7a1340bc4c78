"""`susik predict IMG... [--json] [--overlay DIR]`: photos in, formula regions + LaTeX out.

Each image is loaded safely (EXIF, any mode, size guard) and read by the pipeline; an image that cannot be
loaded gives one error line and the run goes on (exit code 1 at the end). `--json` prints one line per image
in the DESIGN.md page form; `--overlay DIR` writes each photo with its quads, indices and LaTeX drawn on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from susik.models.registry import IntegrityError, ModelNotFoundError
from susik.pipeline import Pipeline
from susik.results import CHECK_BELOW, Page
from susik.runtime.image_io import ImageLoadError, load_image

_err = Console(stderr=True, soft_wrap=True, highlight=False)

_COLOURS = ((0, 0, 230), (0, 150, 0), (230, 60, 0), (0, 140, 255), (200, 0, 200), (150, 150, 0))


def draw_overlay(image: np.ndarray, page: Page) -> np.ndarray:
    """A copy of the photo with each region's quad, a dot on its first corner, its index and its LaTeX."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    thick = max(1, round(max(canvas.shape[:2]) / 800))
    scale = 0.45 * thick
    for index, region in enumerate(page.regions):
        colour = _COLOURS[index % len(_COLOURS)]
        quad = np.round(np.asarray(region.quad.points)).astype(np.int32)
        cv2.polylines(canvas, [quad], True, colour, 2 * thick, cv2.LINE_AA)
        x, y = (int(v) for v in quad[0])
        cv2.circle(canvas, (x, y), 3 * thick, colour, -1, cv2.LINE_AA)
        # OpenCV's Hershey fonts are ASCII only; LaTeX nearly always is.
        label = f"{index}: {region.latex}".encode("ascii", "replace").decode()
        origin = (max(0, int(quad[:, 0].min())), max(12 * thick, int(quad[:, 1].min()) - 4 * thick))
        cv2.putText(canvas, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 3 * thick, cv2.LINE_AA)
        cv2.putText(canvas, label, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thick, cv2.LINE_AA)
    return canvas


def default_pipeline(detector: Path | None, recognizer: str, threads: int | None,
                     rescue_below: float = 0.0) -> Pipeline:
    from susik.runtime.detector import OnnxDetector
    from susik.runtime.orient import DeskewOrienter
    from susik.runtime.recognizer import OnnxRecognizer

    reader = OnnxRecognizer.load(recognizer, threads)
    if rescue_below > 0:
        reader.rescue_unsure(rescue_below)
    return Pipeline(OnnxDetector.load(detector, threads), reader, DeskewOrienter())


def run_predict(
    images: list[Path], pipeline: Pipeline, as_json: bool, overlay: Path | None,
    emit: Callable[[str], None], warn: Callable[[str], None], advance: Callable[[], None] = lambda: None,
) -> int:
    """Read every image; returns how many could not be read."""
    failed = 0
    if overlay is not None:
        overlay.mkdir(parents=True, exist_ok=True)
    for path in images:
        try:
            image = load_image(path)
        except ImageLoadError as error:
            failed += 1
            if as_json:
                emit(json.dumps({"image": str(path), "error": str(error)}, ensure_ascii=False))
            else:
                warn(f"error: {path}: {error}")
            advance()
            continue
        page = pipeline([image])[0]
        if as_json:
            emit(json.dumps({"image": str(path), **page.to_json()}, ensure_ascii=False))
        else:
            emit(f"{path}: {len(page.regions)} formula(s), orientation {page.orientation}°, "
                 f"{page.timings_ms.get('total', 0.0):.0f} ms")
            for index, region in enumerate(page.regions):
                check = "  <- check this" if region.confidence < CHECK_BELOW else ""
                emit(f"  [{index}] {region.kind:<11} {region.confidence:.2f}  {region.latex}{check}")
            if not page.regions:  # a photo of one formula alone can defeat the page reading (model card)
                emit(f"  if it shows one formula alone: susik recognize {path}")
        if overlay is not None:
            cv2.imwrite(str(overlay / f"{path.stem}.overlay.jpg"), draw_overlay(image, page),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
        advance()
    return failed


def predict(
    images: Annotated[list[Path], typer.Argument(help="photos (JPEG, PNG, WEBP, ...) that may hold formulas")],
    json_lines: Annotated[bool, typer.Option("--json", help="one JSON line per image (DESIGN.md page form)")] = False,
    overlay: Annotated[Path | None, typer.Option(help="write each photo with its regions drawn into DIR")] = None,
    detector: Annotated[Path | None, typer.Option(help="detector folder or record.json (default: bundled)")] = None,
    recognizer: Annotated[str, typer.Option(help="recognizer name, folder or record.json")] = "recognizer",
    threads: Annotated[int | None, typer.Option(min=1, help="ONNX Runtime threads per stage")] = None,
    rescue_below: Annotated[float, typer.Option(min=0, max=1, help=(
        "read again with beam search the regions whose greedy confidence is below this (0 = never): at 0.95, "
        "+0.8 points end to end on the 400 tuning pages, for the unsure regions' extra decoding time"))] = 0.0,
) -> None:
    """Find the formulas on each photo and read them as LaTeX."""
    try:
        pipeline = default_pipeline(detector, recognizer, threads, rescue_below)
    except (ModelNotFoundError, IntegrityError) as error:
        _err.print(f"error: {error}", markup=False)
        raise typer.Exit(1) from None
    columns = (TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_err, transient=True) as progress:
        task = progress.add_task("predict", total=len(images))
        failed = run_predict(images, pipeline, json_lines, overlay, typer.echo,
                             lambda line: _err.print(line, markup=False), lambda: progress.advance(task))
    if failed:
        raise typer.Exit(1)
