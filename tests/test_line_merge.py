"""Joining pieces of one formula line: the rule, the joined geometry, and the detector's use of it."""

import numpy as np
import pytest

from susik.runtime.detector import DetectParams, postprocess
from susik.runtime.line_merge import Piece, join, merge_line_pieces, same_line
from susik.runtime.orient import to_upright_points


def _piece(x0: float, y0: float, x1: float, y1: float, handwritten: float = 0.0, area: float = 10.0) -> Piece:
    quad = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)
    return Piece(quad, quad.copy(), handwritten, 0.9, area)


@pytest.mark.parametrize(
    "a,b,joined",
    [
        ((0, 0, 50, 20), (60, 0, 100, 20), True),  # gap 10 <= 0.5 * 20
        ((0, 0, 50, 20), (71, 0, 100, 20), False),  # gap 21 > 10
        ((0, 0, 50, 20), (60, 12, 100, 32), False),  # heights overlap 8 < 0.5 * 20
        ((0, 0, 50, 20), (60, 5, 100, 45), True),  # a tall fraction beside: overlap 15, gap 10 <= 0.5 * 40
        ((0, 0, 50, 20), (20, 0, 100, 20), True),  # overlapping pieces (negative gap)
    ],
)
def test_same_line_rule(a, b, joined):
    assert same_line(np.array(a, float), np.array(b, float), max_gap=0.5, min_overlap=0.5) is joined
    assert same_line(np.array(b, float), np.array(a, float), max_gap=0.5, min_overlap=0.5) is joined


def test_join_covers_both_and_weights_kind_and_score_by_area():
    a, b = _piece(0, 0, 50, 20, handwritten=1.0, area=30), _piece(60, 2, 100, 22, handwritten=0.0, area=10)
    joined = join(a, b)
    xs, ys = joined.quad[:, 0], joined.quad[:, 1]
    assert xs.min() <= 0 + 1e-3 and xs.max() >= 100 - 1e-3 and ys.min() <= 0 + 1e-3 and ys.max() >= 22 - 1e-3
    assert joined.handwritten == pytest.approx(0.75) and joined.area == 40
    hull_x = joined.polygon[:, 0]
    assert hull_x.min() == 0 and hull_x.max() == 100


def test_pieces_of_one_line_become_one_and_other_lines_stay():
    pieces = [_piece(0, 0, 40, 20), _piece(48, 0, 90, 20), _piece(96, 0, 140, 20),  # one line, small gaps
              _piece(0, 60, 40, 80),  # the next line
              _piece(200, 0, 240, 20)]  # same line, a word away
    merged = merge_line_pieces(pieces, 0, (300, 100), max_gap=0.5)
    spans = sorted((round(p.quad[:, 0].min()), round(p.quad[:, 0].max()), round(p.quad[:, 1].min())) for p in merged)
    assert spans == [(0, 40, 60), (0, 140, 0), (200, 240, 0)]
    assert merge_line_pieces(pieces, 0, (300, 100), max_gap=0) == pieces


def test_lines_are_judged_on_the_upright_page():
    # One upright line of two pieces, photographed on a page turned 90 degrees: its pieces stand in a column.
    upright = [_piece(0, 0, 40, 20), _piece(48, 0, 90, 20)]
    size_upright, size_photo = (300, 100), (100, 300)
    turned = []
    for piece in upright:
        # three more quarter turns of the upright page = the photo of a page turned 90 degrees
        quad = to_upright_points(piece.quad, 270, size_upright)
        turned.append(Piece(quad, quad.copy(), 0.0, 0.9, 10.0))
    assert len(merge_line_pieces(turned, 90, size_photo, max_gap=0.5)) == 1
    # read as an upright page, the same two boxes lie on different lines
    assert len(merge_line_pieces(turned, 0, size_photo, max_gap=0.5)) == 2


def test_detector_postprocess_joins_a_broken_line_only_when_asked():
    kernel = np.zeros((40, 120), np.float32)
    kernel[10:16, 10:40] = 0.9
    kernel[10:16, 44:80] = 0.9  # a 4-pixel break in the kernel, as around a handwritten "="
    kernel[30:36, 10:40] = 0.9  # another line
    hand = np.zeros_like(kernel)
    upright = np.array([1.0, 0.0, 0.0, 0.0])
    apart = postprocess(kernel, hand, upright, 1.0, (240, 80), DetectParams())
    joined = postprocess(kernel, hand, upright, 1.0, (240, 80), DetectParams(merge_gap=0.5))
    assert len(apart.detections) == 3 and len(joined.detections) == 2
    first = np.asarray(joined.detections[0].quad.points)
    assert first[:, 0].min() < 20 and first[:, 0].max() > 155  # spans both pieces (x in input pixels = 2 x map)
    assert joined.detections[0].quad.points[0][0] == pytest.approx(first[:, 0].min(), abs=1e-6)
