"""A trainable torch checkpoint rebuilt from a bundled ONNX recognizer (`models/recognizer/`).

Why: the bundle is the one artefact of a training run that lives in the repository; the run's torch
checkpoints (`runs/`) stay on the machine that trained them. Rebuilding lets any session continue training
the bundled model (`susik train recognizer --init models/recognizer`) instead of starting from scratch.

What comes back is the exported function, not the original weights: int8 weights are dequantised (one
quantisation step of error, which fine-tuning absorbs), and each BatchNorm the export folded into its
convolution is rebuilt around the fused weights and measured on real crops (`folded_batchnorm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from susik.latex import Vocabulary
from susik.models.folded_batchnorm import identity_norm_state, refit_batchnorm
from susik.models.recognizer import ConvBN, Recognizer, RecognizerConfig
from susik.models.registry import ModelRecord, load_record
from susik.runtime.preprocess import pad_batch, preprocess

_PREFIX = "model."  # the export wraps the Recognizer as `self.model`
_PASS_THROUGH = ("Mul", "Cast", "QuantizeLinear", "DequantizeLinear")  # between a MatMul and its bias Add


class BundleImportError(ValueError):
    """The ONNX graphs do not hold a weight the torch model needs (another architecture or exporter)."""


def _dequantised(initializers: dict[str, np.ndarray], base: str) -> np.ndarray:
    """`base` as float32: as stored, or from `base_quantized` with its per-channel scale and zero point.

    Per-channel scales lie along the output channel: axis 0 of a conv weight (O, I, kh, kw), axis 1 of a
    MatMul weight (in, out), the only axis of a bias."""
    if base in initializers:
        return initializers[base].astype(np.float32)
    quantized = initializers.get(f"{base}_quantized")
    if quantized is None:
        raise BundleImportError(f"no initializer {base} (or {base}_quantized) in the bundle")
    # Weights keep `base_scale`; a static graph's int32 biases are `base_quantized` with `base_quantized_scale`.
    suffix = "_quantized_" if f"{base}_quantized_scale" in initializers else "_"
    scale = initializers[f"{base}{suffix}scale"]
    zero = initializers.get(f"{base}{suffix}zero_point")
    zero = np.zeros_like(scale) if zero is None else zero
    shape = [1] * quantized.ndim
    if scale.size > 1:  # per channel, else per tensor
        shape[1 if quantized.ndim == 2 else 0] = -1
    values = (quantized.astype(np.float32) - zero.astype(np.float32).reshape(shape)) * scale.reshape(shape)
    return values.astype(np.float32)


def _matmul_weights(graph: onnx.GraphProto, initializers: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """torch `Linear` weights (out, in) by module name, found through the bias each one's MatMul feeds.

    The exporter names a Linear's transposed weight `onnx::MatMul_N`, but keeps the bias's torch name: walk
    up from the `Add` of `model.<module>.bias` through the dequantising Mul/Cast of a dynamic-int8 graph (or
    the activation's Quantize/DequantizeLinear pair of a static one) to the MatMul (or MatMulInteger) and
    take its weight input (through its DequantizeLinear in a QDQ graph)."""
    producer = {output: node for node in graph.node for output in node.output}
    weights: dict[str, np.ndarray] = {}
    for node in graph.node:
        biases = [name for name in node.input if name.startswith(_PREFIX) and name.endswith(".bias")]
        if node.op_type != "Add" or not biases or biases[0].removesuffix(".bias") + ".weight" in initializers:
            continue
        module = biases[0][len(_PREFIX) :].removesuffix(".bias")
        current = next((producer[name] for name in node.input if name in producer), None)
        while current is not None and current.op_type in _PASS_THROUGH:
            inputs = current.input[:1] if current.op_type.endswith("QuantizeLinear") else current.input
            current = next((producer[name] for name in inputs if name in producer
                            and producer[name].op_type != "DynamicQuantizeLinear"), None)
        if current is None or current.op_type not in ("MatMul", "MatMulInteger"):
            continue
        weight = current.input[1]
        dequantize = producer.get(weight)
        if dequantize is not None and dequantize.op_type == "DequantizeLinear":  # a static (QDQ) graph
            weight = dequantize.input[0]
        matrix = _dequantised(initializers, weight.removesuffix("_quantized"))  # (in, out)
        weights[f"{module}.weight"] = np.ascontiguousarray(matrix.T)
    return weights


def folded_state(folder: Path) -> tuple[RecognizerConfig, Vocabulary, dict[str, np.ndarray], ModelRecord]:
    """The bundle's architecture, vocabulary, record and float weights under torch names, with
    BatchNorm still folded into the convolutions (`<conv>.weight` and `<conv>.bias` of each ConvBN's conv)."""
    record = load_record(folder)
    config = RecognizerConfig.model_validate(record.architecture)
    vocab = Vocabulary.load(record.file("vocab"))
    state: dict[str, np.ndarray] = {}
    for key in ("encoder", "decoder"):
        graph = onnx.load(str(record.file(key))).graph
        initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
        # The exporter keeps one copy of equal initializers and names the others through Identity nodes.
        initializers |= {node.output[0]: initializers[node.input[0]] for node in graph.node
                         if node.op_type == "Identity" and node.input[0] in initializers}
        state.update(_matmul_weights(graph, initializers))
        # Named weights: as stored (`model.x`) or quantised (`model.x_quantized` + its scale and zero point).
        named = {name.removesuffix("_quantized") for name in initializers if name.startswith(_PREFIX)
                 and not name.endswith(("_scale", "_zero_point"))}
        state.update({name[len(_PREFIX) :]: _dequantised(initializers, name) for name in named})
    return config, vocab, state, record


def _conv_bns(model: nn.Module) -> dict[str, ConvBN]:
    return {name: module for name, module in model.named_modules() if isinstance(module, ConvBN)}


def _load_folded(model: Recognizer, state: dict[str, np.ndarray]) -> None:
    """Fused conv weights into each conv, the fused bias into an identity BatchNorm; everything else as is."""
    target = model.state_dict()
    loaded: dict[str, Tensor] = {}
    for name, conv_bn in _conv_bns(model).items():
        loaded[f"{name}.0.weight"] = torch.from_numpy(state.pop(f"{name}.0.weight"))
        loaded.update(identity_norm_state(f"{name}.1", conv_bn[1], torch.from_numpy(state.pop(f"{name}.0.bias"))))
    for name, value in state.items():
        if name in target:
            loaded[name] = torch.from_numpy(value)
    missing = [name for name in target if name not in loaded and not name.endswith("num_batches_tracked")]
    if missing:
        raise BundleImportError(f"the bundle lacks {len(missing)} weights the model needs, e.g. {missing[:3]}; "
                                "was it exported from another architecture?")
    for name, value in loaded.items():
        if tuple(value.shape) != tuple(target[name].shape):
            raise BundleImportError(f"{name}: shape {tuple(value.shape)} in the bundle, "
                                    f"{tuple(target[name].shape)} in the model")
    model.load_state_dict(loaded, strict=False)


def _calibrate_batchnorm(model: Recognizer, crops: Sequence[np.ndarray], batch_size: int = 16) -> None:
    """Measure each rebuilt BatchNorm on `crops` (`folded_batchnorm.refit_batchnorm`)."""
    config = model.config.preprocess
    model.eval()
    prepared = sorted((preprocess(crop, config) for crop in crops), key=lambda image: image.shape[1])

    def feed() -> None:
        # Width-sorted padded batches, as training buckets them: the statistics a training batch will see.
        for start in range(0, len(prepared), batch_size):
            batch, _ = pad_batch(prepared[start : start + batch_size], config)
            model.encoder(torch.from_numpy(batch))

    refit_batchnorm({name: conv_bn[1] for name, conv_bn in _conv_bns(model).items()}, feed)


def checkpoint_from_bundle(folder: Path, calibration: Sequence[np.ndarray]) -> dict[str, Any]:
    """A checkpoint for `fit(init=...)` / `model_from_checkpoint` holding the bundled recognizer's function.

    `calibration`: real crops (a few dozen) to measure the BatchNorm statistics on."""
    if not calibration:
        raise ValueError("rebuilding a bundle needs calibration crops for its BatchNorm statistics")
    config, vocab, state, record = folded_state(Path(folder))
    if config.vocab_size != len(vocab):
        raise BundleImportError(f"vocabulary of {len(vocab)} tokens, architecture says {config.vocab_size}")
    model = Recognizer(config)
    _load_folded(model, state)
    _calibrate_batchnorm(model, calibration)
    training = record.training
    return {
        "model": {name: tensor.clone() for name, tensor in model.state_dict().items()},
        "model_config": config.model_dump(mode="json"),
        "vocab": vocab.tokens,
        "step": training.step,
        "best_metric": training.best_metric,
        "command": training.command,
        "data_versions": training.data_versions,
        "sources": training.sources,
        "train_config": training.config,
        "rebuilt_from": {"bundle": str(folder), "version": record.version, "quantization": record.quantization},
    }
