"""Coverage of a manifest against the dataset spec: required vs present per kind × condition cell, the
cells that fall short, missing answers, and length / structure summaries of the labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from susik.data.manifest import CropSample, PageSample, Sample
from susik.latex import tokenize
from susik.spec.dataset import DatasetSpec, missing_answers

Level = Literal["page", "crop"]

FRACTIONS = frozenset({r"\frac", r"\dfrac", r"\tfrac", r"\cfrac"})


@dataclass(frozen=True)
class Cell:
    kind: str
    condition: str
    required: int
    present: int

    @property
    def shortfall(self) -> int:
        return max(0, self.required - self.present)


@dataclass(frozen=True)
class Spread:
    """Summary of a list of counts."""

    n: int
    min: float
    median: float
    p95: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: list[int]) -> Spread | None:
        if not values:
            return None
        a = np.asarray(values, dtype=float)
        median, p95 = np.percentile(a, [50, 95])
        return cls(len(a), float(a.min()), float(median), float(p95), float(a.max()), float(a.mean()))


@dataclass(frozen=True)
class CoverageReport:
    level: Level
    n: int  # records read
    total: int  # set size the requirements were scaled to
    kinds: tuple[str, ...]  # the spec's kinds, in order
    per_kind: dict[str, int]  # records of each kind present (whether or not they fall in a cell)
    cells: tuple[Cell, ...]
    uncounted: dict[str, int]  # records that fall in no cell, by reason
    answer_gaps: dict[str, int]  # records lacking something a model needs, by model
    tokens: Spread | None  # LaTeX tokens per formula
    formulas_per_page: Spread | None  # pages only
    structures: dict[str, int]  # formulas holding each structure
    orientations: dict[int, int]  # pages only
    sources: dict[str, int]
    licenses: dict[str, int]

    @property
    def missing(self) -> tuple[Cell, ...]:
        """Cells below their requirement, largest shortfall first."""
        short = [cell for cell in self.cells if cell.shortfall]
        return tuple(sorted(short, key=lambda cell: -cell.shortfall))


def coverage(samples: Iterable[Sample], spec: DatasetSpec, *, total: int | None = None) -> CoverageReport:
    """Count `samples` (all crops or all pages) into the spec's cells.

    A sample counts once in each cell of its kind and its conditions. `total` scales the requirements
    (default: the spec's target size for that level).
    """
    level: Level | None = None
    present: Counter[tuple[str, str]] = Counter()
    uncounted: Counter[str] = Counter()
    gaps: Counter[str] = Counter()
    token_counts: list[int] = []
    formula_counts: list[int] = []
    structures: Counter[str] = Counter()
    orientations: Counter[int] = Counter()
    sources: Counter[str] = Counter()
    licenses: Counter[str] = Counter()
    per_kind: Counter[str] = Counter()
    n = 0
    for sample in samples:
        this: Level = "page" if isinstance(sample, PageSample) else "crop"
        if level is None:
            level = this
        elif this != level:
            raise ValueError(f"record {n + 1} is a {this} but the records before it are {level}s")
        set_spec = spec.pages if level == "page" else spec.crops
        n += 1
        sources[sample.source] += 1
        licenses[sample.license] += 1
        per_kind[sample.kind or "none"] += 1
        if sample.kind is None:
            uncounted["no kind" if level == "crop" else "no formulas"] += 1
        elif sample.kind not in set_spec.kinds:
            uncounted[f"kind {sample.kind} not in spec"] += 1
        elif not sample.conditions:
            uncounted["no conditions"] += 1
        else:
            present.update((sample.kind, condition) for condition in sample.conditions)
        gaps.update({line.split(":", 1)[0] for line in missing_answers(sample, spec.answers)})
        formulas = [sample.latex] if isinstance(sample, CropSample) else [r.latex for r in sample.regions]
        if isinstance(sample, PageSample):
            formula_counts.append(len(sample.regions))
            orientations[sample.orientation] += 1
        for latex in formulas:
            tokens = tokenize(latex)
            token_counts.append(len(tokens))
            structures.update(_structures(tokens))
    level = level or "crop"
    set_spec = spec.pages if level == "page" else spec.crops
    required = set_spec.required(total)
    cells = tuple(Cell(kind, condition, need, present[(kind, condition)])
                  for (kind, condition), need in required.items())
    return CoverageReport(
        level=level,
        n=n,
        total=set_spec.total if total is None else total,
        kinds=tuple(set_spec.kinds),
        per_kind=dict(per_kind.most_common()),
        cells=cells,
        uncounted=dict(uncounted),
        answer_gaps=dict(gaps),
        tokens=Spread.of(token_counts),
        formulas_per_page=Spread.of(formula_counts),
        structures=dict(structures),
        orientations=dict(sorted(orientations.items())),
        sources=dict(sources.most_common()),
        licenses=dict(licenses.most_common()),
    )


def _structures(tokens: list[str]) -> set[str]:
    found = set()
    if FRACTIONS.intersection(tokens):
        found.add("fraction")
    if r"\sqrt" in tokens:
        found.add("root")
    if "^" in tokens or "_" in tokens:
        found.add("script")
    if any(token.startswith(r"\begin") for token in tokens):
        found.add("environment")
    if "\\\\" in tokens:
        found.add("multi-line")
    return found
