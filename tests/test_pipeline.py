import numpy as np

from susik.pipeline import Detection, PageDetections, Pipeline, WholeImageDetector, rectify
from susik.results import Quad, Recognition


class TwoBoxDetector:
    """Finds two fixed boxes on every page."""

    def __call__(self, images):
        boxes = [((10, 10), (60, 10), (60, 30), (10, 30)), ((10, 50), (90, 50), (90, 70), (10, 70))]
        return [PageDetections(0, tuple(Detection(Quad(b), b, "printed", 0.9) for b in boxes)) for _ in images]


class WidthRecognizer:
    """Reads a crop as its width, so the test can tell which crop went where."""

    def __init__(self):
        self.batches = []

    def __call__(self, crops):
        self.batches.append(len(crops))
        return [Recognition(str(crop.shape[1]), 0.5) for crop in crops]


def test_pipeline_reads_each_images_crops_in_one_recognizer_call_and_keeps_order():
    recognizer = WidthRecognizer()
    pages = Pipeline(TwoBoxDetector(), recognizer)([np.zeros((100, 100, 3), np.uint8)] * 3)
    assert recognizer.batches == [2, 2, 2]
    assert [[r.latex for r in page.regions] for page in pages] == [["50", "80"]] * 3
    assert set(pages[0].timings_ms) >= {"detect", "rectify", "recognize", "total"}
    assert pages[0].to_json()["regions"][0]["quad"] == [[10, 10], [60, 10], [60, 30], [10, 30]]


def test_throughput_mode_reads_all_crops_in_one_call():
    recognizer = WidthRecognizer()
    pages = Pipeline(TwoBoxDetector(), recognizer, independent_pages=False)([np.zeros((100, 100), np.uint8)] * 3)
    assert recognizer.batches == [6]
    assert [[r.latex for r in page.regions] for page in pages] == [["50", "80"]] * 3


class BatchDependentRecognizer:
    """Like the int8 decoder, whose activation scale is shared by a call: the reading depends on the call."""

    def __call__(self, crops):
        loudest = max(float(crop.max()) for crop in crops)
        return [Recognition(f"{crop.shape[1]}/{loudest:.0f}", 0.5) for crop in crops]


def test_an_images_reading_does_not_depend_on_the_other_images_of_the_batch():
    quiet, loud = np.zeros((100, 100), np.uint8), np.full((100, 100), 200, np.uint8)
    pipeline = Pipeline(TwoBoxDetector(), BatchDependentRecognizer())
    alone = pipeline([quiet])[0]
    assert pipeline([loud, quiet])[1].regions == alone.regions
    mixed = Pipeline(TwoBoxDetector(), BatchDependentRecognizer(), independent_pages=False)([loud, quiet])[1]
    assert mixed.regions != alone.regions  # the fake is batch-dependent, so the check above can fail


def test_empty_input_and_pages_without_formulas():
    class NoneFound:
        def __call__(self, images):
            return [PageDetections(0, ()) for _ in images]

    recognizer = WidthRecognizer()
    assert Pipeline(NoneFound(), recognizer)([]) == []
    pages = Pipeline(NoneFound(), recognizer)([np.zeros((20, 20), np.uint8)])
    assert pages[0].regions == () and recognizer.batches == []


def test_crop_pipeline_reads_the_whole_image():
    pages = Pipeline.for_crops(WidthRecognizer())([np.zeros((30, 70), np.uint8)])
    assert pages[0].regions[0].latex == "70"
    assert WholeImageDetector()([np.zeros((5, 8), np.uint8)])[0].detections[0].quad.points[2] == (8.0, 5.0)


def test_rectify_undoes_a_rotated_quad():
    image = np.full((200, 200), 255, np.uint8)
    image[90:110, 50:150] = 0  # a dark bar, 100 x 20
    quad = Quad(((150, 110), (50, 110), (50, 90), (150, 90)))  # the bar seen upside down
    crop = rectify(image, quad)
    assert crop.shape == (20, 100)
    assert crop.mean() < 30


def test_the_recognizer_reads_the_crop_quad_while_the_region_keeps_the_detected_quad():
    class ContextDetector:
        def __call__(self, images):
            tight, wide = ((20, 20), (60, 20), (60, 40), (20, 40)), ((10, 15), (70, 15), (70, 45), (10, 45))
            return [PageDetections(0, (Detection(Quad(tight), tight, "handwritten", 0.9, Quad(wide)),))]

    (page,) = Pipeline(ContextDetector(), WidthRecognizer())([np.zeros((100, 100), np.uint8)])
    assert page.regions[0].latex == "60"  # the wide quad's width
    assert page.regions[0].quad.points[0] == (20, 20)


class ScriptedRecognizer:
    """Reads the n-th crop of a call as the n-th of its lines."""

    def __init__(self, lines):
        self.lines = lines

    def __call__(self, crops):
        return [Recognition(line, 0.7) for line, _ in zip(self.lines, crops)]


