"""Paper backgrounds for synthetic pages (plain, ruled, grid, tinted, recycled) and the desk around a page.

Everything is drawn from a seeded `numpy.random.Generator`; textures are built at low resolution and
resized, so a full page costs a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

PaperKind = Literal["plain", "ruled", "grid", "tinted", "recycled"]
PAPER_KINDS: tuple[PaperKind, ...] = ("plain", "ruled", "grid", "tinted", "recycled")

BGR = tuple[int, int, int]

# Base colours (BGR). Plain paper is a slightly warm or cool white; tints are the pale colours of
# coloured worksheets; recycled paper is greyish beige.
_WHITES: tuple[BGR, ...] = ((246, 248, 250), (240, 244, 247), (250, 250, 248), (236, 241, 245))
_TINTS: tuple[BGR, ...] = (
    (214, 240, 250),
    (230, 246, 226),
    (246, 232, 226),
    (232, 226, 246),
    (205, 235, 245),
)
_RECYCLED: tuple[BGR, ...] = ((200, 212, 220), (206, 214, 218), (190, 205, 214))
_RULE_COLOURS: tuple[BGR, ...] = ((222, 196, 160), (210, 185, 150), (200, 200, 200), (190, 215, 190))
_MARGIN_RED: BGR = (150, 150, 235)
_DESKS: tuple[BGR, ...] = (
    (60, 90, 130),
    (40, 60, 90),
    (120, 120, 120),
    (35, 35, 35),
    (200, 200, 205),
    (80, 110, 70),
)


@dataclass(frozen=True)
class PaperStyle:
    """How a sheet looks: `pitch` is the ruled-line or grid spacing in px, `origin` the first line's y."""

    kind: PaperKind
    tint: BGR
    pitch: int = 40
    origin: int = 0
    line_colour: BGR = (222, 196, 160)
    margin_line: bool = False
    texture: float = 1.0  # scales fibre/blotch strength; 0 gives a flat sheet


def random_style(
    rng: np.random.Generator, pitch: int, origin: int = 0, kinds: tuple[PaperKind, ...] = PAPER_KINDS
) -> PaperStyle:
    """A random sheet style; `pitch`/`origin` let ruled lines follow the page's text rows."""
    kind: PaperKind = kinds[int(rng.integers(len(kinds)))]
    palette = {"tinted": _TINTS, "recycled": _RECYCLED}.get(kind, _WHITES)
    tint = palette[int(rng.integers(len(palette)))]
    return PaperStyle(
        kind=kind,
        tint=tint,
        pitch=pitch if kind == "ruled" else max(12, int(round(pitch * rng.uniform(0.45, 0.75)))),
        origin=origin,
        line_colour=_RULE_COLOURS[int(rng.integers(len(_RULE_COLOURS)))],
        margin_line=kind == "ruled" and bool(rng.random() < 0.5),
        texture=float(rng.uniform(0.5, 1.5)) * (1.8 if kind == "recycled" else 1.0),
    )


