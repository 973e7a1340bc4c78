"""Page mode in JavaScript (serve/web/edge-page.js, edge-core.js) against the Python it ports, under Node: the
detector's input, its postprocessing, rectify and deskew, on generated images and maps, and the problem
labels taken off readings."""

import base64

import cv2
import numpy as np
import pytest
from node_harness import NODE, node_runner
from recognizer_helpers import draw_crop, random_text
from shapely.geometry import Polygon

from susik.latex.labels import split_reading_label, strip_sentence_punctuation
from susik.one_formula import central_region
from susik.pipeline import rectify
from susik.results import Quad
from susik.runtime import detector
from susik.runtime.label_gap import cut_quad, label_end
from susik.runtime.orient import DeskewOrienter

pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js")
HARNESS = """
import { readFileSync } from "node:fs";
import * as page from "./edge-page.js";
import * as core from "./edge-core.js";
const bytes = (text) => Buffer.from(text, "base64");
const image = (c) => ({ data: Uint8ClampedArray.from(bytes(c.rgba)), width: c.width, height: c.height });
const encode = (array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString("base64");
const run = {
  input: (c) => {
    const r = page.detectorInput(image(c), c.long_side, c.min_short_side);
    return { tensor: encode(r.tensor), shape: [r.height, r.width], scale: r.scale, valid: [r.validHeight, r.validWidth] };
  },
  page_input: (c) => {
    const r = page.pageInput(image(c), c.params);
    return { tensor: encode(r.tensor), shape: [r.height, r.width], scale: r.scale };
  },
  letters: (c) => page.letterHeight(image(c), c.few_above ?? Infinity),
  quad_iou: (c) => page.quadIou(c.a, c.b),
  central: (c) => page.centralRegion(c.polygons, c.width, c.height),
  label_end: (c) => page.labelEnd(image(c)),
  cut_quad: (c) => page.cutQuad(c.quad, c.start),
  confirm_input: (c) => {
    const first = page.pageInput(image(c), c.params);
    const r = page.confirmInput(image(c), first, c.params, c.regions);
    return r && { tensor: encode(r.tensor), shape: [r.height, r.width], scale: r.scale };
  },
  post: (c) => page.postprocess(new Float32Array(bytes(c.maps).buffer.slice(0)), c.map_h, c.map_w,
    { height: c.valid[0], width: c.valid[1] }, c.orientation, c.scale, c.size, c.params),
  rectify: (c) => {
    const r = page.rectify(image(c), c.quad);
    return { rgba: encode(r.data), width: r.width, height: r.height };
  },
  label: (c) => core.splitReadingLabel(c.latex),
  punctuation: (c) => core.stripSentencePunctuation(c.latex),
  deskew: (c) => {
    const r = page.deskew(image(c));
    return { rgba: encode(r.data), width: r.width, height: r.height };
  },
};
const cases = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(JSON.stringify(cases.map((c) => run[c.op](c))));
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    return node_runner(tmp_path_factory.mktemp("edge"), ("edge-core.js", "edge-page.js"), HARNESS)


def rgba_case(op: str, bgr: np.ndarray, **fields) -> dict:
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    return {"op": op, "rgba": base64.b64encode(rgba.tobytes()).decode(), "width": bgr.shape[1],
            "height": bgr.shape[0], **fields}


def bgr_of(answer: dict) -> np.ndarray:
    rgba = np.frombuffer(base64.b64decode(answer["rgba"]), np.uint8).reshape(answer["height"], answer["width"], 4)
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR)


def test_detector_input_is_the_servers_to_the_bit(node):
    """No resize, one area step (exactly 2x, under 2x), a bilinear step, halvings (even and odd sizes);
    a page that the short side would enlarge past the long side is capped by it."""
    rng = np.random.default_rng(0)
    sizes = [(300, 200), (480, 640), (1792, 1344), (1000, 1500), (2000, 1000), (997, 1503), (1851, 3650), (13, 900)]
    images = [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (3, 3), 0) for h, w in sizes]
    cases = [rgba_case("input", i, long_side=896, min_short_side=56) for i in images]
    for image, got in zip(images, node(cases), strict=True):
        tensor, scale = detector.preprocess(image, 896, 56)
        assert got["scale"] == scale and got["shape"] == list(tensor.shape[2:])
        assert np.array_equal(np.frombuffer(base64.b64decode(got["tensor"]), np.float32).reshape(tensor.shape), tensor)


def test_small_photos_are_enlarged_as_the_server_does(node):
    """To the short side, by odd factors: OpenCV's SIMD and scalar bilinear passes round differently on a few
    pixels, so one grey level on under 2% of them is allowed."""
    rng = np.random.default_rng(3)
    sizes = [(17, 59), (40, 123), (55, 56), (20, 700)]
    images = [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (3, 3), 0) for h, w in sizes]
    cases = [rgba_case("input", i, long_side=896, min_short_side=56) for i in images]
    for image, got in zip(images, node(cases), strict=True):
        tensor, scale = detector.preprocess(image, 896, 56)
        assert scale > 1 and got["scale"] == scale and got["shape"] == list(tensor.shape[2:])
        assert got["valid"] == [-(-round(image.shape[0] * scale) // 2), -(-round(image.shape[1] * scale) // 2)]
        grey = np.abs(np.frombuffer(base64.b64decode(got["tensor"]), np.float32).reshape(tensor.shape) - tensor)
        grey *= 255 * detector.STD
        assert grey.max() < 1.001 and (grey > 0.5).mean() < 0.02


def test_close_ups_are_shrunk_as_the_server_does(node):
    """detector.letter_height and page_input: text at several sizes (a close-up among them), noise, a blank page."""
    from test_detector_closeup import short_formula, text_image

    rng = np.random.default_rng(5)
    images = [text_image(scale, 700, 500, seed) for seed, scale in enumerate((0.5, 0.9, 1.6, 2.4))]
    images += [cv2.GaussianBlur(rng.integers(0, 256, (230, 310, 3), dtype=np.uint8), (3, 3), 0),
               np.full((120, 90, 3), 200, np.uint8), short_formula(4.0, 900, 300)]
    params = detector.DetectParams(long_side=640, min_short_side=56, closeup_letters_above=20, closeup_letters_to=11,
                                   closeup_min_long_side=128, closeup_few_letters_above=40)
    letters = node([rgba_case("letters", image) for image in images])
    few = node([rgba_case("letters", image, few_above=40) for image in images])
    inputs = node([rgba_case("page_input", image, params=params.model_dump()) for image in images])
    shrunk = 0
    for image, height, height_of_few, got in zip(images, letters, few, inputs, strict=True):
        assert height == detector.letter_height(image)
        assert height_of_few == detector.letter_height(image, few_above=40)
        tensor, scale = detector.page_input(image, params)
        shrunk += scale < detector.preprocess(image, 640, 56)[1]
        assert got["scale"] == scale and got["shape"] == list(tensor.shape[2:])
        assert np.array_equal(np.frombuffer(base64.b64decode(got["tensor"]), np.float32).reshape(tensor.shape), tensor)
    assert shrunk >= 2 and letters[-2] == 0
    assert letters[-1] == 0 and few[-1] > 40  # three tall glyphs: a close-up only under the few-letters rule


def test_large_lettered_pages_are_confirmed_at_the_servers_size(node):
    """detector.quad_iou, and confirm_input: the second pass's input, or none (small letters, no regions)."""
    from test_detector_closeup import text_image

    rng = np.random.default_rng(6)
    quads = [(cv2.boxPoints(((rng.uniform(0, 40), rng.uniform(0, 40)), (rng.uniform(1, 50), rng.uniform(1, 20)),
                             rng.uniform(-90, 90))).astype(np.float64)) for _ in range(40)]
    pairs = [(quads[i], quads[i + 1][::-1] if i % 4 else quads[i + 1]) for i in range(0, 40, 2)]
    answers = node([{"op": "quad_iou", "a": a.tolist(), "b": b.tolist()} for a, b in pairs])
    assert answers == pytest.approx([detector.quad_iou(a, b) for a, b in pairs], abs=1e-12)
    assert sum(answer > 0 for answer in answers) >= 3

    params = detector.DetectParams(long_side=640, min_short_side=56, confirm_letters_above=14, confirm_letters_to=9,
                                   closeup_min_long_side=128)
    images = [text_image(scale, 700, 500, seed) for seed, scale in enumerate((0.5, 0.9, 1.3))]
    cases = [(image, regions) for image in images for regions in (0, 2)]
    got = node([rgba_case("confirm_input", image, params=params.model_dump(), regions=regions)
                for image, regions in cases])
    second_passes = 0
    for (image, regions), answer in zip(cases, got, strict=True):
        first, _ = detector.fit_input(image, 640, 56)
        expected = detector.confirm_input(image, first, detector.letter_height(first), params, regions)
        assert (answer is None) == (expected is None)
        if expected is not None:
            tensor, scale = detector.normalise_padded(expected[0]), expected[1]
            assert answer["scale"] == scale and answer["shape"] == list(tensor.shape[2:])
            assert np.array_equal(np.frombuffer(base64.b64decode(answer["tensor"]), np.float32).reshape(tensor.shape),
                                  tensor)
            second_passes += 1
    assert 1 <= second_passes < len(cases)


