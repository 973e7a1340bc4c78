import numpy as np
import pytest
from recognizer_helpers import formula_between_sentences

from susik.one_formula import OneFormulaReader, central_region
from susik.results import Page, Quad, Region

SQUARE = ((40.0, 40.0), (60.0, 40.0), (60.0, 60.0), (40.0, 60.0))  # holds the centre of a 100 x 100 image
WIDE = ((5.0, 30.0), (95.0, 30.0), (95.0, 70.0), (5.0, 70.0))  # holds it too, larger
TOP = ((10.0, 5.0), (90.0, 5.0), (90.0, 15.0), (10.0, 15.0))  # 35 px above it
LEFT = ((0.0, 45.0), (20.0, 45.0), (20.0, 55.0), (0.0, 55.0))  # 30 px beside it
RIGHT = ((70.0, 45.0), (100.0, 45.0), (100.0, 55.0), (70.0, 55.0))  # 20 px beside it
CORNER = ((0.0, 0.0), (100.0, 0.0), (100.0, 20.0), (20.0, 20.0), (20.0, 100.0), (0.0, 100.0))  # boxed, not held


@pytest.mark.parametrize(("polygons", "expected"), [
    ([], None),
    ([TOP, SQUARE], 1),
    ([SQUARE, WIDE, TOP], 1),  # both hold the centre: the larger is the formula, the smaller a piece of it
    ([TOP, LEFT], 1),  # none holds it: the nearest
    ([CORNER, RIGHT], 1),  # the polygon counts, not its box
])
def test_central_region(polygons, expected):
    assert central_region(polygons, 100, 100) == expected


def test_central_region_counts_the_edge_as_inside():
    assert central_region([TOP, ((50.0, 50.0), (80.0, 50.0), (80.0, 80.0), (50.0, 80.0))], 100, 100) == 1


def _region(polygon, latex, confidence, label=None):
    return Region(Quad(polygon), polygon, latex, confidence, "printed", label)


class Scripted:
    """Answers each image (keyed by its first pixel) with a scripted page and counts the images it saw."""

    def __init__(self, pages: dict[int, tuple[Region, ...]], orientation: int = 0, stage: str = "detect"):
        self.pages, self.orientation, self.stage = pages, orientation, stage
        self.seen: list[int] = []

    def __call__(self, images):
        keys = [int(image[0, 0]) for image in images]
        self.seen.extend(keys)
        return [Page(100, 100, self.orientation, self.pages[key], {self.stage: 2.0, "total": 2.0}) for key in keys]


def _image(key: int) -> np.ndarray:
    image = np.zeros((100, 100), np.uint8)
    image[0, 0] = key
    return image


WHOLE = ((0.0, 0.0), (100.0, 0.0), (100.0, 100.0), (0.0, 100.0))


def test_the_found_formula_replaces_the_whole_reading_only_when_surer_by_the_margin():
    whole = Scripted({1: (_region(WHOLE, "crowded", 0.3),), 2: (_region(WHOLE, "close", 0.5),),
                      3: (_region(WHOLE, "sure", 0.95),), 4: (_region(WHOLE, "alone", 0.4),)}, stage="recognize")
    page = Scripted({1: (_region(TOP, "neighbour", 0.99), _region(SQUARE, "formula", 0.8, "(1)")),
                     2: (_region(SQUARE, "formula", 0.55),), 4: ()}, orientation=90)
    pages = OneFormulaReader(page, whole, prefer_found_by=0.1)([_image(k) for k in (1, 2, 3, 4)])
    assert [p.regions[0].latex for p in pages] == ["formula", "close", "sure", "alone"]
    assert [len(p.regions) for p in pages] == [1, 1, 1, 1]
    assert pages[0].regions[0].label == "(1)" and pages[0].orientation == 90  # the found region, as found
    assert pages[1].orientation == 0 and pages[1].regions[0].quad.points == WHOLE
    assert page.seen == [1, 2, 4]  # 0.95 + 0.1 cannot be beaten: the sure crop is not searched
    assert pages[0].timings_ms == {"recognize": 2.0, "detect": 2.0, "total": 4.0}
    assert pages[2].timings_ms == {"recognize": 2.0, "total": 2.0}


def test_without_unsure_images_the_page_reading_is_not_called():
    whole = Scripted({3: (_region(WHOLE, "sure", 0.97),)})
    page = Scripted({})
    assert OneFormulaReader(page, whole)([_image(3)])[0].regions[0].latex == "sure"
    assert page.seen == [] and OneFormulaReader(page, whole)([]) == []


@pytest.mark.slow
def test_the_servers_crop_mode_finds_the_formula_in_a_photo_of_it(tmp_path):
    """The bundled models behind the HTTP API: a formula photographed between two sentences."""
    import cv2
    from fastapi.testclient import TestClient

    from susik.serve import Settings, create_app

    png = cv2.imencode(".png", formula_between_sentences())[1].tobytes()
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        answer = client.post("/v1/recognize", files={"file": ("p.png", png)}, data={"mode": "crop"}).json()
    (region,) = answer["regions"]
    assert region["latex"] == "x+7=12"
    xs, ys = zip(*region["quad"])
    assert 100 < min(ys) < max(ys) < 200 and max(xs) - min(xs) < 500  # the formula's line, not the photo
