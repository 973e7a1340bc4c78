"""A drawn polygon -> the stored (quad, polygon): checks, the derived quad and its start, the ring's order."""

import pytest

from susik.annotate.shapes import ShapeError, check_polygon, outline, quad_from_polygon, ring_from

# a wide hexagon, clockwise on screen, 100 x 30 px around (10..110, 20..50)
HEXAGON = [(10, 30), (60, 20), (110, 30), (110, 40), (60, 50), (10, 40)]


@pytest.mark.parametrize(
    ("orientation", "first", "second"),
    [
        (0, (10, 20), (110, 20)),  # upright: top-left, then along the top edge
        (90, (110, 20), (110, 50)),  # turned clockwise: the formula starts at the top-right, reads down
        (180, (110, 50), (10, 50)),
        (270, (10, 50), (10, 20)),
    ],
)
def test_quad_is_the_min_area_rectangle_from_the_formulas_top_left(orientation, first, second):
    quad = quad_from_polygon(HEXAGON, orientation)
    assert sorted(quad) == [(10, 20), (10, 50), (110, 20), (110, 50)]
    assert (quad[0], quad[1]) == (first, second)


def test_an_irregular_outline_of_a_level_formula_keeps_it_level():
    # the strict minimum-area rectangle of HEXAGON is tilted 11 degrees (2% less area than the upright box)
    assert quad_from_polygon(HEXAGON, 0) == ((10, 20), (110, 20), (110, 50), (10, 50))


def test_quad_of_a_tilted_polygon_follows_the_tilt():
    # a 40 x 10 bar turned about 37 degrees (3-4-5): its quad is the turned rectangle, not the axis-aligned box
    bar = [(0, 0), (32, 24), (26, 32), (-6, 8)]
    quad = quad_from_polygon(bar, 0)
    assert [v for point in quad for v in point] == pytest.approx(
        [v for point in bar for v in point], abs=0.02
    )


def test_ring_is_clockwise_from_the_vertex_nearest_the_start():
    anticlockwise = HEXAGON[::-1]
    assert ring_from(anticlockwise, (100, 25)) == (
        (110, 30),
        (110, 40),
        (60, 50),
        (10, 40),
        (10, 30),
        (60, 20),
    )
    quad, polygon = outline(anticlockwise, 0)
    assert quad[0] == (10, 20) and polygon[0] == (10, 30)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ([(0, 0), (5, 5)], "at least 3 points"),
        ([(0, 0), (5, 5), (10, 10), (3, 3)], "no area"),
        ([(0, 0), (10, 0.5), (20, 0)], "no area"),  # thinner than a pixel
        ([(0, 0), (20, 20), (20, 0), (0, 20)], "crosses itself"),
    ],
)
def test_polygons_that_outline_nothing_are_refused(points, message):
    with pytest.raises(ShapeError, match=message):
        check_polygon(points)
    check_polygon(HEXAGON)  # and a good one passes
