"""Export a trained recognizer to ONNX for the torch-free runtime.

Two graphs (BatchNorm folded into the convolutions first):
- encoder: images (B, 1, H, W) -> cross_k_i, cross_v_i (B, heads, S, head_dim) for each decoder layer i:
  the CNN, positions and every layer's cross-attention K/V projection, so the memory is projected once;
- decoder step: tokens (B, 1), position (1,), cross_bias (B, S), past_k_i/past_v_i (B, heads, T, head_dim),
  cross_k_i/cross_v_i -> logits (B, vocab), present_k_i/present_v_i (T + 1). One tensor per layer and kind
  rather than stacked ones: stacking costs a split and a concat of every cache on every token.

Quantisation: the decoder gets dynamic int8 (weights int8, activations quantised on the fly: right for
MatMul-heavy graphs); the encoder static int8 (QDQ, calibrated on real crops), dynamic, or none. Each
choice is measured in `benchmarks/recognizer_speed.py`; `export_recognizer` checks the fp32 graphs against
torch and the int8 ones against fp32 before writing the bundle.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import logging
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)
from torch import Tensor, nn

from susik.latex import Vocabulary
from susik.models.recognizer import Recognizer, count_parameters, fold_batchnorm
from susik.models.registry import ModelRecord, TrainingInfo, file_entry, model_card, save_record
from susik.runtime.decoding import DEFAULT_DECODE, Cache, DecodeConfig, StepFn, greedy, max_length
from susik.runtime.preprocess import pad_batch, preprocess
from susik.runtime.recognizer import OnnxRecognizer, memory_bias, pad_cross

EncoderQuant = Literal["none", "dynamic", "static", "static-conv"]
OPSET = 17


def cache_names(prefix: str, layers: int) -> list[str]:
    """[prefix_k_0, prefix_v_0, prefix_k_1, ...]: the order of `Decoder.cross_kv` and the step caches."""
    return [f"{prefix}_{kind}_{i}" for i in range(layers) for kind in "kv"]


class EncoderGraph(nn.Module):
    def __init__(self, model: Recognizer) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model.decoder.cross_kv(self.model.encoder(images)))


class DecoderStepGraph(nn.Module):
    """Flat tensor arguments for the exporter: tokens, position, cross_bias, *past, *cross."""

    def __init__(self, model: Recognizer) -> None:
        super().__init__()
        self.model = model
        self.count = 2 * model.config.layers

    def forward(self, tokens: Tensor, position: Tensor, cross_bias: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
        past, cross = caches[: self.count], caches[self.count :]
        logits, present = self.model.decoder.step(tokens, position, cross_bias, past, cross)
        return (logits, *present)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which takes ~20 s a graph here against
        # under 1 s, and torch is pinned: keep the fast one while it exists.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=axes,
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))


def export_graphs(model: Recognizer, folder: Path) -> tuple[Path, Path]:
    """fp32 `encoder.fp32.onnx` and `decoder.fp32.onnx` in `folder`, from an eval-mode copy with BN folded."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frozen = fold_batchnorm(copy.deepcopy(model).eval())
    config = frozen.config
    multiple = config.preprocess.width_multiple
    images = torch.rand(2, 1, config.preprocess.height, 4 * multiple)
    encoder_path, decoder_path = folder / "encoder.fp32.onnx", folder / "decoder.fp32.onnx"
    cross_names, past_names = cache_names("cross", config.layers), cache_names("past", config.layers)
    present_names = cache_names("present", config.layers)
    memory_axes = {name: {0: "batch", 2: "memory"} for name in cross_names}
    _export(EncoderGraph(frozen), (images,), encoder_path, ["images"], cross_names,
            {"images": {0: "batch", 3: "width"}, **memory_axes})
    with torch.no_grad():
        cross = EncoderGraph(frozen)(images)
    past = [torch.zeros(2, config.heads, 3, config.head_dim) for _ in past_names]
    args = (torch.ones(2, 1, dtype=torch.long), torch.tensor([3]), torch.zeros(2, cross[0].shape[2]), *past, *cross)
    axes = {
        "tokens": {0: "batch"}, "cross_bias": {0: "batch", 1: "memory"}, "logits": {0: "batch"},
        **{name: {0: "batch", 2: "past"} for name in past_names}, **memory_axes,
        **{name: {0: "batch", 2: "present"} for name in present_names},
    }
    _export(DecoderStepGraph(frozen), args, decoder_path, ["tokens", "position", "cross_bias", *past_names,
            *cross_names], ["logits", *present_names], axes)
    return encoder_path, decoder_path


