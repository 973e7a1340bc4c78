"""Detector geometry without torch: shrink/unclip, golden postprocessing, quad order on turned pages."""

import cv2
import numpy as np
import pytest

from susik.data.geometry import rotate_quarter_points
from susik.eval.detect_match import DetectionCounts, count_page, match_regions, polygon_iou
from susik.runtime.detector import (
    MEAN,
    STD,
    DetectParams,
    detect_page,
    downscale,
    input_scale,
    normalise_padded,
    postprocess,
    shrink_distance,
    unclip_distance,
    widen_quad,
)
from susik.runtime.orient import DeskewOrienter, order_quad, skew_angle, to_upright_points, upright_page

PARAMS = DetectParams()
UPRIGHT = np.array([1.0, 0.0, 0.0, 0.0])


def _one_hot(orientation: int) -> np.ndarray:
    return np.eye(4)[orientation // 90]


@pytest.mark.parametrize("width,height,shrink", [(84, 14, 0.5), (300, 40, 0.5), (30, 30, 0.4), (500, 12, 0.6)])
def test_unclip_inverts_the_training_shrink_of_a_rectangle(width, height, shrink):
    box = np.array([[0, 0], [width, 0], [width, height], [0, height]], float)
    d = shrink_distance(box, shrink)
    assert unclip_distance(width - 2 * d, height - 2 * d, shrink) == pytest.approx(d, rel=1e-9)


def _blob_map(rows: slice, cols: slice, value: float = 0.9, shape=(64, 160)) -> np.ndarray:
    kernel = np.zeros(shape, np.float32)
    kernel[rows, cols] = value
    return kernel


# Blob rows 10..14, cols 20..59 at stride 2 -> input centres y 20.5..28.5, x 40.5..118.5 (a 78 x 8 kernel),
# unclip D = 3 exactly -> input box x 37.5..121.5, y 17.5..31.5 -> at scale 0.5: x 75.5..243.5, y 35.5..63.5.
HORIZONTAL = {
    0: [[75.5, 35.5], [243.5, 35.5], [243.5, 63.5], [75.5, 63.5]],
    180: [[243.5, 63.5], [75.5, 63.5], [75.5, 35.5], [243.5, 35.5]],
}
# The same blob standing upright (rows 20..59, cols 10..14): a formula on a page turned 90 or 270 degrees.
VERTICAL = {
    90: [[63.5, 75.5], [63.5, 243.5], [35.5, 243.5], [35.5, 75.5]],
    270: [[35.5, 243.5], [35.5, 75.5], [63.5, 75.5], [63.5, 243.5]],
}


@pytest.mark.parametrize("orientation,expected", list(HORIZONTAL.items()))
def test_golden_horizontal_blob_gives_exact_quad_in_original_pixels(orientation, expected):
    kernel = _blob_map(slice(10, 15), slice(20, 60))
    page = postprocess(kernel, np.zeros_like(kernel), _one_hot(orientation), 0.5, (640, 400), PARAMS)
    assert page.orientation == orientation
    (found,) = page.detections
    assert np.allclose(found.quad.points, expected, atol=1e-3)
    assert found.kind == "printed" and found.score == pytest.approx(0.9)
    # the polygon runs clockwise from the quad's first corner and covers the same box
    assert np.allclose(found.polygon[0], expected[0], atol=1e-3)
    assert polygon_iou(found.polygon, expected) > 0.99


@pytest.mark.parametrize("orientation,expected", list(VERTICAL.items()))
def test_golden_vertical_blob_on_turned_page_starts_at_the_formula_top_left(orientation, expected):
    kernel = _blob_map(slice(20, 60), slice(10, 15), shape=(160, 64))
    page = postprocess(kernel, np.zeros_like(kernel), _one_hot(orientation), 0.5, (400, 640), PARAMS)
    (found,) = page.detections
    assert np.allclose(found.quad.points, expected, atol=1e-3)


def test_blobs_are_filtered_scored_typed_and_read_in_order():
    kernel = np.zeros((80, 120), np.float32)
    kernel[40:46, 10:70] = 0.95  # second line
    kernel[10:16, 60:110] = 0.85  # first line
    kernel[60:66, 10:60] = 0.45  # above the pixel threshold, below the box threshold: dropped
    kernel[70, 100] = 0.99  # one pixel: too small
    handwritten = np.zeros_like(kernel)
    handwritten[40:46, 10:70] = 0.8
    page = postprocess(kernel, handwritten, UPRIGHT, 1.0, (240, 160), PARAMS)
    assert [d.kind for d in page.detections] == ["printed", "handwritten"]
    assert page.detections[0].quad.points[0][1] < page.detections[1].quad.points[0][1]
    assert [round(d.score, 2) for d in page.detections] == [0.85, 0.95]


def test_empty_map_and_clipping_to_the_image():
    empty = np.zeros((32, 32), np.float32)
    assert postprocess(empty, empty, UPRIGHT, 1.0, (64, 64), PARAMS).detections == ()
    edge = _blob_map(slice(0, 4), slice(0, 30), shape=(32, 32))
    (found,) = postprocess(edge, np.zeros_like(edge), UPRIGHT, 1.0, (64, 64), PARAMS).detections
    points = np.asarray(found.quad.points)
    assert points.min() >= 0 and points.max() <= 63


def test_detect_page_maps_back_to_a_large_original_and_ignores_padding():
    image = np.full((1500, 2000), 255, np.uint8)  # gray input, downscaled to long side 768 (scale 0.384)

    def run(tensor):
        assert tensor.shape == (1, 3, 576, 768)  # 1500 * 0.384 = 576, already a multiple of 32
        maps = np.zeros((1, 2, 288, 384), np.float32)
        maps[0, 0, 100:106, 50:150] = 0.9
        return maps, UPRIGHT[None]

    (found,) = detect_page(image, run, PARAMS).detections
    x = np.asarray(found.quad.points)[:, 0]
    # map cols 50..149 -> input x 100.5..298.5 (+/- unclip) -> original (x + 0.5) / 0.384 - 0.5
    assert 250 < x.min() < 262 and 775 < x.max() < 790


def test_a_small_photo_is_enlarged_to_the_short_side_and_mapped_back():
    image = np.full((20, 100), 255, np.uint8)  # a tight photo of one line: enlarged 3x to a short side of 60
    params = PARAMS.model_copy(update={"min_short_side": 60})
    assert input_scale(100, 20, 768, 60) == 3.0 and input_scale(100, 20, 768) == 1.0
    assert input_scale(700, 20, 768, 60) == pytest.approx(768 / 700)  # the long side still caps it

    def run(tensor):
        assert tensor.shape == (1, 3, 64, 320)  # 60 x 300, padded to multiples of 32
        maps = np.zeros((1, 2, 32, 160), np.float32)
        maps[0, 0, 10:20, 10:140] = 0.9
        return maps, UPRIGHT[None]

    (found,) = detect_page(image, run, params).detections
    points = np.asarray(found.quad.points)
    # map cols 10..139 -> input x 20.5..278.5 (+ unclip) -> original (x + 0.5) / 3 - 0.5
    assert 3 < points[:, 0].min() < 7 and 93 < points[:, 0].max() < 97
    assert 2 < points[:, 1].min() < 7 and 13 < points[:, 1].max() < 18


@pytest.mark.parametrize("source,size", [((1600, 1200), (200, 150)), ((1700, 1300), (300, 229)),
                                         ((1000, 700), (600, 420)), ((90, 60), (45, 30))])
def test_downscale_averages_like_one_area_resize_without_aliasing(source, size):
    rng = np.random.default_rng(0)
    # fine noise is what aliases: point-sampling keeps its full contrast, area averaging flattens it
    image = rng.integers(0, 256, (*source[::-1], 3)).astype(np.uint8)
    image[: source[1] // 2] //= 4  # and a dark band whose edge must land where one INTER_AREA resize puts it
    want = cv2.resize(image, size, interpolation=cv2.INTER_AREA).astype(np.float64)
    got = downscale(image, size)
    assert got.shape == (size[1], size[0], 3) and got.dtype == np.uint8
    # white noise is the worst case; the integer-factor-then-area resize this replaced was 4.0 off at 1700 -> 300
    assert np.abs(got - want).mean() < 3.5
    bright = slice(size[1] // 2 + 2, None)  # rows below the band's edge: what is left of the noise
    assert got[bright].std() == pytest.approx(want[bright].std(), rel=0.15)
    naive = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    if source[0] >= 4 * size[0]:  # the check can fail: plain bilinear aliases at 4x and more
        assert np.abs(naive - want).mean() > 4 * np.abs(got - want).mean()


def test_normalise_pads_with_mid_grey_to_a_multiple_of_32():
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3)).astype(np.uint8)
    tensor = normalise_padded(image[:, ::-1])  # a non-contiguous view is fine
    assert tensor.shape == (1, 3, 64, 96) and tensor.dtype == np.float32
    want = ((image[:, ::-1].astype(np.float64) / 255 - MEAN) / STD).transpose(2, 0, 1)
    assert np.abs(tensor[0, :, :50, :70] - want).max() < 1e-5
    assert not tensor[0, :, 50:].any() and not tensor[0, :, :, 70:].any()
    assert normalise_padded(np.zeros((64, 32, 3), np.uint8)).shape == (1, 3, 64, 32)


@pytest.mark.parametrize("orientation", [0, 90, 180, 270])
def test_order_quad_keeps_the_formula_top_left_first_on_turned_pages(orientation):
    width, height = 300, 200
    upright = np.array([[40, 50], [160, 58], [158, 80], [38, 72]], float)  # slightly skewed, formula order
    turned = rotate_quarter_points(upright, width, height, orientation // 90)
    size = (width, height) if orientation in (0, 180) else (height, width)
    shuffled = turned[[2, 0, 3, 1]]
    assert np.allclose(order_quad(shuffled, orientation), turned)
    assert np.allclose(to_upright_points(turned, orientation, size), upright)


def test_upright_page_undoes_a_clockwise_turn():
    page = np.arange(12, dtype=np.uint8).reshape(3, 4)
    turned = np.rot90(page, k=-1)  # clockwise
    assert np.array_equal(upright_page(turned, 90), page)
    with pytest.raises(ValueError):
        order_quad(np.zeros((4, 2)), 45)


SQUARE = [[0, 0], [10, 0], [10, 10], [0, 10]]


@pytest.mark.parametrize("a,b,iou", [
    (SQUARE, SQUARE, 1.0),
    (SQUARE, [[20, 0], [30, 0], [30, 10], [20, 10]], 0.0),
    (SQUARE, [[5, 0], [15, 0], [15, 10], [5, 10]], 1 / 3),
    (SQUARE, [[0, 0], [10, 0], [20, 0], [5, 0]], 0.0),  # zero area
    (SQUARE, [[0, 0], [1, 1]], 0.0),  # not a polygon
])
def test_polygon_iou(a, b, iou):
    assert polygon_iou(a, b) == pytest.approx(iou)


def test_matching_is_one_to_one_and_counts_give_precision_recall_f1():
    truth = [SQUARE, [[20, 0], [30, 0], [30, 10], [20, 10]]]
    predicted = [SQUARE, [[0, 0], [10, 0], [10, 9], [0, 9]], [[50, 50], [60, 50], [60, 60], [50, 60]]]
    assert match_regions(predicted, truth) == [(0, 0, 1.0)]
    counts = count_page(predicted, truth)
    assert (counts.precision, counts.recall) == (pytest.approx(1 / 3), 0.5)
    assert counts.f1 == pytest.approx(0.4)
    assert DetectionCounts().f1 == 1.0 and count_page([], truth).f1 == 0.0
    assert (count_page([], truth) + count_page(predicted, [])).truths == 2


def _ink_line(angle: float) -> np.ndarray:
    crop = np.full((64, 240), 255, np.uint8)
    for x in range(20, 220, 14):  # a row of glyph-like blobs on one baseline
        cv2.rectangle(crop, (x, 26), (x + 8, 38), 0, -1)
    matrix = cv2.getRotationMatrix2D((120, 32), angle, 1.0)
    return cv2.warpAffine(crop, matrix, (240, 64), borderValue=255)


@pytest.mark.parametrize("angle", [-4.0, 0.0, 3.0])
def test_skew_angle_finds_the_tilt_of_a_line_of_ink(angle):
    assert skew_angle(_ink_line(angle)) == pytest.approx(-angle, abs=1.0)


def test_deskew_orienter_straightens_tilted_crops_and_leaves_level_ones():
    level, tilted = _ink_line(0.0), _ink_line(4.0)
    out_level, out_tilted = DeskewOrienter()([level, tilted])
    assert out_level is level
    assert abs(skew_angle(out_tilted)) <= 1.0 and out_tilted.shape == tilted.shape
    assert DeskewOrienter()([]) == []


def test_an_unsure_orientation_head_leaves_the_page_upright():
    kernel = _blob_map(slice(10, 15), slice(20, 60))
    unsure = np.array([0.3, 0.05, 0.6, 0.05])  # leans to 180 degrees, as on a tight photo of one line
    sure = np.array([0.01, 0.0, 0.99, 0.0])
    params = DetectParams(min_orientation_confidence=0.9)
    assert postprocess(kernel, np.zeros_like(kernel), unsure, 0.5, (640, 400), params).orientation == 0
    turned = postprocess(kernel, np.zeros_like(kernel), sure, 0.5, (640, 400), params)
    assert turned.orientation == 180
    assert np.allclose(turned.detections[0].quad.points, HORIZONTAL[180], atol=1e-3)
    assert postprocess(kernel, np.zeros_like(kernel), unsure, 0.5, (640, 400), PARAMS).orientation == 180


def test_the_handwritten_threshold_decides_the_kind():
    kernel = _blob_map(slice(10, 15), slice(20, 60))
    unsure = np.full_like(kernel, 0.35)
    (default,) = postprocess(kernel, unsure, UPRIGHT, 0.5, (640, 400), PARAMS).detections
    (lowered,) = postprocess(kernel, unsure, UPRIGHT, 0.5, (640, 400), DetectParams(handwritten_threshold=0.3)).detections
    assert (default.kind, lowered.kind) == ("printed", "handwritten")


def test_widen_quad_grows_along_the_line_and_across_it_in_line_heights_and_stays_in_the_image():
    level = np.array([[100, 50], [300, 50], [300, 70], [100, 70]], float)  # 200 x 20: line height 20
    assert np.allclose(widen_quad(level, 0.5, 0.25, (640, 480)), [[90, 45], [310, 45], [310, 75], [90, 75]])
    assert np.allclose(widen_quad(level, 0.0, 0.0, (640, 480)), level)
    upside_down = level[[2, 3, 0, 1]]  # the same line read on a page turned 180: its top-left is (300, 70)
    assert np.allclose(widen_quad(upside_down, 0.5, 0.25, (640, 480)), [[310, 75], [90, 75], [90, 45], [310, 45]])
    assert np.allclose(widen_quad(level, 10, 10, (320, 100)), [[0, 0], [319, 0], [319, 99], [0, 99]])


def test_regions_carry_a_widened_crop_quad_when_the_params_ask_for_context():
    kernel = _blob_map(slice(10, 15), slice(20, 60))
    params = PARAMS.model_copy(update={"crop_margin_along": 0.5, "crop_margin_across": 0.25})
    (tight,) = postprocess(kernel, np.zeros_like(kernel), UPRIGHT, 0.5, (640, 400), PARAMS).detections
    (found,) = postprocess(kernel, np.zeros_like(kernel), UPRIGHT, 0.5, (640, 400), params).detections
    assert found.quad == tight.quad and np.allclose(tight.crop_quad.points, tight.quad.points)
    assert np.allclose(found.crop_quad.points, widen_quad(np.asarray(found.quad.points), 0.5, 0.25, (640, 400)))


def test_printed_regions_carry_grown_crops_for_a_second_reading_when_the_params_ask():
    kernel = _blob_map(slice(10, 15), slice(20, 60))
    params = DetectParams.model_validate({"crop_margin_across": 0.25, "recrop_below": 0.9,
                                          "recrop_along": "0.3,0.6"})  # as a benchmark's --param gives it
    assert params.recrop_along == [0.3, 0.6]
    (printed,) = postprocess(kernel, np.zeros_like(kernel), UPRIGHT, 0.5, (640, 400), params).detections
    points = np.asarray(printed.quad.points)
    assert [np.allclose(q.points, widen_quad(points, along, 0.25, (640, 400)))
            for q, along in zip(printed.recrop_quads, [0.3, 0.6], strict=True)] == [True, True]
    assert printed.recrop_below == 0.9
    (handwritten,) = postprocess(kernel, np.ones_like(kernel), UPRIGHT, 0.5, (640, 400), params).detections
    (off,) = postprocess(kernel, np.zeros_like(kernel), UPRIGHT, 0.5, (640, 400), PARAMS).detections
    assert handwritten.recrop_quads == off.recrop_quads == ()
    assert handwritten.recrop_below == off.recrop_below == 0.0
