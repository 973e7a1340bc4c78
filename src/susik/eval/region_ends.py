"""Where a detected region's edges sit against its formula's: the detector's boundary errors in line heights.

A detection can match its formula at IoU >= 0.5 and still cut off a leading minus or run into the next word,
and the recognizer then reads something else. Offsets are measured along the true quad's reading direction
(its top-left -> top-right edge) and across it, in units of the true quad's height: positive where the
detection reaches past the formula's edge, negative where it falls short. Both quads run clockwise from the
formula's own top-left, so a quarter-turned page needs no special case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from susik.eval.detect_match import Points
from susik.runtime.detector import reading_axes


@dataclass(frozen=True)
class EdgeOffsets:
    start: float
    end: float
    top: float
    bottom: float


@dataclass(frozen=True)
class EdgeSummary:
    n: int
    start_late: float  # share whose start falls short of the formula's by more than `short`
    stop_short: float  # the same at the end
    reach: float  # share reaching more than `reach` past the formula's start or end
    mean_start: float
    mean_end: float

    def to_json(self) -> dict[str, float | int]:
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in asdict(self).items()}


def edge_offsets(truth: Points, detected: Points) -> EdgeOffsets:
    """The detected quad's extent beyond (+) or short of (-) the true quad on each side, in line heights."""
    true_quad = np.asarray(truth, dtype=np.float64)
    guess = np.asarray(detected, dtype=np.float64)
    reading, down = reading_axes(true_quad)
    height = float(np.linalg.norm(down))
    if height <= 0 or not np.linalg.norm(reading) > 0:
        raise ValueError("the true quad has no area")
    along, across = reading / np.linalg.norm(reading), down / height

    def extent(points: np.ndarray, axis: np.ndarray) -> tuple[float, float]:
        projected = points @ axis
        return float(projected.min()), float(projected.max())

    (true_left, true_right), (left, right) = extent(true_quad, along), extent(guess, along)
    (true_top, true_bottom), (top, bottom) = extent(true_quad, across), extent(guess, across)
    return EdgeOffsets(start=(true_left - left) / height, end=(right - true_right) / height,
                       top=(true_top - top) / height, bottom=(bottom - true_bottom) / height)


def summarize(offsets: Sequence[EdgeOffsets], short: float = 0.1, reach: float = 0.5) -> EdgeSummary:
    """Shares of matched regions that start late, stop short (by more than `short` line heights) or reach
    more than `reach` line heights past an end."""
    n = len(offsets)
    if n == 0:
        return EdgeSummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return EdgeSummary(
        n=n,
        start_late=sum(o.start < -short for o in offsets) / n,
        stop_short=sum(o.end < -short for o in offsets) / n,
        reach=sum(o.start > reach or o.end > reach for o in offsets) / n,
        mean_start=float(np.mean([o.start for o in offsets])),
        mean_end=float(np.mean([o.end for o in offsets])),
    )
