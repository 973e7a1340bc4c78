"""Detection / end-to-end page metrics against hand-computed counts."""

from __future__ import annotations

import pytest

from susik.eval.detection import (
    PageScore,
    RegionGuess,
    RegionTruth,
    aggregate_pages,
    metrics_from_counts,
    score_page,
)

SQUARE = [[0, 0], [10, 0], [10, 10], [0, 10]]
HALF = [[0, 0], [10, 0], [10, 5], [0, 5]]  # IoU with SQUARE = 50/100
THIRD = [[0, 0], [10, 0], [10, 4], [0, 4]]  # IoU 0.4
LINE = [[0, 0], [10, 0], [10, 0], [0, 0]]  # zero area


@pytest.mark.parametrize(
    ("guesses", "truths", "expected"),
    [
        ([], [], (0, 0, 0, 0, ())),
        ([], [(SQUARE, "x")], (0, 0, 0, 1, (None,))),
        ([(SQUARE, "x")], [], (0, 0, 1, 0, ())),
        ([(SQUARE, "x")], [(SQUARE, "x")], (1, 1, 1, 1, (0,))),
        ([(SQUARE, "x^{2}")], [(SQUARE, "x^2")], (1, 1, 1, 1, (0,))),  # equal after normalisation
        ([(SQUARE, "y")], [(SQUARE, "x")], (1, 0, 1, 1, (0,))),  # found, misread
        ([(HALF, "x")], [(SQUARE, "x")], (1, 1, 1, 1, (0,))),  # IoU exactly 0.5 counts
        ([(THIRD, "x")], [(SQUARE, "x")], (0, 0, 1, 1, (None,))),
        ([(LINE, "x")], [(SQUARE, "x")], (0, 0, 1, 1, (None,))),  # zero-area prediction
        ([(SQUARE, "x")], [(LINE, "x")], (0, 0, 1, 1, (None,))),  # zero-area truth
        ([(SQUARE, "x"), (SQUARE, "x")], [(SQUARE, "x")], (1, 1, 2, 1, (1,))),  # a duplicate is a false positive
        ([(HALF, "a"), (SQUARE, "b")], [(SQUARE, "b")], (1, 1, 2, 1, (1,))),  # best IoU wins the truth
    ],
)
def test_score_page(guesses, truths, expected):
    score = score_page([RegionGuess(p, t) for p, t in guesses], [RegionTruth(p, t) for p, t in truths])
    assert (score.matched, score.exact, score.predictions, score.truths, score.match_of_truth) == expected


def test_aggregate_pages_hand_computed():
    # 2 of 3 predictions match, 1 of them read right; 3 truths.
    metrics = aggregate_pages([PageScore(2, 1, 3, 2), PageScore(0, 0, 0, 1)])
    assert metrics.n == 2
    assert metrics.precision == pytest.approx(2 / 3) and metrics.recall == pytest.approx(2 / 3)
    assert metrics.f1 == pytest.approx(2 / 3)
    assert metrics.e2e_precision == pytest.approx(1 / 3) and metrics.e2e_recall == pytest.approx(1 / 3)
    assert metrics.e2e_exact == pytest.approx(1 / 3)


def test_empty_sets_and_zero_hits():
    nothing = metrics_from_counts(1, 0, 0, 0, 0)
    assert (nothing.precision, nothing.recall, nothing.f1) == (1.0, 1.0, 1.0)
    silent = metrics_from_counts(1, 0, 0, 0, 4)  # no predictions: precise but blind
    assert (silent.precision, silent.recall, silent.f1, silent.e2e_exact) == (1.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        aggregate_pages([])


def test_page_correct_only_when_all_read_and_nothing_spurious():
    assert PageScore(2, 2, 2, 2).correct
    assert not PageScore(2, 2, 3, 2).correct
    assert not PageScore(2, 1, 2, 2).correct
