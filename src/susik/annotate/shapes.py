"""A region drawn as a free-form polygon, and the quad derived from it.

An annotator may outline a formula on curved or crumpled paper with any number of points. The quad every
consumer needs (rectify, detector targets, agreement) is then derived, never drawn twice: the minimum-area
rectangle around the polygon, ordered clockwise from the formula's own top-left on the page's orientation
(the detector's convention, `order_quad`). The polygon is stored clockwise, starting at its vertex nearest
that corner, as the detector writes its polygons.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from shapely.geometry import Polygon

from susik.data.geometry import as_points, polygon_area, signed_area
from susik.data.manifest import Point
from susik.runtime.orient import order_quad

MIN_AREA = 1.0  # square pixels: less is a slip of the mouse, not a formula


class ShapeError(ValueError):
    """A polygon that cannot outline a formula (too few points, no area, or crossing itself)."""


def check_polygon(points: Sequence[Sequence[float]]) -> None:
    """Raise `ShapeError` unless the points make a simple polygon of some area."""
    if len(points) < 3:
        raise ShapeError(f"a polygon needs at least 3 points, got {len(points)}")
    if polygon_area(as_points(points)) < MIN_AREA:
        raise ShapeError("the polygon has no area (its points lie on a line)")
    if not Polygon(points).is_valid:
        raise ShapeError("the polygon crosses itself; drag the vertices apart")


def _rounded(points: np.ndarray) -> tuple[Point, ...]:
    return tuple((round(float(x), 2), round(float(y), 2)) for x, y in points)


def quad_from_polygon(points: Sequence[Sequence[float]], orientation: int) -> tuple[Point, ...]:
    """The minimum-area rectangle around the points, clockwise from the formula's top-left."""
    rect = cv2.minAreaRect(as_points(points).astype(np.float32))
    return _rounded(order_quad(cv2.boxPoints(rect).astype(np.float64), orientation))


def ring_from(points: Sequence[Sequence[float]], start: Sequence[float]) -> tuple[Point, ...]:
    """The polygon clockwise on screen (y down), starting at its vertex nearest `start`."""
    ring = as_points(points)
    if signed_area(ring) < 0:
        ring = ring[::-1]
    first = int(np.argmin(np.linalg.norm(ring - np.asarray(start, dtype=np.float64), axis=1)))
    return _rounded(np.roll(ring, -first, axis=0))


def outline(points: Sequence[Sequence[float]], orientation: int) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    """(quad, polygon) for a drawn polygon: checked, the quad derived, the polygon in its stored order."""
    check_polygon(points)
    quad = quad_from_polygon(points, orientation)
    return quad, ring_from(points, quad[0])
