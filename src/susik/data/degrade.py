"""Photo degradations that move the ground truth with the pixels.

Every degradation has one signature, `fn(image, shapes, rng) -> Degraded`: `image` is uint8 BGR (HxWx3) or
grey (HxW); `shapes` are float (N, 2) point arrays in that image's pixels (pixel centres at integers); the
result holds the new image and every shape mapped to where its pixels went. Photometric effects return the
shapes unchanged; warps map them exactly (homographies, rotations) or by numerical inversion (crumple).
Strength parameters are keyword-only `(low, high)` ranges drawn from the passed `rng`, so a call is a
deterministic function of its seed.

Region-aware effects (highlighter, correction) read each shape as a region outline that starts at the
region's top-left corner and runs clockwise along its top edge first; `shape[1] - shape[0]` is its reading
direction. `susik.data.compose` passes formula outlines in that form.

`CONDITIONS` maps the public condition names to functions; `plan()` turns a page's condition list into the
ordered list of steps to run, with the always-on mild camera effects (`MILD`) slotted in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from statistics import NormalDist
from types import MappingProxyType
from typing import Protocol

import cv2
import numpy as np
from shapely.geometry import Polygon

from susik.data.geometry import (
    apply_affine,
    apply_homography,
    bounding_box,
    box_corners,
    rotate_quarter_points,
)
from susik.data.paper import desk, smooth_noise

Range = tuple[float, float]

# Standard-normal quantiles of the 256 byte values: one random byte per pixel becomes a Gaussian sample
# through a lookup table, ~8x cheaper than drawing float normals for a full page.
_NORMAL_QUANTILES = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], dtype=np.float32)

# Gain fields are smooth, so they are built on a grid this many cells along the long side and upsampled.
_GAIN_GRID = 96


@dataclass(frozen=True)
class Degraded:
    """A degraded image and the input shapes mapped into it (same order)."""

    image: np.ndarray
    shapes: tuple[np.ndarray, ...]


class Degradation(Protocol):
    def __call__(
        self, image: np.ndarray, shapes: Sequence[np.ndarray], rng: np.random.Generator
    ) -> Degraded: ...


def _draw(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _grid_size(image: np.ndarray, cells: int = _GAIN_GRID) -> tuple[int, int]:
    height, width = image.shape[:2]
    scale = cells / max(height, width)
    return max(2, round(height * scale)), max(2, round(width * scale))


def _unit_grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y coordinates in [-1, 1] over a rows x cols grid."""
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float32)
    return xs / max(cols - 1, 1) * 2 - 1, ys / max(rows - 1, 1) * 2 - 1


