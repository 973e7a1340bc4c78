"""Challenger against champion on live traffic: correction rate and latency per model version with bootstrap
intervals, and a verdict a release decision can act on: better, worse, or not yet distinguishable.

The two versions served different requests, so each is resampled on its own and the interval is that of
the difference of the two bootstrap distributions (challenger - champion; lower is better for both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from susik.eval.bootstrap import interval, resampled_quantile, resampled_rate

RESAMPLES = 2000
LEVEL = 0.95
# Latency differences smaller than this share of the champion's median are no reason to act either way:
# with thousands of requests a 2 ms change is "significant" and still irrelevant.
LATENCY_MARGIN = 0.10
UNDECIDED = "not yet distinguishable"
Verdict = Literal["better", "worse", "not yet distinguishable"]


def _rounded(low_high: tuple[float, float], digits: int) -> list[float]:
    return [round(low_high[0], digits), round(low_high[1], digits)]


def version_intervals(
    corrected: Sequence[bool], latency_ms: Sequence[float], rng: np.random.Generator
) -> dict:
    """One version's correction rate and median latency with their 95% intervals (None without data)."""
    hits, n = int(sum(corrected)), len(corrected)
    return {
        "correction_rate_ci95": _rounded(interval(resampled_rate(hits, n, rng, RESAMPLES), LEVEL), 4)
        if n
        else None,
        "latency_ms_p50": round(float(np.median(latency_ms)), 1) if len(latency_ms) else None,
        "latency_ms_p95": round(float(np.percentile(latency_ms, 95)), 1) if len(latency_ms) else None,
        "latency_ms_p50_ci95": (
            _rounded(interval(resampled_quantile(np.asarray(latency_ms), 0.5, rng, RESAMPLES), LEVEL), 1)
            if len(latency_ms)
            else None
        ),
    }


def _verdict(low: float, high: float, margin: float) -> Verdict:
    if high < -margin:
        return "better"
    if low > margin:
        return "worse"
    return UNDECIDED


def _correction_rate(champion: Sequence[bool], challenger: Sequence[bool], rng: np.random.Generator) -> dict:
    if not champion or not challenger:
        return {
            "difference": None,
            "ci95": None,
            "verdict": UNDECIDED,
            "why": "no feedback yet on one version",
        }
    a, b = np.mean(champion), np.mean(challenger)
    spread = resampled_rate(int(sum(challenger)), len(challenger), rng, RESAMPLES) - resampled_rate(
        int(sum(champion)), len(champion), rng, RESAMPLES
    )
    low, high = interval(spread, LEVEL)
    return {
        "champion": round(float(a), 4),
        "challenger": round(float(b), 4),
        "difference": round(float(b - a), 4),
        "ci95": _rounded((low, high), 4),
        "verdict": _verdict(low, high, 0.0),
    }


def _latency(champion: Sequence[float], challenger: Sequence[float], rng: np.random.Generator) -> dict:
    if not len(champion) or not len(challenger):
        return {
            "difference": None,
            "ci95": None,
            "verdict": UNDECIDED,
            "why": "no finished request on one version",
        }
    a, b = float(np.median(champion)), float(np.median(challenger))
    spread = resampled_quantile(np.asarray(challenger), 0.5, rng, RESAMPLES) - resampled_quantile(
        np.asarray(champion), 0.5, rng, RESAMPLES
    )
    low, high = interval(spread, LEVEL)
    margin = LATENCY_MARGIN * a
    return {
        "champion": round(a, 1),
        "challenger": round(b, 1),
        "difference": round(b - a, 1),
        "ci95": _rounded((low, high), 1),
        "margin": round(margin, 1),
        "verdict": _verdict(low, high, margin),
    }


def compare_versions(
    champion: str,
    challenger: str,
    corrected: dict[str, list[bool]],
    latency_ms: dict[str, list[float]],
    rng: np.random.Generator,
) -> dict:
    """`corrected`: per version, one bool per region with a verdict; `latency_ms`: per finished request.

    The challenger is worse when either metric is; better when one is better, none is worse, and users have
    judged both versions (a faster model of unknown quality is not yet better)."""
    rate = _correction_rate(corrected.get(champion, []), corrected.get(challenger, []), rng)
    latency = _latency(latency_ms.get(champion, []), latency_ms.get(challenger, []), rng)
    verdicts = (rate["verdict"], latency["verdict"])
    if "worse" in verdicts:
        verdict: Verdict = "worse"
    elif "better" in verdicts and rate["difference"] is not None:
        verdict = "better"
    else:
        verdict = UNDECIDED
    return {
        "champion": champion,
        "challenger": challenger,
        "correction_rate": rate,
        "latency_ms_p50": latency,
        "verdict": verdict,
        "method": (
            f"challenger - champion, {LEVEL:.0%} bootstrap interval ({RESAMPLES} resamples of each version "
            f"on its own); latency within {LATENCY_MARGIN:.0%} of the champion's median counts as no change"
        ),
    }