def random_maps(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise below the threshold with rotated, scored boxes on it (some touching, some tiny)."""
    height, width = int(rng.integers(40, 300)), int(rng.integers(40, 300))
    kernel = (rng.random((height, width)) * 0.3).astype(np.float32)
    handwritten = rng.random((height, width)).astype(np.float32)
    for _ in range(int(rng.integers(0, 12))):
        centre = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
        angle = float(rng.uniform(-30, 30)) if rng.random() < 0.5 else float(rng.choice([0, 90]))
        box = cv2.boxPoints((centre, (float(rng.uniform(1, 80)), float(rng.uniform(1, 15))), angle))
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
        kernel[mask > 0], handwritten[mask > 0] = rng.uniform(0.5, 1.0), rng.uniform(0, 1)
    if rng.random() < 0.6:  # a formula line broken into pieces, as the detector sees handwriting on photos
        angle, line_height = float(rng.uniform(-10, 10)), float(rng.uniform(4, 14))
        x, y = float(rng.uniform(0, width / 2)), float(rng.uniform(0, height))
        direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        for _ in range(int(rng.integers(2, 4))):
            length = float(rng.uniform(6, 40))
            centre = np.array([x, y]) + direction * length / 2
            box = cv2.boxPoints(((float(centre[0]), float(centre[1])), (length, line_height), angle))
            mask = np.zeros((height, width), np.uint8)
            cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
            kernel[mask > 0], handwritten[mask > 0] = rng.uniform(0.7, 1.0), rng.uniform(0, 1)
            step = length + float(rng.uniform(2, 1.2 * line_height))
            x, y = x + direction[0] * step, y + direction[1] * step
    return kernel, handwritten


@pytest.mark.parametrize("merge_gap", [None, 0.0, 1.5])
def test_postprocess_finds_the_servers_regions(node, merge_gap):
    """The bundled record's postprocessing, with line pieces joined (or not) as its params say, and both ways."""
    rng = np.random.default_rng(1)
    # second crops for unsure printed readings on, whatever the bundle says: their quads are compared too
    params = detector.load_detector_record().params.model_copy(update={"recrop_below": 0.9,
                                                                       "recrop_along": [0.3, 0.6]})
    if merge_gap is not None:
        params = params.model_copy(update={"merge_gap": merge_gap})
    cases, expected, joins = [], [], 0
    for _ in range(30):
        kernel, handwritten = random_maps(rng)
        height, width = kernel.shape
        maps = np.zeros((2, height + 2, width + 1), np.float32)  # padded maps: only the valid corner counts
        maps[0, :height, :width], maps[1, :height, :width] = kernel, handwritten
        orientation = rng.dirichlet(np.ones(4)).astype(np.float32)
        scale = float(rng.uniform(0.2, 1.0))
        size = (int(2 * width / scale) + 1, int(2 * height / scale) + 1)
        expected.append(detector.postprocess(kernel, handwritten, orientation, scale, size, params))
        apart = detector.postprocess(kernel, handwritten, orientation, scale, size,
                                     params.model_copy(update={"merge_gap": 0.0}))
        joins += len(apart.detections) - len(expected[-1].detections)
        cases.append({"op": "post", "maps": base64.b64encode(maps.tobytes()).decode(), "map_h": height + 2,
                      "map_w": width + 1, "valid": [height, width], "orientation": orientation.tolist(),
                      "scale": scale, "size": list(size), "params": params.model_dump()})
    found = printed = 0
    for theirs, ours in zip(expected, node(cases), strict=True):
        assert ours["orientation"] == theirs.orientation
        assert len(ours["detections"]) == len(theirs.detections)
        for detection, mine in zip(theirs.detections, ours["detections"], strict=True):  # reading order too
            # OpenCV's float32 box corners, emulated: equal or one float32 ulp apart
            assert np.abs(np.subtract(mine["quad"], detection.quad.points)).max() < 1e-3
            assert np.abs(np.subtract(mine["cropQuad"], detection.crop_quad.points)).max() < 1e-3
            grown = 2 if detection.kind == "printed" else 0
            assert len(mine["recropQuads"]) == len(detection.recrop_quads) == grown
            for quad, theirs_quad in zip(mine["recropQuads"], detection.recrop_quads, strict=True):
                assert np.abs(np.subtract(quad, theirs_quad.points)).max() < 1e-3
            assert Polygon(mine["quad"]).is_valid
            assert (mine["kind"], mine["score"]) == (detection.kind, pytest.approx(detection.score, abs=1e-12))
            found += 1
            printed += detection.kind == "printed"
    assert found >= 40
    assert 0 < printed < found  # both kinds, with and without second crops
    assert (joins > 5) == (params.merge_gap > 0)  # the joining path was exercised where it is on


def test_rectify_and_deskew_crop_as_the_server_does(node):
    rng = np.random.default_rng(2)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (400, 600, 3), dtype=np.uint8), (5, 5), 0)
    quads = []
    for _ in range(12):
        centre, size, angle = rng.uniform([50, 50], [550, 350]), rng.uniform([20, 8], [300, 200]), rng.uniform(-0.5, 0.5)
        turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * size / 2 @ turn + centre
        quads.append((corners + rng.normal(0, 3, (4, 2))).tolist())
    crops = []
    for _ in range(8):
        crop = cv2.cvtColor(draw_crop(random_text(rng), float(rng.uniform(1, 3)), 1), cv2.COLOR_GRAY2BGR)
        height, width = crop.shape[:2]
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), float(rng.uniform(-5, 5)), 1.0)
        crops.append(cv2.warpAffine(crop, turn, (width, height), borderMode=cv2.BORDER_REPLICATE))
    cases = [rgba_case("rectify", photo, quad=quad) for quad in quads] + [rgba_case("deskew", c) for c in crops]
    answers = node(cases)
    expected = [rectify(photo, Quad(tuple(map(tuple, quad)))) for quad in quads] + DeskewOrienter()(crops)
    turned = 0
    for theirs, ours, original in zip(expected, map(bgr_of, answers), [None] * len(quads) + crops, strict=True):
        assert ours.shape == theirs.shape
        # OpenCV's SIMD warps round a source coordinate differently on a few pixels: one grey level at most.
        assert np.abs(ours.astype(int) - theirs).max() <= 1 and (ours != theirs).mean() < 0.002
        turned += original is not None and not np.array_equal(theirs, original)
    assert turned >= 3  # the deskew cases did turn


