"""A trainable torch detector checkpoint rebuilt from the bundled ONNX detector (`models/detector/`).

Why: the run's torch checkpoints stay on the machine that trained them; the bundle is what the repository
keeps. Rebuilding lets a session fine-tune the bundled detector (`susik train detector --init models/detector`)
instead of starting over. The export folded each BatchNorm into its convolution and renamed the fused weights
(`onnx::Conv_N`): they are matched to the torch convolutions by execution order, which the exporter keeps,
and each BatchNorm is rebuilt around them and refitted to real training samples (`folded_batchnorm`).
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

from susik.models.detector import DetectorConfig, FormulaDetector
from susik.models.detector_data import SampleConfig, make_sample, read_pages
from susik.models.folded_batchnorm import identity_norm_state, refit_batchnorm
from susik.models.from_bundle import BundleImportError
from susik.runtime.detector import load_detector_record

_PREFIX = "model."  # the export wraps the detector as `self.model`


def _convs_in_execution_order(model: FormulaDetector) -> list[str]:
    names = {module: name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)}
    order: list[str] = []
    hooks = [module.register_forward_hook(lambda m, _, __: order.append(names[m])) for module in names]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, 64, 64))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def _norm_after(modules: dict[str, nn.Module], conv_name: str) -> tuple[str, nn.BatchNorm2d] | None:
    """The BatchNorm that follows `conv_name` in its Sequential (`x.0` -> `x.1`), if any."""
    parent, _, index = conv_name.rpartition(".")
    if not index.isdigit():
        return None
    name = f"{parent}.{int(index) + 1}"
    module = modules.get(name)
    return (name, module) if isinstance(module, nn.BatchNorm2d) else None


def _load_folded(model: FormulaDetector, graph: onnx.GraphProto) -> None:
    """Load the graph's weights into `model`, each fused conv + BatchNorm as the conv + an identity norm."""
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    conv_nodes = [node for node in graph.node if node.op_type == "Conv"]
    order = _convs_in_execution_order(model)
    if len(conv_nodes) != len(order):
        raise BundleImportError(f"the bundle has {len(conv_nodes)} convolutions, the model {len(order)}: "
                                "was it exported from another architecture?")
    target = model.state_dict()
    modules = dict(model.named_modules())
    loaded: dict[str, Tensor] = {}
    for conv_name, node in zip(order, conv_nodes, strict=True):
        weight = torch.from_numpy(initializers[node.input[1]].astype(np.float32))
        bias = torch.from_numpy(initializers[node.input[2]].astype(np.float32)) if len(node.input) > 2 else None
        if tuple(weight.shape) != tuple(target[f"{conv_name}.weight"].shape):
            raise BundleImportError(f"{conv_name}: weight {tuple(weight.shape)} in the bundle, "
                                    f"{tuple(target[f'{conv_name}.weight'].shape)} in the model")
        loaded[f"{conv_name}.weight"] = weight
        norm = _norm_after(modules, conv_name)
        if norm is not None and bias is not None:  # a fused conv + BatchNorm
            loaded.update(identity_norm_state(norm[0], norm[1], bias))
        elif bias is not None:
            loaded[f"{conv_name}.bias"] = bias
    # What the export kept under torch names: the transposed conv, its BatchNorm, the orientation head.
    for name, value in initializers.items():
        if name.startswith(_PREFIX) and name[len(_PREFIX):] in target:
            loaded.setdefault(name[len(_PREFIX):], torch.from_numpy(value.astype(np.float32)))
    missing = [name for name in target if name not in loaded and not name.endswith("num_batches_tracked")]
    if missing:
        raise BundleImportError(f"the bundle lacks {len(missing)} weights the model needs, e.g. {missing[:3]}")
    model.load_state_dict(loaded, strict=False)


def detector_checkpoint_from_bundle(folder: Path, calibration: Sequence[np.ndarray],
                                    batch_size: int = 8) -> dict[str, Any]:
    """A checkpoint for `train(init=...)` / `load_model` holding the bundled detector's function.

    `calibration`: normalised training samples (3, S, S) — what a training batch feeds the net — to measure
    the BatchNorm statistics on. Only an fp32 bundle can be rebuilt exactly; an int8 one is refused."""
    if not calibration:
        raise ValueError("rebuilding a detector needs calibration samples for its BatchNorm statistics")
    record = load_detector_record(folder)
    if record.quantization != "none":
        raise BundleImportError(f"{folder} holds a {record.quantization} detector; rebuild from an fp32 export")
    config = DetectorConfig.model_validate(record.architecture)
    model = FormulaDetector(config)
    _load_folded(model, onnx.load(str(record.file("model"))).graph)
    model.eval()

    def feed() -> None:
        for start in range(0, len(calibration), batch_size):
            model(torch.from_numpy(np.stack(calibration[start : start + batch_size])))

    # Every BatchNorm, the one the export kept (after the transposed conv) too: its statistics were the
    # original training's, and a training batch normalises by its own.
    refit_batchnorm({name: m for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}, feed)
    return {
        "model": {name: tensor.clone() for name, tensor in model.state_dict().items()},
        "model_config": config.model_dump(mode="json"),
        "step": record.training.step,
        "command": record.training.command,
        "rebuilt_from": {"bundle": str(folder), "version": record.version},
    }


def calibration_samples(manifest: Path, config: SampleConfig, count: int = 64, seed: int = 0) -> list[np.ndarray]:
    """`count` training samples (one per page, the first pages of `manifest`), drawn as training draws them."""
    rng = np.random.default_rng(seed)
    return [make_sample(page, config, rng).image for page in read_pages(manifest, count)]
