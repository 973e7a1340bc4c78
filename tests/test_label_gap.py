import cv2
import numpy as np
import pytest
from recognizer_helpers import draw_crop

from susik.pipeline import Detection, PageDetections, Pipeline
from susik.results import Quad, Recognition
from susik.runtime.label_gap import cut_quad, label_end


def labelled(label: str, formula: str, space: int, scale: float = 1.0) -> tuple[np.ndarray, int, int]:
    """A crop of `label`, `space` px of paper, then `formula`; and the columns where the label's ink ends and the
    formula's begins."""
    first, second = draw_crop(label, scale, margin=0), draw_crop(formula, scale, margin=0)
    height = max(first.shape[0], second.shape[0])
    first, second = (cv2.copyMakeBorder(image, 0, height - image.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=255)
                     for image in (first, second))
    line = np.hstack([first, np.full((height, space), 255, np.uint8), second])
    crop = cv2.copyMakeBorder(line, 6, 6, 4, 4, cv2.BORDER_CONSTANT, value=255)
    inked = np.flatnonzero((first < 128).any(axis=0))
    return crop, 4 + int(inked[-1]), 4 + first.shape[1] + space + int(np.flatnonzero((second < 128).any(axis=0))[0])


@pytest.mark.parametrize("label", ["1)", "(2)", "C."])
def test_the_formula_starts_in_the_space_after_the_label(label):
    crop, label_ink_ends, formula_starts = labelled(label, "x+y=10", space=16)
    start = label_end(crop) * crop.shape[1]
    assert label_ink_ends < start < formula_starts


def test_dim_photos_have_their_label_space_found_too():
    crop, label_ink_ends, formula_starts = labelled("(2)", "x+y=10", space=16)
    dim = (crop.astype(np.float64) * 0.25 + 20).astype(np.uint8)  # paper 83, ink 20
    assert label_ink_ends < label_end(dim) * crop.shape[1] < formula_starts
    assert label_end(cv2.cvtColor(dim, cv2.COLOR_GRAY2BGR)) == label_end(dim)


@pytest.mark.parametrize(("label", "formula", "space"), [
    ("1)", "x+y=10", 2),  # no word space after the label: nothing to cut
    ("(2)", "1", 16),  # the space starts past the middle of the crop: what stands before it is no label
    ("(12345678)", "x+y=10000000", 16),  # ink over 1.5 line heights before the space: no label
])
def test_no_cut_without_a_short_label_and_a_word_space(label, formula, space):
    crop, _, _ = labelled(label, formula, space)
    assert label_end(crop) is None


def test_blank_and_unbroken_crops_give_no_cut():
    assert label_end(np.full((30, 90), 240, np.uint8)) is None
    assert label_end(draw_crop("x+y=10")) is None


def test_cut_quad_keeps_the_right_end_and_moves_the_left_edge_along_the_top_and_bottom():
    quad = Quad(((10.0, 20.0), (110.0, 30.0), (100.0, 60.0), (0.0, 50.0)))
    assert cut_quad(quad, 0.0) == quad
    assert cut_quad(quad, 0.5).points == ((60.0, 25.0), (110.0, 30.0), (100.0, 60.0), (50.0, 55.0))


class LineDetector:
    """Finds the whole drawn line as one region."""

    def __call__(self, images):
        pages = []
        for image in images:
            height, width = image.shape[:2]
            corners = ((0.0, 0.0), (float(width), 0.0), (float(width), float(height)), (0.0, float(height)))
            pages.append(PageDetections(0, (Detection(Quad(corners), corners, "printed", 0.9),)))
        return pages


class Scripted:
    def __init__(self, latex: str) -> None:
        self.latex = latex

    def __call__(self, crops):
        return [Recognition(self.latex, 0.9) for _ in crops]


def test_a_region_read_with_its_label_starts_after_the_label():
    crop, label_ink_ends, formula_starts = labelled("(2)", "x+y=10", space=16)
    (region,) = Pipeline(LineDetector(), Scripted("(2)x+y=10"))([crop])[0].regions
    assert region.label == "(2)" and region.latex == "x+y=10"
    left = region.quad.points[0][0]
    assert label_ink_ends < left < formula_starts and region.polygon == region.quad.points
    (plain,) = Pipeline(LineDetector(), Scripted("x+y=10"))([crop])[0].regions
    assert plain.quad.points[0] == (0.0, 0.0)  # read without a label: the region as found
