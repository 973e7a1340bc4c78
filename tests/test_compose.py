import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from susik.data import textlines
from susik.data.compose import ComposerConfig, FormulaCrop, PageComposer, draw_overlay
from susik.data.degrade import CONDITIONS
from susik.data.geometry import signed_area
from susik.data.paper import PAPER_KINDS, PaperStyle, desk, paper, random_style

# Small pages keep the suite fast; the geometry is the same at any size. Print ink only (no pale pencil),
# so "the region sits on dark ink" has one threshold.
SMALL = dict(long_side=(640, 720), font_scale=(0.03, 0.036), handwritten_pen_share=0.0)
FORMULAS_ONLY = ComposerConfig(
    **SMALL, text=False, paper_kinds=("plain",), formula_height=(2.0, 2.2), pad=0.05
)
WITH_TEXT = ComposerConfig(**SMALL, formula_height=(1.6, 2.0), inline_share=0.6)
ALL_CONDITIONS = sorted(CONDITIONS)


def _bar(index: int, kind: str = "printed") -> FormulaCrop:
    """A 'formula' whose ink is a solid dark rectangle with a white margin."""
    crop = np.full((60, 280), 255, np.uint8)
    crop[10:50, 10 : 150 + 10 * index] = 0
    return FormulaCrop(crop, f"x_{{{index}}}", kind)


CROPS = [_bar(i, "handwritten" if i % 3 == 0 else "printed") for i in range(8)]


def _grey(image):
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _mask(shape, polygon):
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return mask > 0


