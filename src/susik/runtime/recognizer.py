"""The recognizer at serving time: ONNX Runtime, no torch. Batch of crops in, one `Recognition` per crop out.

The encoder graph runs once per batch and also yields every decoder layer's cross-attention K/V; the
decoder-step graph then runs once per output token with a growing self-attention cache, fed and returned
as one tensor per layer and kind (`past_k_0`, `past_v_0`, ... -> `present_k_0`, ...). Crops are sorted
by width and decoded in sub-batches, so a narrow crop is not padded to the widest one in the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from susik.latex import Vocabulary, detokenize
from susik.models.registry import ModelRecord, get_model, resolve
from susik.results import Recognition
from susik.runtime.decoding import (
    DEFAULT_DECODE,
    Cache,
    DecodeConfig,
    Hypothesis,
    beam_search,
    greedy,
    greedy_with_rescue,
    max_length,
    reported_confidence,
    sequence_confidence,
    with_rescue,
)
from susik.runtime.preprocess import (
    CropError,
    PreprocessConfig,
    pad_batch,
    preprocess,
    preprocess_thickened,
    stroke_core_share,
)
from susik.runtime.sessions import session_options

NEG_INF = -1e4  # must match susik.models.recognizer.NEG_INF, the value the decoder was trained with


class OnnxRecognizer:
    """Formula crops (gray or BGR uint8) -> `Recognition(latex, confidence)`; `[]` for `[]`. The confidence is
    the record's calibrated one (`decoding.reported_confidence`); the further looks are gated on the raw score."""

    def __init__(
        self,
        encoder: Path,
        decoder: Path,
        vocab: Vocabulary,
        preprocess_config: PreprocessConfig,
        stride: tuple[int, int],
        decode: DecodeConfig = DEFAULT_DECODE,
        threads: int | None = None,
        batch_size: int = 16,
    ) -> None:
        options = session_options(threads)
        self.encoder = ort.InferenceSession(str(encoder), options, providers=["CPUExecutionProvider"])
        self.decoder = ort.InferenceSession(str(decoder), options, providers=["CPUExecutionProvider"])
        self.vocab = vocab
        self.preprocess_config = preprocess_config
        self.stride = stride
        self.decode = decode
        self.batch_size = batch_size
        past = [node for node in self.decoder.get_inputs() if node.name.startswith("past_")]
        self._cache_names = [node.name for node in past]
        self._present_names = [name.replace("past_", "present_") for name in self._cache_names]
        self._cross_names = [name.replace("past_", "cross_") for name in self._cache_names]
        self._cache_dims = (int(past[0].shape[1]), int(past[0].shape[3]))  # heads, head_dim

    @classmethod
    def from_record(cls, record: ModelRecord, threads: int | None = None) -> OnnxRecognizer:
        """Build from a bundled record (`record.json` beside the ONNX files); files are hash-checked."""
        return cls(
            record.file("encoder"),
            record.file("decoder"),
            Vocabulary.load(record.file("vocab")),
            record.preprocess,
            record.stride,
            record.decode,
            threads=threads,
        )

    @classmethod
    def default(cls, threads: int | None = None) -> OnnxRecognizer:
        """The bundled model in `models/recognizer/`; a clear error says how to make one if it is missing."""
        return cls.from_record(get_model("recognizer"), threads=threads)

    @classmethod
    def load(cls, name_or_path: str | Path, threads: int | None = None) -> OnnxRecognizer:
        """A registry name (`recognizer`), a model folder, or a `record.json` path."""
        return cls.from_record(resolve(name_or_path), threads=threads)

    def rescue_unsure(self, below: float) -> None:
        """From now on, greedy readings less confident than `below` are read again with beam search (0: never)."""
        self.decode = with_rescue(self.decode, below)

    def thicken_unsure(self, below: float) -> None:
        """From now on, readings of thin-stroked crops less confident than `below` are read again with thickened
        strokes (0: never; `decode.thin_core_share` says what counts as thin)."""
        self.decode = with_rescue(self.decode, thicken_below=below)

    def widen_unsure(self, below: float) -> None:
        """From now on, readings less confident than `below` are read again, greedily, stretched sideways by each
        of `decode.widen_factors` (0: never)."""
        self.decode = with_rescue(self.decode, widen_below=below)

    def __call__(self, images: Sequence[np.ndarray], beam: int | None = None) -> list[Recognition]:
        return [self._to_recognition(h) for h in self.hypotheses(images, beam)]

    def hypotheses(self, images: Sequence[np.ndarray], beam: int | None = None) -> list[Hypothesis]:
        """Raw decoder output per crop (token ids, per-token probabilities, why it stopped); a blank or tiny
        crop is not decoded and gets an empty hypothesis that stopped for "empty"."""
        results: list[Hypothesis | None] = [None] * len(images)
        prepared: dict[int, np.ndarray] = {}
        for index, image in enumerate(images):
            try:
                prepared[index] = preprocess(image, self.preprocess_config, check=True)
            except CropError:
                results[index] = Hypothesis((), (), "empty")
        for index, hypothesis in self._decode_all(prepared, beam).items():
            results[index] = hypothesis
        below, thin = self.decode.thicken_below, self.decode.thin_core_share
        unsure = {i: preprocess_thickened(images[i], self.preprocess_config) for i in prepared
                  if self._confidence(results[i]) < below  # type: ignore[arg-type]
                  and stroke_core_share(prepared[i]) < thin}
        self._keep_surer(results, self._decode_all(unsure, beam))
        widen = self.decode.widen_below
        for factor in self.decode.widen_factors if widen > 0 else ():  # greedy: a rescue per look costs 3x
            unsure = {i: preprocess(images[i], self.preprocess_config, factor) for i in prepared
                      if self._confidence(results[i]) < widen}  # type: ignore[arg-type]
            self._keep_surer(results, self._decode_all(unsure, beam, rescue=False))
        return results  # type: ignore[return-value]

    def _keep_surer(self, results: list[Hypothesis | None], others: dict[int, Hypothesis]) -> None:
        """Replace each reading by the other look's where that one is more confident."""
        for index, other in others.items():
            if self._confidence(other) > self._confidence(results[index]):  # type: ignore[arg-type]
                results[index] = other

    def _decode_all(self, prepared: dict[int, np.ndarray], beam: int | None,
                    rescue: bool = True) -> dict[int, Hypothesis]:
        """Decode preprocessed crops in batches of similar width (with the record's rescue unless `rescue` is
        False); keyed as given."""
        order = sorted(prepared, key=lambda i: prepared[i].shape[1])
        decoded: dict[int, Hypothesis] = {}
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            decoded.update(zip(chunk, self._decode_batch([prepared[i] for i in chunk], beam, rescue)))
        return decoded

    def _confidence(self, hypothesis: Hypothesis) -> float:
        return sequence_confidence(hypothesis, self.decode.confidence)

    def encode(self, batch: np.ndarray, widths: np.ndarray) -> tuple[Cache, np.ndarray]:
        """-> cross K/V per layer [k0, v0, ...] (B, heads, S, head_dim) and the memory bias (B, S).

        Each crop is encoded alone at its own padded width and its features are then padded to the batch's:
        encoded together, a convolution near a narrow crop's right edge sees its neighbours' padding as paper
        features instead of zero padding, and the reading depended on the batch (10% of 60 held-out crops
        read differently batched than alone, in fp32). The decoder, where the time goes, stays batched."""
        multiple = self.preprocess_config.width_multiple
        alone = [
            self.encoder.run(self._cross_names, {"images": batch[i : i + 1, :, :, : -(-int(w) // multiple) * multiple]})
            for i, w in enumerate(widths)
        ]
        return pad_cross(alone, batch.shape[2] // self.stride[0]), memory_bias(widths, self.stride, batch.shape)

    def step(
        self, tokens: np.ndarray, position: np.ndarray, cross_bias: np.ndarray, past: Cache, cross: Cache
    ) -> tuple[np.ndarray, Cache]:
        """One decoder-step call (`decoding.StepFn`)."""
        feeds = {"tokens": tokens, "position": position, "cross_bias": cross_bias}
        feeds.update(zip(self._cache_names, past))
        feeds.update(zip(self._cross_names, cross))
        logits, *present = self.decoder.run(["logits", *self._present_names], feeds)
        return logits, tuple(present)

    def empty_cache(self, batch: int) -> Cache:
        heads, head_dim = self._cache_dims
        empty = np.zeros((batch, heads, 0, head_dim), dtype=np.float32)
        return (empty,) * len(self._cache_names)

    def _decode_batch(self, prepared: list[np.ndarray], beam: int | None, rescue: bool = True) -> list[Hypothesis]:
        batch, widths = pad_batch(prepared, self.preprocess_config)
        cross, bias = self.encode(batch, widths)
        max_lens = [max_length(int(w), self.decode) for w in widths]
        config = self.decode if beam is None else self.decode.model_copy(update={"beam": beam})
        if config.beam > 1:
            search = beam_search
        else:
            search = greedy_with_rescue if rescue and config.rescue_below > 0 else greedy
        vocab = self.vocab
        return search(self.step, self.empty_cache, cross, bias, max_lens, vocab.bos_id, vocab.eos_id, config,
                      banned=(vocab.pad_id, vocab.bos_id))

    def _to_recognition(self, hypothesis: Hypothesis) -> Recognition:
        return Recognition(detokenize(self.vocab.decode(hypothesis.tokens)), reported_confidence(hypothesis, self.decode),
                           self._confidence(hypothesis))


def pad_cross(alone: Sequence[Sequence[np.ndarray]], feature_h: int) -> Cache:
    """Per-crop cross K/V [(1, heads, h*w_i, d) per layer] -> the batch's [(B, heads, h*W, d)], zero-padded on
    the right of every feature row (positions are row-major, as the encoder flattens them)."""
    feature_w = max(part[0].shape[2] // feature_h for part in alone)
    heads, head_dim = alone[0][0].shape[1], alone[0][0].shape[3]
    cross = []
    for layer in range(len(alone[0])):
        padded = np.zeros((len(alone), heads, feature_h, feature_w, head_dim), dtype=np.float32)
        for i, part in enumerate(alone):
            own_w = part[layer].shape[2] // feature_h
            padded[i, :, :, :own_w] = part[layer][0].reshape(heads, feature_h, own_w, head_dim)
        cross.append(padded.reshape(len(alone), heads, feature_h * feature_w, head_dim))
    return tuple(cross)


def memory_bias(widths: np.ndarray, stride: tuple[int, int], batch_shape: tuple[int, ...]) -> np.ndarray:
    """(B, S) additive attention bias: NEG_INF on feature columns past each crop's own width."""
    stride_h, stride_w = stride
    feature_h, feature_w = batch_shape[2] // stride_h, batch_shape[3] // stride_w
    valid = np.maximum(1, -(-widths // stride_w))
    pad = np.arange(feature_w)[None, :] >= valid[:, None]
    return np.repeat(pad[:, None, :], feature_h, axis=1).reshape(len(widths), -1).astype(np.float32) * NEG_INF