def test_page_mode_keeps_a_problem_number_apart_and_drops_regions_that_hold_only_one():
    class ThreeBoxDetector:
        def __call__(self, images):
            boxes = [((10, 10 + 30 * i), (60, 10 + 30 * i), (60, 30 + 30 * i), (10, 30 + 30 * i)) for i in range(3)]
            return [PageDetections(0, tuple(Detection(Quad(b), b, "printed", 0.9) for b in boxes)) for _ in images]

    image = np.zeros((120, 100), np.uint8)
    page = Pipeline(ThreeBoxDetector(), ScriptedRecognizer([r"(1)x+1=2,", r"\text{C.}", "y=2"]))([image])[0]
    assert [(r.latex, r.label) for r in page.regions] == [("x+1=2", "(1)"), ("y=2", None)]
    assert [r["label"] for r in page.to_json()["regions"]] == ["(1)", None]
    assert page.regions[1].quad.points[0] == (10, 70)  # the label-only region went, not the one after it
    whole = Pipeline(ThreeBoxDetector(), ScriptedRecognizer(["(1)x+1=2,"] * 3), split_labels=False)([image])[0]
    assert [r.latex for r in whole.regions] == ["(1)x+1=2,"] * 3


def test_crop_mode_keeps_the_reading_whole():
    crop = np.zeros((30, 80), np.uint8)
    page = Pipeline.for_crops(ScriptedRecognizer([r"\text{(2)}y=3"]))([crop])[0]
    assert [(r.latex, r.label) for r in page.regions] == [(r"\text{(2)}y=3", None)]


class SurerWhenWiderRecognizer:
    """Reads a crop as its width, surer the wider it is; remembers each call's widths."""

    def __init__(self):
        self.calls = []

    def __call__(self, crops):
        self.calls.append([crop.shape[1] for crop in crops])
        return [Recognition(str(crop.shape[1]), min(crop.shape[1] / 100, 1.0)) for crop in crops]


def test_an_unsure_reading_is_read_again_from_the_grown_crops_and_the_surest_kept():
    def box(left, right, top=10):
        return (left, top), (right, top), (right, top + 20), (left, top + 20)

    class GrowingDetector:
        def __call__(self, images):
            unsure = Detection(Quad(box(20, 60)), box(20, 60), "printed", 0.9, None,
                               (Quad(box(10, 70)), Quad(box(15, 65))), recrop_below=0.95)
            sure = Detection(Quad(box(0, 99, 40)), box(0, 99, 40), "printed", 0.9, None,
                             (Quad(box(0, 99, 40)),), recrop_below=0.95)
            plain = Detection(Quad(box(20, 50, 70)), box(20, 50, 70), "handwritten", 0.9)
            return [PageDetections(0, (unsure, sure, plain)) for _ in images]

    recognizer = SurerWhenWiderRecognizer()
    (page,) = Pipeline(GrowingDetector(), recognizer)([np.zeros((100, 100), np.uint8)])
    # the first call reads every region; the second only the unsure printed one's two grown crops
    assert recognizer.calls == [[40, 99, 30], [60, 50]]
    assert [(r.latex, r.confidence) for r in page.regions] == [("60", 0.6), ("99", 0.99), ("30", 0.3)]
    assert page.regions[0].quad.points[0] == (20, 10)  # the region keeps its detected quad


def test_a_grown_crop_read_less_surely_leaves_the_first_reading():
    class ShrinkingDetector:
        def __call__(self, images):
            quad = ((10, 10), (70, 10), (70, 30), (10, 30))
            narrower = ((20, 10), (60, 10), (60, 30), (20, 30))
            return [PageDetections(0, (Detection(Quad(quad), quad, "printed", 0.9, None, (Quad(narrower),), 0.95),))]

    (page,) = Pipeline(ShrinkingDetector(), SurerWhenWiderRecognizer())([np.zeros((100, 100), np.uint8)])
    assert [(r.latex, r.confidence) for r in page.regions] == [("60", 0.6)]


def test_crop_by_crop_reads_every_crop_in_a_call_of_its_own_second_crops_too():
    class UnsureDetector:
        def __call__(self, images):
            quad, grown = ((20, 10), (60, 10), (60, 30), (20, 30)), ((10, 10), (70, 10), (70, 30), (10, 30))
            detections = (Detection(Quad(quad), quad, "printed", 0.9, None, (Quad(grown),), 0.95),
                          Detection(Quad(quad), quad, "handwritten", 0.9))
            return [PageDetections(0, detections) for _ in images]

    recognizer = SurerWhenWiderRecognizer()
    (page,) = Pipeline(UnsureDetector(), recognizer, crop_by_crop=True)([np.zeros((100, 100), np.uint8)])
    assert recognizer.calls == [[40], [40], [60]]
    assert [r.latex for r in page.regions] == ["60", "40"]
