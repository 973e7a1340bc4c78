"""Close-ups: the page's letter height, from its ink, decides whether the detector sees it shrunk."""

import cv2
import numpy as np
import pytest

from susik.runtime import detector
from susik.runtime.detector import DetectParams, fit_input, ink_mask, letter_height, page_input, preprocess


def text_image(letter_scale: float, width: int, height: int, seed: int = 0) -> np.ndarray:
    """Lines of Latin text (Hershey font) on grey paper: cv2.putText's scale 1 is about 22 px tall capitals."""
    rng = np.random.default_rng(seed)
    paper = np.full((height, width, 3), int(rng.integers(190, 236)), np.uint8)
    pitch = int(40 * letter_scale)
    for row, y in enumerate(range(pitch, height - pitch // 2, pitch)):
        cv2.putText(paper, "Find the area ABCDEF of each shape" if row % 2 else "Solve for x when y is 3",
                    (int(10 * letter_scale), y), cv2.FONT_HERSHEY_SIMPLEX, letter_scale, (40, 40, 40),
                    max(1, round(2 * letter_scale)), cv2.LINE_AA)
    return paper


def test_ink_mask_is_the_mean_threshold_it_describes():
    rng = np.random.default_rng(1)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (37, 52), dtype=np.uint8), (5, 5), 0)
    half = detector.INK_WINDOW // 2
    padded = np.pad(gray.astype(np.int64), half, mode="edge")
    window = detector.INK_WINDOW
    expected = np.array([[int(gray[y, x]) + detector.INK_CONTRAST <= padded[y : y + window, x : x + window].mean()
                          for x in range(gray.shape[1])] for y in range(gray.shape[0])])
    assert np.array_equal(ink_mask(gray).astype(bool), expected)
    assert 0 < expected.mean() < 0.5


def test_letter_height_follows_the_texts_size():
    small = letter_height(text_image(0.6, 900, 700))
    large = letter_height(text_image(1.8, 900, 700))
    assert 8 <= small <= 22
    assert 2.4 <= large / small <= 3.6


def test_letter_height_is_zero_without_enough_letters():
    assert letter_height(np.full((300, 400, 3), 210, np.uint8)) == 0.0
    strokes = np.full((300, 400, 3), 210, np.uint8)
    for x in (40, 140, 240):  # three long pen strokes: a line of cursive, not text
        cv2.line(strokes, (x, 80), (x + 60, 200), (30, 30, 30), 4)
    assert letter_height(strokes) == 0.0


