"""Detection metrics: pure functions matching predicted regions to true ones by polygon IoU.

A prediction counts as a true positive when it is matched one-to-one to a true region with IoU >= the
threshold (greedy, highest IoU first — the usual ICDAR-style matching). Precision = TP / predictions,
recall = TP / true regions, F1 their harmonic mean; empty sets give 1.0 where nothing could go wrong
(no predictions -> precision 1, no truths -> recall 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon
from shapely.validation import make_valid

Points = Sequence[Sequence[float]] | np.ndarray


def _shape(points: Points):
    polygon = Polygon(np.asarray(points, dtype=np.float64))
    return polygon if polygon.is_valid else make_valid(polygon)


def polygon_iou(a: Points, b: Points) -> float:
    """Intersection over union of two simple polygons; 0 when either has no area."""
    if len(a) < 3 or len(b) < 3:
        return 0.0
    first, second = _shape(a), _shape(b)
    union = first.union(second).area
    return float(first.intersection(second).area / union) if union > 0 else 0.0


def match_regions(predicted: Sequence[Points], truth: Sequence[Points], threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one (prediction index, truth index, IoU) pairs with IoU >= threshold, best pairs first."""
    if not predicted or not truth:
        return []
    shapes_p = [_shape(p) if len(p) >= 3 else None for p in predicted]
    shapes_t = [_shape(t) if len(t) >= 3 else None for t in truth]
    candidates = []
    for i, p in enumerate(shapes_p):
        for j, t in enumerate(shapes_t):
            if p is None or t is None or not p.intersects(t):
                continue
            union = p.union(t).area
            iou = p.intersection(t).area / union if union > 0 else 0.0
            if iou >= threshold:
                candidates.append((iou, i, j))
    used_p, used_t, pairs = set(), set(), []
    for iou, i, j in sorted(candidates, reverse=True):
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            pairs.append((i, j, float(iou)))
    return pairs


@dataclass(frozen=True)
class DetectionCounts:
    true_positives: int = 0
    predictions: int = 0
    truths: int = 0

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(self.true_positives + other.true_positives, self.predictions + other.predictions,
                               self.truths + other.truths)

    @property
    def precision(self) -> float:
        return self.true_positives / self.predictions if self.predictions else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.truths if self.truths else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def count_page(predicted: Sequence[Points], truth: Sequence[Points], threshold: float = 0.5) -> DetectionCounts:
    return DetectionCounts(len(match_regions(predicted, truth, threshold)), len(predicted), len(truth))
