"""Crop -> model input, in numpy/OpenCV only: the one function shared by training (on augmented crops) and
serving, so that what the model sees at test time is what it saw in training.

Steps: grayscale (dark ink on light paper, inverting if needed) -> flatten the paper's light (divide by a closing,
so that a shadow across the crop is not taken for ink) -> crop to the ink (Otsu) with a small margin -> keep
aspect, resize to a fixed height (if the result would be wider than `max_width`, scale to fit and centre
vertically) -> normalise so paper is 0 and ink is 1 (per-image levels from the Otsu classes: photos differ in
exposure, the model should not have to care) -> pad a batch to a common width, a multiple of the encoder stride,
with 0 (= paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class PreprocessConfig(BaseModel):
    """Input geometry; it travels with a model (checkpoint and bundled record) so serving cannot drift."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    height: int = Field(64, ge=16, description="model input height; 64 keeps stacked fractions legible")
    max_width: int = Field(768, ge=32, description="widest input; wider crops are scaled down to fit")
    width_multiple: int = Field(16, ge=1, description="batch width is padded to this (the encoder stride)")
    margin: float = Field(0.08, ge=0, le=0.5, description="margin kept around the ink, as a share of its height")
    min_contrast: float = Field(12.0, ge=0, description="paper-ink level gap (0-255) below which a crop is blank")
    flatten: float = Field(
        0.5, ge=0, le=4,
        description="side of the square closing that estimates the paper's light, as a share of the crop's height "
        "(wider than any stroke, narrower than a shadow); 0: no flattening",
    )


DEFAULT_PREPROCESS = PreprocessConfig()


class CropError(ValueError):
    """A crop the recognizer cannot read (blank, tiny); the message says why."""


MIN_SIDE = 4  # pixels: below this a crop holds no legible glyph


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 grayscale from gray (H, W), BGR (H, W, 3) or BGRA (H, W, 4)."""
    if image.ndim == 2:
        return image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image.astype(np.uint8, copy=False)), code)
    raise ValueError(f"expected a gray or BGR image, got shape {image.shape}")


def ink_levels(gray: np.ndarray) -> tuple[int, float, float]:
    """(Otsu threshold, paper level, ink level); ink is the darker class, both levels are class medians."""
    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    darker = gray[gray <= threshold]
    lighter = gray[gray > threshold]
    if darker.size == 0 or lighter.size == 0:
        level = float(np.median(gray))
        return int(threshold), level, level
    return int(threshold), float(np.median(lighter)), float(np.median(darker))


def dark_ink(gray: np.ndarray) -> np.ndarray:
    """The crop with dark ink on light paper: inverted when the darker Otsu class covers most pixels and
    nearly all of the border (chalk on a blackboard, a dark-mode screenshot). A shadow over part of a photo
    darkens part of the border only, so it does not flip the crop."""
    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = gray <= threshold
    border = np.concatenate([dark[0], dark[-1], dark[:, 0], dark[:, -1]])
    return 255 - gray if dark.mean() > 0.6 and border.mean() > 0.8 else gray


def check_crop(image: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS) -> None:
    """Raise `CropError` for a crop the recognizer cannot read: too small, or with no visible ink once the
    paper's light is flattened (a shadow across blank paper is no formula)."""
    _checked_paper(image, config)


