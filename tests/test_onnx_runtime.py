"""The torch-free runtime: image loading, preprocessing, decoding, ONNX export parity, registry."""

from __future__ import annotations

import io
import json
import struct
import zlib

import cv2
import numpy as np
import onnx
import pytest
from PIL import Image, ImageOps
from recognizer_helpers import confident_model, draw_crop, random_text, tiny_config, vocab

from susik.models.registry import IntegrityError, ModelNotFoundError, get_model, load_record, resolve
from susik.results import Recognition
from susik.runtime.decoding import (
    DecodeConfig,
    Hypothesis,
    beam_search,
    greedy,
    greedy_with_rescue,
    is_looping,
    max_length,
    sequence_confidence,
)
from susik.runtime.export import export_graphs, parity, quantize_decoder, quantize_encoder
from susik.runtime.image_io import ImageLoadError, load_image
from susik.runtime.preprocess import (
    CropError,
    PreprocessConfig,
    check_crop,
    crop_to_ink,
    dark_ink,
    flatten_light,
    halve,
    normalise,
    pad_batch,
    preprocess,
    preprocess_thickened,
    stroke_core_share,
    thicken,
)
from susik.runtime.recognizer import OnnxRecognizer

pytestmark = pytest.mark.usefixtures("torch_one_thread")


# --- image loading ------------------------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; its pixel data is one empty chunk (never decoded)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_loader_converts_every_mode_to_bgr():
    gray = Image.fromarray(np.full((5, 7), 100, np.uint8), "L")
    assert load_image(_encode(gray, "PNG")).shape == (5, 7, 3)

    rgba = Image.new("RGBA", (4, 3), (255, 0, 0, 0))  # fully transparent red: white paper
    assert (load_image(_encode(rgba, "PNG")) == 255).all()

    sixteen = Image.fromarray(np.full((3, 3), 65535, np.uint16))
    out = load_image(_encode(sixteen, "PNG"))
    assert out.dtype == np.uint8 and (out == 255).all()

    palette = Image.new("RGB", (3, 3), (0, 0, 255)).convert("P")
    assert tuple(load_image(_encode(palette, "PNG"))[0, 0]) == (255, 0, 0)  # BGR order

    cmyk = Image.new("CMYK", (3, 3), (0, 0, 0, 255))  # black
    assert load_image(_encode(cmyk, "JPEG")).max() < 30


def test_loader_honours_exif_orientation():
    image = Image.new("RGB", (40, 20), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to show
    assert load_image(_encode(image, "JPEG", exif=exif)).shape[:2] == (40, 20)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_jpeg_decode_matches_pillow_under_every_exif_orientation(orientation):
    rng = np.random.default_rng(orientation)
    pixels = np.kron(rng.integers(0, 255, (6, 10, 3), np.uint8), np.ones((8, 8, 1), np.uint8))  # 48 x 80
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(Image.fromarray(pixels), "JPEG", exif=exif, quality=95)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    out = load_image(data)
    assert out.shape[:2] == (expected.height, expected.width)
    assert np.abs(out[:, :, ::-1].astype(int) - np.asarray(expected, dtype=int)).mean() < 2.0


def test_truncated_jpeg_is_an_error_not_grey_rows():
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    data = _encode(Image.fromarray(pixels), "JPEG")
    with pytest.raises(ImageLoadError, match="cannot decode"):
        load_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "empty"),
        (b"not an image at all", "not an image"),
        (_png_header_only(8_000, 8_000), "too large"),  # 64 MP: over our 40 MP, under Pillow's limit
        (_png_header_only(60_000, 60_000), "decompression bomb"),
    ],
    ids=["empty", "garbage", "too-large", "bomb"],
)
def test_loader_refuses_bad_input_with_one_clear_error(payload, message):
    with pytest.raises(ImageLoadError, match=message):
        load_image(payload)


