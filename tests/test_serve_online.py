"""Online evaluation as pure functions over request and feedback facts."""

from datetime import datetime

import pytest

from susik.serve.online import edit_distance, online_report
from susik.serve.store import FeedbackFacts, RequestFacts, is_correction

AT = datetime(2026, 1, 1, 12, 0)


def fb(
    request_id,
    region,
    predicted,
    latex=None,
    accepted=None,
    *,
    version="v1",
    mode="page",
    kind="printed",
    comment=None,
    display_ms=None,
    confidence=None,
):
    return FeedbackFacts(
        request_id,
        region,
        version,
        mode,
        kind,
        predicted,
        latex,
        accepted,
        is_correction(predicted, latex),
        comment,
        display_ms,
        AT,
        confidence,
    )


@pytest.mark.parametrize(
    ("predicted", "corrected", "distance"),
    [
        ("x^2", "x^{2}", 0.0),  # braces only: not a change
        (r"\frac{a}{b}", r"\frac{a}{c}", 1 / 7),  # one token of seven
        ("x", "", 1.0),
        ("", "", 0.0),
        (r"\alpha+β", r"\alpha+β", 0.0),  # unicode survives
    ],
)
def test_edit_distance_on_normalised_tokens(predicted, corrected, distance):
    assert edit_distance(predicted, corrected) == pytest.approx(distance)


@pytest.mark.parametrize(
    ("predicted", "latex", "corrected"),
    [
        ("x^{2}", "x^2", False),
        (r"\left( x \right)", "(x)", False),
        ("x", "y", True),
        ("x", None, False),
        (r"\leq", r"\leqslant", True),
    ],
)
def test_what_counts_as_a_correction(predicted, latex, corrected):
    assert is_correction(predicted, latex) is corrected


def test_report_per_version_with_slices_latency_and_voc():
    requests = [
        RequestFacts("v1", "page", "done", 2),
        RequestFacts("v1", "crop", "done", 1),
        RequestFacts("v1", "page", "failed", 0),
        RequestFacts("v2", "page", "done", 3),
    ]
    feedback = [
        fb("a", 0, "x+1", "x+7", display_ms=100.0),
        fb("a", 0, "x+1", "x+1", display_ms=300.0),  # newest verdict for a/0: right after all
        fb("a", 1, "y", "z", kind="handwritten", comment="bad y", display_ms=500.0),
        fb("b", 0, "ab", accepted=True, mode="crop"),
        fb("c", 0, "q", comment="slow", version="v2"),  # a comment alone is no verdict
    ]
    report = online_report(requests, feedback)["model_versions"]
    v1 = report["v1"]
    assert (v1["requests"], v1["failed_requests"], v1["regions"], v1["feedback"]) == (3, 1, 3, 4)
    assert (v1["regions_with_feedback"], v1["corrected"], v1["correction_rate"]) == (3, 1, 0.3333)
    assert v1["mean_edit_distance"] == 1.0
    assert (v1["display_ms_p50"], v1["display_ms_p95"]) == (300.0, 480.0)
    assert v1["slices"]["kind"] == {
        "handwritten": {
            "regions_with_feedback": 1,
            "corrected": 1,
            "correction_rate": 1.0,
            "mean_edit_distance": 1.0,
        },
        "printed": {
            "regions_with_feedback": 2,
            "corrected": 0,
            "correction_rate": 0.0,
            "mean_edit_distance": None,
        },
    }
    assert set(v1["slices"]["mode"]) == {"page", "crop"}
    assert [item["comment"] for item in v1["voc"]] == ["bad y"]
    v2 = report["v2"]
    assert (v2["feedback"], v2["regions_with_feedback"], v2["correction_rate"], v2["display_ms_p50"]) == (
        1,
        0,
        None,
        None,
    )
    assert v2["voc"][0]["comment"] == "slow"


def test_empty_report():
    assert online_report([], []) == {"model_versions": {}}


def test_report_checks_the_served_confidence_against_what_users_corrected():
    requests = [RequestFacts("v1", "page", "done", 8), RequestFacts("v2", "page", "done", 2)]
    # sure readings left alone, unsure ones corrected: ranked right, but 0.85 said where 0.5 stood (ECE: half
    # the regions 0.05 off, half 0.75 off)
    feedback = [fb(str(i), 0, "x", "x", confidence=0.95) for i in range(4)]
    feedback += [fb(str(i), 0, "x", "y", confidence=0.75) for i in range(4, 8)]
    feedback += [fb("late", 0, "x", "y")]  # a page served before confidences were stored: not rated
    feedback += [fb("v2a", 0, "x", "x", confidence=0.3, version="v2"), fb("v2b", 0, "x", accepted=True,
                                                                           confidence=0.2, version="v2")]
    report = online_report(requests, feedback)["model_versions"]
    assert report["v1"]["confidence"] == {"n": 8, "auroc": 1.0, "ece": 0.4, "mean_confidence": 0.85,
                                          "uncorrected_rate": 0.5}
    assert report["v2"]["confidence"] is None  # nothing corrected: no ranking to judge