def smooth_noise(height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean unit-ish float32 noise with about `cells` blobs along the long side."""
    scale = max(height, width) / max(cells, 1)
    small = rng.standard_normal((max(2, round(height / scale)), max(2, round(width / scale)))).astype(
        np.float32
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _tinted(field: np.ndarray, tint: BGR) -> np.ndarray:
    """Tint colour modulated by a float field given in grey levels (positive = brighter)."""
    channels = [cv2.convertScaleAbs(field, alpha=c / 255.0, beta=float(c)) for c in tint]
    return cv2.merge(channels)


def paper(height: int, width: int, style: PaperStyle, rng: np.random.Generator) -> np.ndarray:
    """A BGR uint8 sheet of the given size and style."""
    strength = style.texture
    # The blotchy texture is smooth, so it is built at quarter resolution; fibres add the fine detail.
    rows, cols = max(2, height // 4), max(2, width // 4)
    field = 3.0 * strength * smooth_noise(rows, cols, 6, rng) + 1.5 * strength * smooth_noise(
        rows, cols, 60, rng
    )
    sheet = cv2.resize(_tinted(field, style.tint), (width, height), interpolation=cv2.INTER_LINEAR)
    _draw_fibres(sheet, rng, count=int(150 * strength * height * width / 2e6), tint=style.tint)
    if style.kind == "recycled":
        _draw_flecks(sheet, rng, count=int(300 * strength * height * width / 2e6))
    if style.kind == "ruled":
        _draw_rules(sheet, style)
    elif style.kind == "grid":
        _draw_grid(sheet, style)
    return sheet


def _draw_fibres(sheet: np.ndarray, rng: np.random.Generator, count: int, tint: BGR) -> None:
    """Short wandering fibres, a little darker or lighter than the sheet, drawn in a few shade groups."""
    if count <= 0:
        return
    height, width = sheet.shape[:2]
    starts = rng.uniform((0, 0), (width, height), (count, 1, 2))
    steps = rng.normal(0, 1, (count, 4, 2)) * rng.uniform(2, 6, (count, 1, 1))
    curves = np.round(np.cumsum(np.concatenate([starts, steps], axis=1), axis=1)).astype(np.int32)
    groups = rng.integers(0, 4, count)
    for group, shift in enumerate((-14, -8, -4, 6)):
        colour = tuple(int(np.clip(c + shift, 0, 255)) for c in tint)
        cv2.polylines(sheet, list(curves[groups == group]), False, colour, 1, cv2.LINE_AA)


def _draw_flecks(sheet: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Dark specks of recycled paper: single pixels and a few 2x2 dots."""
    height, width = sheet.shape[:2]
    ys, xs = rng.integers(0, height - 1, count), rng.integers(0, width - 1, count)
    greys = rng.integers(90, 190, count).astype(np.uint8)
    sheet[ys, xs] = greys[:, None]
    big = rng.random(count) < 0.3
    sheet[ys[big] + 1, xs[big]] = greys[big, None]
    sheet[ys[big], xs[big] + 1] = greys[big, None]
    sheet[ys[big] + 1, xs[big] + 1] = greys[big, None]


def _draw_rules(sheet: np.ndarray, style: PaperStyle) -> None:
    height, width = sheet.shape[:2]
    y = style.origin % style.pitch
    while y < height:
        cv2.line(sheet, (0, y), (width - 1, y), style.line_colour, 1, cv2.LINE_AA)
        y += style.pitch
    if style.margin_line:
        x = int(width * 0.08)
        cv2.line(sheet, (x, 0), (x, height - 1), _MARGIN_RED, 1, cv2.LINE_AA)


def _draw_grid(sheet: np.ndarray, style: PaperStyle) -> None:
    height, width = sheet.shape[:2]
    faint = tuple(int(round(c + (255 - c) * 0.45)) for c in style.line_colour)
    for index, x in enumerate(range(style.origin % style.pitch, width, style.pitch)):
        cv2.line(sheet, (x, 0), (x, height - 1), style.line_colour if index % 5 == 0 else faint, 1)
    for index, y in enumerate(range(style.origin % style.pitch, height, style.pitch)):
        cv2.line(sheet, (0, y), (width - 1, y), style.line_colour if index % 5 == 0 else faint, 1)


def desk(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The surface around a photographed page: a desk colour with soft blotches and grain streaks."""
    base = _DESKS[int(rng.integers(len(_DESKS)))]
    rows, cols = max(2, height // 8), max(2, width // 8)
    field = 10.0 * smooth_noise(rows, cols, 4, rng)
    # Grain: noise stretched along one axis, like wood or a table's texture.
    grain = rng.standard_normal((rows, 8)).astype(np.float32)
    field += 4.0 * cv2.resize(grain, (cols, rows), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(_tinted(field, base), (width, height), interpolation=cv2.INTER_LINEAR)