def _apply_gain(
    image: np.ndarray, gain: np.ndarray, channel_scale: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Multiply the image by a low-resolution gain field (upsampled): (h, w) scaled per channel by
    `channel_scale` for colour images, or (h, w, 3) per channel already.

    The field travels as uint8 in 1/128 steps (gains up to ~2): uint8 resize and multiply cost half the
    float path, and the step (under 2 grey levels) vanishes under the sensor noise added later.
    """
    height, width = image.shape[:2]
    gain = gain.astype(np.float32)
    if image.ndim == 3 and gain.ndim == 2:
        gain = gain[..., None] * np.asarray(channel_scale, dtype=np.float32)
    elif image.ndim == 2 and gain.ndim == 3:
        gain = gain.mean(axis=2)
    coded = np.clip(np.round(gain * 128), 0, 255).astype(np.uint8)
    full = cv2.resize(coded, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(image, full, scale=1 / 128)


def _background(image: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A desk surface to show where a warp uncovers the canvas, in the image's channel layout."""
    surface = desk(height, width, rng)
    return surface if image.ndim == 3 else cv2.cvtColor(surface, cv2.COLOR_BGR2GRAY)


def _gaussian_noise(rows: int, cols: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 Gaussian noise centred on 128 (grey levels), through the byte -> quantile table."""
    codes = np.frombuffer(rng.bytes(rows * cols), dtype=np.uint8).reshape(rows, cols)
    return cv2.LUT(codes, np.clip(np.round(128 + _NORMAL_QUANTILES * sigma), 0, 255).astype(np.uint8))


def _local_frame(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float, float, float]:
    """Origin, reading direction u, downward normal v, and the shape's extent (u0, u1, v0, v1) along them."""
    origin = shape[0]
    u = shape[1] - shape[0]
    norm = float(np.hypot(*u))
    u = u / norm if norm > 0 else np.array([1.0, 0.0])
    v = np.array([-u[1], u[0]])  # u turned clockwise on screen (y down): "down" for the text.
    along, across = (shape - origin) @ u, (shape - origin) @ v
    return origin, u, v, float(along.min()), float(along.max()), float(across.min()), float(across.max())


def _to_image(origin: np.ndarray, u: np.ndarray, v: np.ndarray, local: np.ndarray) -> np.ndarray:
    return origin + local[:, :1] * u + local[:, 1:2] * v


def clean(image: np.ndarray, shapes: Sequence[np.ndarray], rng: np.random.Generator) -> Degraded:
    """No change (the page still gets the always-on mild camera effects in `plan`)."""
    return Degraded(image, tuple(shapes))


def lighting(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    gradient: Range = (0.05, 0.3),
    blotch: Range = (0.0, 0.12),
    vignette: Range = (0.0, 0.3),
    warmth: Range = (-0.05, 0.05),
) -> Degraded:
    """Uneven lighting: directional falloff, soft blotches, an off-centre vignette and a slight tint."""
    rows, cols = _grid_size(image)
    xs, ys = _unit_grid(rows, cols)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xs * np.cos(angle) + ys * np.sin(angle)) / np.sqrt(2)  # in [-1, 1]
    gain = 1 - 0.5 * _draw(rng, gradient) * (1 + ramp)
    gain *= 1 + _draw(rng, blotch) * smooth_noise(rows, cols, 3, rng)
    cx, cy = rng.uniform(-0.3, 0.3, 2)
    gain *= 1 - _draw(rng, vignette) * ((xs - cx) ** 2 + (ys - cy) ** 2) / 2
    warm = _draw(rng, warmth)
    return Degraded(_apply_gain(image, np.clip(gain, 0, 2), (1 - warm, 1.0, 1 + warm)), tuple(shapes))


def _shadow_casters(rows: int, cols: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Outlines (low-res pixels) of a hand-and-arm or a phone entering the page from one side."""
    side = int(rng.integers(4))
    along = rng.uniform(0.15, 0.85)
    depth = rng.uniform(0.05, 0.35)  # how far the caster's centre lies inside the page, as a share of it
    centre, outward = {
        0: ((along * cols, depth * rows), (0.0, -1.0)),
        1: (((1 - depth) * cols, along * rows), (1.0, 0.0)),
        2: ((along * cols, (1 - depth) * rows), (0.0, 1.0)),
        3: ((depth * cols, along * rows), (-1.0, 0.0)),
    }[side]
    centre, outward = np.array(centre), np.array(outward)
    reach = float(max(rows, cols))
    if rng.random() < 0.5:  # hand: a smoothly lumpy ellipse, with the arm running off the page
        theta = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        lumps = sum(rng.uniform(0, 0.08) * np.sin(k * theta + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
        radius = rng.uniform(0.1, 0.22) * reach * (1 + lumps)
        squash = rng.uniform(0.6, 1.0)
        hand = centre + np.stack([radius * np.cos(theta), squash * radius * np.sin(theta)], axis=1)
        across = np.array([-outward[1], outward[0]]) * radius.mean() * rng.uniform(0.45, 0.7)
        arm = np.array(
            [
                centre - across,
                centre + across,
                centre + across + outward * reach,
                centre - across + outward * reach,
            ]
        )
        return [hand, arm]
    half_w, half_h = rng.uniform(0.1, 0.18) * reach, rng.uniform(0.2, 0.32) * reach  # phone
    corners = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
    turn = rng.uniform(-0.6, 0.6)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    return [corners @ rotation.T + centre]


def shadow(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    darkness: Range = (0.25, 0.55),
    softness: Range = (0.01, 0.05),
) -> Degraded:
    """A soft-edged cast shadow of a hand or a phone; skylight keeps it slightly bluish."""
    rows, cols = _grid_size(image, 192)
    mask = np.zeros((rows, cols), dtype=np.float32)
    for caster in _shadow_casters(rows, cols, rng):
        cv2.fillPoly(mask, [np.round(caster).astype(np.int32)], 1.0, cv2.LINE_AA)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, _draw(rng, softness) * max(rows, cols)))
    # BGR: blue is dimmed least, since the blue skylight still reaches the shadow.
    gain = 1 - _draw(rng, darkness) * mask[..., None] * np.array([0.88, 0.97, 1.0], dtype=np.float32)
    return Degraded(_apply_gain(image, gain), tuple(shapes))


# Highlighter inks as BGR multipliers (0..1): yellow, green, pink, orange, blue.
_HIGHLIGHTERS = ((0.35, 1.0, 1.0), (0.5, 1.0, 0.55), (0.8, 0.55, 1.0), (0.3, 0.78, 1.0), (1.0, 0.85, 0.5))


def _blend_multiply(image: np.ndarray, polygon: np.ndarray, colour: Sequence[float], opacity: float) -> None:
    """In place: multiply-blend `colour` (0..1 per channel) inside `polygon` (anti-aliased edge)."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = bounding_box(polygon)
    left, top = max(0, int(np.floor(x0)) - 1), max(0, int(np.floor(y0)) - 1)
    right, bottom = min(width, int(np.ceil(x1)) + 2), min(height, int(np.ceil(y1)) + 2)
    if right <= left or bottom <= top:
        return
    mask = np.zeros((bottom - top, right - left), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round((polygon - (left, top)) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    alpha = mask.astype(np.float32) * (opacity / 255.0)
    roi = image[top:bottom, left:right].astype(np.float32)
    if image.ndim == 3:
        tint = 1 - alpha[..., None] * (1 - np.asarray(colour, dtype=np.float32))
    else:
        tint = 1 - alpha * (1 - float(np.mean(colour)))
    image[top:bottom, left:right] = np.clip(roi * tint, 0, 255).astype(np.uint8)


def highlighter(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    count: tuple[int, int] = (1, 2),
    opacity: Range = (0.55, 0.9),
    thickness: Range = (0.7, 1.2),
) -> Degraded:
    """Translucent marker strokes (multiply blend) over `count` random shapes, with wobbly chisel tips."""
    out = image.copy()
    if not shapes:
        return Degraded(out, ())
    chosen = rng.permutation(len(shapes))[: int(rng.integers(count[0], count[1] + 1))]
    colour = _HIGHLIGHTERS[int(rng.integers(len(_HIGHLIGHTERS)))]
    for index in chosen:
        origin, u, v, u0, u1, v0, v1 = _local_frame(np.asarray(shapes[index], dtype=np.float64))
        tall = v1 - v0
        half = 0.5 * tall * _draw(rng, thickness)
        middle = 0.5 * (v0 + v1) + rng.uniform(-0.08, 0.08) * tall
        start, end = u0 - rng.uniform(0, 0.4) * tall, u1 + rng.uniform(0, 0.4) * tall
        steps = max(4, int((end - start) / 10))
        along = np.linspace(start, end, steps)
        slant = rng.uniform(0, 0.35) * tall  # chisel tip: ends cut at an angle
        wobble = np.cumsum(rng.normal(0, 0.02 * tall, (2, steps)), axis=1)
        top = np.stack([along + slant, middle - half + wobble[0]], axis=1)
        bottom = np.stack([along[::-1] - slant, (middle + half + wobble[1])[::-1]], axis=1)
        stroke = _to_image(origin, u, v, np.vstack([top, bottom]))
        _blend_multiply(out, stroke, colour, _draw(rng, opacity))
    return Degraded(out, tuple(shapes))


def _covers_ink(image: np.ndarray, patch: np.ndarray, region: np.ndarray, contrast: float) -> bool:
    """Whether the patch polygon covers any pixel of the region that is `contrast` levels darker than the
    region's paper (its 90th-percentile grey)."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = bounding_box(region)
    left, top = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    right, bottom = min(width, int(np.ceil(x1)) + 1), min(height, int(np.ceil(y1)) + 1)
    if right <= left or bottom <= top:
        return False
    roi = image[top:bottom, left:right]
    grey = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY) if roi.ndim == 3 else roi
    inside, under = np.zeros(grey.shape, np.uint8), np.zeros(grey.shape, np.uint8)
    cv2.fillPoly(inside, [np.round(region - (left, top)).astype(np.int32)], 1)
    cv2.fillPoly(under, [np.round(patch - (left, top)).astype(np.int32)], 1)
    under = cv2.dilate(under, np.ones((7, 7), np.uint8))  # the painted edge wanders up to ~2.5 px past them
    if not inside.any():
        return False
    cumulative = np.cumsum(np.bincount(grey[inside > 0], minlength=256))
    paper_level = float(np.searchsorted(cumulative, 0.9 * cumulative[-1]))  # 90th percentile
    return bool(np.any((grey < paper_level - contrast) & (inside > 0) & (under > 0)))


def correction(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    count: tuple[int, int] = (1, 2),
    max_overlap: float = 0.15,
    ink_contrast: float = 60.0,
    tries: int = 12,
) -> Degraded:
    """Opaque white correction-tape/fluid patches with slightly rough edges, beside shapes (formulas), over
    the text or paper next to them.

    Rule that keeps every label true: a patch may cover at most `max_overlap` (15%) of any shape's area
    and none of a shape's ink (pixels `ink_contrast` levels darker than that shape's paper), so it may clip
    a formula box's margin or empty corner but never a symbol. Placements that break the rule are redrawn,
    up to `tries` times per patch; a patch that finds no legal place is left out.
    """
    out = image.copy()
    points = [np.asarray(shape, dtype=np.float64) for shape in shapes]
    if not points:
        return Degraded(out, ())
    regions = [Polygon(shape).buffer(0) for shape in points]
    boxes = np.array([bounding_box(shape) for shape in points])
    frames = [_local_frame(shape) for shape in points]
    height, width = image.shape[:2]
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        for _ in range(tries):
            origin, u, v, u0, u1, v0, v1 = frames[int(rng.integers(len(points)))]
            tall = v1 - v0
            patch_h, patch_w = tall * rng.uniform(0.9, 1.6), tall * rng.uniform(1.0, 4.0)
            side = int(rng.integers(4))
            if side < 2:  # past the right or left end, reaching in by up to 40% of the patch's width
                reach = rng.uniform(0, 0.4) * patch_w
                cu = u1 + patch_w / 2 - reach if side == 0 else u0 - patch_w / 2 + reach
                cv_ = 0.5 * (v0 + v1) + rng.uniform(-0.2, 0.2) * tall
            else:  # above or below, reaching in by up to 30% of the patch's height
                reach = rng.uniform(0, 0.3) * patch_h
                cu = rng.uniform(u0, u1)
                cv_ = v0 - patch_h / 2 + reach if side == 2 else v1 + patch_h / 2 - reach
            local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * (patch_w / 2, patch_h / 2) + (cu, cv_)
            corners = _to_image(origin, u, v, local)
            if corners.min() < 0 or np.any(corners.max(axis=0) > (width - 1, height - 1)):
                continue
            patch = Polygon(corners)
            near = patch.buffer(3.0)
            x0, y0, x1, y1 = near.bounds
            nearby = np.flatnonzero(
                (boxes[:, 0] <= x1) & (boxes[:, 2] >= x0) & (boxes[:, 1] <= y1) & (boxes[:, 3] >= y0)
            )
            legal = True
            for index in nearby:
                region = regions[index]
                share = patch.intersection(region).area / region.area if region.area > 0 else 0.0
                touches = near.intersects(region)
                if share > max_overlap or (
                    touches and _covers_ink(out, corners, points[index], ink_contrast)
                ):
                    legal = False
                    break
            if legal:
                _paint_patch(out, corners, rng)
                break
    return Degraded(out, tuple(shapes))


def _paint_patch(image: np.ndarray, corners: np.ndarray, rng: np.random.Generator) -> None:
    """In place: an opaque off-white quad whose edges wander by about a pixel, with a faint rim."""
    outline = []
    for i in range(4):
        start, end = corners[i], corners[(i + 1) % 4]
        steps = max(2, int(np.hypot(*(end - start)) / 5))
        t = np.arange(steps)[:, None] / steps
        outline.append(start + t * (end - start))
    rough = np.vstack(outline) + np.clip(rng.normal(0, 0.7, (sum(len(o) for o in outline), 2)), -1.5, 1.5)
    white = int(rng.integers(238, 253))
    colour = (white, white, min(255, white + 2)) if image.ndim == 3 else white
    points = np.round(rough * 16).astype(np.int32)
    cv2.fillPoly(image, [points], colour, cv2.LINE_AA, shift=4)
    rim = max(0, white - int(rng.integers(25, 60)))
    cv2.polylines(image, [points], True, (rim, rim, rim) if image.ndim == 3 else rim, 1, cv2.LINE_AA, shift=4)


def blur(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    sigma: Range = (0.7, 1.8),
    motion_share: float = 0.4,
    motion_length: tuple[int, int] = (3, 11),
) -> Degraded:
    """Defocus (Gaussian) or hand-shake (linear motion) blur.

    Motion kernels stop at 11 px: OpenCV switches to a much slower DFT path above that size.
    """
    if rng.random() < motion_share:
        length = int(rng.integers(motion_length[0], motion_length[1] + 1))
        size = length | 1
        angle = rng.uniform(0, np.pi)
        centre = (size - 1) / 2
        offset = (length - 1) / 2 * np.array([np.cos(angle), np.sin(angle)])
        kernel = np.zeros((size, size), dtype=np.uint8)
        ends = np.round((np.array([centre - offset, centre + offset])) * 16).astype(np.int32)
        cv2.line(kernel, tuple(ends[0]), tuple(ends[1]), 255, 1, cv2.LINE_AA, shift=4)
        weights = kernel.astype(np.float32)
        return Degraded(cv2.filter2D(image, -1, weights / weights.sum()), tuple(shapes))
    return Degraded(cv2.GaussianBlur(image, (0, 0), _draw(rng, sigma)), tuple(shapes))


def noise(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    sigma: Range = (3.0, 8.0),
    chroma: Range = (0.0, 3.0),
) -> Degraded:
    """Sensor noise: per-pixel luminance noise plus blotchy (quarter-resolution) colour noise, the way a
    phone's demosaicing and denoising leave it."""
    height, width = image.shape[:2]
    luma = _gaussian_noise(height, width, _draw(rng, sigma), rng)
    if image.ndim == 3:
        colour_sigma = _draw(rng, chroma)
        luma = cv2.merge([luma, luma, luma])
        if colour_sigma >= 0.5:  # below that the colour noise rounds away; skip its cost
            quarter = [
                _gaussian_noise((height + 3) // 4, (width + 3) // 4, colour_sigma, rng) for _ in range(3)
            ]
            colour = cv2.resize(cv2.merge(quarter), (width, height), interpolation=cv2.INTER_LINEAR)
            luma = cv2.addWeighted(luma, 1.0, colour, 1.0, -128.0)
    # Both terms carry a +128 offset; addWeighted saturates once, after the sum.
    return Degraded(cv2.addWeighted(image, 1.0, luma, 1.0, -128.0), tuple(shapes))


def low_light(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    brightness: Range = (0.3, 0.6),
    gamma: Range = (1.0, 1.4),
    cast: Range = (0.05, 0.25),
    sigma: Range = (4.0, 9.0),
) -> Degraded:
    """A dim room: darker, more contrasty, warm (tungsten) or cool colour cast, and high-ISO noise."""
    level, power, tint = _draw(rng, brightness), _draw(rng, gamma), _draw(rng, cast)
    # BGR channel scales: warm light starves blue, cool light starves red.
    scales = (1 - tint, 1 - tint / 2, 1.0) if rng.random() < 0.7 else (1.0, 1 - tint / 3, 1 - tint / 1.5)
    ramp = np.arange(256, dtype=np.float64) / 255
    if image.ndim == 3:
        tables = [np.clip(255 * (level * s * ramp) ** power, 0, 255) for s in scales]
        lut = np.stack(tables, axis=1).astype(np.uint8).reshape(1, 256, 3)
    else:
        lut = np.clip(255 * (level * ramp) ** power, 0, 255).astype(np.uint8)
    dark = cv2.LUT(image, lut)
    return noise(dark, shapes, rng, sigma=sigma, chroma=(sigma[0] / 3, sigma[1] / 3))


def jpeg(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    quality: tuple[int, int] = (15, 60),
) -> Degraded:
    """JPEG re-compression (messaging apps, screenshots of photos)."""
    level = int(rng.integers(quality[0], quality[1] + 1))
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, level])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return Degraded(cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED), tuple(shapes))


def perspective(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    tilt: Range = (0.04, 0.2),
    jitter: Range = (0.0, 0.035),
    roll: Range = (-4.0, 4.0),
    margin: Range = (0.02, 0.1),
) -> Degraded:
    """A phone held at an angle: keystone towards a random side, corner jitter and a little roll; the page
    lands on a desk with a margin around it, and the output keeps the input's long side."""
    height, width = image.shape[:2]
    src = box_corners(0, 0, width - 1, height - 1)
    dst = src.copy()
    shrink = _draw(rng, tilt)
    side = int(rng.integers(4))
    # The far edge (top, right, bottom or left) looks shorter: pull its two corners together.
    edge, axis, extent = [((0, 1), 0, width), ((1, 2), 1, height), ((3, 2), 0, width), ((0, 3), 1, height)][
        side
    ]
    dst[edge[0], axis] += shrink * extent / 2
    dst[edge[1], axis] -= shrink * extent / 2
    dst += rng.uniform(-1, 1, (4, 2)) * _draw(rng, jitter) * (width, height)
    turn = np.deg2rad(_draw(rng, roll))
    centre = dst.mean(axis=0)
    dst = (dst - centre) @ np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]]) + centre
    x0, y0, x1, y1 = bounding_box(dst)
    pad = _draw(rng, margin) * max(width, height)
    scale = max(width, height) / (max(x1 - x0, y1 - y0) + 2 * pad)
    dst = (dst - (x0, y0) + pad) * scale
    out_w, out_h = int(np.ceil((x1 - x0 + 2 * pad) * scale)), int(np.ceil((y1 - y0 + 2 * pad) * scale))
    matrix = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    canvas = _background(image, out_h, out_w, rng)
    cv2.warpPerspective(
        image, matrix, (out_w, out_h), dst=canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT
    )
    return Degraded(canvas, tuple(apply_homography(shape, matrix) for shape in shapes))