def _ink_iou(image, polygon):
    """IoU of the region polygon with the Otsu ink found near it (within 4 px: neighbours stay out)."""
    grey = _grey(image)
    inside = _mask(grey.shape, polygon)
    near = cv2.dilate(inside.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    ys, xs = np.nonzero(near)
    window = grey[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    _, otsu = cv2.threshold(window, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    ink = np.zeros_like(inside)
    ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = otsu > 0
    ink &= near
    return (ink & inside).sum() / (ink | inside).sum()


def _contrast(image, polygon):
    """(ring mean - inside mean) / ring mean of grey levels: ~1 when the polygon sits on dark ink."""
    grey = _grey(image).astype(np.float32)
    inside = _mask(grey.shape, polygon)
    ring = (cv2.dilate(inside.astype(np.uint8), np.ones((17, 17), np.uint8)) > 0) & ~inside
    return (grey[ring].mean() - grey[inside].mean()) / grey[ring].mean()


@pytest.mark.parametrize("condition", ALL_CONDITIONS)
def test_regions_sit_on_the_ink_under_every_condition(condition):
    for seed in range(2):
        page = PageComposer(FORMULAS_ONLY).compose(CROPS, np.random.default_rng(seed), [condition])
        assert len(page.regions) == len(CROPS)
        height, width = page.image.shape[:2]
        for region in page.regions:
            assert _contrast(page.image, region.polygon) > 0.5, (condition, seed)
            iou = _ink_iou(page.image, region.polygon)
            assert iou >= (0.8 if condition not in {"low_light", "shadow", "blur"} else 0.7), (
                condition,
                seed,
                iou,
            )
            for points in (region.quad, region.polygon):
                assert points[:, 0].min() >= 0 and points[:, 1].min() >= 0
                assert points[:, 0].max() <= width - 1 and points[:, 1].max() <= height - 1


@pytest.mark.parametrize("condition", ALL_CONDITIONS)
def test_inline_and_display_regions_sit_on_ink_among_text(condition):
    page = PageComposer(WITH_TEXT).compose(CROPS, np.random.default_rng(5), [condition])
    assert len(page.regions) >= 4
    for region in page.regions:
        assert _contrast(page.image, region.polygon) > 0.4, condition
        assert region.quad.shape == (4, 2)
        assert signed_area(region.quad) > 0  # clockwise on screen after every warp
        assert Polygon(region.polygon).is_valid


def test_quads_start_at_the_formulas_own_top_left():
    composer = PageComposer(FORMULAS_ONLY)
    # Which corner of the image-space bounding box the formula's top-left lands on after each rotation.
    expected = {
        "clean": ("min", "min"),
        "rotation90": ("max", "min"),
        "rotation180": ("max", "max"),
        "rotation270": ("min", "max"),
    }
    for condition, (ex, ey) in expected.items():
        page = composer.compose(CROPS, np.random.default_rng(1), [condition])
        for region in page.regions:
            quad = region.quad
            assert quad[0, 0] == pytest.approx(getattr(quad[:, 0], ex)())
            assert quad[0, 1] == pytest.approx(getattr(quad[:, 1], ey)())
            assert signed_area(quad) > 0  # still clockwise on screen
            np.testing.assert_allclose(region.polygon[0], quad[0])


def test_orientation_and_conditions_are_recorded():
    composer = PageComposer(FORMULAS_ONLY)
    for condition, degrees in [
        ("clean", 0),
        ("rotation90", 90),
        ("rotation180", 180),
        ("rotation270", 270),
        ("skew", 0),
    ]:
        page = composer.compose(CROPS, np.random.default_rng(0), [condition, "jpeg"])
        assert page.orientation == degrees
        assert page.conditions == (condition, "jpeg")
    upright = composer.compose(CROPS, np.random.default_rng(0), [])
    turned = composer.compose(CROPS, np.random.default_rng(0), ["rotation90"])
    assert turned.image.shape[:2] == upright.image.shape[1::-1]
    assert upright.conditions == ()


def test_regions_never_overlap():
    composer = PageComposer(ComposerConfig(**SMALL, two_column_share=0.5, inline_share=0.6))
    crops = CROPS * 3
    for seed in range(8):
        page = composer.compose(crops, np.random.default_rng(seed), ["clean"])
        polygons = [Polygon(region.polygon) for region in page.regions]
        assert len(polygons) >= 5
        for a, b in itertools.combinations(polygons, 2):
            assert a.intersection(b).area == 0


def test_regions_keep_their_labels_in_crop_order():
    page = PageComposer(WITH_TEXT).compose(CROPS, np.random.default_rng(2), ["perspective"])
    latex = [region.latex for region in page.regions]
    expected = [crop.latex for crop in CROPS][: len(latex)]
    assert latex == expected
    assert [region.kind for region in page.regions] == [crop.kind for crop in CROPS][: len(latex)]


def test_a_choice_label_is_text_left_of_its_region_not_part_of_it():
    """`C. 0<x<1`: the label is drawn on the formula's line, left of a region that holds the formula only."""
    config = ComposerConfig(**SMALL, inline_share=0.0, paper_kinds=("plain",), formula_height=(1.6, 1.8))
    for seed in range(4):
        crops = [_bar(i)._replace(label="C.") for i in range(3)]
        page = PageComposer(config).compose(crops, np.random.default_rng(seed))
        grey = _grey(page.image)
        assert [r.latex for r in page.regions] == [c.latex for c in crops][: len(page.regions)]
        for region in page.regions:
            x0, y0 = region.quad.min(axis=0)
            _, y1 = region.quad.max(axis=0)
            height = y1 - y0
            band = grey[int(y0) : int(y1), max(0, int(x0 - 3 * height)) : int(x0) - 1]
            assert (band < 100).sum() > 10, "the label's ink beside the region"


def test_a_full_page_drops_what_does_not_fit():
    page = PageComposer(FORMULAS_ONLY).compose(CROPS * 10, np.random.default_rng(0), ["clean"])
    assert 8 < len(page.regions) < 80


def test_crops_without_ink_are_skipped():
    blank = FormulaCrop(np.full((40, 100), 255, np.uint8), "blank", "printed")
    page = PageComposer(FORMULAS_ONLY).compose([blank, CROPS[0]], np.random.default_rng(0), ["clean"])
    assert [region.latex for region in page.regions] == [CROPS[0].latex]


def test_handwritten_crops_take_a_pen_colour():
    crops = [_bar(i, "handwritten") for i in range(4)]
    config = FORMULAS_ONLY.model_copy(update={"always_on": False, "handwritten_pen_share": 1.0})
    colours = set()
    for seed in range(12):
        page = PageComposer(config).compose(crops, np.random.default_rng(seed), ["clean"])
        region = page.regions[0]
        centre = np.round(region.quad.mean(axis=0)).astype(int)
        colours.add(tuple(int(v) // 16 for v in page.image[centre[1], centre[0]]))
    assert len(colours) >= 2  # not always black: blue, grey or pencil too


def test_compose_is_deterministic_per_seed():
    composer = PageComposer(WITH_TEXT)
    first = composer.compose(CROPS, np.random.default_rng(9), ["crumple", "shadow"])
    again = composer.compose(CROPS, np.random.default_rng(9), ["crumple", "shadow"])
    np.testing.assert_array_equal(first.image, again.image)
    for a, b in zip(first.regions, again.regions, strict=True):
        np.testing.assert_array_equal(a.quad, b.quad)
        np.testing.assert_array_equal(a.polygon, b.polygon)


def test_unknown_condition_fails_before_work():
    with pytest.raises(ValueError, match="unknown"):
        PageComposer(FORMULAS_ONLY).compose(CROPS, np.random.default_rng(0), ["sepia"])


def test_config_rejects_unknown_keys_and_inverted_ranges():
    with pytest.raises(ValueError):
        ComposerConfig(colums=2)
    with pytest.raises(ValueError, match="long_side"):
        ComposerConfig(long_side=(1800, 1200))


def test_manifest_record_and_overlay():
    page = PageComposer(WITH_TEXT).compose(CROPS, np.random.default_rng(0), ["skew"])
    record = page.to_record("pages/0001.jpg", source="synthetic", license="CC0-1.0")
    assert set(record) == {
        "image",
        "width",
        "height",
        "orientation",
        "regions",
        "conditions",
        "source",
        "license",
    }
    assert (record["height"], record["width"]) == page.image.shape[:2]
    assert set(record["regions"][0]) == {"quad", "polygon", "latex", "kind"}
    assert len(record["regions"][0]["quad"]) == 4
    overlay = draw_overlay(page.image, page.regions)
    assert overlay.shape == page.image.shape and not np.array_equal(overlay, page.image)


@pytest.mark.parametrize("kind", PAPER_KINDS)
def test_paper_kinds(kind):
    style = random_style(np.random.default_rng(0), pitch=30, kinds=(kind,))
    sheet = paper(200, 150, style, np.random.default_rng(1))
    assert sheet.shape == (200, 150, 3) and sheet.dtype == np.uint8
    np.testing.assert_array_equal(sheet, paper(200, 150, style, np.random.default_rng(1)))
    assert 150 < sheet.mean() < 255


def test_ruled_paper_has_lines_at_the_pitch():
    style = PaperStyle(kind="ruled", tint=(245, 245, 245), pitch=25, origin=10, texture=0.0)
    sheet = _grey(paper(200, 150, style, np.random.default_rng(0))).astype(float)
    rows = sheet.mean(axis=1)
    lines = np.arange(10, 200, 25)
    assert rows[lines].max() < rows[lines + 12].min() - 5


def test_desk_is_a_background():
    surface = desk(50, 80, np.random.default_rng(0))
    assert surface.shape == (50, 80, 3) and surface.dtype == np.uint8


@pytest.mark.skipif(not textlines.font_paths(), reason="fonts-nanum is not installed")
def test_korean_text_renders_with_a_shared_baseline():
    font = textlines.font_paths()[0]
    korean = textlines.render_text("다음 식을 간단히 하시오.", font, 24)
    number = textlines.render_text("①", font, 24)
    assert korean.mask.shape[0] == number.mask.shape[0]  # same font and size: same row span
    assert korean.ascent == number.ascent
    assert (korean.mask > 128).sum() > 200
    assert korean.mask.shape[1] > 10 * 24 * 0.6


def test_only_the_fonts_nanum_faces_write_page_text(tmp_path):
    for name in ("NanumGothic.ttf", "NanumMyeongjo.ttf", "NanumBrush.ttf", "NanumGothicCoding.ttf", "Other.ttf"):
        (tmp_path / name).write_bytes(b"")
    assert [Path(p).name for p in textlines.print_fonts(tmp_path)] == ["NanumGothic.ttf", "NanumMyeongjo.ttf"]


def test_missing_fonts_fall_back_with_a_warning():
    textlines.load_font.cache_clear()
    with pytest.warns(UserWarning, match="fonts-nanum"):
        font = textlines.load_font(None, 20)
    assert font.getbbox("Solve for x.")[2] > 0


def test_problem_numbers_and_sentences():
    rng = np.random.default_rng(0)
    labels = [textlines.problem_number(3, style) for style in range(len(textlines.NUMBER_STYLES))]
    assert labels == ["3.", "(3)", "③", "3)", "문제 3."]
    subs = [textlines.sub_number(2, style) for style in range(len(textlines.SUB_NUMBER_STYLES))]
    assert subs == ["(2)", "②", "2)", "(나)"]
    assert textlines.problem_number(25, 2) == "(25)"  # past the circled digits
    assert all(textlines.sentence(rng, korean_share=1.0) in textlines.KOREAN_SENTENCES for _ in range(20))
    assert all(textlines.sentence(rng, korean_share=0.0) in textlines.ENGLISH_SENTENCES for _ in range(20))
