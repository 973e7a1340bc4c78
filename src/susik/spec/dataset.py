"""The dataset spec: which kinds of input, under which photo conditions, how many, with which answers.

The spec is YAML (specs/dataset.yaml) validated by the pydantic models below. It drives two things: the
planner (`plan_pages`, `plan_crops`) that `susik synth` follows, and the coverage report (`susik data stats`)
that compares a manifest against the requirement of every kind × condition cell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Kind = Literal["printed", "handwritten"]
PageKind = Literal["printed", "handwritten", "mixed"]  # mixed: a page holding both printed and handwritten
Condition = Literal[
    "clean", "shadow", "highlighter", "correction", "rotation90", "rotation180", "rotation270", "skew",
    "perspective", "crumple", "blur", "low_light", "jpeg",
]
CONDITIONS: tuple[str, ...] = get_args(Condition)
PAGE_KINDS: tuple[str, ...] = get_args(PageKind)
CLEAN = "clean"
# A page is turned by at most one of these; the rotation is also its orientation answer.
ROTATIONS: dict[str, int] = {"rotation90": 90, "rotation180": 180, "rotation270": 270}
EXCLUSIVE_GROUPS: tuple[frozenset[str], ...] = (frozenset(ROTATIONS),)

Model = Literal["detector", "recognizer", "orientation"]
PageField = Literal["orientation", "width", "height"]
RegionField = Literal["quad", "polygon", "latex", "kind"]
CropField = Literal["latex", "kind"]

_SHARE_TOLERANCE = 1e-6


class SpecError(ValueError):
    """A spec file that cannot be read or does not validate; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """An inclusive integer range."""

    min: int = Field(ge=0)
    max: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class _CellSpec(_Strict):
    """Kinds × conditions with their quantities; shared by the page and the crop sets."""

    total: int = Field(gt=0, description="target size of the set; each cell's requirement scales with it")
    min_per_cell: int = Field(ge=0, description="floor for every kind × condition cell whose share is > 0")
    kinds: dict[str, float] = Field(description="share of samples of each kind; the shares sum to 1")
    conditions: dict[Condition, float] = Field(
        description="share of samples showing each condition; 'clean' samples show nothing else; "
        "a condition left out has share 0"
    )
    conditions_per_sample: Range = Field(description="how many conditions a non-clean sample combines")

    @model_validator(mode="after")
    def _consistent(self) -> _CellSpec:
        if not self.kinds:
            raise ValueError("kinds: at least one kind is needed")
        _check_shares("kinds", self.kinds)
        if abs(sum(self.kinds.values()) - 1.0) > _SHARE_TOLERANCE:
            raise ValueError(f"kinds: shares sum to {sum(self.kinds.values()):.6g}, not 1")
        _check_shares("conditions", self.conditions)
        if self.conditions_per_sample.min < 1:
            raise ValueError("conditions_per_sample: min must be at least 1 (a sample with none is 'clean')")
        clean = self.conditions.get(CLEAN, 0.0)
        degraded = 1.0 - clean
        if degraded <= _SHARE_TOLERANCE:
            return self
        for name, share in self.conditions.items():
            if name != CLEAN and share > degraded + _SHARE_TOLERANCE:
                raise ValueError(f"conditions.{name}: share {share} exceeds the non-clean share "
                                 f"{degraded:.6g}")
        for group in EXCLUSIVE_GROUPS:
            together = sum(self.conditions.get(name, 0.0) for name in group)
            if together > degraded + _SHARE_TOLERANCE:
                raise ValueError(
                    f"conditions: {', '.join(sorted(group))} exclude each other but their shares sum to "
                    f"{together:.6g}, more than the non-clean share {degraded:.6g}"
                )
        mean = self.mean_conditions()
        low, high = self.conditions_per_sample.min, self.conditions_per_sample.max
        if not low - _SHARE_TOLERANCE <= mean <= high + _SHARE_TOLERANCE:
            raise ValueError(
                f"conditions: the shares ask for {mean:.3g} conditions per non-clean sample on average, "
                f"outside conditions_per_sample [{low}, {high}]"
            )
        return self

    def share(self, name: str) -> float:
        return self.conditions.get(name, 0.0)  # type: ignore[call-overload]

    def mean_conditions(self) -> float:
        """Average number of conditions on a non-clean sample implied by the shares."""
        degraded = 1.0 - self.share(CLEAN)
        if degraded <= _SHARE_TOLERANCE:
            return 0.0
        return sum(s for name, s in self.conditions.items() if name != CLEAN) / degraded

    def cells(self) -> list[tuple[str, str]]:
        """Every kind × condition cell, in spec order."""
        return [(kind, condition) for kind in self.kinds for condition in CONDITIONS]

    def cell_share(self, kind: str, condition: str) -> float:
        """Share of all samples that are of `kind` and show `condition`."""
        return self.kinds.get(kind, 0.0) * self.share(condition)

    def required(self, total: int | None = None) -> dict[tuple[str, str], int]:
        """Samples each cell needs in a set of `total` samples (default: the spec's total)."""
        size = self.total if total is None else total
        needed = {}
        for kind, condition in self.cells():
            share = self.cell_share(kind, condition)
            needed[(kind, condition)] = max(self.min_per_cell, round(size * share)) if share > 0 else 0
        return needed