def skew(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    angle: Range = (1.0, 8.0),
) -> Degraded:
    """A small in-plane rotation (either direction); the canvas grows so no page pixel is cut."""
    height, width = image.shape[:2]
    degrees = _draw(rng, angle) * (1 if rng.random() < 0.5 else -1)
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    x0, y0, x1, y1 = bounding_box(apply_affine(box_corners(0, 0, width - 1, height - 1), matrix))
    matrix[:, 2] -= (x0, y0)
    out_w, out_h = int(np.ceil(x1 - x0)) + 1, int(np.ceil(y1 - y0)) + 1
    canvas = _background(image, out_h, out_w, rng)
    cv2.warpAffine(
        image, matrix, (out_w, out_h), dst=canvas, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT
    )
    return Degraded(canvas, tuple(apply_affine(shape, matrix) for shape in shapes))


_ROTATE_CODES = {1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_COUNTERCLOCKWISE}


def rotate_quarter(
    image: np.ndarray, shapes: Sequence[np.ndarray], rng: np.random.Generator, *, turns: int
) -> Degraded:
    """Exact rotation by `turns` quarter turns clockwise (the canvas turns with it; nothing is cut).

    Each shape keeps its point order, so a quad still starts at its formula's own top-left corner, which
    after a quarter turn is no longer the image-space top-left.
    """
    if turns % 4 == 0:
        return Degraded(image.copy(), tuple(shapes))
    height, width = image.shape[:2]
    rotated = cv2.rotate(image, _ROTATE_CODES[turns % 4])
    return Degraded(rotated, tuple(rotate_quarter_points(shape, width, height, turns) for shape in shapes))


