"""Join pieces of one formula that the detector found as separate blobs on the same line.

On real photos the kernel map of a handwritten formula often breaks at wide spaces (around `=`, between terms
of a sum) and the pieces come out as separate regions, each read on its own: on the 346 HME100K photos of one
formula line each, the bundled detector returned 1.8 regions a photo and exactly one covering region on 54%.
Two pieces are joined when, on the upright page and measured along the larger piece's own direction, they
share a line (their extents across it overlap by at least `min_overlap` of the shorter one) and the gap
between them along it is at most `max_gap` times the taller one's height. Formulas written apart on one line keep a word or more between them, wider than that.
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


def _joinable(a: Piece, b: Piece, orientation: int, image_size: tuple[int, int], max_gap: float,
              min_overlap: float) -> bool:
    """The rule judged along the larger piece's own line: on a tilted or perspective page an upright bounding
    box of a slanted line spans the lines above and below it."""
    upright_a = to_upright_points(a.quad, orientation, image_size)
    upright_b = to_upright_points(b.quad, orientation, image_size)
    angle = _line_angle(upright_a if a.area >= b.area else upright_b)
    return same_line(_box_along(upright_a, angle), _box_along(upright_b, angle), max_gap, min_overlap)


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
    merged = list(pieces)
    joined = True
    while joined:
        joined = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                if _joinable(merged[i], merged[j], orientation, image_size, max_gap, min_overlap):
                    merged[i] = join(merged[i], merged[j])
                    del merged[j]
                    joined = True
                    break
            if joined:
                break
    return merged
