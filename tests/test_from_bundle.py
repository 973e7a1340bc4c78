"""Rebuilding a trainable torch recognizer from its exported ONNX bundle."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from recognizer_helpers import checkpoint_of, confident_model, draw_crop, random_text, tiny_config, vocab

from susik.models.from_bundle import BundleImportError, checkpoint_from_bundle, folded_state
from susik.models.recognizer import fold_batchnorm
from susik.models.train_recognizer import model_from_checkpoint
from susik.runtime.export import export_recognizer, parity
from susik.runtime.preprocess import pad_batch, preprocess
from susik.runtime.recognizer import OnnxRecognizer

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _crops(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [draw_crop(random_text(rng)) for _ in range(count)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(original torch model, its bundles with an fp32 encoder, static int8 convolutions, all static int8)."""
    words = vocab()
    model = confident_model(tiny_config(len(words)))
    root = tmp_path_factory.mktemp("bundles")
    folders = []
    for quant in ("none", "static-conv", "static"):
        export_recognizer(checkpoint_of(model, words), root / quant, _crops(12, 0), encoder_quant=quant)
        folders.append(root / quant / "recognizer")
    return model, *folders


def _inputs(model, crops):
    config = model.config.preprocess
    batch, widths = pad_batch([preprocess(crop, config) for crop in crops], config)
    return torch.from_numpy(batch), torch.from_numpy(widths)


def test_folded_weights_match_the_exported_model(exported):
    model, fp32_bundle, *_ = exported
    _, _, state, _ = folded_state(fp32_bundle)
    reference = fold_batchnorm(copy.deepcopy(model)).state_dict()
    # fp32 parts come back exactly: the folded convolutions, embeddings, norms and every bias.
    for name in ("encoder.stem.0.weight", "encoder.stem.0.bias", "decoder.embed.weight",
                 "decoder.norm.weight", "decoder.head.bias", "decoder.layers.0.cross_attn.kv.weight"):
        assert np.allclose(state[name], reference[name].numpy(), atol=1e-6), name
    # int8 MatMul weights (the decoder is always dynamic int8) come back within half a quantisation step:
    # per output channel, 7-bit weights put the largest magnitude at 63 steps.
    for name in ("decoder.layers.0.self_attn.qkv.weight", "decoder.layers.0.ffn.0.weight",
                 "decoder.head.weight", "decoder.layers.0.ffn.2.weight"):
        original = reference[name].numpy()
        step = np.abs(original).max(axis=1, keepdims=True) / 63
        assert state[name].shape == original.shape
        assert (np.abs(state[name] - original) <= step * 0.51 + 1e-7).all(), name
        assert not np.array_equal(state[name], original)  # dequantised, not copied from somewhere


def test_rebuilt_model_computes_the_bundles_function(exported):
    model, fp32_bundle, *_ = exported
    crops = _crops(24, 1)
    rebuilt, words = model_from_checkpoint(checkpoint_from_bundle(fp32_bundle, crops))
    images, widths = _inputs(model, crops[:8])
    with torch.no_grad():
        memory, _ = model.encode(images, widths)
        again, _ = rebuilt.encode(images, widths)
    assert torch.allclose(memory, again, atol=1e-4)  # fp32 encoder: the same function, BN rebuilt around it
    assert rebuilt.config == model.config and words.tokens == vocab().tokens


@pytest.mark.parametrize("which", [2, 3], ids=["static-conv", "static"])
def test_rebuilt_model_reads_what_the_int8_bundle_reads(exported, which):
    """Decoded by the same code, torch agrees with the int8 bundle about as often as the bundle agreed with
    its own fp32 graphs at export."""
    bundle = exported[which]
    crops = _crops(24, 1)
    rebuilt, words = model_from_checkpoint(checkpoint_from_bundle(bundle, crops))
    onnx = OnnxRecognizer.load(bundle, threads=1)
    report = parity(rebuilt, onnx, onnx, crops, words)
    at_export = json.loads((bundle / "record.json").read_text())["metrics"]["export_check"]
    # (A wrongly dequantised weight scrambles its layer: agreement falls far below this, not by a few crops.)
    assert report.greedy_agreement_fp32 >= at_export["greedy_agreement_int8_vs_fp32"] - 0.1


def test_rebuilt_batchnorm_keeps_the_function_in_training_mode(exported):
    """Training normalises by batch statistics: the rebuilt BN must not undo the folded scale there."""
    model, fp32_bundle, *_ = exported
    crops = _crops(16, 2)
    rebuilt, _ = model_from_checkpoint(checkpoint_from_bundle(fp32_bundle, crops))
    images, widths = _inputs(rebuilt, sorted(crops, key=lambda c: c.shape[1]))
    with torch.no_grad():
        evaluated = rebuilt.encoder(images)
        trained = rebuilt.train().encoder(images)  # dropout is 0 in the tiny config
    assert torch.allclose(evaluated, trained, atol=1e-3)
    # An identity BatchNorm around the folded weights (the naive rebuild) would not keep it.
    naive = rebuilt
    with torch.no_grad():
        for module in naive.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.sub_(module.running_mean)
                module.weight.fill_(1.0)
        drifted = naive.train().encoder(images)
    assert not torch.allclose(evaluated, drifted, atol=1e-2)


def test_a_bundle_of_another_architecture_is_refused(exported, tmp_path):
    _, fp32_bundle, *_ = exported
    changed = tmp_path / "recognizer"
    changed.mkdir()
    for path in fp32_bundle.iterdir():
        (changed / path.name).write_bytes(path.read_bytes())
    record = json.loads((changed / "record.json").read_text())
    record["architecture"]["layers"] = 2  # the graphs hold one decoder layer
    (changed / "record.json").write_text(json.dumps(record))
    with pytest.raises(BundleImportError, match="lacks"):
        checkpoint_from_bundle(changed, _crops(4, 3))
    with pytest.raises(ValueError, match="calibration"):
        checkpoint_from_bundle(fp32_bundle, [])
