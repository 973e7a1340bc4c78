"""Photo augmentation of formula crops: each step's effect, the chain's determinism and legibility."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from susik.data import crop_augment as ca
from susik.runtime.preprocess import check_crop


def _crop(text: str = "x+2=5", height: int = 48) -> np.ndarray:
    image = np.full((height, 8 + 22 * len(text)), 255, np.uint8)
    cv2.putText(image, text, (4, height - 12), cv2.FONT_HERSHEY_SIMPLEX, height / 40, 0, 2, cv2.LINE_AA)
    return image


def test_ink_alpha_maps_paper_to_0_and_darkest_ink_to_1():
    image = np.array([[255, 128, 40]], np.uint8)
    assert ca.ink_alpha(image)[0].tolist() == pytest.approx([0.0, 127 / 215, 1.0])
    assert not ca.ink_alpha(np.full((4, 4), 255, np.uint8)).any()


def test_stroke_width_thickens_and_thins_without_erasing_hairlines():
    alpha = np.zeros((20, 40), np.float32)
    alpha[10, 5:35] = 1.0  # a one-pixel fraction bar
    assert ca.stroke_width(alpha, 1).sum() > 2 * alpha.sum()
    thinned = ca.stroke_width(alpha, -1)
    assert thinned.sum() < alpha.sum() and thinned[10, 5:35].min() > 0.5


def test_slant_leans_a_vertical_stroke_and_widens_the_canvas_to_keep_it():
    alpha = np.zeros((40, 30), np.float32)
    alpha[:, 15] = 1.0
    leaned = ca.slant(alpha, 0.25, replicate=False)
    assert leaned.shape == (40, 30 + 10)
    top, bottom = np.argmax(leaned[2]), np.argmax(leaned[-3])
    assert bottom - top >= 8  # x moves by 0.25 px per row, rightwards going down
    assert leaned.sum() == pytest.approx(alpha.sum(), rel=0.05)


def test_stretch_scales_the_width_only():
    image = _crop()
    assert ca.stretch(image, 0.5).shape == (image.shape[0], round(image.shape[1] * 0.5))
    assert ca.stretch(image, 1.4).shape == (image.shape[0], round(image.shape[1] * 1.4))


def test_elastic_bends_strokes_by_about_the_amplitude_and_keeps_the_ink():
    alpha = ca.ink_alpha(_crop())
    assert np.allclose(ca.elastic(alpha, np.random.default_rng(0), 0.0, replicate=False), alpha)
    bent = ca.elastic(alpha, np.random.default_rng(0), 2.0, replicate=False)
    assert bent.shape == alpha.shape and not np.allclose(bent, alpha)
    assert bent.sum() == pytest.approx(alpha.sum(), rel=0.15)
    wild = ca.elastic(alpha, np.random.default_rng(0), 8.0, replicate=False)
    assert np.abs(wild - alpha).sum() > np.abs(bent - alpha).sum()


def test_skeleton_thins_strokes_to_connected_one_pixel_lines():
    bar = np.zeros((30, 60), bool)
    bar[10:19, 5:55] = True  # nine pixels thick
    lines = ca.skeleton(bar)
    columns = lines[:, 12:48].sum(axis=0)
    assert (columns == 1).all() and lines[:, 12:48].any(axis=1).nonzero()[0].tolist() == [14]
    ring = cv2.circle(np.zeros((60, 60), np.uint8), (30, 30), 20, 1, thickness=6).astype(bool)
    thin = ca.skeleton(ring)
    assert thin.sum() < ring.sum() / 4
    # still one closed loop: one piece of ink and the hole inside it kept
    assert cv2.connectedComponents(thin.astype(np.uint8))[0] == 2
    assert cv2.connectedComponents((~thin).astype(np.uint8), connectivity=4)[0] == 3


def test_pen_strokes_draw_every_stroke_equally_thin_at_the_asked_height():
    thin, thick = np.zeros((24, 80), np.float32), np.zeros((24, 80), np.float32)
    thin[11:13, 5:75] = 1.0
    thick[8:16, 5:75] = 1.0
    widths = []
    for alpha in (thin, thick):
        pen = ca.pen_strokes(alpha, 96)
        assert pen.shape == (96, 320) and pen.dtype == np.float32 and 0 <= pen.min() <= pen.max() <= 1
        widths.append(int((pen[:, 100:220] > 0.5).sum(axis=0).max()))
    assert widths[0] == widths[1] and 2 <= widths[0] <= 4  # a pen's line, whatever the font's weight
    assert ca.pen_strokes(ca.ink_alpha(_crop()), 100).any()


def test_pen_preset_redraws_typeset_ink_with_thinner_lines():
    crop = ca.ink_alpha(_crop(height=40))
    pen_only = ca.AugmentConfig(untouched=0, compose_on_paper=1, pen=1, pen_height=(80, 80), stroke=0,
                                padding=(0, 0), skew=0, perspective=0, highlighter=0, lighting=0, shadow=0,
                                blur=0, resolution=0, noise=0, low_light=0, jpeg=0, ink_blue=0, ink_pencil=0)
    out = ca.augment_crop(_crop(height=40), np.random.default_rng(0), pen_only).image
    assert out.shape[0] == 80
    ink_share = (ca.ink_alpha(out) > 0.5).mean()
    assert 0 < ink_share < (crop > 0.5).mean()  # twice the size, yet less of it is ink: thin strokes


def test_one_pixel_pen_draws_hairlines_at_full_ink():
    thick = np.zeros((24, 80), np.float32)
    thick[8:16, 5:75] = 1.0
    line = ca.pen_strokes(thick, 48, pen_px=1)
    assert line.shape == (48, 160) and 0 <= line.min() <= line.max() <= 1
    columns = line[:, 40:120]
    assert ((columns > 0.5).sum(axis=0) == 1).all()  # one pixel of ink across the stroke...
    assert columns.max(axis=0).min() > 0.95  # ...dark at its centre: a hairline, not a faint smear
    with pytest.raises(ValueError, match="pen_px"):
        ca.pen_strokes(thick, 48, pen_px=2)


def test_tablet_preset_makes_strokes_as_thin_as_a_tablets_at_the_models_height():
    """CROHME 2013's ink at 64 px has almost no pixel with ink all around it; the handwritten preset's does."""
    from susik.runtime.preprocess import preprocess, stroke_core_share

    page = _crop("x+2=5", height=96)  # putText strokes of 4 px: as thick as the glyph-composed crops
    rows = np.flatnonzero((page < 128).any(axis=1))
    crop = page[rows[0] - 4 : rows[-1] + 5]  # cut to the ink, as the training crops are
    shares = {name: np.median([stroke_core_share(preprocess(ca.augment_crop(crop, np.random.default_rng(seed),
                                                                           ca.PRESETS[name]).image))
                               for seed in range(12)])
              for name in ("handwritten", "tablet")}
    assert shares["tablet"] < 0.1 < shares["handwritten"]


def test_thin_step_draws_nothing_unless_enabled_and_pen_comes_first():
    crop = _crop()
    plain = ca.augment_crop(crop, np.random.default_rng(5), ca.HANDWRITTEN)
    explicit = ca.augment_crop(crop, np.random.default_rng(5), ca.HANDWRITTEN.model_copy(update={"thin": 0.0}))
    assert np.array_equal(plain.image, explicit.image)
    both = ca.AugmentConfig(untouched=0, compose_on_paper=1, pen=1, thin=1, pen_height=(80, 80), thin_height=(40, 40),
                            padding=(0, 0), skew=0, perspective=0, stroke=0)
    assert ca.augment_crop(crop, np.random.default_rng(0), both).image.shape[0] == 80  # drawn by the pen


def test_writer_steps_draw_nothing_when_disabled():
    """Presets without them (printed) keep the random stream, so earlier training runs stay reproducible."""
    crop = _crop()
    plain = ca.augment_crop(crop, np.random.default_rng(5), ca.PRINTED)
    explicit = ca.augment_crop(crop, np.random.default_rng(5),
                               ca.PRINTED.model_copy(update={"slant": 0.0, "stretch": 0.0, "elastic": 0.0,
                                                                    "pen": 0.0}))
    assert np.array_equal(plain.image, explicit.image)
    writer = ca.PRINTED.model_copy(update={"untouched": 0.0, "stretch": 1.0, "stretch_range": (2.0, 2.0)})
    assert ca.augment_crop(crop, np.random.default_rng(5), writer).image.shape[1] > 1.8 * crop.shape[1]


def test_compose_lays_ink_of_the_given_level_on_the_sheet():
    sheet = np.full((2, 2), 230.0, np.float32)
    alpha = np.array([[0.0, 1.0], [0.5, 0.0]], np.float32)
    assert ca.compose(alpha, sheet, ink_level=30.0).tolist() == [[230.0, 30.0], [130.0, 230.0]]


def test_ruled_paper_has_darker_lines_every_pitch():
    sheet = ca.paper_sheet(120, 200, np.random.default_rng(3), ruled=True, pitch=20)
    rows = sheet.mean(axis=1)
    dark_rows = np.flatnonzero(rows < np.median(rows) - 8)
    assert len(dark_rows) >= 5
    assert set(np.diff(dark_rows)) <= {1, 19, 20, 21}  # anti-aliased lines may cover two rows


def test_light_steps_only_darken_and_leave_no_change_at_zero_strength():
    image = np.full((30, 90), 200.0, np.float32)
    rng = np.random.default_rng(0)
    assert np.array_equal(ca.lighting_gradient(image, angle=0.0, strength=0.0), image)
    ramp = ca.lighting_gradient(image, angle=0.0, strength=0.3)  # darker towards the right
    assert ramp[:, 0].mean() == pytest.approx(200.0, abs=1)
    assert ramp[:, -1].mean() == pytest.approx(140.0, abs=1)
    for darkened in (ca.shadow(image, rng, darkness=0.5), ca.highlighter(image, rng, darkness=0.3)):
        assert darkened.max() <= 200.0 + 1e-3 and darkened.min() < 190.0


def test_blur_resolution_and_noise_change_detail_as_expected():
    image = _crop().astype(np.float32)
    sharpness = np.abs(np.diff(image, axis=1)).mean()
    assert np.abs(np.diff(ca.gaussian_blur(image, 1.2), axis=1)).mean() < sharpness
    assert np.abs(np.diff(ca.motion_blur(image, 7, 0.0), axis=1)).mean() < sharpness
    assert np.abs(np.diff(ca.resolution(image, 0.3), axis=1)).mean() < sharpness
    assert np.allclose(ca.resolution(image, 1.0), image)
    noisy = ca.sensor_noise(image, np.random.default_rng(0), sigma=5.0)
    assert 2.0 < (noisy - image).std() < 6.0


def test_jpeg_round_trip_keeps_shape_and_roughly_the_content():
    image = _crop()
    out = ca.jpeg(image, quality=30)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).mean() < 10


def test_chain_is_deterministic_for_a_seed_and_varies_across_seeds():
    crop = _crop()
    first = ca.augment_crop(crop, np.random.default_rng(7))
    again = ca.augment_crop(crop, np.random.default_rng(7))
    other = ca.augment_crop(crop, np.random.default_rng(8))
    assert np.array_equal(first.image, again.image) and first.conditions == again.conditions
    assert first.image.shape != other.image.shape or not np.array_equal(first.image, other.image)


@pytest.mark.parametrize("preset", sorted(ca.PRESETS))
def test_presets_keep_the_ink_legible(preset):
    """Whatever the draw, the ink stays clearly darker than its paper and the recognizer's own blank check
    passes: augmentation never turns a sample into one whose label is unreadable. Paper is the median pixel
    and ink the darkest percent, which holds for the pen preset's thin lines too (few pixels are ink)."""
    rng = np.random.default_rng(1)
    crop = _crop()
    for _ in range(100):
        out = ca.augment_crop(crop, rng, ca.PRESETS[preset]).image
        assert out.dtype == np.uint8 and out.ndim == 2 and min(out.shape) >= min(crop.shape)
        check_crop(out)
        assert np.median(out) - np.percentile(out, 1) > 25