def test_loader_treats_pillows_bomb_warning_as_an_error():
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(_png_header_only(10_000, 10_000), max_pixels=10**10)


def test_loader_refuses_formats_outside_the_allowlist_and_truncated_files(tmp_path):
    ppm = _encode(Image.new("RGB", (4, 4)), "PPM")
    with pytest.raises(ImageLoadError, match="allowed format"):
        load_image(ppm)
    truncated = _encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "PNG")
    with pytest.raises(ImageLoadError):
        load_image(truncated[: len(truncated) // 2])
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.png")


# --- preprocessing ------------------------------------------------------------------------------------------


def test_preprocess_crops_to_ink_keeps_aspect_and_puts_ink_at_one():
    config = PreprocessConfig(height=32, max_width=256, width_multiple=8)
    crop = np.full((100, 300), 230, np.uint8)
    crop[40:60, 100:180] = 20  # an 80 x 20 "formula" far from the border
    out = preprocess(crop, config)
    assert out.shape[0] == 32 and out.dtype == np.float32
    assert 100 <= out.shape[1] <= 130  # aspect of the ink (4:1 plus margin), not of the page (3:1)
    assert out.max() == pytest.approx(1.0) and out.min() == pytest.approx(0.0)
    assert out[:2].max() < 0.05  # the margin is paper


def test_preprocess_scales_very_wide_crops_to_fit():
    config = PreprocessConfig(height=32, max_width=128, width_multiple=8)
    crop = np.full((20, 1000), 255, np.uint8)
    crop[5:15, 5:995] = 0
    out = preprocess(crop, config)
    assert out.shape == (32, 128)
    assert out[0].max() < 0.05 and out[-1].max() < 0.05  # letterboxed vertically with paper


def test_light_ink_on_dark_paper_is_inverted_but_a_shadow_is_not():
    board = np.full((40, 120), 30, np.uint8)
    board[15:25, 20:100] = 220  # chalk
    assert dark_ink(board)[20, 50] < 100 and dark_ink(board)[0, 0] > 200
    shadowed = np.full((40, 120), 220, np.uint8)
    shadowed[:, :70] = 90  # a shadow over more than half the crop
    shadowed[15:25, 20:100] = 10
    assert (dark_ink(shadowed) == shadowed).all()


def test_flattening_makes_a_shadow_paper_and_keeps_the_ink():
    crop = np.full((60, 240), 220, np.uint8)
    crop[:, :110] = 90  # a hard shadow over the left part: global Otsu would take it all for ink
    crop[25:35, 20:80] = 30  # a stroke in the shadow
    crop[25:35, 140:220] = 60  # a stroke in the light
    flat = flatten_light(crop, 0.5)
    assert flat[5, 50] == 255 and flat[5, 200] == 255  # both sides of the shadow's edge are paper
    assert flat[30, 50] < 100 and flat[30, 180] < 100  # both strokes stay ink
    shadow_paper = (slice(0, 20), slice(85, 105))  # in the shadow, clear of the stroke and of the edge
    assert normalise(flat)[shadow_paper].max() == 0.0
    assert normalise(crop)[shadow_paper].min() > 0.5  # unflattened, the shadow reads as ink
    assert (flatten_light(crop, 0) == crop).all()


def test_flattening_leaves_clean_paper_alone_and_keeps_strokes_wider_than_a_pixel():
    crop = np.full((64, 200), 255, np.uint8)
    crop[20:44, 30:38] = 0  # a stroke 8 px wide, a quarter of the closing's side (32 px)
    crop[30:33, 60:180] = 0  # a fraction bar
    assert (flatten_light(crop, 0.5) == crop).all()
    wide = np.full((64, 200), 255, np.uint8)
    wide[10:54, 30:70] = 40  # a blot wider than the closing: its middle reads as paper
    assert flatten_light(wide, 0.5)[32, 50] == 255


def _window(image: np.ndarray, radius: int, reduce) -> np.ndarray:
    """`reduce` over the (2r+1)^2 window of each pixel, clipped at the edges: the closing spelled out."""
    height, width = image.shape
    return np.array([[reduce(image[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1])
                      for x in range(width)] for y in range(height)])


def test_flattening_matches_a_clipped_window_closing():
    rng = np.random.default_rng(3)
    for _ in range(20):
        height, width = (int(n) for n in rng.integers(1, 30, 2))
        gray = rng.integers(0, 256, (height, width)).astype(np.uint8)
        share = float(rng.uniform(0.05, 2))
        radius = max(3, round(share * height) | 1) // 2
        background = _window(_window(gray, radius, np.max), radius, np.min)
        expected = np.minimum(gray.astype(int) * 255 // np.maximum(background, 1), 255)
        assert (flatten_light(gray, share) == expected).all()


def test_crop_to_ink_ignores_isolated_specks():
    crop = np.full((100, 400), 255, np.uint8)
    crop[40:60, 150:250] = 0
    crop[2, 2] = crop[97, 397] = 0  # dust
    assert crop_to_ink(crop).shape[1] < 150


def test_thicken_grows_ink_by_the_radius_and_the_border_adds_nothing():
    image = np.zeros((7, 12), np.float32)
    image[3, 8] = 1.0
    image[0, 0] = 0.5
    grown = thicken(image, radius=2)
    assert (grown[1:6, 6:11] == 1.0).all() and (grown[:3, :3] == 0.5).all()  # a 5 x 5 square; the corner's 3 x 3
    assert grown.sum() == 25 + 9 * 0.5  # nothing wraps around or comes in from the border
    assert (thicken(image, radius=0) == image).all()


def test_halve_averages_each_two_by_two_block():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert halve(image).tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_thickened_view_has_the_models_height_and_more_ink():
    config = PreprocessConfig(height=32, max_width=256, width_multiple=8)
    crop = np.full((100, 301), 230, np.uint8)
    crop[40:60, 100:181] = 20
    crop[48:52, 90:200] = 20  # a thin stroke through it
    plain, thick = preprocess(crop, config), preprocess_thickened(crop, config)
    assert thick.shape[0] == 32 and thick.dtype == np.float32
    assert abs(thick.shape[1] - plain.shape[1]) <= 1
    assert thick.sum() > 1.1 * plain.sum() and 0.0 <= thick.min() and thick.max() <= 1.0
    wide = np.full((20, 1000), 255, np.uint8)
    wide[5:15, 5:995] = 0
    assert preprocess_thickened(wide, config.model_copy(update={"max_width": 128})).shape == (32, 128)


def test_pad_batch_pads_to_the_stride_with_paper():
    config = PreprocessConfig(height=16, width_multiple=8)
    batch, widths = pad_batch([np.ones((16, 10), np.float32), np.ones((16, 3), np.float32)], config)
    assert batch.shape == (2, 1, 16, 16) and widths.tolist() == [10, 3]
    assert batch[1, 0, :, 3:].max() == 0.0
    assert pad_batch([], config)[0].shape[0] == 0


def _shadowed_blank() -> np.ndarray:
    paper = np.full((40, 90), 210, np.uint8)
    paper[:, :50] = 100  # a shadow's edge: contrast, but no ink
    return paper


@pytest.mark.parametrize(
    "image, message",
    [(np.full((30, 30), 200, np.uint8), "blank"), (_shadowed_blank(), "blank"),
     (np.zeros((2, 50), np.uint8), "too small")],
    ids=["blank", "shadow on blank paper", "tiny"],
)
def test_check_crop_names_the_problem(image, message):
    with pytest.raises(CropError, match=message):
        check_crop(image)


def test_a_shadow_on_blank_paper_is_blank_only_once_flattened():
    check_crop(_shadowed_blank(), PreprocessConfig(flatten=0))  # unflattened, the shadow's edge passes for ink


# --- decoding -----------------------------------------------------------------------------------------------

VOCAB = 8  # ids 0-3 specials (EOS = 2), 4-7 tokens


def _grown(past):
    """A one-layer cache (k, v), each (N, heads=1, T, 2), grown by one position as a real step would."""
    return tuple(np.concatenate([p, np.zeros(p.shape[:2] + (1, 2), np.float32)], axis=2) for p in past)


def _scripted_step(script):
    """A step function whose next-token log-probabilities depend only on the position."""

    def step(tokens, position, cross_bias, past, cross):
        assert all(p.shape[0] == tokens.shape[0] == c.shape[0] for p, c in zip(past, cross))
        logits = np.tile(np.asarray(script(int(position[0])), dtype=np.float32), (tokens.shape[0], 1))
        return logits, _grown(past)

    return step


def _empty(batch):
    empty = np.zeros((batch, 1, 0, 2), np.float32)
    return empty, empty


def _memory(batch):
    """(cross caches of one layer, cross bias) for `batch` rows and 3 memory positions."""
    return (np.zeros((batch, 1, 3, 2), np.float32),) * 2, np.zeros((batch, 3), np.float32)


def _one_hot(token, strength=8.0):
    logits = np.zeros(VOCAB)
    logits[token] = strength
    return logits


def test_greedy_stops_at_eos_with_token_probabilities():
    step = _scripted_step(lambda p: _one_hot([4, 5, 2][min(p, 2)]))
    [hypothesis] = greedy(step, _empty, *_memory(1), [10], 1, 2, DecodeConfig())
    assert hypothesis.tokens == (4, 5) and hypothesis.stop == "eos"
    assert len(hypothesis.probs) == 3 and min(hypothesis.probs) > 0.99
    assert sequence_confidence(hypothesis, "min") == pytest.approx(min(hypothesis.probs))
    assert min(hypothesis.probs) <= sequence_confidence(hypothesis, "geomean") <= max(hypothesis.probs)


def test_greedy_guards_against_loops_and_runaway_length():
    looping = _scripted_step(lambda p: _one_hot(4 + p % 2))  # 4 5 4 5 ... never EOS
    config = DecodeConfig(repeat_span=12)
    [loop] = greedy(looping, _empty, *_memory(1), [200], 1, 2, config)
    assert loop.stop == "repetition" and len(loop.tokens) == 12
    assert sequence_confidence(loop) == 0.0
    counting = _scripted_step(lambda p: _one_hot(4 + (p * 7 // 3) % 4))  # no short period
    [long] = greedy(counting, _empty, *_memory(1), [9], 1, 2, DecodeConfig(repeat_span=64))
    assert long.stop == "length" and len(long.tokens) == 9 and sequence_confidence(long) == 0.0


def test_greedy_lets_short_outputs_leave_the_batch():
    def script(p):
        return _one_hot(2 if p == 3 else 4)

    lengths = [2, 50]  # the first row stops at its length cap, the second at EOS
    hypotheses = greedy(_scripted_step(script), _empty, *_memory(2), lengths, 1, 2, DecodeConfig())
    assert [h.stop for h in hypotheses] == ["length", "eos"]
    assert [len(h.tokens) for h in hypotheses] == [2, 3]


def _greedy_trap(position: int, token: int) -> np.ndarray:
    """Log-probabilities of a crop that fools greedy: step 0 gives token 4 (p 0.6) or 5 (p 0.4); after 4 the
    model is unsure, after 5 it is sure of EOS, so 5 EOS is the likelier sequence."""
    if position == 0:
        return np.log([1e-9, 1e-9, 1e-9, 1e-9, 0.6, 0.4, 1e-9, 1e-9])
    if token == 4:
        return np.log([1e-9, 1e-9, 0.3, 1e-9, 1e-9, 1e-9, 0.35, 0.35])
    return np.log([1e-9, 1e-9, 0.99, 1e-9, 1e-9, 1e-9, 0.005, 0.005])


def test_beam_search_finds_the_better_sequence_greedy_misses():
    def step(tokens, position, cross_bias, past, cross):
        rows = [_greedy_trap(int(position[0]), token) for token in tokens[:, 0]]
        return np.array(rows, np.float32), _grown(past)

    [greedy_pick] = greedy(step, _empty, *_memory(1), [4], 1, 2, DecodeConfig())
    assert greedy_pick.tokens[0] == 4
    [beam_pick] = beam_search(step, _empty, *_memory(1), [4], 1, 2, DecodeConfig(beam=3))
    assert beam_pick.tokens == (5,) and beam_pick.stop == "eos"


def test_rescue_rereads_only_unsure_greedy_readings_with_beam_search():
    # Row kind rides in the cross bias: kind 0 is read surely (6, EOS); kind 1 is the greedy trap.
    batches: list[int] = []

    def step(tokens, position, cross_bias, past, cross):
        batches.append(tokens.shape[0])
        rows = []
        for token, kind in zip(tokens[:, 0], cross_bias[:, 0]):
            if kind == 0:
                rows.append(np.log(_one_hot(6 if int(position[0]) == 0 else 2, 0.99) + 1e-9))
            else:
                rows.append(_greedy_trap(int(position[0]), token))
        return np.array(rows, np.float32), _grown(past)

    cross, _ = _memory(2)
    bias = np.array([[0, 0, 0], [1, 0, 0]], np.float32)
    plain = greedy(step, _empty, cross, bias, [4, 4], 1, 2, DecodeConfig())
    assert [h.tokens[0] for h in plain] == [6, 4]
    batches.clear()
    config = DecodeConfig(rescue_below=0.9, rescue_beam=3)
    sure, rescued = greedy_with_rescue(step, _empty, cross, bias, [4, 4], 1, 2, config)
    assert sure == plain[0]  # confident: greedy's reading, not re-read
    assert rescued.tokens == (5,) and rescued.stop == "eos"
    assert batches[:3] == [2, 2, 1] and set(batches[3:]) == {3}  # then beam on the unsure crop's 3 beams only
    never = greedy_with_rescue(step, _empty, cross, bias, [4, 4], 1, 2, DecodeConfig())
    assert never == plain


@pytest.mark.parametrize(
    "tokens, looping",
    [
        ([7] * 24, True),
        ([4, 5] * 12, True),
        ([4, 5, 6] * 7, False),  # 21 tokens: under the span
        (list(range(30)), False),
        ([9] + [4, 5, 6, 7, 8, 4, 5, 6] * 3 + [9], False),  # repeats, but not at the end
    ],
)
def test_loop_detector(tokens, looping):
    assert is_looping(tokens, DecodeConfig()) is looping


def test_banned_tokens_are_never_chosen():
    def script(position):
        logits = _one_hot(0)  # the model "prefers" PAD, then token 5 over the rest
        logits[5] = 4.0
        return logits

    [hypothesis] = greedy(_scripted_step(script), _empty, *_memory(1), [3], 1, 2, DecodeConfig(), banned=(0, 1))
    assert hypothesis.tokens == (5, 5, 5)
    assert hypothesis.probs[0] == pytest.approx(np.exp(4) / (np.exp(4) + 5))  # renormalised without PAD/BOS


def test_length_budget_grows_with_width_up_to_the_cap():
    config = DecodeConfig()
    assert max_length(16, config) < max_length(320, config) < max_length(5000, config) == config.max_tokens


# --- ONNX export and runtime --------------------------------------------------------------------------------


def _crops(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [draw_crop(random_text(rng, 1, 9), scale=float(rng.uniform(0.6, 1.3))) for _ in range(count)]


def test_onnx_matches_torch_and_int8_mostly_agrees(tmp_path):
    words = vocab()
    model = confident_model(tiny_config(len(words)), seed=5)
    encoder, decoder = export_graphs(model, tmp_path)
    crops = _crops(16, seed=1)
    calibration = [pad_batch([preprocess(c, model.config.preprocess) for c in crops], model.config.preprocess)[0]]
    encoder_q = quantize_encoder(encoder, tmp_path / "encoder.int8.onnx", "static", calibration)
    decoder_q = quantize_decoder(decoder, tmp_path / "decoder.int8.onnx")
    stride, config = model.config.total_stride, model.config.preprocess
    decode = DecodeConfig(max_tokens=model.config.max_tokens - 1)
    fp32 = OnnxRecognizer(encoder, decoder, words, config, stride, decode, threads=1)
    int8 = OnnxRecognizer(encoder_q, decoder_q, words, config, stride, decode, threads=1)
    report = parity(model, fp32, int8, crops, words)
    assert report.max_logit_diff < 1e-3
    assert report.greedy_agreement_fp32 == 1.0
    # Random weights have near-ties, and dynamic int8 scales activations per batch: "mostly", not always.
    assert report.greedy_agreement_int8 >= 0.75
    quantised_ops = {node.op_type for node in onnx.load(str(decoder_q)).graph.node}
    assert quantised_ops & {"MatMulInteger", "DynamicQuantizeMatMul"}
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(str(encoder_q)).graph.node}

    conv_only = onnx.load(str(quantize_encoder(encoder, tmp_path / "encoder.conv.onnx", "static-conv", calibration)))
    quantised_inputs = {name for node in conv_only.graph.node if node.op_type == "DequantizeLinear"
                        for name in node.output}
    convs = [node for node in conv_only.graph.node if node.op_type == "Conv"]
    matmuls = [node for node in conv_only.graph.node if node.op_type == "MatMul"]
    assert convs and all(node.input[1] in quantised_inputs for node in convs)
    assert matmuls and not any(set(node.input) & quantised_inputs for node in matmuls)  # K/V stay fp32


def test_a_crops_encoding_does_not_depend_on_its_batch_neighbours(tiny_bundle):
    recognizer = OnnxRecognizer.load(tiny_bundle, threads=1)
    config = recognizer.preprocess_config
    narrow, wide = (preprocess(crop, config) for crop in (draw_crop("1"), draw_crop("x+y=12345678")))
    assert wide.shape[1] > narrow.shape[1] + 4 * config.width_multiple
    batch, widths = pad_batch([narrow, wide], config)
    together, bias = recognizer.encode(batch, widths)
    alone, _ = recognizer.encode(*pad_batch([narrow], config))
    valid = int((bias[0] == 0).sum())
    assert valid == alone[0].shape[2]
    for layer_together, layer_alone in zip(together, alone):
        kept = layer_together[0][:, bias[0] == 0]  # the narrow crop's own positions inside the batch
        np.testing.assert_array_equal(kept, layer_alone[0])


def test_recognizer_returns_one_result_per_crop_in_order(tiny_bundle):
    recognizer = OnnxRecognizer.load(tiny_bundle, threads=1)
    assert recognizer([]) == []
    crops = _crops(5, seed=2)
    blank = np.full((40, 90), 240, np.uint8)
    results = recognizer([crops[0], blank, *crops[1:]])
    assert len(results) == 6 and all(isinstance(r, Recognition) for r in results)
    assert results[1] == Recognition("", 0.0, 0.0)  # blank: nothing read, nothing sure
    # The same crops in reverse order form the same batches (the predictor sorts by width), so each reading
    # must come back at its crop's place. (Read one by one they may differ: the dynamic-int8 decoder scales
    # its activations per batch; 10% of the bundled model's readings of 60 held-out crops change with that.)
    backwards = recognizer([*reversed(crops[1:]), blank, crops[0]])
    assert backwards[::-1] == results
    assert all(0.0 <= r.confidence <= 1.0 for r in results)
    beamed = recognizer(crops[:2], beam=3)
    assert len(beamed) == 2


def test_recognizer_accepts_bgr_and_gray_alike(tiny_bundle):
    recognizer = OnnxRecognizer.load(tiny_bundle, threads=1)
    gray = _crops(1, seed=3)[0]
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    assert recognizer([gray]) == recognizer([bgr])


# --- registry -----------------------------------------------------------------------------------------------


def test_unsure_thin_readings_are_read_again_thickened_and_the_surer_reading_kept(tiny_bundle, monkeypatch):
    import susik.runtime.recognizer as runtime

    rng = np.random.default_rng(6)
    crops = [draw_crop(random_text(rng), scale=0.6 + 0.2 * (i % 3), thickness=1 + i % 3) for i in range(12)]
    recognizer = OnnxRecognizer.load(tiny_bundle, threads=1)
    plain = recognizer.hypotheses(crops)
    confidence = recognizer._confidence
    below = float(np.median([confidence(h) for h in plain]))
    shares = [stroke_core_share(preprocess(crop, recognizer.preprocess_config)) for crop in crops]
    thin = float(np.median(shares))
    unsure = [i for i, h in enumerate(plain) if confidence(h) < below]
    looked = [i for i in unsure if shares[i] < thin]
    assert 0 < len(looked) < len(unsure)  # the stroke gate keeps some unsure crops from a second look
    # Decoded as the second look decodes them: the int8 decoder's activation scales are the batch's, so
    # another batch could read a crop a little differently.
    thick = recognizer._decode_all(
        {i: preprocess_thickened(crops[i], recognizer.preprocess_config) for i in looked}, None)
    looked_again: list[int] = []
    counting = runtime.preprocess_thickened
    monkeypatch.setattr(runtime, "preprocess_thickened", lambda image, config: (
        looked_again.append(1), counting(image, config))[1])
    recognizer.decode = recognizer.decode.model_copy(update={"thicken_below": below, "thin_core_share": thin})
    both = recognizer.hypotheses(crops)
    assert len(looked_again) == len(looked)
    for index, (first, chosen) in enumerate(zip(plain, both)):
        second = thick.get(index)
        assert chosen == (second if second and confidence(second) > confidence(first) else first), index
    assert any(b != p for b, p in zip(both, plain))  # the second look changed something on this batch
    recognizer.thicken_unsure(0.0)
    looked_again.clear()
    assert recognizer.hypotheses(crops) == plain and not looked_again


def test_unsure_readings_are_read_again_widened_factor_by_factor_and_the_surest_kept(tiny_bundle):
    rng = np.random.default_rng(7)
    crops = [draw_crop(random_text(rng), scale=0.6 + 0.2 * (i % 3), thickness=1 + i % 3) for i in range(12)]
    recognizer = OnnxRecognizer.load(tiny_bundle, threads=1)
    confidence = recognizer._confidence
    plain = recognizer.hypotheses(crops)
    below = float(np.median([confidence(h) for h in plain]))
    config = recognizer.preprocess_config
    # What the looks should do, spelled out: each factor in turn, for the crops still unsure after the last.
    expected = list(plain)
    for factor in (1.2, 1.5):
        unsure = [i for i, h in enumerate(expected) if confidence(h) < below]
        wide = recognizer._decode_all({i: preprocess(crops[i], config, factor) for i in unsure}, None, rescue=False)
        for index, other in wide.items():
            if confidence(other) > confidence(expected[index]):
                expected[index] = other
    recognizer.decode = recognizer.decode.model_copy(update={"widen_factors": (1.2, 1.5)})
    recognizer.widen_unsure(below)
    widened = recognizer.hypotheses(crops)
    assert widened == expected
    assert any(w != p for w, p in zip(widened, plain))  # the looks changed something on this batch
    assert all(confidence(w) >= confidence(p) for w, p in zip(widened, plain))
    recognizer.widen_unsure(0.0)
    assert recognizer.hypotheses(crops) == plain


def test_a_widened_input_is_the_same_crop_stretched_sideways():
    crop = draw_crop("x+1=2", 1.0, 2)
    plain, wide = preprocess(crop), preprocess(crop, width_scale=1.3)
    assert wide.shape[0] == plain.shape[0] and abs(wide.shape[1] - 1.3 * plain.shape[1]) <= 1.5
    assert np.array_equal(preprocess(crop, width_scale=1.0), plain)
    long_one = cv2.resize(draw_crop("1+2+3+4+5+6+7+8+9"), None, fx=4.0, fy=1.0)
    assert preprocess(long_one, width_scale=1.3).shape[1] == PreprocessConfig().max_width  # still fits


def test_decode_config_refuses_senseless_width_factors():
    from susik.runtime.decoding import DecodeConfig

    for factors in ((), (0.2,), (1.2, 3.0)):
        with pytest.raises(ValueError, match="widen_factors"):
            DecodeConfig(widen_factors=factors)


def test_stroke_core_share_tells_thin_strokes_from_thick_ones():
    canvas = np.zeros((32, 64), np.float32)
    thin, thick = canvas.copy(), canvas.copy()
    thin[10:12, 5:60] = 1.0  # two pixels wide: no pixel has ink all around it
    thick[10:16, 5:60] = 1.0
    assert stroke_core_share(thin) == 0.0
    assert stroke_core_share(thick) == pytest.approx((4 * 53) / (6 * 55))
    assert stroke_core_share(canvas) == 0.0
    edge = canvas.copy()
    edge[:, :3] = 1.0  # a band three pixels wide along the border, which counts as paper:
    assert stroke_core_share(edge) == 30 / 96  # only its middle column's inner rows have ink all around


def test_bundle_record_describes_the_model(tiny_bundle):
    record = load_record(tiny_bundle)
    assert set(record.files) == {"encoder", "decoder", "vocab"}
    assert record.quantization == {"encoder": "static-int8", "decoder": "dynamic-int8"}
    assert record.training.command.startswith("susik train recognizer")
    assert record.preprocess.height == 32 and tuple(record.stride) == (8, 8)
    assert record.decode.max_tokens < record.architecture["max_tokens"]  # positions beyond the table: never
    assert record.metrics["export_check"]["max_logit_diff_fp32"] < 1e-3
    card = (tiny_bundle / "MODEL_CARD.md").read_text()
    assert record.version in card and "susik train recognizer" in card and "CC0" in card
    assert json.loads((tiny_bundle / "record.json").read_text())["name"] == "recognizer"
    assert resolve(tiny_bundle / "record.json").version == record.version


def test_get_model_explains_how_to_make_a_missing_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="susik train recognizer"):
        get_model("recognizer", models_dir=tmp_path)
    with pytest.raises(ModelNotFoundError, match="no model at"):
        resolve(tmp_path / "elsewhere" / "record.json")


def test_tampered_weights_are_refused(tiny_bundle, tmp_path):
    copy = tmp_path / "recognizer"
    copy.mkdir()
    for path in tiny_bundle.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    decoder = copy / "decoder.onnx"
    decoder.write_bytes(decoder.read_bytes()[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match="sha256"):
        OnnxRecognizer.load(copy)
    assert get_model("recognizer", tmp_path).version == load_record(tiny_bundle).version


def test_confidence_of_blank_and_guarded_outputs_is_zero():
    assert sequence_confidence(Hypothesis((), (), "empty")) == 0.0
    assert sequence_confidence(Hypothesis((4,), (0.9, 0.9), "repetition"), "min") == 0.0
    assert sequence_confidence(Hypothesis((4, 5), (0.25, 1.0, 1.0), "eos")) == pytest.approx(0.25 ** (1 / 3))
