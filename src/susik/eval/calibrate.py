"""Fit the map from a recognizer's raw token probabilities to a calibrated confidence, and show what it does.

The raw confidence (geometric mean of the token probabilities) ranks errors but is overconfident where the
model is weak. `fit_calibration` fits `decoding.ConfidenceCalibration` (a logistic map of logit(geometric mean)
and logit(least likely token)) on readings known right or wrong; `calibration_report` fits it on the
odd-numbered readings and judges it on the even ones against the raw score, so the figures a user reads were
not fitted on, then fits the shipped map on all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from susik.eval.confidence import ConfidenceQuality, confidence_quality, fit_logistic, logit
from susik.runtime.decoding import ConfidenceCalibration, Hypothesis, calibrated


@dataclass(frozen=True)
class RawScores:
    """One finished reading's raw scores (readings the runaway guard stopped report 0 whatever the map)."""

    geomean: float
    minimum: float

    @classmethod
    def of(cls, hypothesis: Hypothesis) -> RawScores | None:
        """None for a reading that did not finish (no EOS) or holds nothing: its confidence is 0 by rule."""
        if hypothesis.stop != "eos" or not hypothesis.probs:
            return None
        probs = np.maximum(np.asarray(hypothesis.probs, dtype=np.float64), 1e-12)
        return cls(float(np.exp(np.log(probs).mean())), float(probs.min()))


def fit_calibration(scores: Sequence[RawScores], right: Sequence[bool], fitted_on: str = "") -> ConfidenceCalibration:
    if len(scores) != len(right):
        raise ValueError(f"{len(scores)} readings for {len(right)} outcomes")
    if len(set(right)) < 2:
        raise ValueError("a calibration needs both right and wrong readings")
    features = np.column_stack([logit([s.geomean for s in scores]), logit([s.minimum for s in scores])])
    (geomean, minimum), bias = fit_logistic(features, right)
    return ConfidenceCalibration(geomean=round(float(geomean), 4), minimum=round(float(minimum), 4),
                                 bias=round(bias, 4), fitted_on=fitted_on)


def apply(calibration: ConfidenceCalibration | None, scores: Sequence[RawScores]) -> list[float]:
    """Each reading's confidence as a record with this calibration (None: the raw geometric mean) reports it."""
    if calibration is None:
        return [s.geomean for s in scores]
    return [calibrated(calibration, s.geomean, s.minimum) for s in scores]


@dataclass(frozen=True)
class HeldOut:
    """One set's even-numbered readings: the raw geometric mean against the map fitted on the odd ones."""

    raw: ConfidenceQuality
    mapped: ConfidenceQuality
    right_share: float


@dataclass(frozen=True)
class CalibrationReport:
    calibration: ConfidenceCalibration  # fitted on every reading of every set
    held_out: dict[str, HeldOut]  # per set, and "all" of them together
    n_fit: int


Readings = tuple[Sequence[RawScores], Sequence[bool]]


def calibration_report(sets: dict[str, Readings], fitted_on: str = "") -> CalibrationReport:
    """Fit on the odd-numbered readings of every set, judge on the even-numbered ones (per set and together),
    then fit the map to ship on all of them."""
    odd, even = slice(1, None, 2), slice(0, None, 2)
    every = ([s for scores, _ in sets.values() for s in scores], [r for _, right in sets.values() for r in right])
    half = fit_calibration([s for scores, _ in sets.values() for s in scores[odd]],
                           [r for _, right in sets.values() for r in right[odd]])
    held_out = {}
    for name, (scores, right) in {**sets, "all": every}.items():
        kept, outcomes = scores[even], list(right[even])
        if kept:
            held_out[name] = HeldOut(confidence_quality(apply(None, kept), outcomes),
                                     confidence_quality(apply(half, kept), outcomes), float(np.mean(outcomes)))
    return CalibrationReport(fit_calibration(*every, fitted_on), held_out, len(every[0]))