def test_problem_labels_come_off_readings_as_the_server_takes_them(node):
    readings = [r"\text{1)}m=", r"\text { C. } 0<x<1", "(1)9v-2=46.42", r"( 2 ) \sin x", r"12 ) a\cdot b=", "(B) x>1",
                "(1)", r"\text{D.}", "10)", "x+1", "(1)^{-1}", "(1)+(2)=3", r"(2)\cdot 3", r"(3)\times(4)", "1.5+x",
                "(x)y", r"\text{PA}x", "(0)=2", " (3) \n y ", "", r"2.\frac{1}{a}", "1.AC=BC", "7 . x-y=0",
                r"1.\overline{3}", r"1.\ldots", "2. 5", "3.,4", "1."]
    answers = node([{"op": "label", "latex": latex} for latex in readings])
    assert [tuple(answer) for answer in answers] == [split_reading_label(latex) for latex in readings]
    assert sum(answer[0] is not None for answer in answers) >= 12  # labels were found, not only left alone


def test_sentence_punctuation_comes_off_readings_as_the_server_takes_it_off(node):
    readings = ["A^c,", r"\sqrt{x^2+6} ,", r"l:y=kx+\sqrt{2}.", "x=1;", "1,2,3,...", r"a\;", r"x\,", ",", "",
                "x_{1}, x_{2}", r"\{1,2\}.", "y=2\n.", "f(x)"]
    answers = node([{"op": "punctuation", "latex": latex} for latex in readings])
    assert answers == [strip_sentence_punctuation(latex) for latex in readings]
    assert sum(answer != latex for answer, latex in zip(answers, readings)) == 6


