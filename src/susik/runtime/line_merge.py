"""Join pieces of one formula that the detector found as separate blobs on the same line.

On real photos the kernel map of a handwritten formula often breaks at wide spaces (around `=`, between terms
of a sum) and the pieces come out as separate regions, each read on its own: on the 346 HME100K photos of one
formula line each, the bundled detector returned 1.8 regions a photo and exactly one covering region on 54%.
Two pieces are joined when, on the upright page and measured along the larger piece's own direction, they
share a line (their extents across it overlap by at least `min_overlap` of the shorter one) and the gap
between them along it is at most `max_gap` times the taller one's height. Formulas written apart on one line
keep a word or more between them, wider than that.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from susik.runtime.orient import to_upright_points


@dataclass(frozen=True)
class Piece:
    """One detected region before ordering: corners and outline in original pixels, the blob's mean
    handwritten probability and kernel score, and its kernel area in map pixels (the weight when joined)."""

    quad: np.ndarray
    polygon: np.ndarray
    handwritten: float
    score: float
    area: float


def _line_angle(upright: np.ndarray) -> float:
    """Radians of a rectangle's side nearest the upright page's horizontal: the direction its line runs in."""
    sides = np.diff(np.vstack([upright, upright[:1]]), axis=0)[:2]
    dx, dy = max(sides, key=lambda side: abs(side[0]) - abs(side[1]))
    angle = float(np.arctan2(dy, dx))
    return angle - np.pi * round(angle / np.pi)  # a side's direction is defined up to a half turn


def _box_along(upright: np.ndarray, angle: float) -> np.ndarray:
    """(x0, y0, x1, y1) of points in a frame turned by `angle`, so a line at that angle lies level."""
    cos, sin = np.cos(angle), np.sin(angle)
    level = upright @ np.array([[cos, -sin], [sin, cos]])
    return np.concatenate([level.min(axis=0), level.max(axis=0)])


def same_line(a: np.ndarray, b: np.ndarray, max_gap: float, min_overlap: float) -> bool:
    """Whether two level boxes (x0, y0, x1, y1) are pieces of one line under the rule of the module doc."""
    height_a, height_b = a[3] - a[1], b[3] - b[1]
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    gap = max(a[0], b[0]) - min(a[2], b[2])
    return bool(overlap >= min_overlap * min(height_a, height_b) and gap <= max_gap * max(height_a, height_b))


@dataclass(frozen=True)
class _Placed:
    """A piece with its corners on the upright page and their bounding box (x0, y0, x1, y1), computed once."""

    piece: Piece
    upright: np.ndarray
    box: tuple[float, float, float, float]


def _place(piece: Piece, orientation: int, image_size: tuple[int, int]) -> _Placed:
    upright = to_upright_points(piece.quad, orientation, image_size)
    low, high = upright.min(axis=0), upright.max(axis=0)
    return _Placed(piece, upright, (float(low[0]), float(low[1]), float(high[0]), float(high[1])))


def _joinable(a: _Placed, b: _Placed, max_gap: float, min_overlap: float) -> bool:
    """The rule judged along the larger piece's own line: on a tilted or perspective page an upright bounding
    box of a slanted line spans the lines above and below it. Pieces whose upright boxes lie further apart than
    `max_gap` times the larger box diagonal cannot qualify (a line's height is at most its diagonal) and are
    skipped before any geometry: a dense page has thousands of pairs."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a.box, b.box
    apart = max(bx0 - ax1, ax0 - bx1, by0 - ay1, ay0 - by1)
    reach = max_gap * max(float(np.hypot(ax1 - ax0, ay1 - ay0)), float(np.hypot(bx1 - bx0, by1 - by0)))
    if apart > reach:
        return False
    angle = _line_angle(a.upright if a.piece.area >= b.piece.area else b.upright)
    return same_line(_box_along(a.upright, angle), _box_along(b.upright, angle), max_gap, min_overlap)


def join(a: Piece, b: Piece) -> Piece:
    """One piece covering both: the min-area rectangle and convex hull of their points, area-weighted kind and
    score."""
    points = np.concatenate([a.quad, b.quad]).astype(np.float32)
    quad = cv2.boxPoints(cv2.minAreaRect(points)).astype(np.float64)
    outline = np.concatenate([a.polygon, b.polygon]).astype(np.float32)
    polygon = cv2.convexHull(outline).reshape(-1, 2).astype(np.float64)
    area = a.area + b.area
    return Piece(quad, polygon, (a.handwritten * a.area + b.handwritten * b.area) / area,
                 (a.score * a.area + b.score * b.area) / area, area)


def merge_line_pieces(pieces: list[Piece], orientation: int, image_size: tuple[int, int], max_gap: float,
                      min_overlap: float = 0.5) -> list[Piece]:
    """Join pieces of the same line until no two qualify; `max_gap` <= 0 returns the pieces unchanged."""
    if max_gap <= 0:
        return list(pieces)
    placed = [_place(piece, orientation, image_size) for piece in pieces]
    # Grow each piece by every later one that qualifies (rescanning after each join, as it grew), then pass
    # again from the start until a pass joins nothing: a grown piece may now reach an earlier one.
    joined = True
    while joined:
        joined = False
        i = 0
        while i < len(placed):
            j = i + 1
            while j < len(placed):
                if _joinable(placed[i], placed[j], max_gap, min_overlap):
                    placed[i] = _place(join(placed[i].piece, placed[j].piece), orientation, image_size)
                    del placed[j]
                    joined = True
                    j = i + 1
                else:
                    j += 1
            i += 1
    return [entry.piece for entry in placed]
