"""Slices: which groups a sample belongs to, by manifest field or by a property of its formula.

A slice field maps a sample to zero or more values (a sample with conditions ["blur", "shadow"] is in both
condition slices), so per-slice scores can overlap and need not add up to the whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from susik.data.manifest import CropSample, PageSample, Sample
from susik.latex import normalize

# Token-count buckets (upper bounds, inclusive) of the normalised reference.
LENGTH_BUCKETS: tuple[tuple[int, str], ...] = ((10, "01-10"), (25, "11-25"), (50, "26-50"))
LONGEST_BUCKET = "51+"
REGION_BUCKETS: tuple[tuple[int, str], ...] = ((0, "0"), (1, "1"), (4, "2-4"))
MOST_REGIONS_BUCKET = "5+"

# A structure is present when one of its tokens is; "plain" when none is.
STRUCTURES: dict[str, frozenset[str]] = {
    "fraction": frozenset({r"\frac", r"\dfrac", r"\tfrac", r"\cfrac", r"\over"}),
    "matrix": frozenset({rf"\begin{{{env}}}" for env in
                         ("matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "smallmatrix", "array")}),
    "cases": frozenset({r"\begin{cases}", r"\begin{dcases}"}),
    "root": frozenset({r"\sqrt"}),
    "script": frozenset({"^", "_"}),
}

CROP_FIELDS: tuple[str, ...] = ("kind", "condition", "source", "length", "structure")
PAGE_FIELDS: tuple[str, ...] = ("kind", "condition", "source", "orientation", "regions")


def _bucket(value: int, buckets: tuple[tuple[int, str], ...], last: str) -> str:
    return next((name for bound, name in buckets if value <= bound), last)


def length_bucket(tokens: Sequence[str]) -> str:
    return _bucket(len(tokens), LENGTH_BUCKETS, LONGEST_BUCKET)


def structures(tokens: Sequence[str]) -> tuple[str, ...]:
    present = set(tokens)
    found = tuple(name for name, markers in STRUCTURES.items() if present & markers)
    return found or ("plain",)


def _field(sample: Sample, name: str) -> tuple[str, ...]:
    """Any manifest field as slice values: scalars as one value, lists as many, missing as "none"."""
    value = getattr(sample, name, None)
    if value is None or value == ():
        return ("none",)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return (str(value),)


def slice_values(sample: Sample, fields: Sequence[str] | None = None) -> dict[str, tuple[str, ...]]:
    """Slice field -> the values this sample has. Derived fields: "condition" (each condition, "clean" when
    none), "length" (reference token-count bucket), "structure" (fraction/matrix/cases/root/script/plain) for
    crops; "regions" (formula-count bucket) for pages. Any other name is read from the manifest record."""
    page = isinstance(sample, PageSample)
    result: dict[str, tuple[str, ...]] = {}
    for name in fields or (PAGE_FIELDS if page else CROP_FIELDS):
        if name == "condition":
            result[name] = tuple(sample.conditions) or ("clean",)
        elif name == "length" and isinstance(sample, CropSample):
            result[name] = (length_bucket(normalize(sample.latex)),)
        elif name == "structure" and isinstance(sample, CropSample):
            result[name] = structures(normalize(sample.latex))
        elif name == "regions" and page:
            result[name] = (_bucket(len(sample.regions), REGION_BUCKETS, MOST_REGIONS_BUCKET),)
        else:
            result[name] = _field(sample, name)
    return result


def group(memberships: Sequence[dict[str, tuple[str, ...]]]) -> dict[str, dict[str, list[int]]]:
    """field -> value -> sample indices, values sorted, from each sample's `slice_values`."""
    groups: dict[str, dict[str, list[int]]] = {}
    for index, member in enumerate(memberships):
        for name, values in member.items():
            for value in values:
                groups.setdefault(name, {}).setdefault(value, []).append(index)
    return {name: dict(sorted(values.items())) for name, values in groups.items()}