def _checked_paper(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """`_paper`, after `check_crop`'s checks."""
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise CropError(f"image too small: {width}x{height} (need at least {MIN_SIDE} px a side)")
    paper = _paper(image, config)
    _, paper_level, ink = ink_levels(paper)
    if paper_level - ink < config.min_contrast:
        raise CropError("image is blank: no ink stands out from the background")
    return paper


def flatten_light(gray: np.ndarray, share: float) -> np.ndarray:
    """uint8 gray with the paper's light made even: each pixel divided by the paper's level around it, estimated
    by a closing (maximum then minimum over a square of side `share` x the crop's height, odd). A closing removes
    every dark mark narrower than its square (strokes) and keeps the edges of larger ones (a shadow's), so a
    shadow, a dim corner or a highlighter band becomes paper instead of ink. Integer arithmetic only, so the
    browser (edge-core.js `flattenLight`) computes it bit for bit. `share` 0 returns the crop unchanged."""
    if share <= 0:
        return gray
    size = max(3, round(share * gray.shape[0]) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    background = cv2.erode(cv2.dilate(gray, kernel), kernel)
    flat = gray.astype(np.int32) * 255 // np.maximum(background, 1).astype(np.int32)
    return np.minimum(flat, 255).astype(np.uint8)


def _ink_box(ink_mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the ink, ignoring at most 0.1 % of ink mass on each side (specks)."""
    rows = ink_mask.sum(axis=1, dtype=np.float64)
    cols = ink_mask.sum(axis=0, dtype=np.float64)

    def span(profile: np.ndarray) -> tuple[int, int]:
        cumulative = np.cumsum(profile)
        total = cumulative[-1]
        trim = 0.001 * total
        start = int(np.searchsorted(cumulative, trim, side="right"))
        end = int(np.searchsorted(cumulative, total - trim, side="left")) + 1
        return start, max(end, start + 1)

    top, bottom = span(rows)
    left, right = span(cols)
    return top, bottom, left, right


def crop_to_ink(gray: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """The ink's bounding box plus a margin; the whole image when no ink stands out."""
    threshold, paper, ink = ink_levels(gray)
    if paper - ink < config.min_contrast:
        return gray
    mask = gray <= threshold
    top, bottom, left, right = _ink_box(mask)
    pad = round(config.margin * (bottom - top)) + 1
    height, width = gray.shape
    return gray[max(0, top - pad) : min(height, bottom + pad), max(0, left - pad) : min(width, right + pad)]


def normalise(gray: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """float32 with paper at 0 and ink at 1 (levels from this image), clipped to [0, 1]."""
    _, paper, ink = ink_levels(gray)
    span = max(paper - ink, config.min_contrast)
    return np.clip((paper - gray.astype(np.float32)) / span, 0.0, 1.0)


def _bilinear_axis(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's bilinear sampling along one axis: (first, second source index, float32 weight of the second)."""
    position = ((np.arange(target) + 0.5) * (1.0 / (target / source)) - 0.5).astype(np.float32)
    first = np.floor(position).astype(np.int64)
    weight = position - first.astype(np.float32)
    outside = (first < 0) | (first >= source - 1)
    weight[outside] = 0
    first = np.clip(first, 0, source - 1)
    return first, np.minimum(first + 1, source - 1), weight


def resize_bilinear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """float32 bilinear resize, as cv2.INTER_LINEAR computes it without Intel IPP.

    cv2 hands float INTER_LINEAR to IPP, whose weights differ by up to ~1e-5 and cannot be reproduced
    elsewhere; this spelled-out version is what the browser's on-device mode (serve/web/edge-core.js)
    computes bit for bit.
    """
    xs, xs_next, wx = _bilinear_axis(image.shape[1], width)
    ys, ys_next, wy = _bilinear_axis(image.shape[0], height)
    one = np.float32(1)
    rows = image[:, xs] * (one - wx) + image[:, xs_next] * wx
    return rows[ys] * (one - wy)[:, None] + rows[ys_next] * wy[:, None]


def resize_to_height(image: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS,
                     width_scale: float = 1.0) -> np.ndarray:
    """Keep aspect (times `width_scale`) at `config.height`; a crop wider than `max_width` is scaled to fit and
    centred vertically.

    `image` is float (paper = 0), so the vertical padding is paper.
    """
    height, width = image.shape
    target_w = max(1, round(width * config.height * width_scale / height))
    if target_w <= config.max_width:
        if config.height < height:
            return cv2.resize(image, (target_w, config.height), interpolation=cv2.INTER_AREA)
        if target_w == width and config.height == height:
            return image
        return resize_bilinear(image.astype(np.float32, copy=False), target_w, config.height)
    target_h = max(1, round(height * config.max_width / (width * width_scale)))
    scaled = cv2.resize(image, (config.max_width, target_h), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((config.height, config.max_width), dtype=image.dtype)
    top = (config.height - target_h) // 2
    canvas[top : top + target_h] = scaled
    return canvas


def preprocess(image: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS,
               width_scale: float = 1.0, check: bool = False) -> np.ndarray:
    """One crop (gray or BGR uint8) -> float32 (height, width) with paper 0 and ink 1; `width_scale` stretches
    it sideways (the second look of `DecodeConfig.widen_below`); `check` first raises `CropError` where
    `check_crop` would, on the same flattened crop."""
    paper = _checked_paper(image, config) if check else _paper(image, config)
    return resize_to_height(_cut_to_ink(paper, config), config, width_scale)


def _ink(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """The crop as float (paper 0, ink 1), cut to its ink, at its own resolution."""
    return _cut_to_ink(_paper(image, config), config)


def _cut_to_ink(paper: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    return normalise(crop_to_ink(paper, config), config)


def _paper(image: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """uint8 gray, dark ink on light paper, the paper's light flattened."""
    gray = to_gray(image)
    if min(gray.shape) < 1:
        raise CropError(f"image has no pixels: {gray.shape}")
    return flatten_light(dark_ink(gray), config.flatten)


def thicken(image: np.ndarray, radius: int) -> np.ndarray:
    """Ink (1 = ink, float32) grown by `radius` pixels in all eight directions: a (2r+1)^2 maximum to which the
    border adds nothing. Spelled out in numpy so that the browser (edge-core.js `thicken`) computes it bit for
    bit."""
    padded = np.pad(image, radius, constant_values=0.0)
    height, width = image.shape
    grown = image.copy()
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            np.maximum(grown, padded[dy : dy + height, dx : dx + width], out=grown)
    return grown


def stroke_core_share(prepared: np.ndarray) -> float:
    """Share of a preprocessed crop's ink pixels (> 0.5) whose 3x3 neighbourhood is all ink (the border
    counts as paper): near 0 for strokes two pixels wide or thinner (CROHME's tablet ink at the model's
    height: median 0.002), about half for print (0.52) and for photographed pen (0.42). 0 without ink."""
    ink = prepared > 0.5
    total = int(ink.sum())
    if total == 0:
        return 0.0
    padded = np.pad(ink, 1, constant_values=False)
    height, width = ink.shape
    core = ink.copy()
    for dy in range(3):
        for dx in range(3):
            core &= padded[dy : dy + height, dx : dx + width]
    return int(core.sum()) / total


def halve(image: np.ndarray) -> np.ndarray:
    """The mean of each 2x2 block (even height and width), summed in one fixed order for the browser's sake."""
    quarter = np.float32(0.25)
    return ((image[0::2, 0::2] + image[0::2, 1::2]) + (image[1::2, 0::2] + image[1::2, 1::2])) * quarter


def preprocess_thickened(image: np.ndarray, config: PreprocessConfig = DEFAULT_PREPROCESS) -> np.ndarray:
    """`preprocess` with the strokes thickened by one pixel on each side at the model's height: read at twice
    the height, grown by two pixels, averaged back down. The second look of `DecodeConfig.thicken_below`: thin
    pen strokes (CROHME's tablet ink) read better thickened (CROHME 2013 greedy 34.6% -> 36.7% with it;
    growing by half a pixel or by one and a half gave 35.5% and 35.9%)."""
    double = config.model_copy(update={"height": 2 * config.height, "max_width": 2 * config.max_width})
    large = resize_to_height(_ink(image, config), double).astype(np.float32, copy=False)
    if large.shape[1] % 2:  # an odd width: one more column of paper, so that the halves pair up
        large = np.pad(large, ((0, 0), (0, 1)), constant_values=0.0)
    return halve(thicken(large, radius=2))


def pad_batch(
    images: Sequence[np.ndarray], config: PreprocessConfig = DEFAULT_PREPROCESS
) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed crops -> (batch float32 (B, 1, H, W), widths int64 (B,)); W a multiple of the stride."""
    if not images:
        return np.zeros((0, 1, config.height, config.width_multiple), np.float32), np.zeros(0, np.int64)
    widths = np.array([image.shape[1] for image in images], dtype=np.int64)
    multiple = config.width_multiple
    padded_width = int(-(-widths.max() // multiple) * multiple)
    batch = np.zeros((len(images), 1, config.height, padded_width), dtype=np.float32)
    for i, image in enumerate(images):
        batch[i, 0, :, : image.shape[1]] = image
    return batch, widths
