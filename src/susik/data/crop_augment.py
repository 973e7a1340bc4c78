"""Photo augmentation for formula crops: a clean render (or scan) in, something like a phone photo out.

Each step is a small function of an image (or ink mask) and explicit parameters; `augment_crop` draws the
parameters from a seeded generator and an `AugmentConfig` and chains the steps roughly in the order a photo
is made: the ink (stroke width, margins, residual tilt and perspective) -> the paper under it (texture, ruled
or grid lines, which stay level: handwriting tilts against them too; ink colour, pencil grain; highlighter)
-> the camera (light and shadow, blur, resolution, exposure, noise, JPEG).

Images are grey uint8 HxW in and out; inside the chain they are float32 in 0..255. A clean input (dark ink on
white) is lifted into an ink mask so it can be laid on paper; a real photo (`compose_on_paper=0`) is only
re-photographed. Cost (CPU time, one OpenCV thread): ~0.8 ms a crop for the printed preset on rendered corpus
crops (median 35x107 px), ~2.2 ms on a 90x500 crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# Grey levels of ink as a phone sees it: black ink, blue ballpoint (blue is dark in grey), graphite.
INK_LEVELS = {"black": (5.0, 45.0), "blue": (45.0, 105.0), "pencil": (80.0, 130.0)}
STRONG_JPEG_QUALITY = 40  # at or below this, a sample carries the "jpeg" condition


class AugmentConfig(BaseModel):
    """Chances (0..1) and ranges of each step. Defaults are the strong preset for printed synthetic crops."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    untouched: float = Field(0.05, ge=0, le=1, description="leave the crop as it is (screenshots, scans)")
    pen: float = Field(0.0, ge=0, le=1, description="given paper: redraw typeset ink as thin pen strokes")
    pen_height: tuple[int, int] = Field((80, 120), description="crop height the pen strokes are drawn at, px")
    thin: float = Field(0.0, ge=0, le=1, description="given paper, no pen: redraw the ink as one-pixel lines")
    thin_height: tuple[int, int] = Field((56, 112), description="crop height the one-pixel lines are drawn at, px")
    compose_on_paper: float = Field(0.9, ge=0, le=1, description="lift the ink and lay it on a paper texture")
    ruled: float = Field(0.35, ge=0, le=1, description="given paper: ruled or grid lines behind the formula")
    ink_blue: float = Field(0.3, ge=0, le=1, description="given paper: blue ballpoint instead of black")
    ink_pencil: float = Field(0.15, ge=0, le=1, description="given paper: graphite, lighter and grainy")
    stroke: float = Field(0.4, ge=0, le=1, description="thicken or thin the strokes by one step")
    max_stroke_px: int = Field(1, ge=0, le=3, description="largest dilation/erosion radius")
    slant: float = Field(0.0, ge=0, le=1, description="a writer's slant: shear the ink sideways")
    max_slant: float = Field(0.25, ge=0, le=0.6, description="largest shear, x shift per unit of height")
    stretch: float = Field(0.0, ge=0, le=1, description="a writer's width: scale the crop horizontally")
    stretch_range: tuple[float, float] = Field((0.75, 1.35), description="horizontal scale factors")
    elastic: float = Field(0.0, ge=0, le=1, description="a writer's wobble: a smooth random displacement field")
    max_elastic: float = Field(0.03, ge=0, le=0.1, description="largest displacement, as a share of height")
    padding: tuple[float, float] = Field((0.03, 0.35), description="margin per side, as a share of height")
    skew: float = Field(0.5, ge=0, le=1, description="in-plane rotation, residual tilt after rectification")
    max_degrees: float = Field(5.0, ge=0, le=15)
    perspective: float = Field(0.3, ge=0, le=1)
    max_perspective: float = Field(0.04, ge=0, le=0.15, description="corner shift, as a share of the size")
    highlighter: float = Field(0.1, ge=0, le=1)
    lighting: float = Field(0.6, ge=0, le=1, description="uneven light: a brightness gradient")
    shadow: float = Field(0.2, ge=0, le=1, description="a soft-edged shadow across part of the crop")
    blur: float = Field(0.3, ge=0, le=1)
    max_blur_sigma: float = Field(1.4, ge=0.3)
    motion_share: float = Field(0.3, ge=0, le=1, description="share of blurs that are motion blur")
    resolution: float = Field(0.4, ge=0, le=1, description="downscale then upscale: a far or cheap camera")
    min_scale: float = Field(0.35, gt=0, le=1)
    min_height_px: int = Field(14, ge=4, description="downscaling never makes the crop lower than this")
    noise: float = Field(0.7, ge=0, le=1)
    max_noise_sigma: float = Field(9.0, ge=0)
    low_light: float = Field(0.15, ge=0, le=1, description="dim exposure: low contrast and a dark level")
    jpeg: float = Field(0.6, ge=0, le=1)
    jpeg_quality: tuple[int, int] = Field((20, 95), description="inclusive quality range")

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        low, high = self.padding
        if not 0 <= low <= high:
            raise ValueError(f"padding must be 0 <= min <= max, got {self.padding}")
        low, high = self.stretch_range
        if not 0 < low <= high:
            raise ValueError(f"stretch_range must be 0 < min <= max, got {self.stretch_range}")
        for name in ("pen_height", "thin_height"):
            low, high = getattr(self, name)
            if not 8 <= low <= high:
                raise ValueError(f"{name} must be 8 <= min <= max, got {(low, high)}")
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 100:
            raise ValueError(f"jpeg_quality must be 1 <= min <= max <= 100, got {self.jpeg_quality}")
        return self