def test_conditions_name_what_was_applied():
    everything = ca.AugmentConfig(untouched=0, skew=1, max_degrees=5, perspective=1, highlighter=1, shadow=1,
                                  blur=1, low_light=1, jpeg=1, jpeg_quality=(20, 30))
    rng = np.random.default_rng(2)
    seen: set[str] = set()
    for _ in range(10):
        conditions = ca.augment_crop(_crop(), rng, everything).conditions
        assert {"perspective", "highlighter", "shadow", "blur", "low_light", "jpeg"} <= set(conditions)
        seen.update(conditions)
    assert "skew" in seen  # |angle| >= 1 degree on most draws


def test_nothing_enabled_means_unchanged_and_clean():
    nothing = ca.AugmentConfig(untouched=0, compose_on_paper=0, stroke=0, padding=(0, 0), skew=0,
                               perspective=0, highlighter=0, lighting=0, shadow=0, blur=0, resolution=0,
                               noise=0, low_light=0, jpeg=0)
    crop = _crop()
    out = ca.augment_crop(crop, np.random.default_rng(0), nothing)
    assert np.array_equal(out.image, crop) and out.conditions == ("clean",)
    kept = ca.augment_crop(crop, np.random.default_rng(0), ca.AugmentConfig(untouched=1))
    assert np.array_equal(kept.image, crop) and kept.image is not crop


def test_rejects_what_is_not_a_grey_crop():
    with pytest.raises(ValueError):
        ca.augment_crop(np.zeros((10, 10, 3), np.uint8), np.random.default_rng(0))
    with pytest.raises(ValueError):
        ca.augment_crop(np.zeros((1, 10), np.uint8), np.random.default_rng(0))


@pytest.mark.parametrize("bad", [{"padding": (0.3, 0.1)}, {"stretch_range": (1.2, 0.8)}, {"stretch_range": (0, 1)},
                                 {"jpeg_quality": (90, 20)}, {"jpeg_quality": (0, 50)},
                                 {"pen_height": (4, 6)}, {"pen_height": (120, 80)}, {"thin_height": (90, 60)},
                                 {"blur": 1.5}, {"unknown": 1}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        ca.AugmentConfig(**bad)
