"""Recognition metrics: pure functions on normalised LaTeX token sequences.

Every score compares `susik.latex.normalize` output, never raw strings, so dialect differences (spacing,
redundant braces, `\\left`) are not counted as errors. Conventions:
- `le1` / `le2` are the shares of samples with at most 1 / 2 token edits (higher is better, as in CROHME
  papers), `exp_rate` the share with none.
- `cer` is corpus-level: character edits over reference characters, on the tokens joined without spaces.
- `norm_edit_distance` is the mean over samples of token edits / max(len(pred), len(ref)) (0 = identical).
- `bleu` is sacrebleu's corpus BLEU-4 on space-joined tokens, scaled to 0..1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein
from sacrebleu.metrics import BLEU

from susik.latex import normalize

# sacrebleu splits on whitespace; a text-mode space token (`\ `) must stay one token.
_SPACE_STAND_IN = "\u2423"


@dataclass(frozen=True)
class SampleScore:
    """One prediction against its reference; enough to aggregate any slice of samples."""

    prediction: tuple[str, ...]
    reference: tuple[str, ...]
    token_distance: int
    char_distance: int

    @property
    def exact(self) -> bool:
        return self.token_distance == 0

    @property
    def reference_chars(self) -> int:
        return len("".join(self.reference))

    @property
    def norm_distance(self) -> float:
        longest = max(len(self.prediction), len(self.reference))
        return self.token_distance / longest if longest else 0.0


@dataclass(frozen=True)
class RecognitionMetrics:
    """Aggregate scores over n samples; rates and BLEU in 0..1 (cer may exceed 1 on runaway predictions)."""

    n: int
    exp_rate: float
    le1: float
    le2: float
    cer: float
    norm_edit_distance: float
    bleu: float


def token_edit_distance(prediction: Sequence[str], reference: Sequence[str]) -> int:
    """Levenshtein distance between two token lists (each token counts as one symbol)."""
    return Levenshtein.distance(list(prediction), list(reference))


def char_edit_distance(prediction: Sequence[str], reference: Sequence[str]) -> int:
    """Levenshtein distance between the token lists joined into character strings."""
    return Levenshtein.distance("".join(prediction), "".join(reference))


def score_tokens(prediction: Sequence[str], reference: Sequence[str]) -> SampleScore:
    """Score already-normalised token lists."""
    return SampleScore(
        prediction=tuple(prediction),
        reference=tuple(reference),
        token_distance=token_edit_distance(prediction, reference),
        char_distance=char_edit_distance(prediction, reference),
    )


def score_sample(prediction: str, reference: str) -> SampleScore:
    """Score one predicted LaTeX string against its reference after normalising both."""
    return score_tokens(normalize(prediction), normalize(reference))


def corpus_bleu(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (0..1) of token lists. Orders with no n-gram at all in the corpus are skipped
    (effective order), so a corpus of short formulas is not scored 0 merely for lacking 4-grams."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("BLEU of an empty corpus is undefined")
    metric = BLEU(tokenize="none", effective_order=True)
    score = metric.corpus_score([_bleu_text(p) for p in predictions], [[_bleu_text(r) for r in references]])
    return min(1.0, score.score / 100.0)  # sacrebleu's float sum can exceed 100 by an ulp


def _bleu_text(tokens: Sequence[str]) -> str:
    return " ".join(token.replace(" ", _SPACE_STAND_IN) for token in tokens)


def aggregate(scores: Sequence[SampleScore]) -> RecognitionMetrics:
    """Aggregate per-sample scores (e.g. one slice of an evaluation) into corpus metrics."""
    n = len(scores)
    if n == 0:
        raise ValueError("cannot aggregate metrics over zero samples")
    reference_chars = sum(s.reference_chars for s in scores)
    char_errors = sum(s.char_distance for s in scores)
    return RecognitionMetrics(
        n=n,
        exp_rate=sum(s.exact for s in scores) / n,
        le1=sum(s.token_distance <= 1 for s in scores) / n,
        le2=sum(s.token_distance <= 2 for s in scores) / n,
        # All-empty references: any predicted character is an error; report errors per sample instead of /0.
        cer=char_errors / reference_chars if reference_chars else char_errors / n,
        norm_edit_distance=sum(s.norm_distance for s in scores) / n,
        bleu=corpus_bleu([s.prediction for s in scores], [s.reference for s in scores]),
    )


def recognition_metrics(predictions: Sequence[str], references: Sequence[str]) -> RecognitionMetrics:
    """Metrics of predicted LaTeX strings against reference strings (same order, same length)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    return aggregate([score_sample(p, r) for p, r in zip(predictions, references, strict=True)])
