"""A region drawn as a free-form polygon, and the quad derived from it.

An annotator may outline a formula on curved or crumpled paper with any number of points. The quad every
consumer needs (rectify, detector targets, agreement) is then derived, never drawn twice: the minimum-area
rectangle around the polygon (as the detector derives its quads), ordered clockwise from the formula's own
top-left on the page's orientation (`order_quad`). One exception: when the upright bounding box is at most
`UPRIGHT_SLACK` larger, the box is taken. Hand-drawn outlines are irregular (a point above a fraction bar, a
bulge for a superscript), and the strict minimum would then tilt a level formula's crop by several degrees;
a formula that is really tilted loses far more area to the upright box and keeps its tilted rectangle.
The polygon is stored clockwise, starting at its vertex nearest the quad's first corner, as the detector
writes its polygons.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from shapely.geometry import Polygon

from susik.data.geometry import as_points, bounding_box, box_corners, signed_area
from susik.data.manifest import Point
from susik.runtime.orient import order_quad

MIN_WIDTH = 1.0  # pixels across the thinnest way: less is a slip of the mouse, not a formula
# A 100 x 30 px formula tilted 1.5 degrees fits its upright box with 9% more area; at 2 degrees, 13%.
UPRIGHT_SLACK = 1.10


class ShapeError(ValueError):
    """A polygon that cannot outline a formula (too few points, no area, or crossing itself)."""


def check_polygon(points: Sequence[Sequence[float]]) -> None:
    """Raise `ShapeError` unless the points make a simple polygon of some area."""
    if len(points) < 3:
        raise ShapeError(f"a polygon needs at least 3 points, got {len(points)}")
    _, size, _ = cv2.minAreaRect(as_points(points).astype(np.float32))
    if min(size) < MIN_WIDTH:
        raise ShapeError("the polygon has no area (its points lie on a line)")
    if not Polygon(points).is_valid:
        raise ShapeError("the polygon crosses itself; drag the vertices apart")


def _rounded(points: np.ndarray) -> tuple[Point, ...]:
    return tuple((round(float(x), 2), round(float(y), 2)) for x, y in points)


def quad_from_polygon(points: Sequence[Sequence[float]], orientation: int) -> tuple[Point, ...]:
    """The minimum-area rectangle around the points (or their upright box, when hardly larger), clockwise
    from the formula's top-left."""
    pts = as_points(points)
    rect = cv2.minAreaRect(pts.astype(np.float32))
    x0, y0, x1, y1 = bounding_box(pts)
    if (x1 - x0) * (y1 - y0) <= UPRIGHT_SLACK * rect[1][0] * rect[1][1]:
        corners = box_corners(x0, y0, x1, y1)
    else:
        corners = cv2.boxPoints(rect).astype(np.float64)
    return _rounded(order_quad(corners, orientation))


def ring_from(points: Sequence[Sequence[float]], start: Sequence[float]) -> tuple[Point, ...]:
    """The polygon clockwise on screen (y down), starting at its vertex nearest `start`."""
    ring = as_points(points)
    if signed_area(ring) < 0:
        ring = ring[::-1]
    first = int(np.argmin(np.linalg.norm(ring - np.asarray(start, dtype=np.float64), axis=1)))
    return _rounded(np.roll(ring, -first, axis=0))


def outline(
    points: Sequence[Sequence[float]], orientation: int
) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    """(quad, polygon) for a drawn polygon: checked, the quad derived, the polygon in its stored order."""
    check_polygon(points)
    quad = quad_from_polygon(points, orientation)
    return quad, ring_from(points, quad[0])
