"""Detection and end-to-end page metrics: pure functions over per-page counts.

Regions are matched one-to-one by polygon IoU (>= 0.5 by default; greedy, best IoU first — see
`susik.eval.detect_match`, shared with detector training). Per page we keep four counts, enough to aggregate
any slice of pages or a bootstrap resample of them:
- precision = matched / predicted regions, recall = matched / true regions, f1 their harmonic mean;
- e2e_exact is the same F1 where a hit must also read exactly right (normalised LaTeX tokens equal), so a
  spurious region and a missed or misread formula all count against it. e2e_precision / e2e_recall are its
  two halves. Empty sets score 1.0 where nothing could go wrong (no predictions -> precision 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from susik.eval.detect_match import Points, match_regions
from susik.latex import normalize


@dataclass(frozen=True)
class RegionTruth:
    polygon: Points
    latex: str


@dataclass(frozen=True)
class RegionGuess:
    polygon: Points
    latex: str


@dataclass(frozen=True)
class PageScore:
    """One page: counts plus, per true region, the index of the prediction matched to it (or None)."""

    matched: int
    exact: int
    predictions: int
    truths: int
    match_of_truth: tuple[int | None, ...] = ()

    @property
    def correct(self) -> bool:
        """Every formula found and read exactly, nothing spurious."""
        return self.exact == self.truths == self.predictions


@dataclass(frozen=True)
class DetectionMetrics:
    n: int
    precision: float
    recall: float
    f1: float
    e2e_exact: float
    e2e_precision: float
    e2e_recall: float


def _ratio(hits: float, total: float) -> float:
    return hits / total if total else 1.0


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def score_page(predicted: Sequence[RegionGuess], truth: Sequence[RegionTruth], threshold: float = 0.5) -> PageScore:
    pairs = match_regions([p.polygon for p in predicted], [t.polygon for t in truth], threshold)
    match_of_truth: list[int | None] = [None] * len(truth)
    exact = 0
    for i, j, _ in pairs:
        match_of_truth[j] = i
        exact += normalize(predicted[i].latex) == normalize(truth[j].latex)
    return PageScore(len(pairs), exact, len(predicted), len(truth), tuple(match_of_truth))


def metrics_from_counts(n: int, matched: float, exact: float, predictions: float, truths: float) -> DetectionMetrics:
    precision, recall = _ratio(matched, predictions), _ratio(matched, truths)
    e2e_precision, e2e_recall = _ratio(exact, predictions), _ratio(exact, truths)
    return DetectionMetrics(n, precision, recall, _f1(precision, recall), _f1(e2e_precision, e2e_recall),
                            e2e_precision, e2e_recall)


def aggregate_pages(scores: Sequence[PageScore]) -> DetectionMetrics:
    if not scores:
        raise ValueError("cannot aggregate metrics over zero pages")
    return metrics_from_counts(
        len(scores),
        sum(s.matched for s in scores),
        sum(s.exact for s in scores),
        sum(s.predictions for s in scores),
        sum(s.truths for s in scores),
    )
