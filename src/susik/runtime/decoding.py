"""Autoregressive decoding in numpy over a cached decoder step: greedy (batched) and beam search, both with
a runaway guard (length cap from the input width, n-gram repetition detector) and per-token probabilities.

The step function is injected, so the same code drives the ONNX decoder graph in serving and the torch
module in tests. Caches are tuples of per-layer arrays [k0, v0, k1, v1, ...]: self-attention (N, heads, T,
head_dim), cross-attention (N, heads, S, head_dim); the cross bias (N, S) holds 0 for real memory
positions and a large negative number for padding. Row i of every array belongs to sequence i.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

Cache = tuple[np.ndarray, ...]
# (tokens (N, 1), position (1,), cross_bias (N, S), past, cross) -> (logits (N, vocab), present)
StepFn = Callable[[np.ndarray, np.ndarray, np.ndarray, Cache, Cache], tuple[np.ndarray, Cache]]
EmptyCache = Callable[[int], Cache]
Stop = Literal["eos", "length", "repetition", "empty"]  # empty: a blank crop, never decoded
Confidence = Literal["geomean", "min"]


class ConfidenceCalibration(BaseModel):
    """A logistic map from a reading's raw token probabilities to the chance that it is exactly right:
    p = sigmoid(geomean * logit(geometric mean) + minimum * logit(least likely token) + bias).

    The raw scores rank errors but are overconfident where the model is weak (label smoothing and training data
    far from the user's: handwriting reads ~0.8 where a third is right); `susik eval calibrate` fits the map on
    labelled crops the model did not train on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    geomean: float = Field(description="weight of logit(geometric mean of the token probabilities)")
    minimum: float = Field(description="weight of logit(least likely token's probability)")
    bias: float
    fitted_on: str = Field("", description="what the map was fitted on, for the model card")


class DecodeConfig(BaseModel):
    """Decoding limits; defaults suit the bundled model and are part of its record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(256, ge=1, description="hard cap on output tokens, whatever the crop's width")
    base_tokens: int = Field(32, ge=1, description="tokens allowed for any crop, however narrow")
    tokens_per_column: float = Field(
        4.0, gt=0, description="extra tokens per 16 px of input width: generous, stacked fractions are dense"
    )
    beam: int = Field(1, ge=1, le=16, description="1 = greedy; 3-5 trades ~k x decoder time for accuracy")
    length_penalty: float = Field(0.6, ge=0, description="beam: score / length**alpha, so long outputs can win")
    repeat_span: int = Field(24, ge=4, description="a unit repeated to cover this many tokens is a loop")
    repeat_max_period: int = Field(8, ge=1, description="longest repeating unit the detector looks for")
    repeat_min_count: int = Field(3, ge=2, description="fewest repeats of a unit that can count as a loop")
    rescue_below: float = Field(
        0.0, ge=0, le=1, description="greedy only: readings less confident than this are read again with beam "
        "search of width `rescue_beam` (0 = never); most crops pay greedy's cost, the unsure ones the beam's. "
        "The in-browser reader (edge-core.js decodeCrop) reads the same record and searches the same way"
    )
    rescue_beam: int = Field(3, ge=2, le=16, description="beam width of a rescue")
    thicken_below: float = Field(
        0.0, ge=0, le=1, description="readings (after any rescue) of thin-stroked crops less confident than this "
        "are read again, the same way, from the crop with its strokes thickened (preprocess_thickened); the more "
        "confident reading is kept (0 = never). The browser reads the same record the same way"
    )
    thin_core_share: float = Field(
        0.2, ge=0, le=1, description="a crop counts as thin-stroked when less than this share of its ink has a "
        "core (preprocess.stroke_core_share): thickening helps thin tablet ink and can hurt print"
    )
    widen_below: float = Field(
        0.0, ge=0, le=1, description="readings (after the looks above) less confident than this are read again, "
        "greedily (a rescue per look would multiply the cost), from the crop stretched sideways by each of "
        "`widen_factors` in turn; the most confident reading is kept (0 = never). The browser does the same"
    )
    widen_factors: tuple[float, ...] = Field(
        (1.15,), description="width scales of those looks (the height stays the model's)"
    )
    confidence: Confidence = Field(
        "geomean", description="per-token probabilities -> one score; geomean ranked errors best so far (see "
        "sequence_confidence); training logs the AUROC of both on real validation data"
    )
    calibration: ConfidenceCalibration | None = Field(
        None, description="maps the raw probabilities to the reported confidence (reported_confidence); the "
        "looks above stay gated on the raw `confidence` score (their thresholds were tuned on it)"
    )

    @field_validator("widen_factors")
    @classmethod
    def _sensible_factors(cls, factors: tuple[float, ...]) -> tuple[float, ...]:
        if not factors or any(not 0.5 <= factor <= 2.0 for factor in factors):
            raise ValueError(f"widen_factors must be one or more scales in [0.5, 2], got {factors}")
        return factors


DEFAULT_DECODE = DecodeConfig()


def max_length(width: int, config: DecodeConfig) -> int:
    """Token budget of a preprocessed crop `width` pixels wide."""
    columns = -(-int(width) // 16)
    return int(min(config.max_tokens, config.base_tokens + config.tokens_per_column * columns))


def is_looping(tokens: Sequence[int], config: DecodeConfig) -> bool:
    """True when the sequence ends in a short unit repeated over `repeat_span` tokens (a decoding loop)."""
    n = len(tokens)
    if n < config.repeat_span:
        return False
    for period in range(1, config.repeat_max_period + 1):
        repeats = max(config.repeat_min_count, -(-config.repeat_span // period))
        span = period * repeats
        if span > n:
            continue
        tail = tokens[n - span :]
        unit = tail[-period:]
        if all(tail[i] == unit[i % period] for i in range(span)):
            return True
    return False


@dataclass(frozen=True)
class Hypothesis:
    tokens: tuple[int, ...]  # without BOS and EOS
    probs: tuple[float, ...]  # probability of each emitted token, EOS included when it was emitted
    stop: Stop


def with_rescue(config: DecodeConfig, below: float | None = None, beam: int | None = None,
                thicken_below: float | None = None, widen_below: float | None = None,
                widen_factors: tuple[float, ...] | None = None) -> DecodeConfig:
    """`config` with whichever second-look settings are given replaced (validated: thresholds in [0, 1], beam
    >= 2, width factors in [0.5, 2])."""
    given = (("rescue_below", below), ("rescue_beam", beam), ("thicken_below", thicken_below),
             ("widen_below", widen_below), ("widen_factors", widen_factors))
    changes = {key: value for key, value in given if value is not None}
    return DecodeConfig.model_validate({**config.model_dump(), **changes})


def sequence_confidence(hypothesis: Hypothesis, method: Confidence = "geomean") -> float:
    """Confidence in [0, 1] from the emitted tokens' probabilities (EOS included); 0 when the runaway guard
    fired or nothing was decoded.

    `geomean` (exp of the mean log-probability) is length-neutral; `min` (the least likely token) reacts to
    one misread glyph in a long formula. On held-out drawn crops (a 0.5 M model at 90% exact match) their
    error-ranking AUROC was 0.965 and 0.957; `evaluate` logs both on real validation data.
    """
    if hypothesis.stop != "eos" or not hypothesis.probs:
        return 0.0
    if method == "min":
        return float(min(hypothesis.probs))
    return float(np.exp(np.mean(np.log(np.maximum(hypothesis.probs, 1e-12)))))


def _logit(probability: float) -> float:
    p = min(max(probability, 1e-6), 1 - 1e-6)  # token probabilities reach 1.0 in float32
    return float(np.log(p / (1 - p)))


def calibrated(calibration: ConfidenceCalibration, geomean: float, minimum: float) -> float:
    """The map's chance that a finished reading with these raw scores is exactly right."""
    score = calibration.geomean * _logit(geomean) + calibration.minimum * _logit(minimum) + calibration.bias
    return float(1 / (1 + np.exp(-score)))


def reported_confidence(hypothesis: Hypothesis, config: DecodeConfig) -> float:
    """The confidence a user sees: the raw score (`sequence_confidence`) mapped by `config.calibration` when the
    record has one; 0 when the runaway guard fired or nothing was decoded, as the raw score."""
    if config.calibration is None or hypothesis.stop != "eos" or not hypothesis.probs:
        return sequence_confidence(hypothesis, config.confidence)
    return calibrated(config.calibration, sequence_confidence(hypothesis, "geomean"),
                      sequence_confidence(hypothesis, "min"))


def _log_softmax(logits: np.ndarray, banned: Sequence[int]) -> np.ndarray:
    """Log-probabilities over the vocabulary; `banned` ids (PAD, BOS: never targets) get probability 0."""
    logits = logits.astype(np.float64)
    if banned:
        logits[:, list(banned)] = -np.inf
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _rows(arrays: Cache, rows: np.ndarray) -> Cache:
    return tuple(array[rows] for array in arrays)


def greedy(
    step: StepFn,
    empty_cache: EmptyCache,
    cross: Cache,
    cross_bias: np.ndarray,
    max_lens: Sequence[int],
    bos: int,
    eos: int,
    config: DecodeConfig,
    banned: Sequence[int] = (),
) -> list[Hypothesis]:
    """Batched greedy decoding; finished rows leave the batch so long crops don't carry short ones."""
    count = cross_bias.shape[0]
    tokens: list[list[int]] = [[] for _ in range(count)]
    probs: list[list[float]] = [[] for _ in range(count)]
    stops: list[Stop | None] = [None] * count
    active = np.arange(count)
    past = empty_cache(count)
    current = np.full((count, 1), bos, dtype=np.int64)
    position = 0
    while active.size:
        logits, past = step(current, np.array([position], dtype=np.int64), cross_bias, past, cross)
        log_probs = _log_softmax(logits, banned)
        choice = log_probs.argmax(axis=-1)
        chosen_p = np.exp(log_probs[np.arange(active.size), choice])
        keep: list[int] = []
        for row, item in enumerate(active):
            token = int(choice[row])
            probs[item].append(float(chosen_p[row]))
            if token == eos:
                stops[item] = "eos"
                continue
            tokens[item].append(token)
            if len(tokens[item]) >= max_lens[item]:
                stops[item] = "length"
            elif is_looping(tokens[item], config):
                stops[item] = "repetition"
            else:
                keep.append(row)
        position += 1
        if len(keep) < active.size:
            rows = np.array(keep, dtype=np.int64)
            active, choice, cross_bias = active[rows], choice[rows], cross_bias[rows]
            past, cross = _rows(past, rows), _rows(cross, rows)
        current = choice[:, None].astype(np.int64)
    return [Hypothesis(tuple(t), tuple(p), s or "length") for t, p, s in zip(tokens, probs, stops)]


# Unsure crops re-read by one beam search call: each beam row holds its own copy of the crop's cross-attention
# K/V (~4.7 MB for a 768-px crop with the bundled model), so 16 wide crops at width 3 would add ~230 MB at once.
RESCUED_TOGETHER = 4


def greedy_with_rescue(
    step: StepFn,
    empty_cache: EmptyCache,
    cross: Cache,
    cross_bias: np.ndarray,
    max_lens: Sequence[int],
    bos: int,
    eos: int,
    config: DecodeConfig,
    banned: Sequence[int] = (),
) -> list[Hypothesis]:
    """Greedy decoding, then beam search (width `config.rescue_beam`) for the crops whose greedy confidence is
    below `config.rescue_below`; their beam reading replaces the greedy one."""
    found = greedy(step, empty_cache, cross, cross_bias, max_lens, bos, eos, config, banned)
    unsure = [i for i, h in enumerate(found) if sequence_confidence(h, config.confidence) < config.rescue_below]
    wide = config.model_copy(update={"beam": config.rescue_beam})
    for start in range(0, len(unsure), RESCUED_TOGETHER):
        chunk = unsure[start : start + RESCUED_TOGETHER]
        rows = np.array(chunk, dtype=np.int64)
        lengths = [max_lens[i] for i in chunk]
        again = beam_search(step, empty_cache, _rows(cross, rows), cross_bias[rows], lengths, bos, eos, wide, banned)
        for index, hypothesis in zip(chunk, again):
            found[index] = hypothesis
    return found


@dataclass
class _Beam:
    tokens: list[int]
    probs: list[float]
    score: float  # sum of log-probabilities


def beam_search(
    step: StepFn,
    empty_cache: EmptyCache,
    cross: Cache,
    cross_bias: np.ndarray,
    max_lens: Sequence[int],
    bos: int,
    eos: int,
    config: DecodeConfig,
    banned: Sequence[int] = (),
) -> list[Hypothesis]:
    """Beam search of width `config.beam` for every crop in the batch at once (rows = crops x beams)."""
    width = config.beam
    count = cross_bias.shape[0]
    expand = np.repeat(np.arange(count), width)
    cross, cross_bias = _rows(cross, expand), cross_bias[expand]
    past = empty_cache(count * width)
    # Only the first beam of each crop starts alive; the others would duplicate it.
    beams = [[_Beam([], [], 0.0 if b == 0 else -np.inf) for b in range(width)] for _ in range(count)]
    finished: list[list[tuple[float, Hypothesis]]] = [[] for _ in range(count)]
    done = [False] * count
    current = np.full((count * width, 1), bos, dtype=np.int64)
    position = 0
    while not all(done):
        logits, past = step(current, np.array([position], dtype=np.int64), cross_bias, past, cross)
        log_probs = _log_softmax(logits, banned).reshape(count, width, -1)
        position += 1
        source_rows = np.zeros(count * width, dtype=np.int64)
        next_tokens = np.full(count * width, eos, dtype=np.int64)
        for item in range(count):
            base = item * width
            if done[item]:
                source_rows[base : base + width] = np.arange(base, base + width)
                continue
            scores = np.array([beam.score for beam in beams[item]])[:, None] + log_probs[item]
            order = np.argsort(-scores, axis=None)[: 2 * width]
            survivors: list[_Beam] = []
            for flat in order:
                beam_index, token = divmod(int(flat), scores.shape[1])
                parent = beams[item][beam_index]
                if not np.isfinite(scores[beam_index, token]):
                    continue
                p = float(np.exp(log_probs[item, beam_index, token]))
                child = _Beam(parent.tokens + [token], parent.probs + [p], float(scores[beam_index, token]))
                stop = _beam_stop(child, token, eos, max_lens[item], config)
                if stop is not None:
                    tokens = child.tokens[:-1] if stop == "eos" else child.tokens
                    normalised = child.score / max(1, len(child.tokens)) ** config.length_penalty
                    finished[item].append((normalised, Hypothesis(tuple(tokens), tuple(child.probs), stop)))
                    continue
                source_rows[base + len(survivors)] = base + beam_index
                next_tokens[base + len(survivors)] = token
                survivors.append(child)
                if len(survivors) == width:
                    break
            eos_count = sum(1 for _, h in finished[item] if h.stop == "eos")
            if not survivors or eos_count >= width:
                done[item] = True
                survivors = [_Beam([], [], -np.inf)] * width
            survivors += [_Beam([], [], -np.inf)] * (width - len(survivors))
            beams[item] = survivors
        past = _rows(past, source_rows)
        current = next_tokens[:, None]
    return [_best(f) for f in finished]


def _beam_stop(beam: _Beam, token: int, eos: int, max_len: int, config: DecodeConfig) -> Stop | None:
    if token == eos:
        return "eos"
    if len(beam.tokens) >= max_len:
        return "length"
    if is_looping(beam.tokens, config):
        return "repetition"
    return None


def _best(finished: list[tuple[float, Hypothesis]]) -> Hypothesis:
    """Highest normalised score, preferring hypotheses that ended with EOS over guarded ones."""
    return max(finished, key=lambda pair: (pair[1].stop == "eos", pair[0]))[1]
