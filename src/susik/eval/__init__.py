"""Offline evaluation: metrics (pure functions), slices, reports, the requirement gate."""

from susik.eval.metrics import (
    RecognitionMetrics,
    SampleScore,
    aggregate,
    corpus_bleu,
    recognition_metrics,
    score_sample,
    score_tokens,
    token_edit_distance,
)

__all__ = [
    "RecognitionMetrics", "SampleScore", "aggregate", "corpus_bleu", "recognition_metrics", "score_sample",
    "score_tokens", "token_edit_distance",
]
