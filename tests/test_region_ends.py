"""Edge offsets of a detection against its formula, in line heights, whatever the page's turn."""

import numpy as np
import pytest

from susik.eval.region_ends import EdgeOffsets, edge_offsets, summarize

TRUTH = [[100, 50], [300, 50], [300, 70], [100, 70]]  # 20 px high


def test_a_detection_that_misses_the_first_glyph_and_runs_into_the_next_word():
    detected = [[106, 48], [312, 48], [312, 71], [106, 71]]
    offsets = edge_offsets(TRUTH, detected)
    assert offsets == pytest.approx(EdgeOffsets(start=-0.3, end=0.6, top=0.1, bottom=0.05))


def test_offsets_follow_the_formula_not_the_page():
    # the same formula and detection on a page turned a quarter clockwise: corners still start at the
    # formula's own top-left, which now sits at the page's top-right
    def turn(points):
        return [[1000 - y, x] for x, y in points]

    detected = [[106, 48], [312, 48], [312, 71], [106, 71]]
    assert edge_offsets(turn(TRUTH), turn(detected)) == pytest.approx(edge_offsets(TRUTH, detected))


def test_a_degenerate_true_quad_is_an_error():
    with pytest.raises(ValueError, match="no area"):
        edge_offsets([[0, 0], [10, 0], [10, 0], [0, 0]], TRUTH)


def test_summary_counts_late_starts_short_ends_and_reaches():
    offsets = [EdgeOffsets(-0.3, 0.0, 0, 0), EdgeOffsets(0.0, -0.2, 0, 0), EdgeOffsets(0.7, 0.0, 0, 0),
               EdgeOffsets(0.05, -0.05, 0, 0)]
    summary = summarize(offsets)
    assert (summary.n, summary.start_late, summary.stop_short, summary.reach) == (4, 0.25, 0.25, 0.25)
    assert summary.mean_start == pytest.approx(np.mean([-0.3, 0.0, 0.7, 0.05]))
    assert summarize([]).n == 0
