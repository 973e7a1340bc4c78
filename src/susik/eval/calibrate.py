"""Fit the map from a recognizer's raw token probabilities to a calibrated confidence, and show what it does.

The raw confidence (geometric mean of the token probabilities) ranks errors but is overconfident where the
model is weak. `fit_calibration` fits `decoding.ConfidenceCalibration` (a logistic map of logit(geometric mean)
and logit(least likely token)) on readings known right or wrong; `calibration_report` fits it on the
odd-numbered readings and judges it on the even ones against the raw score, so the figures a user reads were
not fitted on, then fits the shipped map on all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from susik.data.crops import CropDataset, CropReadError
from susik.eval.confidence import ConfidenceQuality, confidence_quality, fit_logistic, logit
from susik.eval.metrics import score_sample
from susik.latex import detokenize
from susik.runtime.decoding import ConfidenceCalibration, Hypothesis, calibrated

if TYPE_CHECKING:
    from susik.runtime.recognizer import OnnxRecognizer


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


@dataclass(frozen=True)
class SetReadings:
    scores: list[RawScores]
    right: list[bool]
    unfinished: int  # readings the runaway guard stopped: 0 whatever the map, so left out of the fit
    skipped: list[str]  # unreadable samples, one line each


def read_set(recognizer: OnnxRecognizer, dataset: CropDataset, limit: int | None = None, batch_size: int = 16,
             advance: Callable[[int], None] = lambda _: None) -> SetReadings:
    """The raw scores of the recognizer's readings (its record's looks included) of the first `limit` crops and
    whether each is exactly right; crops are read `batch_size` at a time, never all held at once."""
    scores: list[RawScores] = []
    right: list[bool] = []
    skipped: list[str] = []
    unfinished = 0
    count = len(dataset) if limit is None else min(len(dataset), limit)
    for start in range(0, count, batch_size):
        crops, references = [], []
        for index in range(start, min(start + batch_size, count)):
            try:
                crop, latex = dataset[index]
            except CropReadError as error:
                skipped.append(str(error))
                continue
            crops.append(crop)
            references.append(latex)
        for hypothesis, reference in zip(recognizer.hypotheses(crops) if crops else [], references, strict=True):
            raw = RawScores.of(hypothesis)
            if raw is None:
                unfinished += 1
                continue
            scores.append(raw)
            right.append(score_sample(detokenize(recognizer.vocab.decode(hypothesis.tokens)), reference).exact)
        advance(min(start + batch_size, count) - start)
    return SetReadings(scores, right, unfinished, skipped)


def set_name(manifest: Path) -> str:
    """`crohme/val2013` for crohme/val2013.jsonl, `recdata/synthetic_val` for recdata/synthetic_val/manifest.jsonl."""
    named = manifest.parent if manifest.name == "manifest.jsonl" else manifest.with_suffix("")
    return f"{named.parent.name}/{named.name}" if named.parent.name else named.name