def short_formula(letter_scale: float, width: int = 1600, height: int = 500) -> np.ndarray:
    """`2<x`, three glyphs (Hershey font) in the middle of the frame: a photo of one short formula."""
    paper = np.full((height, width, 3), 215, np.uint8)
    cv2.putText(paper, "2<x", (width // 3, height // 2 + int(11 * letter_scale)), cv2.FONT_HERSHEY_SIMPLEX,
                letter_scale, (40, 40, 40), max(1, round(2 * letter_scale)), cv2.LINE_AA)
    return paper


def test_a_few_letters_count_only_when_they_are_over_the_bar():
    large, small = short_formula(5.0), short_formula(1.0)
    assert letter_height(large) == 0.0 and letter_height(small) == 0.0  # fewer than six: unknown, as before
    tall = letter_height(large, few_above=40)
    assert 80 <= tall <= 140
    assert letter_height(small, few_above=40) == 0.0


def test_one_short_formula_filling_the_frame_is_a_close_up_when_the_rule_is_on():
    image = short_formula(5.0)
    plain, plain_scale = preprocess(image, 1024, 56)
    off = DetectParams(long_side=1024, min_short_side=56, closeup_letters_above=24, closeup_letters_to=12,
                       closeup_min_long_side=128)
    assert page_input(image, off)[1] == plain_scale
    on = off.model_copy(update={"closeup_few_letters_above": 48.0})
    tensor, scale = page_input(image, on)
    assert scale < plain_scale and max(tensor.shape[2:]) < max(plain.shape[2:])
    shrunk, _ = fit_input(image, round(max(image.shape[:2]) * scale))
    assert 8 <= letter_height(shrunk, few_above=0) <= 18
    small = short_formula(1.0)  # its letters are a page's: detected as they are
    assert page_input(small, on)[1] == preprocess(small, 1024, 56)[1]


def test_the_few_letters_bar_is_not_below_the_close_up_bar():
    with pytest.raises(ValueError, match="closeup_few_letters_above"):
        DetectParams(closeup_letters_above=26, closeup_few_letters_above=20)
    assert DetectParams(closeup_letters_above=26, closeup_few_letters_above=0).closeup_few_letters_above == 0


def test_close_up_is_shrunk_until_its_letters_are_the_target_size():
    params = DetectParams(long_side=1024, min_short_side=56, closeup_letters_above=24, closeup_letters_to=12)
    image = text_image(2.2, 1600, 1200)
    tensor, scale = page_input(image, params)
    plain, plain_scale = preprocess(image, 1024, 56)
    assert scale < plain_scale and max(tensor.shape[2:]) < max(plain.shape[2:])
    assert max(tensor.shape[2:]) % detector.STRIDE == 0
    shrunk, _ = fit_input(image, round(max(image.shape[:2]) * scale))
    assert 8 <= letter_height(shrunk) <= 16


@pytest.mark.parametrize("params", [
    DetectParams(long_side=1024, min_short_side=56),  # off: the default, so older records read as before
    DetectParams(long_side=1024, min_short_side=56, closeup_letters_above=24),
])
def test_whole_page_text_keeps_its_input(params):
    image = text_image(0.7, 1600, 1200)
    tensor, scale = page_input(image, params)
    plain, plain_scale = preprocess(image, 1024, 56)
    assert scale == plain_scale and np.array_equal(tensor, plain)


def test_close_up_is_never_shrunk_below_the_floor():
    params = DetectParams(long_side=1024, closeup_letters_above=10, closeup_letters_to=2, closeup_min_long_side=384)
    tensor, _ = page_input(text_image(2.5, 1600, 1200), params)
    assert max(tensor.shape[2:]) == 384


def test_quad_iou_is_shapelys():
    from shapely.geometry import Polygon

    rng = np.random.default_rng(2)
    for _ in range(300):
        a, b = (cv2.boxPoints(((rng.uniform(0, 40), rng.uniform(0, 40)), (rng.uniform(1, 50), rng.uniform(1, 20)),
                               rng.uniform(-90, 90))).astype(np.float64) for _ in range(2))
        b = b[::-1] if rng.random() < 0.5 else b  # either winding
        expected = Polygon(a).intersection(Polygon(b)).area / Polygon(a).union(Polygon(b)).area
        assert detector.quad_iou(a, b) == pytest.approx(expected, abs=1e-9)


def boxes_runner(boxes_of_pass):
    """A stand-in net: kernel boxes (relative x0, y0, x1, y1 of the map) for the first input size it sees, then
    `boxes_of_pass[1]` for any smaller one."""
    sizes: list[int] = []

    def run(tensor):
        height, width = tensor.shape[2] // 2, tensor.shape[3] // 2
        sizes.append(width)
        maps = np.zeros((1, 2, height, width), np.float32)
        for x0, y0, x1, y1 in boxes_of_pass[0 if width == max(sizes) else 1]:
            maps[0, 0, int(y0 * height) : int(y1 * height), int(x0 * width) : int(x1 * width)] = 0.9
        return maps, np.array([[1.0, 0.0, 0.0, 0.0]], np.float32)

    return run, sizes


def test_a_large_lettered_page_keeps_the_regions_a_smaller_pass_confirms():
    image = text_image(1.0, 1200, 900)
    letters = letter_height(fit_input(image, 1024, 56)[0])
    params = DetectParams(long_side=1024, min_short_side=56, box_threshold=0.5, closeup_letters_above=letters + 1,
                          confirm_letters_above=letters - 1, confirm_letters_to=letters / 2, closeup_min_long_side=64)
    formula, text = (0.1, 0.30, 0.5, 0.36), (0.55, 0.6, 0.9, 0.66)
    run, sizes = boxes_runner([[formula, text], [(0.11, 0.30, 0.5, 0.36)]])
    found = detector.detect_page(image, run, params).detections
    assert len(sizes) == 2 and sizes[1] < sizes[0]
    assert len(found) == 1 and np.asarray(found[0].quad.points)[:, 0].max() < 0.6 * 1200

    for rule_off in (params.model_copy(update={"confirm_letters_above": 0}),
                     params.model_copy(update={"confirm_letters_above": letters + 0.5})):  # letters too small
        run, sizes = boxes_runner([[formula, text], []])
        assert len(detector.detect_page(image, run, rule_off).detections) == 2 and len(sizes) == 1


def test_no_second_pass_without_regions_or_for_a_close_up():
    image = text_image(1.0, 1200, 900)
    bgr, _ = fit_input(image, 1024, 56)
    params = DetectParams(long_side=1024, min_short_side=56, closeup_letters_above=30, confirm_letters_above=10)
    assert detector.confirm_input(image, bgr, 20.0, params, regions=0) is None
    assert detector.confirm_input(image, bgr, 31.0, params, regions=3) is None  # a close-up: shrunk already
    small, _scale = detector.confirm_input(image, bgr, 20.0, params, regions=3)
    assert max(small.shape[:2]) == detector.shrunk_long_side(1024, 20.0, params.confirm_letters_to, 320)
