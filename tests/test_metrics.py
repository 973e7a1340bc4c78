"""Recognition metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest

from susik.eval.metrics import (
    RecognitionMetrics,
    aggregate,
    char_edit_distance,
    corpus_bleu,
    recognition_metrics,
    score_sample,
    score_tokens,
    token_edit_distance,
)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ([], [], 0),
        ([], ["a", "b"], 2),
        (["a"], [], 1),
        ([r"\alpha"], [r"\beta"], 1),  # one token, however many characters
        (["x", "^", "2"], ["x", "_", "2"], 1),
        (["a", "b"], ["b", "a"], 2),
        (["、", "가"], ["가"], 1),
    ],
)
def test_token_edit_distance(prediction, reference, expected):
    assert token_edit_distance(prediction, reference) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ([r"\sin"], [r"\sim"], 1),
        ([r"\alpha"], [], 6),
        (["a", "b"], ["ab"], 0),  # characters ignore token boundaries
        (["가", "나"], ["가"], 1),
    ],
)
def test_char_edit_distance(prediction, reference, expected):
    assert char_edit_distance(prediction, reference) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "exact"),
    [
        ("x^{2}", "x^2", True),
        (r"\frac 1x", r"\frac{1}{x}", True),
        (r"\left( a \right)", "( a )", True),
        (r"\frac { 5 } { 1 4 }", r"\frac{5}{14}", True),  # spaced dialect against raw LaTeX
        (r"\leq", r"\leqslant", False),
        ("x^2", "x_2", False),
    ],
)
def test_exact_match_is_after_normalisation(prediction, reference, exact):
    assert score_sample(prediction, reference).exact is exact


def test_empty_prediction_and_reference():
    empty_prediction = score_sample("", "ab")
    assert (empty_prediction.token_distance, empty_prediction.char_distance) == (2, 2)
    assert empty_prediction.norm_distance == 1.0
    empty_reference = score_sample("x", "")
    assert empty_reference.token_distance == 1 and empty_reference.norm_distance == 1.0
    both = score_sample("", "")
    assert both.exact and both.norm_distance == 0.0
    # With no reference characters at all, CER falls back to character errors per sample.
    assert aggregate([empty_reference, both]).cer == pytest.approx(0.5)


def test_aggregate_hand_computed():
    # Normalised: exact; \frac{1}{2} vs \frac{1}{3} (1 token, 1 char); "" vs "a" (1 token, 1 char).
    metrics = recognition_metrics(["x^{2}+1", r"\frac12", ""], ["x^2+1", r"\frac{1}{3}", "a"])
    assert metrics.n == 3
    assert metrics.exp_rate == pytest.approx(1 / 3)
    assert metrics.le1 == 1.0 and metrics.le2 == 1.0
    assert metrics.cer == pytest.approx(2 / (5 + 11 + 1))  # "x^2+1", "\frac{1}{3}", "a"
    assert metrics.norm_edit_distance == pytest.approx((0 + 1 / 7 + 1) / 3)
    assert 0.0 < metrics.bleu < 1.0


def test_error_thresholds():
    reference = ["a", "b", "c", "d"]
    scores = [score_tokens(reference[: 4 - k], reference) for k in range(4)]  # 0, 1, 2, 3 token errors
    metrics = aggregate(scores)
    assert (metrics.exp_rate, metrics.le1, metrics.le2) == (0.25, 0.5, 0.75)


@pytest.mark.parametrize(
    ("predictions", "references", "expected"),
    [
        ([["a", "b", "c", "d"]], [["a", "b", "c", "d"]], 1.0),
        # p1..p4 = 4/5, 3/4, 2/3, 1/2; no brevity penalty.
        ([["a", "b", "c", "d", "e"]], [["a", "b", "c", "d", "f"]], (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25),
        # All precisions 1; brevity penalty exp(1 - 6/4).
        ([["a", "b", "c", "d"]], [["a", "b", "c", "d", "e", "f"]], math.exp(1 - 6 / 4)),
        ([["a", "b"]], [["a", "b"]], 1.0),  # shorter than 4 tokens: effective order, not 0
        ([["x", "y"]], [["a", "b"]], 0.0),
        ([["\\ "]], [["\\"]], 0.0),  # a text space is one token, not a backslash
        ([[]], [["a"]], 0.0),
    ],
)
def test_corpus_bleu(predictions, references, expected):
    assert corpus_bleu(predictions, references) == pytest.approx(expected)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError):
        recognition_metrics(["a"], [])
    with pytest.raises(ValueError):
        aggregate([])


def test_metrics_are_frozen():
    metrics = recognition_metrics(["a"], ["a"])
    assert metrics == RecognitionMetrics(n=1, exp_rate=1.0, le1=1.0, le2=1.0, cer=0.0, norm_edit_distance=0.0,
                                         bleu=1.0)
    with pytest.raises(AttributeError):
        metrics.n = 2  # type: ignore[misc]