def test_the_formula_nearest_the_centre_is_chosen_as_the_server_chooses_it(node):
    """one_formula.central_region: sets of turned boxes around a photo's centre, some holding it, some not; a
    non-convex polygon whose box holds the centre; no polygons."""
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(200):
        width, height = int(rng.integers(200, 1200)), int(rng.integers(200, 1200))
        polygons = []
        for _ in range(int(rng.integers(0, 5))):
            centre = rng.normal((width / 2, height / 2), (width / 4, height / 4))
            size, angle = rng.uniform((20, 10), (width, height / 3)), rng.uniform(-0.5, 0.5)
            corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * size / 2
            turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            polygons.append((corners @ turn.T + centre).round(2).tolist())
        cases.append({"op": "central", "polygons": polygons, "width": width, "height": height})
    corner = [[0, 0], [100, 0], [100, 20], [20, 20], [20, 100], [0, 100]]
    cases.append({"op": "central", "polygons": [corner, [[70, 45], [100, 45], [100, 55], [70, 55]]], "width": 100,
                  "height": 100})
    answers = node(cases)
    assert answers == [central_region(c["polygons"], c["width"], c["height"]) for c in cases]
    assert answers[-1] == 1 and None in answers
    assert len({answer for answer, c in zip(answers, cases) if len(c["polygons"]) > 1}) >= 3  # not always the first


