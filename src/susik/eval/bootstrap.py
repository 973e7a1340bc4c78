"""Bootstrap confidence intervals and paired comparisons over per-sample values.

A resample is represented by how often each sample was drawn (a row of multinomial counts), so any
statistic that is a ratio of per-sample sums (exp_rate, CER, precision, ...) is a matrix product, and two
models scored on the same samples are compared on the very same resamples (paired bootstrap).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
Statistic = Callable[[np.ndarray], np.ndarray]  # (resamples, n) draw counts -> (resamples,) values


def draws(n: int, rng: np.random.Generator, resamples: int = DEFAULT_RESAMPLES) -> np.ndarray:
    """(resamples, n) counts: how often each of n samples is drawn in each resample of size n."""
    if n == 0:
        raise ValueError("cannot resample zero samples")
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


def ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float = 1.0) -> Statistic:
    """sum(numerator) / sum(denominator) per resample; `empty` where the denominator sums to 0."""
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)

    def statistic(weights: np.ndarray) -> np.ndarray:
        top, bottom = weights @ numerator, weights @ denominator
        return np.divide(top, bottom, out=np.full_like(top, empty), where=bottom != 0)

    return statistic


def mean(values: np.ndarray) -> Statistic:
    values = np.asarray(values, float)
    return ratio(values, np.ones_like(values))


def f1(hits: np.ndarray, predictions: np.ndarray, truths: np.ndarray) -> Statistic:
    precision, recall = ratio(hits, predictions), ratio(hits, truths)

    def statistic(weights: np.ndarray) -> np.ndarray:
        p, r = precision(weights), recall(weights)
        total = p + r
        return np.divide(2 * p * r, total, out=np.zeros_like(total), where=total != 0)

    return statistic


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap values."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def confidence_interval(statistic: Statistic, weights: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    return interval(statistic(weights), level)


@dataclass(frozen=True)
class PairedDifference:
    """a - b on the same resamples: the observed difference and its percentile interval."""

    difference: float
    low: float
    high: float

    @property
    def tied(self) -> bool:
        """The interval holds 0: the data cannot tell the two apart at this level."""
        return self.low <= 0.0 <= self.high


def paired_difference(a: Statistic, b: Statistic, weights: np.ndarray, level: float = 0.95) -> PairedDifference:
    ones = np.ones((1, weights.shape[1]))
    observed = float(a(ones)[0] - b(ones)[0])
    low, high = interval(a(weights) - b(weights), level)
    return PairedDifference(observed, low, high)


# Bootstrap distributions drawn in O(resamples), whatever the sample size (live traffic grows without bound).


def resampled_rate(hits: int, n: int, rng: np.random.Generator, resamples: int = DEFAULT_RESAMPLES) -> np.ndarray:
    """The mean of n 0/1 values, one per resample: a resample's count of ones is Binomial(n, hits / n)."""
    if n == 0:
        raise ValueError("cannot resample zero samples")
    return rng.binomial(n, hits / n, size=resamples) / n


def resampled_quantile(
    values: np.ndarray, q: float, rng: np.random.Generator, resamples: int = DEFAULT_RESAMPLES
) -> np.ndarray:
    """The q-quantile (0 < q <= 1; the ceil(q n)-th smallest value) of each resample, without drawing any: the
    k-th smallest of n draws from the sample is the sample's value at the k-th smallest of n uniforms, and
    that uniform order statistic is Beta(k, n + 1 - k)."""
    ordered = np.sort(np.asarray(values, float))
    n = len(ordered)
    if n == 0:
        raise ValueError("cannot resample zero samples")
    k = min(n, max(1, int(np.ceil(q * n))))
    position = rng.beta(k, n + 1 - k, size=resamples) * n
    return ordered[np.minimum(position.astype(int), n - 1)]
