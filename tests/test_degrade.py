from functools import partial

import cv2
import numpy as np
import pytest
from shapely.geometry import Polygon

from susik.data.degrade import (
    CONDITIONS,
    MILD,
    ORDER,
    ORIENTATION,
    correction,
    crumple,
    highlighter,
    perspective,
    plan,
    rotate_quarter,
    skew,
)
from susik.data.geometry import box_outline, rotate_quarter_points

REQUIRED = {
    "clean",
    "shadow",
    "highlighter",
    "correction",
    "rotation90",
    "rotation180",
    "rotation270",
    "skew",
    "perspective",
    "crumple",
    "blur",
    "low_light",
    "jpeg",
}
GEOMETRIC = {"rotation90", "rotation180", "rotation270", "skew", "perspective", "crumple"}


def _page(height=240, width=180):
    """A light textured page with three dark 'formula' bars; their outlines are the shapes."""
    rng = np.random.default_rng(7)
    image = np.clip(rng.normal(230, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    boxes = [(20, 30, 120, 50), (40, 100, 160, 125), (15, 180, 90, 205)]
    for x0, y0, x1, y1 in boxes:
        image[y0 + 4 : y1 - 3, x0 + 4 : x1 - 3] = 30
    return image, [box_outline(*box, spacing=12)[0] for box in boxes]


def test_registry_has_exactly_the_public_names():
    assert REQUIRED <= set(CONDITIONS)
    assert set(CONDITIONS) - REQUIRED <= {"noise", "lighting"}
    assert set(ORDER) == set(CONDITIONS)
    assert set(MILD) <= set(CONDITIONS)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_degradation_contract(name):
    image, shapes = _page()
    original = image.copy()
    first = CONDITIONS[name](image, shapes, np.random.default_rng(3))
    again = CONDITIONS[name](image, shapes, np.random.default_rng(3))
    np.testing.assert_array_equal(image, original)  # the input is not modified
    assert first.image.dtype == np.uint8 and first.image.ndim == 3 and first.image.shape[2] == 3
    if name in {"rotation90", "rotation270"}:
        assert first.image.shape[:2] == image.shape[1::-1]
    elif name not in {"skew", "perspective"}:
        assert first.image.shape == image.shape
    assert len(first.shapes) == len(shapes)
    for before, after in zip(shapes, first.shapes, strict=True):
        assert after.shape == before.shape
        if name not in GEOMETRIC:
            np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(first.image, again.image)  # deterministic per seed
    for a, b in zip(first.shapes, again.shapes, strict=True):
        np.testing.assert_array_equal(a, b)
    if name not in {"clean", "rotation90", "rotation180", "rotation270"}:
        other = CONDITIONS[name](image, shapes, np.random.default_rng(4))
        assert not np.array_equal(first.image, other.image)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_degradations_accept_grey_images(name):
    image, shapes = _page()
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    result = CONDITIONS[name](grey, shapes, np.random.default_rng(0))
    assert result.image.dtype == np.uint8 and result.image.ndim == 2


def test_photometric_conditions_change_the_image():
    image, shapes = _page()
    for name in ("shadow", "blur", "low_light", "jpeg", "lighting", "noise"):
        result = CONDITIONS[name](image, shapes, np.random.default_rng(0))
        assert np.abs(result.image.astype(int) - image).mean() > 0.5, name
    dark = CONDITIONS["low_light"](image, shapes, np.random.default_rng(0)).image
    assert dark.mean() < 0.75 * image.mean()


def _dots(points, height, width):
    image = np.full((height, width, 3), 255, np.uint8)
    for x, y in points:
        cv2.circle(
            image, (int(round(x * 16)), int(round(y * 16))), 3 * 16, (0, 0, 0), -1, cv2.LINE_AA, shift=4
        )
    return image


def _blob_centres(image):
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    darkness = np.clip(200.0 - grey, 0, None)
    count, labels, stats, _ = cv2.connectedComponentsWithStats((darkness > 0).astype(np.uint8))
    centres = []
    for label in range(1, count):
        if not 10 <= stats[label, cv2.CC_STAT_AREA] <= 200:  # a dot, not the desk around a warped page
            continue
        ys, xs = np.nonzero(labels == label)
        weight = darkness[ys, xs]
        centres.append((np.sum(xs * weight) / weight.sum(), np.sum(ys * weight) / weight.sum()))
    return np.array(centres)


def _assert_dots_follow(warp, points, height=300, width=400, tolerance=1.5, min_motion=0.0):
    image = _dots(points, height, width)
    result = warp(image, [points], np.random.default_rng(11))
    mapped = result.shapes[0]
    found = _blob_centres(result.image)
    assert len(found) == len(points)
    errors = [np.min(np.linalg.norm(found - point, axis=1)) for point in mapped]
    assert max(errors) < tolerance, errors
    assert np.max(np.linalg.norm(mapped - points, axis=1)) >= min_motion


DOTS = np.array(
    [
        [60.5, 50.0],
        [200.0, 40.25],
        [330.0, 70.0],
        [100.0, 150.0],
        [250.5, 160.5],
        [340.0, 250.0],
        [50.0, 250.0],
    ]
)


def test_crumple_maps_points_to_where_their_pixels_went():
    # Strong enough that a first-order inverse (p - d(p)) misses by >2 px; the fixed-point one stays <1 px.
    strong = partial(crumple, amplitude=(0.04, 0.04), shading=(0.0, 0.0), creases=(0, 0))
    _assert_dots_follow(strong, DOTS, tolerance=1.0, min_motion=8.0)


def test_crumple_default_strength_moves_points_correctly():
    _assert_dots_follow(crumple, DOTS)


@pytest.mark.parametrize(
    "warp", [perspective, skew, partial(perspective, tilt=(0.3, 0.3), jitter=(0.05, 0.05))]
)
def test_projective_warps_map_points_exactly(warp):
    _assert_dots_follow(warp, DOTS, tolerance=0.6, min_motion=3.0)


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_quarter_rotation_is_exact(turns):
    image = np.zeros((5, 8, 3), np.uint8)
    image[1, 6] = 255
    result = rotate_quarter(image, [np.array([[6.0, 1.0]])], np.random.default_rng(0), turns=turns)
    x, y = result.shapes[0][0]
    assert result.image[int(y), int(x)].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(
        result.shapes[0], rotate_quarter_points(np.array([[6.0, 1.0]]), 8, 5, turns)
    )


def test_correction_never_covers_formula_ink_nor_more_than_15_percent():
    image, shapes = _page()
    ink = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) < 100
    painted_any = False
    for seed in range(30):
        result = correction(image, shapes, np.random.default_rng(seed), count=(2, 2))
        changed = np.any(result.image != image, axis=2)
        painted_any |= bool(changed.any())
        assert not np.any(changed & ink), seed
        for shape in shapes:
            mask = np.zeros(changed.shape, np.uint8)
            cv2.fillPoly(mask, [np.round(shape).astype(np.int32)], 1)
            # 15% of the area, plus the rim of the rough edge (~2 px along a patch side).
            assert (changed & (mask > 0)).sum() <= 0.15 * mask.sum() + 2 * 2 * 60, seed
    assert painted_any


def test_correction_patches_are_white():
    image, shapes = _page()
    result = correction(image, shapes, np.random.default_rng(2), count=(2, 2))
    changed = np.any(result.image != image, axis=2)
    assert changed.sum() > 50
    assert np.median(result.image[changed].mean(axis=1)) > 225


def test_highlighter_tints_only_around_the_chosen_shapes():
    image, shapes = _page()
    result = highlighter(image, shapes, np.random.default_rng(5), count=(3, 3))
    changed = np.any(result.image != image, axis=2)
    near = np.zeros(changed.shape, np.uint8)
    for shape in shapes:
        x0, y0 = shape.min(axis=0).astype(int) - 12
        x1, y1 = shape.max(axis=0).astype(int) + 12
        near[max(0, y0) : y1, max(0, x0) : x1] = 1
    assert changed.sum() > 1000
    assert not np.any(changed & (near == 0))
    # A highlighter darkens by multiplication: no pixel gets brighter.
    assert np.all(result.image.astype(int) <= image.astype(int))


def test_skew_and_perspective_keep_every_page_pixel():
    image = np.full((120, 90, 3), 255, np.uint8)
    corners = [np.array([[0.0, 0.0], [89.0, 0.0], [89.0, 119.0], [0.0, 119.0]])]
    for warp in (skew, perspective):
        for seed in range(5):
            result = warp(image, corners, np.random.default_rng(seed))
            height, width = result.image.shape[:2]
            quad = result.shapes[0]
            assert quad[:, 0].min() >= -0.5 and quad[:, 1].min() >= -0.5
            assert quad[:, 0].max() <= width - 0.5 and quad[:, 1].max() <= height - 0.5
            assert Polygon(quad).is_valid


def test_plan_orders_steps_and_adds_mild_effects():
    steps = plan(["jpeg", "perspective", "shadow"])
    names = [name for name, _ in steps]
    assert names == ["perspective", "shadow", "lighting", "noise", "jpeg"]
    assert dict(steps)["noise"] is MILD["noise"]
    assert [name for name, _ in plan(["noise"], always_on=False)] == ["noise"]
    assert dict(plan(["noise"]))["noise"] is CONDITIONS["noise"]
    assert plan([], always_on=False) == []


def test_plan_rejects_unknown_names_and_two_rotations():
    with pytest.raises(ValueError, match="unknown"):
        plan(["sepia"])
    with pytest.raises(ValueError, match="rotation"):
        plan(["rotation90", "rotation180"])


def test_orientation_table():
    assert dict(ORIENTATION) == {"rotation90": 90, "rotation180": 180, "rotation270": 270}
