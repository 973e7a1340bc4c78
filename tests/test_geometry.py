import cv2
import numpy as np
import pytest

from susik.data.geometry import (
    apply_affine,
    apply_homography,
    as_points,
    box_outline,
    clip_points,
    inside_image,
    order_clockwise,
    polygon_area,
    quad_area,
    rotate_quarter_points,
    signed_area,
    simplify_polygon,
)

SQUARE = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=float)


@pytest.mark.parametrize(
    "shuffled",
    [SQUARE[[2, 0, 3, 1]], SQUARE[[3, 2, 1, 0]], SQUARE[[1, 2, 3, 0]], SQUARE],
)
def test_order_clockwise_starts_top_left(shuffled):
    np.testing.assert_array_equal(order_clockwise(shuffled), SQUARE)


def test_order_clockwise_on_a_tilted_quad():
    quad = np.array([[5, 0], [12, 4], [8, 12], [0, 7]], dtype=float)  # a rotated box, TL-ish first
    ordered = order_clockwise(quad[[2, 3, 0, 1]])
    np.testing.assert_array_equal(ordered, quad)
    assert signed_area(ordered) > 0  # clockwise on screen


@pytest.mark.parametrize("bad", [np.zeros((3, 2)), np.zeros((5, 2))])
def test_order_clockwise_needs_four_points(bad):
    with pytest.raises(ValueError):
        order_clockwise(bad)


def test_as_points_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        as_points(np.zeros((4, 3)))
    with pytest.raises(ValueError):
        as_points(np.zeros(8))


def test_apply_homography_matches_opencv():
    matrix = np.array([[1.1, 0.05, 7.0], [-0.03, 0.95, 3.0], [1e-4, -2e-4, 1.0]])
    points = np.array([[0, 0], [100, 20], [37.5, 80.25]], dtype=float)
    expected = cv2.perspectiveTransform(points[None].astype(np.float64), matrix)[0]
    np.testing.assert_allclose(apply_homography(points, matrix), expected, atol=1e-9)


def test_apply_affine_matches_opencv():
    matrix = cv2.getRotationMatrix2D((50.0, 40.0), 17.0, 1.3)
    points = np.array([[0, 0], [100, 20], [37.5, 80.25]], dtype=float)
    expected = cv2.transform(points[None], matrix)[0]
    np.testing.assert_allclose(apply_affine(points, matrix), expected, atol=1e-9)


def test_transforms_reject_wrong_matrix_shapes():
    with pytest.raises(ValueError):
        apply_homography(SQUARE, np.eye(2))
    with pytest.raises(ValueError):
        apply_affine(SQUARE, np.eye(3))


@pytest.mark.parametrize(
    ("points", "area"),
    [
        (SQUARE, 100.0),
        (SQUARE[::-1], 100.0),  # counter-clockwise: same unsigned area
        (np.array([[0, 0], [4, 0], [0, 3]], dtype=float), 6.0),
        (np.array([[0, 0], [5, 5], [10, 10]], dtype=float), 0.0),  # collinear
        (np.zeros((0, 2)), 0.0),
        (np.array([[1.0, 1.0]]), 0.0),
    ],
)
def test_polygon_area(points, area):
    assert polygon_area(points) == pytest.approx(area)


def test_signed_area_is_positive_clockwise_on_screen():
    assert signed_area(SQUARE) == pytest.approx(100.0)
    assert signed_area(SQUARE[::-1]) == pytest.approx(-100.0)


def test_quad_area_needs_four_points():
    assert quad_area(SQUARE) == pytest.approx(100.0)
    with pytest.raises(ValueError):
        quad_area(SQUARE[:3])


def test_box_outline_samples_edges_and_marks_corners():
    outline, corners = box_outline(10, 20, 110, 50, spacing=24)
    np.testing.assert_array_equal(outline[corners], [[10, 20], [110, 20], [110, 50], [10, 50]])
    assert signed_area(outline) == pytest.approx(100 * 30)
    steps = np.linalg.norm(np.diff(np.vstack([outline, outline[:1]]), axis=0), axis=1)
    assert steps.max() <= 24 + 1e-9
    assert len(outline) == 5 + 2 + 5 + 2  # ceil(100/24)=5 and ceil(30/24)=2 per edge


def test_box_outline_of_a_tiny_box_is_its_corners():
    outline, corners = box_outline(0, 0, 3, 2, spacing=24)
    assert corners == [0, 1, 2, 3]
    np.testing.assert_array_equal(outline, [[0, 0], [3, 0], [3, 2], [0, 2]])


def test_box_outline_rejects_bad_spacing():
    with pytest.raises(ValueError):
        box_outline(0, 0, 10, 10, spacing=0)


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 4, 5])
def test_rotate_quarter_points_matches_pixel_rotation(turns):
    height, width = 7, 11
    image = np.zeros((height, width), dtype=np.uint8)
    image[2, 9] = 255  # pixel (x=9, y=2)
    rotated = np.rot90(image, -turns)  # numpy's negative k turns clockwise
    y, x = np.argwhere(rotated == 255)[0]
    np.testing.assert_allclose(rotate_quarter_points(np.array([[9.0, 2.0]]), width, height, turns), [[x, y]])


def test_inside_image_and_clip():
    assert inside_image(SQUARE, 11, 11)
    assert not inside_image(SQUARE, 10, 11)  # x=10 is past the last pixel centre of a 10-wide image
    assert not inside_image(SQUARE, 11, 11, margin=1)
    np.testing.assert_array_equal(
        clip_points(np.array([[-3.0, 5.0], [20.0, 12.0]]), 11, 11), [[0, 5], [10, 10]]
    )


def test_simplify_polygon_drops_collinear_points_and_keeps_the_start():
    outline, corners = box_outline(5, 5, 205, 45, spacing=10)
    simplified = simplify_polygon(outline, tolerance=0.5)
    np.testing.assert_array_equal(simplified, outline[corners])


def test_simplify_polygon_keeps_a_curve():
    theta = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    circle = np.stack([100 + 50 * np.cos(theta), 100 + 50 * np.sin(theta)], axis=1)
    simplified = simplify_polygon(circle, tolerance=0.5)
    assert 8 < len(simplified) < len(circle)
    assert polygon_area(simplified) == pytest.approx(polygon_area(circle), rel=0.02)
    np.testing.assert_array_equal(simplified[0], circle[0])
