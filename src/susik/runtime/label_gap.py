"""Where a problem label ends inside a region: the quad of a formula read with its label, cut to the formula.

The detector sometimes takes a problem or choice label ("1).", "B.") and its formula as one region. The pipeline
reads the label off the LaTeX (`split_reading_label`), but the region still covered the label: for a short formula
twice its size, so the overlay boxed the label too and the region matched its formula at IoU under 0.5. The label
stands first, a space before the formula: the first run of blank columns of the upright crop, after its first
ink, as wide as a word space is that space when it starts in the crop's left half; the region starts after it.
"""

from __future__ import annotations

import cv2
import numpy as np

from susik.results import Quad

INK_UNDER_PAPER = 0.7  # darker than this share of the crop's median grey (its paper) is ink, in dim photos too
MIN_INK_PIXELS = 2  # a column with fewer is blank (speckle)
MIN_GAP = 0.25  # of the crop's height: the narrowest blank run taken for the space after a label (the glyphs of
# a label such as `1).` stand up to a fifth of a line apart, a word space is a third)
MAX_LABEL = 0.5  # of the crop's width, and
LABEL_HEIGHTS = 1.5  # of its height: a label is short (`(1)`, `C.`, `2)` measure 0.3-0.8); a later gap is the formula's


def label_end(crop: np.ndarray) -> float | None:
    """The fraction of an upright crop's width where the formula after its label starts (inside the space after
    the label), or None when no such space is found."""
    gray = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    height, width = gray.shape
    paper = int(np.sort(gray, axis=None)[gray.size // 2])
    inked = (gray < INK_UNDER_PAPER * paper).sum(axis=0) >= MIN_INK_PIXELS
    columns = np.flatnonzero(inked)
    if columns.size == 0:
        return None
    gaps = np.flatnonzero(np.diff(columns) - 1 >= max(2.0, MIN_GAP * height))
    if gaps.size == 0:
        return None
    left, right = int(columns[gaps[0]]), int(columns[gaps[0] + 1])  # the label's last ink, the formula's first
    if left + 1 > MAX_LABEL * width or left + 1 - columns[0] > LABEL_HEIGHTS * height:
        return None
    return (right - (right - left) / 4) / width


def cut_quad(quad: Quad, start: float) -> Quad:
    """The part of a quad (clockwise from its top-left) from `start` (a fraction of its width) to its right end."""
    top_left, top_right, bottom_right, bottom_left = (np.asarray(point, np.float64) for point in quad.points)
    new_top_left = top_left + start * (top_right - top_left)
    new_bottom_left = bottom_left + start * (bottom_right - bottom_left)
    corners = (new_top_left, top_right, bottom_right, new_bottom_left)
    return Quad(tuple((float(x), float(y)) for x, y in corners))  # type: ignore[arg-type]