class _Batches(CalibrationDataReader):
    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"images": batch}


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ORT's quantizer logs advice ("consider pre-processing") on the root logger; keep the CLI output clean."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_decoder(source: Path, target: Path) -> Path:
    """Dynamic int8 of every weight MatMul (per output channel); embeddings stay fp32 (small, and lookups gain
    nothing from int8). Weights use 7 bits (`reduce_range`): on AVX2 CPUs without VNNI, ORT's u8 x s8 kernel
    sums pairs of products in saturating int16, and full-range weights gave ~15% mean logit error against
    ~1.4% with 7 bits (random-weight default model, tests/bench)."""
    with _quiet_quantizer():
        quantize_dynamic(source, target, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                         reduce_range=True, weight_type=QuantType.QInt8)
    return target


def quantize_encoder(source: Path, target: Path, mode: EncoderQuant, calibration: Sequence[np.ndarray]) -> Path:
    """`none`: a copy; `dynamic`: int8 weights of convs and MatMuls; `static`: QDQ calibrated on `calibration`
    (preprocessed batches, (B, 1, H, W)). Static uses uint8 activations with reduced-range int8 weights:
    AVX2 without VNNI saturates full-range u8s8 products. `static-conv` quantises the convolutions only and
    keeps the cross-attention K/V projections in fp32 (+1.4 MB): their per-tensor activation scales are what
    cost a trained model its agreement with fp32 (87.5% -> 93.8% greedy agreement on 32 crops of a stage-2
    checkpoint); on barely trained models the difference is noise."""
    if mode == "none":
        target.write_bytes(Path(source).read_bytes())
    elif mode == "dynamic":
        with _quiet_quantizer():
            quantize_dynamic(source, target, op_types_to_quantize=["Conv", "MatMul"], per_channel=True,
                             reduce_range=True, weight_type=QuantType.QInt8)
    else:
        if not calibration:
            raise ValueError("static encoder quantisation needs calibration batches")
        with tempfile.TemporaryDirectory() as scratch:
            prepared = Path(scratch) / "encoder.pre.onnx"
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(prepared, target, _Batches(calibration), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            reduce_range=True,
                            op_types_to_quantize=["Conv"] if mode == "static-conv" else ["Conv", "MatMul"])
    return target


def calibration_batches(images: Sequence[np.ndarray], model: Recognizer, batch_size: int = 8) -> list[np.ndarray]:
    """Crops -> preprocessed, width-sorted padded batches like the runtime makes."""
    config = model.config.preprocess
    prepared = sorted((preprocess(image, config) for image in images), key=lambda image: image.shape[1])
    return [pad_batch(prepared[i : i + batch_size], config)[0] for i in range(0, len(prepared), batch_size)]


@dataclass(frozen=True)
class ParityReport:
    max_logit_diff: float  # fp32 ONNX vs torch, first decoding step of every calibration crop
    greedy_agreement_fp32: float  # share of crops where ONNX fp32 greedy tokens equal torch's
    greedy_agreement_int8: float  # share where the quantised bundle's greedy tokens equal fp32 ONNX's

    def as_dict(self) -> dict[str, float]:
        return {"max_logit_diff_fp32": self.max_logit_diff, "greedy_agreement_fp32_vs_torch":
                self.greedy_agreement_fp32, "greedy_agreement_int8_vs_fp32": self.greedy_agreement_int8}


def torch_step(model: Recognizer) -> StepFn:
    """The torch decoder step behind the numpy interface of `decoding.StepFn`."""

    def tensors(arrays: Sequence[np.ndarray]) -> list[Tensor]:
        return [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]

    def step(tokens: np.ndarray, position: np.ndarray, cross_bias: np.ndarray, past: Cache,
             cross: Cache) -> tuple[np.ndarray, Cache]:
        with torch.no_grad():
            logits, present = model.decoder.step(*tensors((tokens, position, cross_bias)), tensors(past),
                                                 tensors(cross))
        return logits.numpy(), tuple(t.numpy() for t in present)

    return step


