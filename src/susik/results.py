"""Typed, frozen results of the pipeline, serialised to the public JSON in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Point = tuple[float, float]
Kind = Literal["printed", "handwritten"]


@dataclass(frozen=True)
class Quad:
    """Four corners in original-image pixels, clockwise from the formula's top-left."""

    points: tuple[Point, Point, Point, Point]

    def to_json(self) -> list[list[float]]:
        return [[round(x, 2), round(y, 2)] for x, y in self.points]

    @classmethod
    def from_json(cls, raw: list[list[float]]) -> Quad:
        if len(raw) != 4:
            raise ValueError(f"a quad has 4 points, got {len(raw)}")
        return cls(tuple((float(x), float(y)) for x, y in raw))  # type: ignore[arg-type]


# Readings below this confidence are flagged for checking (CLI, web page): the served confidence is calibrated, so
# below even odds a reading is more likely wrong than right. The web page's app.js holds the same number.
CHECK_BELOW = 0.5


@dataclass(frozen=True)
class Recognition:
    """One crop read by the recognizer."""

    latex: str
    confidence: float  # what users read: calibrated to the chance of an exact reading when the record has a map
    raw_confidence: float | None = None  # the decoder's own score, which second looks compare; None: `confidence`

    @property
    def look_score(self) -> float:
        """The score that gates and compares second readings (the scale their thresholds were tuned on)."""
        return self.confidence if self.raw_confidence is None else self.raw_confidence


@dataclass(frozen=True)
class Region:
    quad: Quad
    polygon: tuple[Point, ...]
    latex: str
    confidence: float
    kind: Kind
    label: str | None = None  # a problem or choice label ("(1)", "C.") read with the formula, taken off its LaTeX

    def to_json(self) -> dict:
        return {
            "quad": self.quad.to_json(),
            "polygon": [[round(x, 2), round(y, 2)] for x, y in self.polygon],
            "latex": self.latex,
            "confidence": round(self.confidence, 4),
            "kind": self.kind,
            "label": self.label,
        }


@dataclass(frozen=True)
class Page:
    width: int
    height: int
    orientation: int  # degrees clockwise the photo was turned from upright: 0, 90, 180, 270
    regions: tuple[Region, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "orientation": self.orientation,
            "regions": [region.to_json() for region in self.regions],
            "timings_ms": {name: round(ms, 2) for name, ms in self.timings_ms.items()},
        }
