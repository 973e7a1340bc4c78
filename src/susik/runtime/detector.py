"""The formula detector at serving time: ONNX Runtime, no torch.

preprocess: any page -> BGR, downscaled so its long side is at most `long_side` (or a tiny photo enlarged to
`min_short_side`), padded to a multiple of 32; a close-up, whose letters (`letter_height`) are far taller than a
worksheet's, is shrunk further, and a page of large letters has its regions confirmed by a second, smaller pass.
The net gives a shrunk-kernel probability map and a handwritten probability map at stride 2, and
page-orientation probabilities. postprocess: threshold the kernel map, take connected components, score each by
its mean probability, grow each kernel back by the inverse of the training shrink (exact for rectangles) into a
quad (min-area rectangle) and a polygon (the blob's outline offset outwards), map both to the ORIGINAL image's
pixels, and order every quad clockwise from the formula's own top-left given the page orientation. All geometry here is pure numpy/OpenCV so training can evaluate with the
same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyclipper
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from susik.models.registry import (
    RECORD_NAME,
    REPO_MODELS,
    FileEntry,
    ModelNotFoundError,
    TrainingInfo,
    checked_file,
)
from susik.pipeline import Detection, PageDetections
from susik.results import Quad
from susik.runtime.line_merge import Piece, merge_line_pieces
from susik.runtime.orient import ORIENTATIONS, order_quad, to_upright_points

STRIDE = 32  # the net's coarsest stride: inputs are padded to a multiple of it
MAP_STRIDE = 2  # the output maps' stride
MEAN, STD = 0.5, 0.25  # input normalisation of BGR/255, shared with training


class DetectParams(BaseModel):
    """Pre/postprocessing knobs of the detector; `shrink` must be the value the model was trained with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    long_side: int = Field(768, ge=64, description="detect on the page downscaled to this long side")
    min_short_side: int = Field(0, ge=0, description="a smaller image is enlarged to this short side (within "
                                "long_side): a tight photo of one line 20 px tall holds strokes too thin for the "
                                "net's stride (0: never enlarge)")
    kernel_threshold: float = Field(0.4, gt=0, lt=1, description="kernel pixels are above this probability")
    box_threshold: float = Field(0.6, gt=0, lt=1, description="keep blobs whose mean probability is above")
    min_kernel_px: int = Field(3, ge=1, description="drop blobs smaller than this many map pixels")
    shrink: float = Field(0.5, gt=0, lt=1, description="training shrink: offset = shrink * area / perimeter")
    max_regions: int = Field(200, ge=1)
    handwritten_threshold: float = Field(
        0.5, gt=0, lt=1, description="a region is handwritten when its mean handwritten probability is above this"
    )
    min_orientation_confidence: float = Field(
        0.0, ge=0, lt=1, description="below this probability of its best turn the page is taken as upright: the "
        "head learned turns from full pages and guesses on a tight photo of one line, where upright is the prior"
    )
    merge_gap: float = Field(
        0.0, ge=0, description="join pieces of one line whose gap is at most this many line heights (0: off); "
        "see susik.runtime.line_merge"
    )
    merge_overlap: float = Field(0.5, gt=0, le=1, description="pieces share a line when their heights overlap "
                                 "by this share of the shorter one")
    crop_margin_along: float = Field(0.0, ge=0, le=2, description="the recognizer's crop reaches this many line "
                                     "heights past each end of a region: regions on real photos stop short of the "
                                     "line's first and last strokes")
    crop_margin_across: float = Field(0.0, ge=0, le=2, description="and this many line heights above and below it")
    recrop_below: float = Field(
        0.0, ge=0, le=1, description="a printed region read less confidently than this is read again from crops "
        "grown `recrop_along` line heights past each end, and the surest reading kept: on photos a printed region "
        "often stops a token short of its line's start or end (0: off)")
    recrop_along: list[float] = Field(default_factory=list, description="the grown crops' reach past each end, in "
                                      "line heights (across, they keep `crop_margin_across`)")
    closeup_letters_above: float = Field(
        0.0, ge=0, description="a page whose letters reach the net taller than this many input pixels is a close-up "
        "(`letter_height`): it is detected at the long side that makes them `closeup_letters_to` tall. The net "
        "learnt whole worksheets and takes the large Korean words of a close-up for formulas (0: off)")
    closeup_few_letters_above: float = Field(
        0.0, ge=0, description="an image with fewer than six letter-like components (one short formula filling "
        "the frame: `0<x<1` has five) is a close-up when they reach the net taller than this; the letter height of "
        "so few is shaky, so the bar is higher than `closeup_letters_above` (0: such an image is never a close-up)")
    closeup_letters_to: float = Field(12.0, gt=0, description="a close-up's letters are brought to this height")
    closeup_min_long_side: int = Field(320, ge=64, description="a close-up is never shrunk below this long side")
    confirm_letters_above: float = Field(
        0.0, ge=0, description="on a page whose letters are taller than this but no close-up, a region is kept only "
        "when a second pass, the page shrunk until its letters are `confirm_letters_to` tall, finds it too (quads "
        "overlapping by `confirm_iou`): large text the net takes for formulas is text at a page's size (0: off)")
    confirm_letters_to: float = Field(15.0, gt=0, description="the second pass's letter height")
    confirm_iou: float = Field(0.2, gt=0, le=1, description="a region is confirmed by a second-pass quad this IoU")

    @model_validator(mode="after")
    def _few_letters_bar_is_higher(self) -> DetectParams:
        if 0 < self.closeup_few_letters_above < self.closeup_letters_above:
            raise ValueError("closeup_few_letters_above must be 0 (off) or at least closeup_letters_above: the height "
                             f"of a few letters is shakier, got {self.closeup_few_letters_above} < "
                             f"{self.closeup_letters_above}")
        return self

    @field_validator("recrop_along", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """`--param recrop_along=0.3,0.6` on a benchmark's command line."""
        return [float(part) for part in value.split(",") if part.strip()] if isinstance(value, str) else value


# --- shrink / unclip geometry (training draws targets with `shrink_distance`; serving inverts it) -------


def shrink_distance(polygon: np.ndarray, shrink: float) -> float:
    """How far a region's outline moves inwards to make its training kernel: shrink * area / perimeter."""
    points = np.asarray(polygon, dtype=np.float64)
    area = abs(cv2.contourArea(points.astype(np.float32)))
    perimeter = cv2.arcLength(points.astype(np.float32), True)
    return shrink * area / perimeter if perimeter > 0 else 0.0


def unclip_distance(kernel_width: float, kernel_height: float, shrink: float) -> float:
    """The offset D that a `shrink_distance` of D turned a w x h rectangle into this kernel (exact).

    With w = a + 2D, h = b + 2D and D = shrink * w h / (2 (w + h)):
    (8 - 4 s) D^2 + 2 (1 - s)(a + b) D - s a b = 0, whose positive root is D.
    """
    a, b, s = max(kernel_width, 0.0), max(kernel_height, 0.0), shrink
    qa, qb, qc = 8 - 4 * s, 2 * (1 - s) * (a + b), s * a * b
    return (-qb + math.sqrt(qb * qb + 4 * qa * qc)) / (2 * qa)


def offset_polygon(points: np.ndarray, distance: float) -> np.ndarray | None:
    """The polygon moved outwards (distance > 0) or inwards (< 0); None when nothing is left."""
    clipper = pyclipper.PyclipperOffset(miter_limit=3.0)
    scaled = np.round(np.asarray(points, dtype=np.float64) * 64).astype(np.int64)
    clipper.AddPath(scaled.tolist(), pyclipper.JT_MITER, pyclipper.ET_CLOSEDPOLYGON)
    result = clipper.Execute(distance * 64)
    if not result:
        return None
    largest = max(result, key=lambda path: abs(pyclipper.Area(path)))
    return np.asarray(largest, dtype=np.float64) / 64


# --- pre/postprocessing -----------------------------------------------------------------------------------


def to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def input_scale(width: int, height: int, long_side: int, min_short_side: int = 0) -> float:
    """original -> net input: down to `long_side`, or up to `min_short_side` (never past `long_side`)."""
    fit = long_side / max(height, width)
    return min(fit, max(1.0, min_short_side / min(height, width)))


def fit_input(image: np.ndarray, long_side: int, min_short_side: int = 0) -> tuple[np.ndarray, float]:
    """The page as BGR uint8 at the net's input size, and the scale from original to input pixels."""
    bgr = to_bgr(image)
    height, width = bgr.shape[:2]
    scale = input_scale(width, height, long_side, min_short_side)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if scale < 1.0:
        bgr = downscale(bgr, size)
    elif scale > 1.0:
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
    return bgr, scale


def preprocess(image: np.ndarray, long_side: int, min_short_side: int = 0) -> tuple[np.ndarray, float]:
    """(1, 3, H, W) float32 net input and the scale from original to input pixels."""
    bgr, scale = fit_input(image, long_side, min_short_side)
    return normalise_padded(bgr), scale


# Ink is darker than the mean of the square around it by this many grey levels; the square's side in pixels.
INK_CONTRAST, INK_WINDOW = 20, 101


def ink_mask(gray: np.ndarray) -> np.ndarray:
    """uint8 1 where a pixel is INK_CONTRAST darker than the mean of the INK_WINDOW square around it (edges
    replicated). Integer sums and comparisons only, so the browser (edge-page.js `inkMask`) agrees bit for bit."""
    window = (INK_WINDOW, INK_WINDOW)
    sums = cv2.boxFilter(gray, cv2.CV_32S, window, normalize=False, borderType=cv2.BORDER_REPLICATE)
    return ((gray.astype(np.int32) + INK_CONTRAST) * (INK_WINDOW * INK_WINDOW) <= sums).astype(np.uint8)


# Fewer letter-like components than this make a shaky letter height (a line of cursive, a blank page, a speck).
FEWEST_LETTERS = 6


def letter_height(bgr: np.ndarray, few_above: float = float("inf")) -> float:
    """How tall a page's letters are, in its pixels: the 75th percentile of the heights of the ink's
    letter-like connected components (8-connected; at least 5 px tall and a quarter as wide, at most 3x as wide
    as tall and 2/5 of the page's height, filling at least 12% of their box: not the pieces of a ruled or
    squared paper's lines). With fewer than `FEWEST_LETTERS` of them (a line of cursive handwriting, a blank
    page, one short formula) the figure counts only when it is over `few_above`, else 0. The components of a
    word of text are its letters (or a Hangul syllable's parts), so the figure grows with the text's size,
    whatever the formulas' size."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink_mask(gray), connectivity=8)
    widths, heights, areas = (stats[1:, i].astype(np.int64) for i in (2, 3, 4))
    letters = (heights >= 5) & (4 * widths >= heights) & (widths <= 3 * heights) & (5 * heights <= 2 * gray.shape[0]) \
        & (100 * areas >= 12 * widths * heights)
    if not letters.any():
        return 0.0
    height = float(np.percentile(heights[letters], 75))
    return height if letters.sum() >= FEWEST_LETTERS or height > few_above else 0.0


def page_input(image: np.ndarray, params: DetectParams) -> tuple[np.ndarray, float]:
    """The net input of a page and its scale; a close-up (see `DetectParams.closeup_letters_above`) is shrunk
    until its letters are `closeup_letters_to` tall, as on the whole worksheets the net learnt."""
    bgr, scale, _ = _fitted_page(image, params)
    return normalise_padded(bgr), scale


def _fitted_page(image: np.ndarray, params: DetectParams) -> tuple[np.ndarray, float, float]:
    """(input BGR, scale, letter height measured at the first size; 0 when no rule needs it)."""
    bgr, scale = fit_input(image, params.long_side, params.min_short_side)
    needed = params.closeup_letters_above > 0 or params.confirm_letters_above > 0
    letters = letter_height(bgr, params.closeup_few_letters_above or float("inf")) if needed else 0.0
    if 0 < params.closeup_letters_above < letters:
        side = max(bgr.shape[:2])
        long_side = shrunk_long_side(side, letters, params.closeup_letters_to, params.closeup_min_long_side)
        if long_side < side:
            bgr, scale = fit_input(image, long_side)
    return bgr, scale, letters


def shrunk_long_side(long_side: int, letters: float, target: float, floor: int) -> int:
    """The long side (a multiple of STRIDE, at least `floor`) at which letters `letters` tall become `target`."""
    return max(floor, int(long_side * (target / letters)) // STRIDE * STRIDE)


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-averaging resize to `size` (w, h), by steps OpenCV does fast: exact 2x2 halvings while the image is at
    least 4x the target, a bilinear step of less than 2x (every pixel still counts) to twice the target, then a
    last 2x2 halving. On a 12-MP photo to 896 px: 14 ms instead of 34 ms for an integer factor then the rest,
    and nearer a one-step INTER_AREA (64 ms): mean 0.24 grey levels off, against 0.41."""
    width, height = size
    if image.shape[1] < 2 * width or image.shape[0] < 2 * height:
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    while image.shape[1] >= 4 * width and image.shape[0] >= 4 * height:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    image = cv2.resize(image, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def normalise_padded(bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 -> normalised (1, 3, H, W), zero-padded (mid grey) at the right/bottom to a multiple of 32."""
    height, width = bgr.shape[:2]
    padded_h, padded_w = -(-height // STRIDE) * STRIDE, -(-width // STRIDE) * STRIDE
    # (x - mean) * scale and HWC -> NCHW in one pass: 3 ms on an 896 x 672 page against 8 ms in numpy
    blob = cv2.dnn.blobFromImage(bgr, 1 / (255 * STD), mean=(255 * MEAN,) * 3)
    if (padded_h, padded_w) == (height, width):
        return blob
    tensor = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
    tensor[:, :, :height, :width] = blob
    return tensor


def reading_axes(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A quad's mean reading edge (top-left -> top-right) and mean downward edge (top -> bottom), as vectors;
    the line height is the length of the second."""
    points = np.asarray(quad, dtype=np.float64)
    return (points[1] - points[0] + points[2] - points[3]) / 2, (points[3] - points[0] + points[2] - points[1]) / 2


def widen_quad(quad: np.ndarray, along: float, across: float, image_size: tuple[int, int]) -> np.ndarray:
    """A quad (clockwise from the formula's top-left) grown by `along` line heights past each end and `across`
    line heights above and below, clipped to the image (w, h). The line height is the mean of the two sides."""
    points = np.asarray(quad, dtype=np.float64)
    reading, downward = reading_axes(points)
    line_height = float(np.hypot(*downward))
    if line_height == 0 or not reading.any():
        return points
    reading = reading / float(np.hypot(*reading)) * along * line_height
    downward = downward * across
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    grown = points + signs[:, :1] * reading + signs[:, 1:] * downward
    return np.clip(grown, 0, [image_size[0] - 1, image_size[1] - 1])


def _to_original(points: np.ndarray, scale: float) -> np.ndarray:
    """Input-pixel coordinates -> original-image pixel coordinates (pixel centres at integers in both)."""
    return (points + 0.5) / scale - 0.5


def postprocess(
    kernel: np.ndarray,
    handwritten: np.ndarray,
    orientation_probs: np.ndarray,
    scale: float,
    image_size: tuple[int, int],
    params: DetectParams,
) -> PageDetections:
    """Maps of one page (stride 2, probabilities) -> detections in original pixels.

    `image_size` is the original (width, height); coordinates are clipped to it.
    """
    best = int(np.argmax(orientation_probs))
    orientation = ORIENTATIONS[best] if orientation_probs[best] >= params.min_orientation_confidence else 0
    binary = (kernel > params.kernel_threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=4)
    if count <= 1:
        return PageDetections(orientation, ())
    flat = labels.ravel()
    areas = np.bincount(flat, minlength=count).astype(np.float64)
    scores = np.bincount(flat, weights=kernel.ravel(), minlength=count) / np.maximum(areas, 1)
    kinds = np.bincount(flat, weights=handwritten.ravel(), minlength=count) / np.maximum(areas, 1)
    keep = [i for i in range(1, count) if areas[i] >= params.min_kernel_px and scores[i] > params.box_threshold]
    keep = sorted(keep, key=lambda i: -scores[i])[: params.max_regions]
    width, height = image_size
    pieces = []
    for i in keep:
        x, y, w, h = stats[i, :4]
        blob = (labels[y : y + h, x : x + w] == i).astype(np.uint8)
        found = _region(blob, (x, y), params.shrink, scale, width, height)
        if found is not None:
            pieces.append(Piece(found[0], found[1], float(kinds[i]), float(scores[i]), float(areas[i])))
    pieces = merge_line_pieces(pieces, orientation, image_size, params.merge_gap, params.merge_overlap)
    detections = []
    for piece in pieces:
        ordered = order_quad(piece.quad, orientation)
        crop = widen_quad(ordered, params.crop_margin_along, params.crop_margin_across, image_size)
        kind = "handwritten" if piece.handwritten > params.handwritten_threshold else "printed"
        recrops = (tuple(_as_quad(widen_quad(ordered, along, params.crop_margin_across, image_size))
                         for along in params.recrop_along)
                   if kind == "printed" and params.recrop_below > 0 else ())
        detections.append(Detection(
            quad=_as_quad(ordered),
            polygon=tuple((float(px), float(py)) for px, py in _start_polygon_at(piece.polygon, ordered[0])),
            kind=kind,
            score=piece.score,
            crop_quad=_as_quad(crop),
            recrop_quads=recrops,
            recrop_below=params.recrop_below if recrops else 0.0,
        ))
    detections.sort(key=lambda d: _reading_key(d.quad, orientation, image_size))
    return PageDetections(orientation, tuple(detections))


def _as_quad(points: np.ndarray) -> Quad:
    return Quad(tuple((float(px), float(py)) for px, py in points))  # type: ignore[arg-type]


def _region(
    blob: np.ndarray, origin: tuple[int, int], shrink: float, scale: float, width: int, height: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """One kernel blob (map pixels, offset by `origin`) -> (quad, polygon) in original pixels."""
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float64) + origin
    # Map pixel i covers input pixels 2i, 2i+1: its centre is input 2i + 0.5. Training fills kernels
    # edge-inclusively (`draw_targets`), so the span of a blob's pixel centres estimates the kernel's size.
    centre_in = contour * MAP_STRIDE + (MAP_STRIDE - 1) / 2
    (cx, cy), (rw, rh), angle = cv2.minAreaRect(centre_in.astype(np.float32))
    rw, rh = max(rw, MAP_STRIDE), max(rh, MAP_STRIDE)
    grow = unclip_distance(rw, rh, shrink)
    rect = ((cx, cy), (rw + 2 * grow, rh + 2 * grow), angle)
    quad_in = cv2.boxPoints(rect).astype(np.float64)
    outline = cv2.approxPolyDP(centre_in.astype(np.float32), MAP_STRIDE / 2, True).reshape(-1, 2)
    polygon_in = offset_polygon(outline, grow) if len(outline) >= 3 else None
    if polygon_in is None or len(polygon_in) < 3:
        polygon_in = quad_in
    limit = np.array([width - 1, height - 1], dtype=np.float64)
    quad = np.clip(_to_original(quad_in, scale), 0, limit)
    polygon = np.clip(_to_original(polygon_in, scale), 0, limit)
    if cv2.contourArea(quad.astype(np.float32)) < 1.0:
        return None
    return quad, polygon


def _start_polygon_at(polygon: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The polygon clockwise on screen (y down), starting at its vertex nearest `start`."""
    points = np.asarray(polygon, dtype=np.float64)
    x, y = points[:, 0], points[:, 1]
    if np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y) < 0:  # shoelace < 0: counter-clockwise on screen
        points = points[::-1]
    first = int(np.argmin(np.linalg.norm(points - start, axis=1)))
    return np.roll(points, -first, axis=0)


def _reading_key(quad: Quad, orientation: int, image_size: tuple[int, int]) -> tuple[float, float]:
    """Sort regions top-to-bottom, then left-to-right, as read on the upright page."""
    start = to_upright_points(np.asarray(quad.points[:1]), orientation, image_size)[0]
    return (round(float(start[1]) / 8), float(start[0]))


# --- the predictor ----------------------------------------------------------------------------------------

Runner = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # input -> (maps (1,2,h,w), orientation (1,4))


def detect_page(image: np.ndarray, run: Runner, params: DetectParams) -> PageDetections:
    """Preprocess, run the net (`run` returns probabilities), postprocess: one page; with a second pass at a
    smaller size to confirm the regions of a page with large letters (`DetectParams.confirm_letters_above`)."""
    bgr, scale, letters = _fitted_page(image, params)
    page = _detect_input(image, bgr, scale, run, params)
    second = confirm_input(image, bgr, letters, params, len(page.detections))
    if second is None:
        return page
    checks = [np.asarray(d.quad.points) for d in _detect_input(image, *second, run, params).detections]
    kept = tuple(d for d in page.detections
                 if any(quad_iou(np.asarray(d.quad.points), check) >= params.confirm_iou for check in checks))
    return PageDetections(page.orientation, kept)


def confirm_input(image: np.ndarray, first: np.ndarray, letters: float, params: DetectParams,
                  regions: int) -> tuple[np.ndarray, float] | None:
    """The smaller input (BGR, scale) of the second pass that confirms the `regions` found on `first`, the
    page's input with letters `letters` tall; None when the page needs none (no regions, small letters, a
    close-up, or the rule off)."""
    close_up = 0 < params.closeup_letters_above < letters
    if params.confirm_letters_above <= 0 or close_up or letters <= params.confirm_letters_above or regions == 0:
        return None
    side = max(first.shape[:2])
    long_side = shrunk_long_side(side, letters, params.confirm_letters_to, params.closeup_min_long_side)
    return fit_input(image, long_side) if long_side < side else None


def _detect_input(image: np.ndarray, bgr: np.ndarray, scale: float, run: Runner,
                  params: DetectParams) -> PageDetections:
    height, width = image.shape[:2]
    maps, orientation = run(normalise_padded(bgr))
    valid_h = -(-round(height * scale) // MAP_STRIDE)
    valid_w = -(-round(width * scale) // MAP_STRIDE)
    kernel = maps[0, 0, :valid_h, :valid_w]
    handwritten = maps[0, 1, :valid_h, :valid_w]
    return postprocess(kernel, handwritten, orientation[0], scale, (width, height), params)


def quad_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two convex quads, as edge-page.js `quadIou` computes it."""
    overlap = _clip_convex(a, b)
    inter = abs(_signed_area(overlap)) if len(overlap) >= 3 else 0.0
    union = abs(_signed_area(a)) + abs(_signed_area(b)) - inter
    return inter / union if union > 0 else 0.0


def _clip_convex(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of `subject` inside the convex polygon `clip` (either winding)."""
    clip = clip.astype(np.float64)
    sign = 1.0 if _signed_area(clip) >= 0 else -1.0
    output = [tuple(p) for p in subject.astype(np.float64)]
    for i in range(len(clip)):
        a, b = clip[i], clip[(i + 1) % len(clip)]
        inside = [sign * ((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])) >= 0 for p in output]
        points, output = output, []
        for j, p in enumerate(points):
            q = points[j - 1]
            if inside[j]:
                if not inside[j - 1]:
                    output.append(_crossing(q, p, a, b))
                output.append(p)
            elif inside[j - 1]:
                output.append(_crossing(q, p, a, b))
        if not output:
            break
    return np.asarray(output, dtype=np.float64).reshape(-1, 2)


def _signed_area(points: np.ndarray) -> float:
    x, y = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
    return float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2


def _crossing(p: tuple, q: tuple, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Where segment p-q crosses the line a-b."""
    dx, dy = q[0] - p[0], q[1] - p[1]
    ex, ey = b[0] - a[0], b[1] - a[1]
    t = (ex * (p[1] - a[1]) - ey * (p[0] - a[0])) / (ey * dx - ex * dy)
    return (p[0] + t * dx, p[1] + t * dy)


class DetectorRecord(BaseModel):
    """The JSON record beside the bundled detector (models/detector/record.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "detector"
    version: str = Field(description="content hash of the ONNX file")
    created: str
    architecture: dict[str, Any] = Field(description="DetectorConfig as trained")
    parameters: int
    files: dict[str, FileEntry]
    params: DetectParams = Field(description="pre/postprocessing the model was validated with")
    input: str = Field("BGR uint8 / 255, (x - 0.5) / 0.25, NCHW, H and W multiples of 32")
    outputs: str = Field("maps (N,2,H/2,W/2): kernel and handwritten probabilities; orientation (N,4): "
                         "probabilities of 0/90/180/270 degrees clockwise")
    quantization: str = Field(description="none or static-int8")
    training: TrainingInfo
    metrics: dict[str, Any] = Field(default_factory=dict, description="measured figures, with how")
    root: Path | None = Field(None, exclude=True)

    def file(self, key: str) -> Path:
        """Absolute path of a bundled file after checking its sha256."""
        if self.root is None:
            raise ValueError("record was not loaded from disk")
        return checked_file(self.name, self.root, self.files[key])


def load_detector_record(path: str | Path | None = None) -> DetectorRecord:
    """The record at `path` (a folder or record.json); default: the bundled models/detector/."""
    path = Path(path) if path is not None else REPO_MODELS / "detector"
    if path.is_dir():
        path = path / RECORD_NAME
    if not path.is_file():
        raise ModelNotFoundError(
            f"no detector record at {path}. Train and export one: `susik train detector --config "
            f"configs/detector_small.yaml`, then `susik export detector runs/detector_small/best.pt`"
        )
    record = DetectorRecord.model_validate_json(path.read_text())
    return record.model_copy(update={"root": path.parent})


class OnnxDetector:
    """Detector stage: pages in, one `PageDetections` per page out (`[]` for no pages)."""

    def __init__(self, path: str | Path, params: DetectParams | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        from susik.runtime.sessions import session_options

        self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        self.params = params or DetectParams()
        self._input = self.session.get_inputs()[0].name

    @classmethod
    def from_record(cls, record: DetectorRecord, threads: int | None = None) -> OnnxDetector:
        return cls(record.file("model"), record.params, threads)

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int | None = None) -> OnnxDetector:
        """A model folder or record.json; default: the bundled detector."""
        return cls.from_record(load_detector_record(path), threads)

    def _run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        maps, orientation = self.session.run(None, {self._input: tensor})
        return maps, orientation

    def __call__(self, images: list[np.ndarray]) -> list[PageDetections]:
        return [detect_page(image, self._run, self.params) for image in images]