def _sample(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of a float32 field at float points (edge-replicated outside)."""
    xs = points[:, 0].astype(np.float32).reshape(-1, 1)
    ys = points[:, 1].astype(np.float32).reshape(-1, 1)
    return (
        cv2.remap(field, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        .reshape(-1)
        .astype(np.float64)
    )


def crumple(
    image: np.ndarray,
    shapes: Sequence[np.ndarray],
    rng: np.random.Generator,
    *,
    amplitude: Range = (0.004, 0.012),
    cells: tuple[int, int] = (3, 7),
    shading: Range = (0.03, 0.09),
    creases: tuple[int, int] = (0, 3),
    iterations: int = 30,
) -> Degraded:
    """Crumpled / wavy paper: a smooth displacement field (the gradient of a random height map) applied with
    `cv2.remap`, lit by the same height map, plus a few shaded crease lines.

    `remap` reads the output pixel q from the source at q + d(q). A source point p therefore lands at the q
    solving q + d(q) = p; it is found by the fixed-point iteration q <- p - d(q), which converges because
    the field's slope stays well below 1 at these amplitudes.
    """
    height, width = image.shape[:2]
    rows, cols = _grid_size(image, 128)
    terrain = smooth_noise(rows, cols, int(rng.integers(cells[0], cells[1] + 1)), rng)
    slope_y, slope_x = np.gradient(terrain)
    steepest = float(max(np.abs(slope_x).max(), np.abs(slope_y).max(), 1e-6))
    reach = _draw(rng, amplitude) * max(height, width)
    dx = cv2.resize(
        (slope_x / steepest * reach).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )
    dy = cv2.resize(
        (slope_y / steepest * reach).astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR
    )
    map_x = dx + np.arange(width, dtype=np.float32)[None, :]
    map_y = dy + np.arange(height, dtype=np.float32)[:, None]
    # Fixed-point maps (1/32 px) remap about twice as fast as float maps, conversion included.
    fixed_xy, fixed_frac = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    warped = cv2.remap(image, fixed_xy, fixed_frac, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    light = rng.uniform(0, 2 * np.pi)
    gain = 1 + _draw(rng, shading) * (slope_x * np.cos(light) + slope_y * np.sin(light)) / steepest
    fold = np.zeros((rows, cols), dtype=np.float32)
    for _ in range(int(rng.integers(creases[0], creases[1] + 1))):
        ends = rng.uniform((0, 0), (cols, rows), (2, 2))
        cv2.line(
            fold,
            tuple(np.round(ends[0] * 16).astype(int)),
            tuple(np.round(ends[1] * 16).astype(int)),
            rng.uniform(-0.08, 0.08),
            1,
            cv2.LINE_AA,
            shift=4,
        )
    warped = _apply_gain(warped, np.clip(gain + cv2.GaussianBlur(fold, (0, 0), 0.7), 0.5, 1.5))

    if not shapes:
        return Degraded(warped, ())
    source = np.vstack([np.asarray(shape, dtype=np.float64) for shape in shapes])
    target = source.copy()
    for _ in range(iterations):
        target = source - np.stack([_sample(dx, target), _sample(dy, target)], axis=1)
    ends = np.cumsum([len(shape) for shape in shapes])[:-1]
    return Degraded(warped, tuple(np.split(target, ends)))


CONDITIONS: Mapping[str, Degradation] = MappingProxyType(
    {
        "clean": clean,
        "shadow": shadow,
        "highlighter": highlighter,
        "correction": correction,
        "rotation90": partial(rotate_quarter, turns=1),
        "rotation180": partial(rotate_quarter, turns=2),
        "rotation270": partial(rotate_quarter, turns=3),
        "skew": skew,
        "perspective": perspective,
        "crumple": crumple,
        "blur": blur,
        "low_light": low_light,
        "jpeg": jpeg,
        "lighting": lighting,
        "noise": noise,
    }
)

# Mild camera effects every synthetic page gets (no phone photo is free of them); a page that names one
# of these conditions gets the full-strength version instead.
MILD: Mapping[str, Degradation] = MappingProxyType(
    {
        "lighting": partial(lighting, gradient=(0.0, 0.12), blotch=(0.0, 0.05), vignette=(0.0, 0.15)),
        "noise": partial(noise, sigma=(1.0, 3.0), chroma=(0.0, 0.0)),
    }
)

# Physical order of effects: marks on the paper, then its shape, the camera pose, the light, the image
# orientation, and last the camera's optics, sensor and encoder.
ORDER: tuple[str, ...] = (
    "clean",
    "highlighter",
    "correction",
    "crumple",
    "perspective",
    "skew",
    "shadow",
    "lighting",
    "low_light",
    "rotation90",
    "rotation180",
    "rotation270",
    "blur",
    "noise",
    "jpeg",
)

# Clockwise rotation of the upright page that each rotation condition applies.
ORIENTATION: Mapping[str, int] = MappingProxyType({"rotation90": 90, "rotation180": 180, "rotation270": 270})


def plan(conditions: Sequence[str], always_on: bool = True) -> list[tuple[str, Degradation]]:
    """The ordered (name, function) steps for a page's conditions, with the mild always-on effects added.

    Raises ValueError on an unknown name or on two rotations.
    """
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; known: {sorted(CONDITIONS)}")
    if len(set(conditions) & set(ORIENTATION)) > 1:
        raise ValueError(f"at most one rotation per page, got {sorted(set(conditions) & set(ORIENTATION))}")
    steps = {name: CONDITIONS[name] for name in conditions}
    if always_on:
        for name, mild in MILD.items():
            steps.setdefault(name, mild)
    return [(name, steps[name]) for name in ORDER if name in steps]
