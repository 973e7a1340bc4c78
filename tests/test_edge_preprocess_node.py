"""The browser's crop preprocessing (serve/web/edge-core.js) against susik.runtime.preprocess, under Node: the
model input (paper's light flattened), the thickened and the widened looks, bit for bit, and the rule that keeps the surest reading."""

import base64

import cv2
import numpy as np
import pytest
from node_harness import NODE, node_runner
from recognizer_helpers import draw_crop, random_text

from susik.runtime.preprocess import PreprocessConfig, preprocess, preprocess_thickened, stroke_core_share

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js")
HARNESS = """
import { readFileSync } from "node:fs";
import * as core from "./edge-core.js";
const encode = (array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString("base64");
const run = {
  input: (c) => {
    const rgba = Uint8ClampedArray.from(Buffer.from(c.rgba, "base64"));
    const r = c.look === "thick" ? core.preprocessThickened(rgba, c.width, c.height, c.config)
      : core.preprocess(rgba, c.width, c.height, c.config, c.look ?? undefined);
    return { data: encode(r.data), width: r.width, core: core.strokeCoreShare(r, c.config.height) };
  },
  look: async (c) => {
    const asked = [];
    const read = async (look) => {
      asked.push(look);
      return look === null ? c.first : c.looks[String(look)];
    };
    const kept = await core.withSecondLook(read, c.decode, c.core);
    return { kept: kept === c.first ? "first" : Object.keys(c.looks).find((k) => c.looks[k] === kept), asked };
  },
};
const cases = JSON.parse(readFileSync(0, "utf8"));
const answers = [];
for (const c of cases) answers.push(await run[c.op](c));
process.stdout.write(JSON.stringify(answers));
"""
CONFIG = PreprocessConfig(height=32, max_width=256, width_multiple=8)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    return node_runner(tmp_path_factory.mktemp("edge"), ("edge-core.js",), HARNESS)


def _crops() -> list[np.ndarray]:
    """Taller and shorter than the model (both resize paths, at both heights), odd and even widths, inverted,
    noisy, colour, one too wide for the model, one half in shadow and one lit unevenly."""
    rng = np.random.default_rng(11)
    images = [draw_crop(random_text(rng), float(rng.uniform(0.3, 3.0)), int(rng.integers(1, 4)),
                        margin=int(rng.integers(3, 15))) for _ in range(8)]
    images.append(255 - draw_crop("12+x=7", 1.5, 3))
    noisy = draw_crop("x-9=40", 2.0).astype(np.float64) * 0.7 + 40
    images.append(np.clip(noisy + rng.normal(0, 8, noisy.shape), 0, 255))
    images.append(cv2.cvtColor(draw_crop("7x=0", 2.5), cv2.COLOR_GRAY2BGR) * np.array([1.0, 0.8, 0.6]))
    images.append(cv2.resize(draw_crop("1+2+3+4+5+6+7+8+9"), None, fx=3.0, fy=1.0))
    shadowed = draw_crop("y=3x+1", 1.8, 3).astype(np.float64)
    shadowed[:, : shadowed.shape[1] // 2] *= 0.45  # a hard shadow over the left half (flattened away)
    images.append(shadowed)
    lit = draw_crop("(a+b)^2", 1.2, 2).astype(np.float64)
    images.append(lit * np.linspace(0.35, 1.0, lit.shape[1])[None, :] + rng.normal(0, 4, lit.shape))
    return [np.clip(image, 0, 255).astype(np.uint8) for image in images]


def _case(image: np.ndarray, look: str | float | None) -> dict:
    bgr = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    return {"op": "input", "look": look, "rgba": base64.b64encode(rgba.tobytes()).decode(),
            "width": bgr.shape[1], "height": bgr.shape[0], "config": CONFIG.model_dump()}


@pytest.mark.parametrize("look", [None, "thick", 1.15, 1.3, 0.85], ids=["plain", "thickened", "w1.15", "w1.3", "w0.85"])
def test_the_browsers_model_input_is_the_servers_to_the_bit(node, look):
    images = _crops()
    answers = node([_case(image, look) for image in images])
    for image, answer in zip(images, answers):
        if look == "thick":
            expected = preprocess_thickened(image, CONFIG)
        else:
            expected = preprocess(image, CONFIG, 1.0 if look is None else look)
        got = np.frombuffer(base64.b64decode(answer["data"]), np.float32).reshape(CONFIG.height, answer["width"])
        assert got.shape == expected.shape
        assert np.array_equal(got, expected), float(np.abs(got - expected).max())
        assert answer["core"] == stroke_core_share(expected)


def _reading(*probs: float) -> dict:
    return {"tokens": list(range(len(probs))), "probs": list(probs), "stop": "eos"}


def test_the_second_look_keeps_the_surer_reading_only_when_the_first_was_unsure(node):
    unsure, surer, surest = _reading(0.5, 0.6), _reading(0.7, 0.7), _reading(0.99, 0.99)
    decode = {"thicken_below": 0.9, "thin_core_share": 0.2, "confidence": "geomean", "widen_below": 0}
    thin, thick = 0.1, 0.3
    cases = [
        (unsure, surer, decode, thin, "thick"),  # unsure and thin, and the second look is surer
        (surer, unsure, decode, thin, "first"),  # unsure, but the second look is worse
        (unsure, surer, decode, thick, "first"),  # unsure, but its strokes are not thin
        (surest, surest | {"tokens": [9]}, decode, thin, "first"),  # sure enough: no second look
        (unsure, surer, decode | {"thicken_below": 0}, thin, "first"),  # off
        (unsure, surer | {"stop": "length"}, decode, thin, "first"),  # a runaway second look has confidence 0
    ]
    answers = node([{"op": "look", "first": a, "looks": {"thick": b}, "decode": d, "core": c}
                    for a, b, d, c, _ in cases])
    assert [answer["kept"] for answer in answers] == [want for *_, want in cases]


def test_widened_looks_go_on_while_unsure_and_keep_the_surest(node):
    """As OnnxRecognizer.hypotheses: each factor in turn, each gated on the surest reading so far."""
    unsure, surer, surest = _reading(0.5, 0.6), _reading(0.7, 0.7), _reading(0.99, 0.99)
    decode = {"thicken_below": 0.9, "thin_core_share": 0.2, "confidence": "geomean", "widen_below": 0.9,
              "widen_factors": [1.15, 1.3]}
    cases = [  # first, {look: reading}, strokes' core share, wanted (kept, looks asked for)
        (unsure, {"1.15": surer, "1.3": unsure}, 0.3, ("1.15", [None, 1.15, 1.3])),
        (unsure, {"1.15": surest, "1.3": surer}, 0.3, ("1.15", [None, 1.15])),  # sure after 1.15: stop
        (unsure, {"thick": surer, "1.15": unsure, "1.3": surest}, 0.1, ("1.3", [None, "thick", 1.15, 1.3])),
        (surest, {"1.15": surest}, 0.3, ("first", [None])),
    ]
    answers = node([{"op": "look", "first": a, "looks": b, "decode": decode, "core": c} for a, b, c, _ in cases])
    assert [(answer["kept"], answer["asked"]) for answer in answers] == [(k, list(a)) for *_, (k, a) in cases]
