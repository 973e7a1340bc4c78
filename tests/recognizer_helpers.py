"""Shared makings of the recognizer tests: drawn crops, a tiny architecture, a tiny exported bundle."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from susik.latex import Vocabulary
from susik.models.recognizer import Recognizer, RecognizerConfig

ALPHABET = list("0123456789+-=x")


def draw_crop(text: str, scale: float = 1.0, thickness: int = 2, margin: int = 10) -> np.ndarray:
    """Dark text on white paper, gray uint8, as a formula crop."""
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    image = np.full((height + baseline + 2 * margin, width + 2 * margin), 255, np.uint8)
    cv2.putText(image, text, (margin, margin + height), cv2.FONT_HERSHEY_SIMPLEX, scale, 0, thickness, cv2.LINE_AA)
    return image


def formula_between_sentences() -> np.ndarray:
    """A photo of `x + 7 = 12` with a sentence above and below it, as a student frames one formula."""
    photo = np.full((300, 700), 235, np.uint8)
    for text, y, scale in (("Solve the equation below.", 60, 1.0), ("x + 7 = 12", 160, 1.6),
                           ("Then check your answer.", 260, 1.0)):
        cv2.putText(photo, text, (40, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 30, 2, cv2.LINE_AA)
    return photo


def random_text(rng: np.random.Generator, low: int = 1, high: int = 8) -> str:
    return "".join(rng.choice(ALPHABET, int(rng.integers(low, high + 1))))


def write_crop_manifest(folder: Path, count: int, seed: int, longest: int = 5, with_kinds: bool = False) -> Path:
    """A crop manifest of `count` drawn formulas of 1 to `longest` characters (images relative to the manifest's
    folder); `with_kinds`: odd-numbered ones printed, even-numbered ones handwritten."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    lines = []
    for index in range(count):
        text = random_text(rng, 1, longest)
        cv2.imwrite(str(folder / "images" / f"{index}.png"), draw_crop(text))
        kind = {"kind": "printed" if index % 2 else "handwritten"} if with_kinds else {}
        lines.append(json.dumps({"image": f"images/{index}.png", "latex": text, **kind, "source": "drawn",
                                 "license": "CC0"}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def vocab() -> Vocabulary:
    return Vocabulary(ALPHABET)


def tiny_config(vocab_size: int, **changes: object) -> RecognizerConfig:
    """Milliseconds per step: 2 stages of 16 channels, one decoder layer of width 32."""
    base = {
        "vocab_size": vocab_size, "preprocess": {"height": 32, "max_width": 256, "width_multiple": 8},
        "stem_channels": 8, "channels": (16, 16), "blocks": (1, 1), "strides": ((2, 2), (2, 2)), "d_model": 32,
        "heads": 4, "layers": 1, "ffn": 64, "dropout": 0.0, "max_tokens": 48,
    }
    return RecognizerConfig(**{**base, **changes})


def confident_model(config: RecognizerConfig, seed: int = 0) -> Recognizer:
    """Random weights with a sharpened output layer and non-trivial BatchNorm statistics: decisions have
    clear margins (so int8 can agree with fp32) and folding the BN at export actually matters."""
    torch.manual_seed(seed)
    model = Recognizer(config)
    with torch.no_grad():
        model.decoder.head.weight.mul_(20.0)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    return model.eval()


def checkpoint_of(model: Recognizer, words: Vocabulary) -> dict:
    """The fields of a training checkpoint that export reads."""
    return {
        "model": model.state_dict(), "model_config": model.config.model_dump(mode="json"),
        "vocab": words.tokens, "step": 7, "best_metric": 0.5, "command": "susik train recognizer --config t.yaml",
        "data_versions": {"m.jsonl": "sha256:abc"}, "sources": [{"name": "drawn", "license": "CC0"}],
        "train_config": {},
    }


def export_tiny_bundle(out: Path, encoder_quant: str = "static") -> Path:
    """A tiny random-weight recognizer exported to `out/recognizer/`; returns that folder."""
    from susik.runtime.export import export_recognizer

    words = vocab()
    model = confident_model(tiny_config(len(words)))
    rng = np.random.default_rng(0)
    calibration = [draw_crop(random_text(rng)) for _ in range(12)]
    export_recognizer(checkpoint_of(model, words), out, calibration, encoder_quant=encoder_quant)  # type: ignore[arg-type]
    return out / "recognizer"