class PageSpec(_CellSpec):
    kinds: dict[PageKind, float]  # type: ignore[assignment]
    formulas_per_page: Range
    distractor_lines: Range = Field(description="lines of ordinary text (Korean/English) around the formulas")

    @model_validator(mode="after")
    def _mixed_fits(self) -> PageSpec:
        if self.kinds.get("mixed", 0.0) > 0 and self.formulas_per_page.max < 2:
            raise ValueError("formulas_per_page: a mixed page needs room for 2 formulas (max >= 2)")
        if self.formulas_per_page.min < 1:
            raise ValueError("formulas_per_page: min must be at least 1")
        return self


class CropSpec(_CellSpec):
    kinds: dict[Kind, float]  # type: ignore[assignment]


class AnswerSpec(_Strict):
    """Fields a sample must carry for one model to learn from it, at each level of a record."""

    page: list[PageField] = []
    region: list[RegionField] = []
    crop: list[CropField] = []


class DatasetSpec(_Strict):
    pages: PageSpec
    crops: CropSpec
    answers: dict[Model, AnswerSpec]


def load_spec(path: str | Path) -> DatasetSpec:
    """Read and validate a spec; every problem is reported as `file: key.path: message`."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the spec must be a mapping, got {type(raw).__name__}")
    try:
        return DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{path}: " + "; ".join(_describe(error) for error in exc.errors())) from exc


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"] if part != "[key]")
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _check_shares(section: str, shares: dict[str, float]) -> None:
    for name, share in shares.items():
        if not 0.0 <= share <= 1.0 or math.isnan(share):
            raise ValueError(f"{section}.{name}: share {share} is not within [0, 1]")


# --- answers -------------------------------------------------------------------------------------------


def missing_answers(record: Any, answers: dict[str, AnswerSpec]) -> list[str]:
    """What `record` (a crop or page manifest record) lacks for each model, one `model: gap` line per gap.

    A page record has `regions`; a crop record does not. A field counts as present when it is set and not
    empty. A page turned by a rotation condition must also carry that rotation as its orientation.
    """
    problems: list[str] = []
    regions = getattr(record, "regions", None)
    for model, need in answers.items():
        if regions is None:
            problems += [f"{model}: crop has no {name}" for name in need.crop if _absent(record, name)]
            continue
        problems += [f"{model}: page has no {name}" for name in need.page if _absent(record, name)]
        for index, region in enumerate(regions):
            problems += [f"{model}: region {index} has no {name}"
                         for name in need.region if _absent(region, name)]
    if regions is not None:
        turned = [ROTATIONS[name] for name in getattr(record, "conditions", ()) if name in ROTATIONS]
        orientation = getattr(record, "orientation", None)
        if turned and orientation is not None and orientation != turned[0]:
            problems.append(f"orientation: page orientation {orientation} disagrees with rotation{turned[0]}")
    return problems


def _absent(obj: Any, name: str) -> bool:
    value = getattr(obj, name, None)
    return value is None or (isinstance(value, (str, list, tuple)) and len(value) == 0)


# --- planning ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CropPlan:
    kind: str
    conditions: tuple[str, ...]


@dataclass(frozen=True)
class PagePlan:
    kind: str
    conditions: tuple[str, ...]
    n_formulas: int
    n_distractors: int

    @property
    def orientation(self) -> int:
        """Degrees clockwise the page is turned from upright (the orientation model's answer)."""
        return next((ROTATIONS[name] for name in self.conditions if name in ROTATIONS), 0)


def plan_pages(spec: PageSpec, n: int, rng: np.random.Generator) -> list[PagePlan]:
    """The kind, conditions and formula count of `n` pages, in random order.

    Every kind × condition count equals its share of `n` in expectation and is within a few units of it in
    any one draw; the same seed gives the same plan.
    """
    plans = []
    for kind, conditions in _plan_cells(spec, n, rng):
        low = max(spec.formulas_per_page.min, 2) if kind == "mixed" else spec.formulas_per_page.min
        n_formulas = int(rng.integers(low, spec.formulas_per_page.max + 1))
        n_distractors = int(rng.integers(spec.distractor_lines.min, spec.distractor_lines.max + 1))
        plans.append(PagePlan(kind, conditions, n_formulas, n_distractors))
    return plans


def plan_crops(spec: CropSpec, n: int, rng: np.random.Generator) -> list[CropPlan]:
    """The kind and conditions of `n` recognizer crops, in random order (same guarantees as `plan_pages`)."""
    return [CropPlan(kind, conditions) for kind, conditions in _plan_cells(spec, n, rng)]


def allocate(total: int, weights: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Split `total` units over `weights`: counts sum to `total`, each is within 1 of its quota, and each
    equals its quota in expectation (systematic sampling of the fractional parts)."""
    w = np.asarray(weights, dtype=float)
    counts = np.zeros(len(w), dtype=np.int64)
    if total <= 0 or w.sum() <= 0:
        return counts
    quotas = total * w / w.sum()
    counts = np.floor(quotas).astype(np.int64)
    remaining = int(total - counts.sum())
    if remaining:
        order = rng.permutation(len(w))
        edges = np.cumsum((quotas - counts)[order])
        edges *= remaining / edges[-1]  # the fractional parts sum to `remaining` up to float error
        points = rng.uniform() + np.arange(remaining)
        picks = np.minimum(np.searchsorted(edges, points, side="right"), len(w) - 1)
        counts[order[picks]] += 1
    return counts


def _round_unbiased(x: float, rng: np.random.Generator) -> int:
    whole = math.floor(x)
    return whole + int(rng.uniform() < x - whole)


def _plan_cells(spec: _CellSpec, n: int, rng: np.random.Generator) -> list[tuple[str, tuple[str, ...]]]:
    kinds = list(spec.kinds)
    degraded_names = [name for name in CONDITIONS if name != CLEAN]
    degraded_shares = [spec.share(name) for name in degraded_names]
    low, high = spec.conditions_per_sample.min, spec.conditions_per_sample.max
    samples: list[tuple[str, tuple[str, ...]]] = []
    for kind, n_kind in zip(kinds, allocate(n, [spec.kinds[k] for k in kinds], rng), strict=True):
        n_clean = int(allocate(int(n_kind), [spec.share(CLEAN), 1.0 - spec.share(CLEAN)], rng)[0])
        n_degraded = int(n_kind) - n_clean
        if n_degraded and sum(degraded_shares) == 0:  # nothing to show: a degraded sample is impossible
            n_clean, n_degraded = int(n_kind), 0
        samples += [(kind, (CLEAN,))] * n_clean
        slots = min(max(_round_unbiased(n_degraded * spec.mean_conditions(), rng), low * n_degraded),
                    high * n_degraded)
        per_condition = allocate(slots, degraded_shares, rng)
        capacity = _sample_capacities(n_degraded, slots, low, high, rng)
        samples += [(kind, held) for held in _deal(degraded_names, per_condition, capacity, rng)]
    order = rng.permutation(len(samples))
    return [samples[i] for i in order]


def _sample_capacities(n: int, slots: int, low: int, high: int, rng: np.random.Generator) -> np.ndarray:
    """How many conditions each of `n` samples gets: each within [low, high], summing to `slots`."""
    pool = np.repeat(np.arange(n), high - low)
    extra = rng.choice(len(pool), size=slots - low * n, replace=False) if n else np.array([], dtype=int)
    return low + np.bincount(pool[extra], minlength=n)


def _deal(
    names: list[str], counts: np.ndarray, capacity: np.ndarray, rng: np.random.Generator
) -> list[tuple[str, ...]]:
    """Give each condition to `counts[i]` distinct samples, never two of an exclusive group to one sample.

    Commonest condition first, each to the samples with the most room left (ties at random); without
    exclusive groups this greedy realises the counts whenever any assignment can (Ryser). Copies that find
    no eligible sample are dropped; no sample ends up empty, because a condition that runs short of
    samples goes to every eligible one with room, and a sample holding nothing is always eligible.
    """
    room = capacity.copy()
    held: list[list[str]] = [[] for _ in range(len(capacity))]
    ties = rng.permutation(len(names))
    for i in sorted(range(len(names)), key=lambda i: (-counts[i], ties[i])):
        name = names[i]
        group = next((g for g in EXCLUSIVE_GROUPS if name in g), frozenset())
        eligible = np.array([room[j] > 0 and not group.intersection(held[j]) for j in range(len(held))], bool)
        candidates = np.flatnonzero(eligible)
        if not len(candidates) or not counts[i]:
            continue
        order = np.lexsort((rng.random(len(candidates)), -room[candidates]))
        for j in candidates[order[: counts[i]]]:
            held[j].append(name)
            room[j] -= 1
    rank = {name: i for i, name in enumerate(CONDITIONS)}
    return [tuple(sorted(h, key=rank.__getitem__)) for h in held]