PRINTED = AugmentConfig()
# CROHME-like scans of pen strokes: still clean ink on white, but already handwritten: less camera distortion.
# The writer steps (slant, width, wobble) stand in for other writers: the 8.8k CROHME expressions are
# memorised otherwise (stage 5 read 99% of 300 train crops and 17% of val2013).
HANDWRITTEN = AugmentConfig(
    untouched=0.1, compose_on_paper=0.7, stroke=0.5, slant=0.5, max_slant=0.3, stretch=0.5,
    stretch_range=(0.7, 1.4), elastic=0.6, max_elastic=0.04, skew=0.35, max_degrees=4.0, perspective=0.15,
    max_perspective=0.03, highlighter=0.05, shadow=0.1, blur=0.2, max_blur_sigma=1.0, resolution=0.3,
    min_scale=0.5, noise=0.5, max_noise_sigma=6.0, low_light=0.1, jpeg=0.4, jpeg_quality=(35, 95),
)
# Typeset formulas passed off as handwriting: pen strokes drawn along the glyphs' centre lines, then another
# writer's slant, width and wobble. Gives the handwriting sources corpus-sized variety of content.
# Thin lines have little ink to lose: pencil and dim light are rarer than for real handwriting.
PEN = HANDWRITTEN.model_copy(update={"untouched": 0.0, "compose_on_paper": 0.9, "pen": 1.0, "stroke": 0.3,
                                     "ink_pencil": 0.1, "low_light": 0.05})
# Real phone photos (HME100K): already textured and lit; only re-photograph them, gently.
PHOTO = AugmentConfig(
    untouched=0.2, compose_on_paper=0.0, stroke=0.0, slant=0.3, max_slant=0.15, stretch=0.3,
    stretch_range=(0.85, 1.2), padding=(0.0, 0.12), skew=0.3, max_degrees=3.0,
    perspective=0.1, max_perspective=0.02, highlighter=0.0, lighting=0.3, shadow=0.05, blur=0.15,
    max_blur_sigma=0.8, resolution=0.2, min_scale=0.6, noise=0.3, max_noise_sigma=4.0, low_light=0.05,
    jpeg=0.3, jpeg_quality=(50, 95),
)
# A tablet's ink, CROHME's look: strokes one or two pixels wide at the model's height, on white or paper, seldom
# blurred. The handwriting presets thicken ink (at 64 px, the share of ink pixels with ink all around them:
# CROHME 2013 median 0.002; CROHME train through HANDWRITTEN 0.14, glyph-composed crops 0.37), and the model
# read thin ink worse than the same ink thickened (the second look of `DecodeConfig.thicken_below`).
TABLET = HANDWRITTEN.model_copy(update={
    "untouched": 0.0, "compose_on_paper": 1.0, "thin": 1.0, "stroke": 0.0, "ruled": 0.2, "ink_pencil": 0.05,
    "lighting": 0.3, "shadow": 0.05, "highlighter": 0.0, "blur": 0.1, "max_blur_sigma": 0.7, "resolution": 0.1,
    "min_scale": 0.7, "noise": 0.3, "max_noise_sigma": 4.0, "low_light": 0.05, "jpeg": 0.2,
    "jpeg_quality": (60, 95),
})
PRESETS: dict[str, AugmentConfig] = {
    "printed": PRINTED, "handwritten": HANDWRITTEN, "pen": PEN, "photo": PHOTO, "tablet": TABLET,
}


