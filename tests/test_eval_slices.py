"""Slices and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from susik.data.manifest import CropSample, PageSample
from susik.eval import bootstrap
from susik.eval.slices import group, length_bucket, slice_values, structures


def crop(latex: str, **extra) -> CropSample:
    return CropSample(image="a.png", latex=latex, source="s", license="l", **extra)


@pytest.mark.parametrize(
    ("latex", "expected"),
    [
        ("x+1", ("plain",)),
        (r"\frac{a}{b}", ("fraction",)),
        (r"\begin{pmatrix} a \end{pmatrix}", ("matrix",)),
        (r"\begin{cases} 1 & x \end{cases}", ("cases",)),
        (r"\sqrt[3]{x^2}", ("root", "script")),
        (r"\dfrac{1}{x_i}", ("fraction", "script")),
    ],
)
def test_structures(latex, expected):
    from susik.latex import normalize

    assert structures(normalize(latex)) == expected


@pytest.mark.parametrize(("count", "bucket"), [(0, "01-10"), (10, "01-10"), (11, "11-25"), (50, "26-50"), (51, "51+")])
def test_length_bucket(count, bucket):
    assert length_bucket(["x"] * count) == bucket


def test_slice_values_crop_and_page_and_any_field():
    values = slice_values(crop(r"\frac{1}{2}", kind="printed", conditions=("blur", "shadow")))
    assert values == {"kind": ("printed",), "condition": ("blur", "shadow"), "source": ("s",),
                      "length": ("01-10",), "structure": ("fraction",)}
    assert slice_values(crop("x"))["condition"] == ("clean",) and slice_values(crop("x"))["kind"] == ("none",)
    page = PageSample(image="p.png", width=10, height=10, orientation=90, source="s", license="l",
                      regions=[{"quad": [[0, 0], [1, 0], [1, 1], [0, 1]], "latex": "x", "kind": "handwritten"}])
    assert slice_values(page) == {"kind": ("handwritten",), "condition": ("clean",), "source": ("s",),
                                  "orientation": ("90",), "regions": ("1",)}
    assert slice_values(page, ["license"]) == {"license": ("l",)}


def test_group_overlapping_memberships():
    groups = group([{"c": ("a", "b")}, {"c": ("b",)}])
    assert groups == {"c": {"a": [0], "b": [0, 1]}}


def test_bootstrap_constant_and_known_interval():
    rng = np.random.default_rng(0)
    weights = bootstrap.draws(50, rng, 500)
    assert weights.sum(axis=1).tolist() == [50.0] * 500
    assert bootstrap.confidence_interval(bootstrap.mean(np.ones(50)), weights) == (1.0, 1.0)
    values = np.array([1] * 25 + [0] * 25)
    low, high = bootstrap.confidence_interval(bootstrap.mean(values), weights)
    # binomial sd = sqrt(.25/50) = .0707: the 95% interval is about 0.5 +- 0.14
    assert 0.33 < low < 0.40 and 0.60 < high < 0.67


def test_ratio_and_f1_on_the_full_sample():
    ones = np.ones((1, 3))
    assert bootstrap.ratio(np.array([1, 2, 0]), np.array([2, 2, 0]))(ones)[0] == pytest.approx(0.75)
    assert bootstrap.ratio(np.zeros(2), np.zeros(2))(np.ones((1, 2)))[0] == 1.0  # empty -> 1 by convention
    assert bootstrap.f1(np.array([2, 0]), np.array([3, 0]), np.array([2, 1]))(np.ones((1, 2)))[0] == pytest.approx(2 / 3)


def test_paired_difference_ties_and_separates():
    rng = np.random.default_rng(1)
    a = np.array([1] * 60 + [0] * 40, float)
    b = a.copy()
    b[:2] = 0  # two fewer right: indistinguishable on 100 samples
    weights = bootstrap.draws(100, rng, 1000)
    close = bootstrap.paired_difference(bootstrap.mean(a), bootstrap.mean(b), weights)
    assert close.difference == pytest.approx(0.02) and close.tied
    c = np.zeros(100)
    far = bootstrap.paired_difference(bootstrap.mean(a), bootstrap.mean(c), weights)
    assert far.difference == pytest.approx(0.6) and not far.tied and far.low > 0.4