def test_the_space_after_a_label_is_found_as_the_server_finds_it(node):
    """label_gap.label_end on labelled lines (word spaces, tight, a long run of ink first), in colour, dim and
    noisy; cut_quad on turned quads."""
    from test_label_gap import labelled

    rng = np.random.default_rng(11)
    crops = []
    for _ in range(40):
        label = str(rng.choice(["1)", "(2)", "C.", "B.", "4)", "(12345678)"]))
        crop, _, _ = labelled(label, random_text(rng, 1, 8), int(rng.integers(0, 24)), float(rng.uniform(0.6, 1.6)))
        bgr = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR).astype(np.float64)
        bgr = bgr * rng.uniform(0.2, 1.0, 3) + rng.uniform(0, 40)  # tinted, dim
        crops.append(np.clip(bgr + rng.normal(0, 6, bgr.shape), 0, 255).astype(np.uint8))
    answers = node([rgba_case("label_end", crop) for crop in crops])
    assert answers == [label_end(crop) for crop in crops]
    assert sum(answer is None for answer in answers) >= 5 and sum(answer is not None for answer in answers) >= 15
    quads = [rng.uniform(0, 500, (4, 2)).round(2) for _ in range(5)]
    starts = [0.0, 0.25, 0.5, 0.63, 0.9]
    cuts = node([{"op": "cut_quad", "quad": q.tolist(), "start": t} for q, t in zip(quads, starts)])
    expected = [cut_quad(Quad(tuple(map(tuple, q))), t).points for q, t in zip(quads, starts)]
    assert np.allclose(np.asarray(cuts, float), np.asarray(expected, float), atol=1e-9)