@dataclass(frozen=True)
class Augmented:
    """An augmented crop and the dataset-spec conditions it shows (("clean",) when none)."""

    image: np.ndarray
    conditions: tuple[str, ...]


# --- ink -------------------------------------------------------------------------------------------------


def ink_alpha(gray: np.ndarray) -> np.ndarray:
    """Ink coverage (float32 0..1) of dark ink on a light ground, stretched so the darkest ink is 1."""
    image = gray.astype(np.float32)
    darkest = float(image.min())
    if darkest >= 250.0:  # blank
        return np.zeros_like(image)
    return np.clip((255.0 - image) / (255.0 - darkest), 0.0, 1.0)


def stroke_width(alpha: np.ndarray, pixels: int) -> np.ndarray:
    """Thicken (pixels > 0) or thin (pixels < 0) strokes with an elliptical kernel of that radius."""
    if pixels == 0:
        return alpha
    size = 2 * abs(pixels) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    changed = cv2.dilate(alpha, kernel) if pixels > 0 else cv2.erode(alpha, kernel)
    # Thinning must not erase hairlines (a fraction bar, a minus sign): keep a trace of the original.
    return changed if pixels > 0 else np.maximum(changed, 0.6 * alpha)


def pencil_grain(alpha: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Graphite leaves gaps: modulate coverage by fine multiplicative grain."""
    grain = 1.0 - strength * rng.random(alpha.shape, dtype=np.float32)
    return alpha * grain


def skeleton(mask: np.ndarray) -> np.ndarray:
    """One-pixel centre lines of a boolean mask (Zhang-Suen thinning, both sub-passes vectorised)."""
    image = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for second_pass in (False, True):
            north, east, south, west = image[:-2, 1:-1], image[1:-1, 2:], image[2:, 1:-1], image[1:-1, :-2]
            ring = [north, image[:-2, 2:], east, image[2:, 2:], south, image[2:, :-2], west, image[:-2, :-2]]
            neighbours = sum(p.astype(np.int8) for p in ring)
            transitions = sum(((a == 0) & (b == 1)).astype(np.int8) for a, b in zip(ring, ring[1:] + ring[:1]))
            if second_pass:
                corner = (north * east * west == 0) & (north * south * west == 0)
            else:
                corner = (north * east * south == 0) & (east * south * west == 0)
            removable = (image[1:-1, 1:-1] == 1) & (neighbours >= 2) & (neighbours <= 6) & (transitions == 1) & corner
            if removable.any():
                image[1:-1, 1:-1][removable] = 0
                changed = True
        if not changed:
            return image[1:-1, 1:-1].astype(bool)


def pen_strokes(alpha: np.ndarray, height: int, pen_px: int = 3) -> np.ndarray:
    """Ink redrawn as a pen would: scaled to `height`, thinned to centre lines, drawn `pen_px` (3 or 1) wide.

    Turns the stroke contrast and serifs of a font into the even line of a ballpoint; with `pen_px` 1 at about
    the model's height, any ink into a tablet's hairline (CROHME's look). The writer steps after it (slant,
    width, wobble) then vary the glyph shapes.
    """
    if pen_px not in (1, 3):
        raise ValueError(f"pen_px must be 1 or 3, got {pen_px}")
    scale = height / alpha.shape[0]
    size = (max(2, round(alpha.shape[1] * scale)), height)
    lines = skeleton(cv2.resize(alpha, size, interpolation=cv2.INTER_CUBIC) > 0.5).astype(np.float32)
    if pen_px == 1:  # softened edges, the line's centre kept at full ink (1 / 0.79, the kernel's middle weight)
        return np.clip(cv2.GaussianBlur(lines, (3, 3), 0.5) * 1.27, 0.0, 1.0)
    pen = cv2.dilate(lines, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    return np.clip(cv2.GaussianBlur(pen, (3, 3), 0.8) * 1.5, 0.0, 1.0)


def slant(image: np.ndarray, shear: float, replicate: bool) -> np.ndarray:
    """Shear sideways by `shear` px per px of height about the middle row; the canvas widens to keep the ink."""
    height, width = image.shape
    extra = int(np.ceil(abs(shear) * height))
    matrix = np.float32([[1, shear, extra / 2 - shear * (height - 1) / 2], [0, 1, 0]])
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    return cv2.warpAffine(image, matrix, (width + extra, height), flags=cv2.INTER_LINEAR, borderMode=border)


def stretch(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale the width by `factor` (narrow or wide handwriting), the height unchanged."""
    height, width = image.shape
    return cv2.resize(image, (max(2, round(width * factor)), height), interpolation=cv2.INTER_LINEAR)


def elastic(image: np.ndarray, rng: np.random.Generator, amplitude: float, replicate: bool,
            cell: float | None = None) -> np.ndarray:
    """Move every pixel by a smooth random field of about `amplitude` px, varying over `cell` px (default half
    the height): strokes bend and symbols shift a little against each other, as another hand would write them."""
    height, width = image.shape
    cell = max(4.0, cell if cell is not None else height / 2)
    rows, cols = int(height / cell) + 2, int(width / cell) + 2
    dx = _full_size(rng.standard_normal((rows, cols), dtype=np.float32) * amplitude, height, width)
    dy = _full_size(rng.standard_normal((rows, cols), dtype=np.float32) * amplitude, height, width)
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    return cv2.remap(image, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=border)


def pad(image: np.ndarray, top: int, bottom: int, left: int, right: int, replicate: bool) -> np.ndarray:
    """Margins around the crop: zero ink for a mask, the edge pixels for a photo."""
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    return cv2.copyMakeBorder(image, top, bottom, left, right, border, value=0)


# --- paper -----------------------------------------------------------------------------------------------


def paper_sheet(height: int, width: int, rng: np.random.Generator, ruled: bool, pitch: int) -> np.ndarray:
    """A grey float32 sheet: white to greyish (tinted, recycled) with soft blotches and, when `ruled`,
    ruled or grid lines every `pitch` px. Drawn in grey directly: the colour sheets of `susik.data.paper`
    cost several times more than a whole crop's budget."""
    level = rng.uniform(200.0, 250.0)
    coarse = rng.standard_normal((3, max(2, width // max(height, 1) * 3)), dtype=np.float32)
    sheet = level + rng.uniform(1.0, 6.0) * _full_size(coarse, height, width)
    if ruled:
        line = level - rng.uniform(20.0, 70.0)
        origin = int(rng.integers(pitch))
        for y in range(origin, height, pitch):
            cv2.line(sheet, (0, y), (width - 1, y), line, 1, cv2.LINE_AA)
        if rng.random() < 0.4:  # squared paper
            for x in range(int(rng.integers(pitch)), width, pitch):
                cv2.line(sheet, (x, 0), (x, height - 1), line, 1, cv2.LINE_AA)
    return sheet


def compose(alpha: np.ndarray, sheet: np.ndarray, ink_level: float) -> np.ndarray:
    """Ink of grey `ink_level` laid over the sheet with the given coverage."""
    return sheet + alpha * (ink_level - sheet)


def highlighter(image: np.ndarray, rng: np.random.Generator, darkness: float) -> np.ndarray:
    """A translucent marker band across part of the formula (multiplies, as a dye does)."""
    height, width = image.shape
    thickness = height * rng.uniform(0.35, 0.9)
    centre = rng.uniform(0.3, 0.7) * height
    x0, x1 = sorted(rng.uniform(0, width, 2))
    x1 = max(x1, x0 + width / 4)
    tilt = rng.uniform(-0.04, 0.04) * (x1 - x0)
    top, bottom = centre - thickness / 2, centre + thickness / 2
    corners = np.array([[x0, top - tilt], [x1, top + tilt], [x1, bottom + tilt], [x0, bottom - tilt]])
    band = np.zeros((height, width), np.float32)
    cv2.fillConvexPoly(band, np.round(corners * 16).astype(np.int32), 1.0, cv2.LINE_AA, shift=4)
    return image * (1.0 - darkness * band)


# --- camera ----------------------------------------------------------------------------------------------


def homography(height: int, width: int, degrees: float, corner_shift: np.ndarray) -> np.ndarray:
    """Rotation about the centre followed by moving the four corners by `corner_shift` (4x2 px)."""
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    centre = np.float32([width / 2, height / 2])
    angle = np.deg2rad(degrees)
    rotation = np.float32([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (corners - centre) @ rotation.T + centre + corner_shift.astype(np.float32)
    return cv2.getPerspectiveTransform(corners, moved.astype(np.float32))


def warp(image: np.ndarray, matrix: np.ndarray, replicate: bool) -> np.ndarray:
    """Apply a homography; uncovered pixels get no ink (mask) or the nearest edge (photo)."""
    height, width = image.shape
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    return cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=border)


def _coarse_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (0..1) coordinates of a coarse grid; smooth light fields are computed there and resized."""
    rows, cols = min(height, 24), min(width, 96)
    ys = np.linspace(0.0, 1.0, rows, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, cols, dtype=np.float32)[None, :]
    return ys, xs


def _full_size(field: np.ndarray, height: int, width: int) -> np.ndarray:
    return cv2.resize(field.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def lighting_gradient(image: np.ndarray, angle: float, strength: float) -> np.ndarray:
    """Light falling off linearly along `angle` (radians) by up to `strength` (0..1)."""
    height, width = image.shape
    ys, xs = _coarse_grid(height, width)
    ramp = xs * np.cos(angle) + ys * np.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    return image * _full_size(1.0 - strength * ramp, height, width)


def shadow(image: np.ndarray, rng: np.random.Generator, darkness: float) -> np.ndarray:
    """A soft-edged shadow (a hand or a phone) over one side of a random line through the crop."""
    height, width = image.shape
    angle = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(-0.3, 0.3)
    softness = rng.uniform(0.03, 0.2)
    ys, xs = _coarse_grid(height, width)
    side = (xs - 0.5) * np.cos(angle) + (ys - 0.5) * np.sin(angle) - offset
    mask = 0.5 + 0.5 * np.tanh(side / softness)
    return image * _full_size(1.0 - darkness * mask, height, width)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def motion_blur(image: np.ndarray, length: int, degrees: float) -> np.ndarray:
    """A straight camera shake of `length` px along `degrees`."""
    size = max(3, length | 1)
    kernel = np.zeros((size, size), np.float32)
    centre = size // 2
    dx, dy = np.cos(np.deg2rad(degrees)) * centre, np.sin(np.deg2rad(degrees)) * centre
    start, end = (round(centre - dx), round(centre - dy)), (round(centre + dx), round(centre + dy))
    cv2.line(kernel, start, end, 1.0, 1)
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


def resolution(image: np.ndarray, scale: float) -> np.ndarray:
    """Lose detail as a far or cheap camera does: downscale by `scale`, then back to the same size."""
    height, width = image.shape
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def sensor_noise(image: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Grey noise drawn at half resolution: a phone's demosaicing and denoising leave it slightly blotchy
    (and a quarter of the draws keeps this step cheap)."""
    height, width = image.shape
    half = rng.standard_normal(((height + 1) // 2, (width + 1) // 2), dtype=np.float32)
    return image + sigma * _full_size(half, height, width)


def exposure(image: np.ndarray, gain: float, lift: float) -> np.ndarray:
    """Scale contrast by `gain` and add `lift`: gain < 1 with a small lift is a dim, flat photo."""
    return image * gain + lift


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through JPEG at `quality` (uint8 in, uint8 out)."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)


# --- the chain -------------------------------------------------------------------------------------------


def augment_crop(gray: np.ndarray, rng: np.random.Generator, config: AugmentConfig = PRINTED) -> Augmented:
    """One random photo-like version of a grey crop; deterministic for a given generator state."""
    if gray.ndim != 2 or gray.dtype != np.uint8 or min(gray.shape) < 2:
        raise ValueError(f"expected a grey uint8 HxW crop of at least 2x2, got {gray.dtype} {gray.shape}")
    if rng.random() < config.untouched:
        return Augmented(gray.copy(), ("clean",))
    conditions: list[str] = []
    on_paper = rng.random() < config.compose_on_paper
    image = ink_alpha(gray) if on_paper else gray.astype(np.float32)
    height = image.shape[0]

    if on_paper and config.pen and rng.random() < config.pen:
        image = pen_strokes(image, int(rng.integers(config.pen_height[0], config.pen_height[1] + 1)))
    elif on_paper and config.thin and rng.random() < config.thin:
        image = pen_strokes(image, int(rng.integers(config.thin_height[0], config.thin_height[1] + 1)), pen_px=1)
    if on_paper and rng.random() < config.stroke and config.max_stroke_px > 0:
        radius = int(rng.integers(1, config.max_stroke_px + 1))
        image = stroke_width(image, radius if rng.random() < 0.5 else -radius)
    # Writer steps draw from the generator only when enabled, so the printed preset's stream is unchanged.
    if config.stretch and rng.random() < config.stretch:
        image = stretch(image, rng.uniform(*config.stretch_range))
    if config.slant and rng.random() < config.slant:
        image = slant(image, rng.uniform(-config.max_slant, config.max_slant), replicate=not on_paper)
    if config.elastic and rng.random() < config.elastic:
        amplitude = rng.uniform(0.3, 1.0) * config.max_elastic * image.shape[0]
        image = elastic(image, rng, amplitude, replicate=not on_paper)
    margins = (rng.uniform(*config.padding, size=4) * height).astype(int)
    image = pad(image, *margins, replicate=not on_paper)

    height, width = image.shape
    degrees = rng.uniform(-config.max_degrees, config.max_degrees) if rng.random() < config.skew else 0.0
    shift = np.zeros((4, 2))
    if rng.random() < config.perspective:
        # Corners move by a share of the side, but a long formula's sides are capped at 4x its height
        # (a real phone tilt bends a long line no more than a short one, relative to the glyphs).
        sides = np.minimum([width, height], 4 * height)
        shift = rng.uniform(-1, 1, (4, 2)) * config.max_perspective * sides
        conditions.append("perspective")
    if abs(degrees) >= 1.0:
        conditions.append("skew")
    if degrees or shift.any():
        image = warp(image, homography(height, width, degrees, shift), replicate=not on_paper)

    if on_paper:
        ink_name = "black"
        draw = rng.random()
        if draw < config.ink_pencil:
            ink_name = "pencil"
            image = pencil_grain(image, rng, strength=rng.uniform(0.2, 0.6))
        elif draw < config.ink_pencil + config.ink_blue:
            ink_name = "blue"
        pitch = max(8, int(height * rng.uniform(0.5, 1.2)))
        sheet = paper_sheet(height, width, rng, ruled=rng.random() < config.ruled, pitch=pitch)
        image = compose(image, sheet, ink_level=rng.uniform(*INK_LEVELS[ink_name]))

    if rng.random() < config.highlighter:
        image = highlighter(image, rng, darkness=rng.uniform(0.08, 0.3))
        conditions.append("highlighter")
    if rng.random() < config.lighting:
        image = lighting_gradient(image, angle=rng.uniform(0, 2 * np.pi), strength=rng.uniform(0.05, 0.35))
    if rng.random() < config.shadow:
        image = shadow(image, rng, darkness=rng.uniform(0.25, 0.6))
        conditions.append("shadow")
    if rng.random() < config.blur:
        if rng.random() < config.motion_share:
            image = motion_blur(image, length=int(rng.integers(3, 8)), degrees=rng.uniform(0, 180))
        else:
            image = gaussian_blur(image, sigma=rng.uniform(0.5, config.max_blur_sigma))
        conditions.append("blur")
    if rng.random() < config.resolution:
        lowest = max(config.min_scale, config.min_height_px / height)
        if lowest < 1.0:
            image = resolution(image, scale=rng.uniform(lowest, 1.0))
    if rng.random() < config.low_light:
        image = exposure(image, gain=rng.uniform(0.5, 0.8), lift=rng.uniform(0, 20))
        conditions.append("low_light")
    if rng.random() < config.noise:
        image = sensor_noise(image, rng, sigma=rng.uniform(1.0, config.max_noise_sigma))

    out = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < config.jpeg:
        quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
        out = jpeg(out, quality)
        if quality <= STRONG_JPEG_QUALITY:
            conditions.append("jpeg")
    return Augmented(out, tuple(conditions) or ("clean",))