def parity(model: Recognizer, fp32: OnnxRecognizer, int8: OnnxRecognizer, images: Sequence[np.ndarray],
           vocab: Vocabulary) -> ParityReport:
    """Compare torch, ONNX fp32 and the quantised graphs on the same crops, with the same decoding code."""
    model = model.eval()
    config = model.config.preprocess
    batch, widths = pad_batch([preprocess(image, config) for image in images], config)
    multiple = config.width_multiple
    with torch.no_grad():  # crop by crop, as the ONNX predictor encodes (see OnnxRecognizer.encode)
        alone = []
        for i, width in enumerate(widths):
            own = torch.from_numpy(batch[i : i + 1, :, :, : -(-int(width) // multiple) * multiple])
            memory, _ = model.encode(own, torch.from_numpy(widths[i : i + 1]))
            alone.append([t.numpy() for t in model.decoder.cross_kv(memory)])
    cross = pad_cross(alone, batch.shape[2] // model.config.total_stride[0])
    bias = memory_bias(widths, model.config.total_stride, batch.shape)
    step = torch_step(model)
    bos = np.full((len(images), 1), vocab.bos_id, dtype=np.int64)
    first = np.array([0], dtype=np.int64)
    empty = fp32.empty_cache(len(images))
    reference = step(bos, first, bias, empty, cross)[0]
    onnx_cross, onnx_bias = fp32.encode(batch, widths)
    logits = fp32.step(bos, first, onnx_bias, empty, onnx_cross)[0]
    max_lens = [max_length(int(w), fp32.decode) for w in widths]
    banned = (vocab.pad_id, vocab.bos_id)
    torch_tokens = [h.tokens for h in greedy(step, fp32.empty_cache, cross, bias, max_lens, vocab.bos_id,
                                             vocab.eos_id, fp32.decode, banned)]
    fp32_tokens = [h.tokens for h in fp32.hypotheses(images, beam=1)]
    int8_tokens = [h.tokens for h in int8.hypotheses(images, beam=1)]
    count = max(1, len(images))
    return ParityReport(
        float(np.abs(logits - reference).max()),
        sum(a == b for a, b in zip(torch_tokens, fp32_tokens)) / count,
        sum(a == b for a, b in zip(fp32_tokens, int8_tokens)) / count,
    )


def _version(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()[:12]


def export_recognizer(
    checkpoint: dict[str, Any],
    out: Path,
    calibration: Sequence[np.ndarray],
    *,
    encoder_quant: EncoderQuant = "static",
    decode: DecodeConfig = DEFAULT_DECODE,
    max_logit_diff: float = 1e-3,
) -> ModelRecord:
    """Write `out/recognizer/` (encoder.onnx, decoder.onnx, vocab.json, record.json, MODEL_CARD.md) from a
    training checkpoint; refuses to write a bundle whose fp32 graphs disagree with torch."""
    from susik.models.train_recognizer import model_from_checkpoint

    model, vocab = model_from_checkpoint(checkpoint)
    folder = Path(out) / "recognizer"
    folder.mkdir(parents=True, exist_ok=True)
    decode = decode.model_copy(update={"max_tokens": min(decode.max_tokens, model.config.max_tokens - 1)})
    vocab_path = folder / "vocab.json"
    vocab.save(vocab_path)
    with tempfile.TemporaryDirectory() as scratch:
        encoder_fp32, decoder_fp32 = export_graphs(model, Path(scratch))
        batches = calibration_batches(calibration, model)
        encoder_path = quantize_encoder(encoder_fp32, folder / "encoder.onnx", encoder_quant, batches)
        decoder_path = quantize_decoder(decoder_fp32, folder / "decoder.onnx")
        stride = model.config.total_stride
        # The parity check compares the graphs greedy step by greedy step, whatever second looks the record asks.
        plain = decode.model_copy(update={"rescue_below": 0.0, "thicken_below": 0.0, "widen_below": 0.0})
        fp32 = OnnxRecognizer(encoder_fp32, decoder_fp32, vocab, model.config.preprocess, stride, plain)
        int8 = OnnxRecognizer(encoder_path, decoder_path, vocab, model.config.preprocess, stride, plain)
        report = parity(model, fp32, int8, list(calibration)[:32], vocab)
    if report.max_logit_diff > max_logit_diff:
        raise RuntimeError(f"ONNX fp32 differs from torch by {report.max_logit_diff:.2e} > {max_logit_diff}")
    files = {"encoder": encoder_path, "decoder": decoder_path, "vocab": vocab_path}
    train_config = checkpoint.get("train_config", {})
    record = ModelRecord(
        name="recognizer",
        version=_version([encoder_path, decoder_path, vocab_path]),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        architecture=model.config.model_dump(mode="json"),
        parameters=count_parameters(model),
        files={key: file_entry(folder, path) for key, path in files.items()},
        preprocess=model.config.preprocess,
        stride=stride,
        decode=decode,
        quantization={"encoder": f"{encoder_quant}-int8" if encoder_quant != "none" else "none",
                      "decoder": "dynamic-int8"},
        training=TrainingInfo(
            command=checkpoint.get("command", ""), config=train_config, step=checkpoint["step"],
            best_metric=checkpoint.get("best_metric"), data_versions=checkpoint.get("data_versions", {}),
            sources=list(checkpoint.get("sources", [])), averaged_from=list(checkpoint.get("averaged_from", [])),
        ),
        metrics={"export_check": {**report.as_dict(), "n": min(32, len(calibration))}},
    )
    save_record(record, folder)
    (folder / "MODEL_CARD.md").write_text(model_card(record))
    return record.model_copy(update={"root": folder})
