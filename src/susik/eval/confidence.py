"""How well a reading's confidence tells right readings from wrong ones: pure functions of (confidence, right).

A user wants two things from the confidence: to find the readings worth checking (ranking: AUROC, and the
exact-match rate among the surest readings when the rest are sent for review) and to take it at its word
(calibration: ECE, the confidence-weighted gap between the confidence and the exact-match rate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COVERAGES = (0.5, 0.8, 0.9)


@dataclass(frozen=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    mean_confidence: float | None  # None: an empty bin
    exact_rate: float | None


@dataclass(frozen=True)
class ConfidenceQuality:
    n: int
    auroc: float | None  # P(a right reading is surer than a wrong one), ties half; None: all right or all wrong
    ece: float  # sum over equal-width confidence bins of (bin share) * |mean confidence - exact-match rate|
    exact_at_coverage: dict[str, float]  # "80%": exact-match rate of the surest 80% of readings
    reliability: list[ReliabilityBin]  # the ECE's bins


def error_ranking_auroc(confidences: Sequence[float], right: Sequence[bool]) -> float | None:
    """The Mann-Whitney estimate of P(confidence of a right reading > that of a wrong one), ties counting half."""
    scores = np.asarray(confidences, dtype=np.float64)
    good = np.asarray(right, dtype=bool)
    positives, negatives = int(good.sum()), int((~good).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="stable")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.repeat(first + (counts + 1) / 2, counts)  # 1-based; tied confidences share their mean rank
    return float((ranks[good].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def reliability_bins(confidences: Sequence[float], right: Sequence[bool], bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width confidence bins, each with its readings' mean confidence and exact-match rate: a calibrated
    confidence has the two equal in every bin (the reliability diagram)."""
    scores = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
    good = np.asarray(right, dtype=np.float64)
    which = np.minimum((scores * bins).astype(int), bins - 1)  # a confidence of 1.0 falls in the top bin
    table = []
    for b in range(bins):
        members = which == b
        n = int(members.sum())
        table.append(ReliabilityBin(b / bins, (b + 1) / bins, n, float(scores[members].mean()) if n else None,
                                    float(good[members].mean()) if n else None))
    return table


def expected_calibration_error(confidences: Sequence[float], right: Sequence[bool], bins: int = 10) -> float:
    total = len(confidences)
    return float(sum(b.n / total * abs(b.mean_confidence - b.exact_rate)  # type: ignore[operator]
                     for b in reliability_bins(confidences, right, bins) if b.n))


def exact_at_coverage(confidences: Sequence[float], right: Sequence[bool], coverage: float) -> float:
    """Exact-match rate of the ceil(coverage * n) surest readings (ties broken by input order)."""
    scores = np.asarray(confidences, dtype=np.float64)
    kept = max(1, int(np.ceil(coverage * len(scores))))
    surest = np.argsort(-scores, kind="stable")[:kept]
    return float(np.asarray(right, dtype=np.float64)[surest].mean())


def confidence_quality(confidences: Sequence[float], right: Sequence[bool], bins: int = 10,
                       coverages: Sequence[float] = COVERAGES) -> ConfidenceQuality:
    if len(confidences) != len(right):
        raise ValueError(f"{len(confidences)} confidences for {len(right)} outcomes")
    if not len(confidences):
        raise ValueError("cannot judge confidences over zero readings")
    return ConfidenceQuality(
        n=len(confidences),
        auroc=error_ranking_auroc(confidences, right),
        ece=expected_calibration_error(confidences, right, bins),
        exact_at_coverage={f"{round(100 * c)}%": exact_at_coverage(confidences, right, c) for c in coverages},
        reliability=reliability_bins(confidences, right, bins),
    )


def logit(probabilities: Sequence[float]) -> np.ndarray:
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_logistic(features: np.ndarray, right: Sequence[bool], l2: float = 1e-3,
                 iterations: int = 50) -> tuple[np.ndarray, float]:
    """Weights and bias of P(right) = sigmoid(features @ w + b), by Newton's method on the mean log-loss with a
    small ridge on the weights (it keeps the fit finite when the readings separate perfectly)."""
    x = np.column_stack([np.asarray(features, dtype=np.float64), np.ones(len(features))])
    y = np.asarray(right, dtype=np.float64)
    if len(y) != len(x) or not len(y):
        raise ValueError(f"{len(x)} feature rows for {len(y)} outcomes")
    ridge = np.full(x.shape[1], l2)
    ridge[-1] = 0.0  # the bias is not shrunk
    theta = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(x @ theta)))
        gradient = x.T @ (p - y) / len(y) + ridge * theta
        hessian = (x.T * (p * (1 - p))) @ x / len(y) + np.diag(ridge + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    return theta[:-1], float(theta[-1])
