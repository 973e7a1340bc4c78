import pytest

from susik.eval.confidence import (
    confidence_quality,
    error_ranking_auroc,
    exact_at_coverage,
    expected_calibration_error,
    reliability_bins,
)


def test_auroc_is_one_when_every_right_reading_is_surer_than_every_wrong_one():
    assert error_ranking_auroc([0.9, 0.8, 0.3, 0.2], [True, True, False, False]) == 1.0
    assert error_ranking_auroc([0.2, 0.3, 0.8, 0.9], [True, True, False, False]) == 0.0


def test_auroc_counts_ties_half_and_matches_the_pairwise_count():
    assert error_ranking_auroc([0.5, 0.5, 0.5], [True, False, True]) == 0.5
    confidences = [0.9, 0.7, 0.7, 0.4, 0.6, 0.2]
    right = [True, False, True, True, False, False]
    pairs = [(1.0 if c > d else 0.5 if c == d else 0.0)
             for c, r in zip(confidences, right) if r for d, w in zip(confidences, right) if not w]
    assert error_ranking_auroc(confidences, right) == pytest.approx(sum(pairs) / len(pairs))


def test_auroc_is_undefined_without_both_outcomes():
    assert error_ranking_auroc([0.1, 0.9], [True, True]) is None
    assert error_ranking_auroc([0.1, 0.9], [False, False]) is None


def test_calibration_error_is_zero_when_each_bins_confidence_is_its_hit_rate():
    # bin 0.7-0.8: mean 0.75, 3 of 4 right; bin 0.2-0.3: mean 0.25, 1 of 4 right
    confidences = [0.75] * 4 + [0.25] * 4
    right = [True, True, True, False, True, False, False, False]
    assert expected_calibration_error(confidences, right) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [False, False]) == pytest.approx(1.0)  # 1.0 is in the top bin


def test_exact_at_coverage_keeps_the_surest_share():
    confidences = [0.1, 0.9, 0.8, 0.2]
    right = [False, True, False, True]
    assert exact_at_coverage(confidences, right, 0.5) == 0.5  # 0.9 right, 0.8 wrong
    assert exact_at_coverage(confidences, right, 0.25) == 1.0
    assert exact_at_coverage(confidences, right, 1.0) == 0.5


def test_quality_bundles_the_figures_and_rejects_mismatched_input():
    quality = confidence_quality([0.9, 0.1], [True, False], coverages=(0.5,))
    assert (quality.n, quality.auroc, quality.exact_at_coverage) == (2, 1.0, {"50%": 1.0})
    with pytest.raises(ValueError):
        confidence_quality([0.9], [True, False])
    with pytest.raises(ValueError):
        confidence_quality([], [])


def test_reliability_bins_hold_each_bins_mean_confidence_and_hit_rate():
    confidences = [0.05, 0.15, 0.12, 0.95, 1.0, 0.91]
    right = [False, True, False, True, True, False]
    bins = reliability_bins(confidences, right, bins=10)
    assert [b.n for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 3]
    assert bins[1].mean_confidence == pytest.approx(0.135) and bins[1].exact_rate == 0.5
    assert bins[2].mean_confidence is None and bins[2].exact_rate is None
    assert bins[9].exact_rate == pytest.approx(2 / 3) and (bins[9].low, bins[9].high) == (0.9, 1.0)
    gaps = (1 * 0.05 + 2 * abs(0.135 - 0.5) + 3 * abs((0.95 + 1.0 + 0.91) / 3 - 2 / 3)) / 6
    assert expected_calibration_error(confidences, right) == pytest.approx(gaps)
