"""Pure geometry on point arrays: ordering, transforms, areas, outlines.

Conventions: points are float arrays of shape (N, 2) holding (x, y) in pixels, y pointing down, with pixel
centres at integer coordinates (the OpenCV convention, so `cv2.warpAffine`/`warpPerspective` agree with
`apply_affine`/`apply_homography`). "Clockwise" means clockwise as seen on screen (y down).
"""

from __future__ import annotations

import numpy as np


def as_points(points: np.ndarray | list) -> np.ndarray:
    """Points as a float64 (N, 2) array; raises on any other shape."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"points must have shape (N, 2), got {array.shape}")
    return array


def order_clockwise(points: np.ndarray) -> np.ndarray:
    """Four points ordered clockwise (on screen) starting from the top-left one.

    For points of an unknown order, e.g. a detector's output. Do not apply it to a quad that has been
    carried through warps: such a quad already starts at the formula's own top-left, which after a page
    rotation is no longer the image's top-left.
    """
    quad = as_points(points)
    if len(quad) != 4:
        raise ValueError(f"a quad has 4 points, got {len(quad)}")
    centre = quad.mean(axis=0)
    # With y down, increasing atan2 angle runs clockwise on screen.
    angles = np.arctan2(quad[:, 1] - centre[1], quad[:, 0] - centre[0])
    ring = quad[np.argsort(angles, kind="stable")]
    start = int(np.argmin(ring[:, 0] + ring[:, 1]))
    return np.roll(ring, -start, axis=0)


def apply_homography(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map points through a 3x3 homography (same convention as `cv2.warpPerspective`'s matrix)."""
    pts = as_points(points)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (3, 3):
        raise ValueError(f"a homography is 3x3, got {matrix.shape}")
    homogeneous = np.hstack([pts, np.ones((len(pts), 1))]) @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map points through a 2x3 affine matrix (same convention as `cv2.warpAffine`'s matrix)."""
    pts = as_points(points)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3):
        raise ValueError(f"an affine matrix is 2x3, got {matrix.shape}")
    return pts @ matrix[:, :2].T + matrix[:, 2]


def signed_area(points: np.ndarray) -> float:
    """Shoelace area; positive when the polygon runs clockwise on screen (y down)."""
    pts = as_points(points)
    if len(pts) < 3:
        return 0.0
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def polygon_area(points: np.ndarray) -> float:
    """Unsigned area of a simple polygon (a quad included); 0 for fewer than 3 points."""
    return abs(signed_area(points))


def quad_area(quad: np.ndarray) -> float:
    """Unsigned area of a 4-point quad."""
    quad = as_points(quad)
    if len(quad) != 4:
        raise ValueError(f"a quad has 4 points, got {len(quad)}")
    return polygon_area(quad)


def box_corners(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Corners of an axis-aligned box, clockwise from top-left."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def box_outline(
    x0: float, y0: float, x1: float, y1: float, spacing: float = 24.0
) -> tuple[np.ndarray, list[int]]:
    """A box's outline sampled every ~`spacing` px, clockwise from top-left, and the corners' indices.

    A smooth non-linear warp (crumple) bends straight edges; carrying these samples through it gives a
    polygon that follows the curve, while the corner indices recover the quad.
    """
    if spacing <= 0:
        raise ValueError("spacing must be positive")
    corners = box_corners(x0, y0, x1, y1)
    samples: list[np.ndarray] = []
    corner_index: list[int] = []
    count = 0
    for i in range(4):
        start, end = corners[i], corners[(i + 1) % 4]
        steps = max(1, int(np.ceil(np.linalg.norm(end - start) / spacing)))
        t = np.arange(steps, dtype=np.float64)[:, None] / steps
        samples.append(start + t * (end - start))
        corner_index.append(count)
        count += steps
    return np.vstack(samples), corner_index


def bounding_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the points."""
    pts = as_points(points)
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def inside_image(points: np.ndarray, width: int, height: int, margin: float = 0.0) -> bool:
    """True when every point lies within the image (pixel centres 0..width-1, 0..height-1) less `margin`."""
    pts = as_points(points)
    return bool(
        np.all(pts[:, 0] >= margin)
        and np.all(pts[:, 1] >= margin)
        and np.all(pts[:, 0] <= width - 1 - margin)
        and np.all(pts[:, 1] <= height - 1 - margin)
    )


def clip_points(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Points clamped into the image's pixel-centre range."""
    pts = as_points(points).copy()
    pts[:, 0] = np.clip(pts[:, 0], 0, width - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, height - 1)
    return pts


def rotate_quarter_points(points: np.ndarray, width: int, height: int, turns: int) -> np.ndarray:
    """Where points of a width x height image land after `turns` quarter turns clockwise (exact)."""
    pts = as_points(points).copy()
    for _ in range(turns % 4):
        # One clockwise quarter turn of an image `height` rows tall: (x, y) -> (height - 1 - y, x).
        pts = np.stack([height - 1 - pts[:, 1], pts[:, 0]], axis=1)
        width, height = height, width
    return pts


def simplify_polygon(points: np.ndarray, tolerance: float = 0.75) -> np.ndarray:
    """Drop points that lie within `tolerance` px of the closed outline through their neighbours.

    Douglas-Peucker on a closed curve; the first point is always kept so the outline keeps its start.
    """
    pts = as_points(points)
    if len(pts) <= 4:
        return pts
    closed = np.vstack([pts, pts[:1]])
    keep = np.zeros(len(closed), dtype=bool)
    keep[0] = keep[-1] = True
    # The point farthest from the start splits the ring into two open chains.
    far = int(np.argmax(np.linalg.norm(pts - pts[0], axis=1)))
    keep[far] = True
    stack = [(0, far), (far, len(closed) - 1)]
    while stack:
        lo, hi = stack.pop()
        if hi - lo < 2:
            continue
        start, end = closed[lo], closed[hi]
        chord = end - start
        length = float(np.hypot(*chord))
        middle = closed[lo + 1 : hi]
        if length == 0.0:
            distance = np.linalg.norm(middle - start, axis=1)
        else:
            distance = (
                np.abs(chord[0] * (middle[:, 1] - start[1]) - chord[1] * (middle[:, 0] - start[0])) / length
            )
        worst = int(np.argmax(distance))
        if distance[worst] > tolerance:
            split = lo + 1 + worst
            keep[split] = True
            stack.extend([(lo, split), (split, hi)])
    return closed[:-1][keep[:-1]]
