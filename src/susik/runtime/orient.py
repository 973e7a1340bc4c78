"""Orientation: pages turned by quarter turns, and small residual skew inside crops.

A page's `orientation` is how many degrees clockwise it was turned from upright (0/90/180/270). The
detector predicts it per page; quads are then ordered from each formula's own top-left, so `rectify` yields
upright crops. What remains inside a crop is small skew (a formula written at a slant, a min-area rectangle
that followed a crumpled line): `DeskewOrienter` removes it.
"""

from __future__ import annotations

import cv2
import numpy as np

from susik.data.geometry import rotate_quarter_points

ORIENTATIONS: tuple[int, ...] = (0, 90, 180, 270)


def _turns(orientation: int) -> int:
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation}")
    return orientation // 90


def to_upright_points(points: np.ndarray, orientation: int, image_size: tuple[int, int]) -> np.ndarray:
    """Where points of a page photo (`image_size` = (width, height)) lie on the upright page."""
    width, height = image_size
    return rotate_quarter_points(points, width, height, (4 - _turns(orientation)) % 4)


def upright_page(image: np.ndarray, orientation: int) -> np.ndarray:
    """The page turned back to upright (exact quarter turns)."""
    return np.ascontiguousarray(np.rot90(image, k=_turns(orientation)))  # rot90 with k>0 turns anticlockwise


def order_quad(quad: np.ndarray, orientation: int) -> np.ndarray:
    """Four corners ordered clockwise from the formula's own top-left on a page turned `orientation`.

    The corners are judged on the upright page (a quarter turn undone), where the formula reads left to
    right; the returned points stay in the photo's coordinates.
    """
    points = np.asarray(quad, dtype=np.float64)
    upright = points.copy()
    for _ in range(_turns(orientation)):  # undo one clockwise quarter turn: (x, y) -> (y, -x)
        upright = np.stack([upright[:, 1], -upright[:, 0]], axis=1)
    centre = upright.mean(axis=0)
    ring = np.argsort(np.arctan2(upright[:, 1] - centre[1], upright[:, 0] - centre[0]), kind="stable")
    start = int(np.argmin(upright[ring, 0] + upright[ring, 1]))
    return points[np.roll(ring, -start)]


def skew_angle(gray: np.ndarray, max_degrees: float = 6.0, step: float = 1.0) -> float:
    """The small rotation (degrees, positive = anticlockwise on screen) that makes the ink's rows sharpest.

    Projection-profile search: rows of a level line of ink give the most peaked row histogram.
    """
    ink = (255 - gray).astype(np.float32)
    ink[ink < 64] = 0  # paper grain and shading are not ink
    if not ink.any():
        return 0.0
    height, width = ink.shape
    centre = (width / 2, height / 2)
    best, best_score = 0.0, -1.0
    for angle in np.arange(-max_degrees, max_degrees + step / 2, step):
        matrix = cv2.getRotationMatrix2D(centre, float(angle), 1.0)
        turned = cv2.warpAffine(ink, matrix, (width, height), flags=cv2.INTER_LINEAR)
        profile = turned.sum(axis=1)
        score = float(np.square(np.diff(profile)).sum())
        if score > best_score + 1e-6 * abs(best_score):
            best, best_score = float(angle), score
    return best


class DeskewOrienter:
    """Orienter stage: turns each (already upright) crop by its residual skew when that exceeds `min_degrees`."""

    def __init__(self, max_degrees: float = 6.0, min_degrees: float = 1.5) -> None:
        self.max_degrees, self.min_degrees = max_degrees, min_degrees

    def __call__(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        return [self._straighten(crop) for crop in crops]

    def _straighten(self, crop: np.ndarray) -> np.ndarray:
        gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        angle = skew_angle(gray, self.max_degrees)
        if abs(angle) < self.min_degrees:
            return crop
        height, width = crop.shape[:2]
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        return cv2.warpAffine(crop, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
