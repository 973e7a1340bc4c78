"""Synthetic worksheet pages: formula crops laid out among problem numbers and Korean/English text on paper,
then photographed (degradations from `susik.data.degrade`), with every formula's quad and polygon carried
through every warp.

Geometry contract of `ComposedPage.regions`:
- `quad` is 4x2, clockwise, and its first point is the formula's OWN top-left corner. The order follows the
  formula, not the image axes: after `rotation90` the first point sits at the image-space top-right of the
  region. Never re-sort a carried quad with `order_clockwise`.
- `polygon` is the formula box's outline sampled every `outline_spacing` px before the warps (so it bends
  with a crumple), then simplified; it also starts at the formula's top-left and runs clockwise.
- `orientation` is the clockwise rotation (0/90/180/270) applied to the upright page.
Inline formulas (inside a text line) and display formulas (on their own line) are both regions. The box of a
formula is its ink's bounding box plus `pad` x font size; regions never overlap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from susik.data import textlines
from susik.data.degrade import ORIENTATION, plan
from susik.data.geometry import box_outline, simplify_polygon
from susik.data.paper import PAPER_KINDS, PaperKind, paper, random_style
from susik.results import Kind

BGR = tuple[int, int, int]

_PRINT_INKS: tuple[BGR, ...] = ((25, 25, 25), (40, 40, 45), (65, 65, 65))
_PEN_INKS: tuple[BGR, ...] = (
    (30, 30, 35),
    (150, 65, 25),
    (75, 75, 75),
    (105, 105, 110),
)  # black, blue, grey, pencil
_PENCIL = 3


class FormulaCrop(NamedTuple):
    """One formula to place: a grey crop (dark ink on light ground), its LaTeX and how it was made."""

    image: np.ndarray
    latex: str
    kind: Kind
    label: str | None = None  # an answer-choice or problem label ("C.", "(1)") written as text before it


class ComposerConfig(BaseModel):
    """Page layout knobs; ranges are (low, high) drawn per page."""

    model_config = ConfigDict(extra="forbid")

    long_side: tuple[int, int] = (1280, 1700)  # page height in px before degradations (A4 portrait)
    aspect: float = Field(1.414, gt=0)  # height / width (A4)
    margin: tuple[float, float] = (0.05, 0.09)  # page margin as a share of the width
    font_scale: tuple[float, float] = (0.018, 0.03)  # text size as a share of the width
    formula_height: tuple[float, float] = (1.1, 1.6)  # a typical formula's height in font sizes
    max_formula_height: float = 5.0  # tallest formula, in font sizes
    pad: float = Field(0.12, ge=0)  # region box margin around the ink, in font sizes
    two_column_share: float = Field(0.35, ge=0, le=1)
    inline_share: float = Field(0.35, ge=0, le=1)  # chance a formula sits inside a text line
    text: bool = True  # problem numbers and distractor sentences; off gives formulas alone (tests)
    korean_share: float = Field(0.8, ge=0, le=1)
    handwritten_pen_share: float = Field(1.0, ge=0, le=1)  # handwritten crops in pen colours (else print ink)
    paper_kinds: tuple[PaperKind, ...] = PAPER_KINDS
    outline_spacing: float = Field(24.0, gt=0)
    always_on: bool = True  # mild lighting + sensor noise on every page

    @model_validator(mode="after")
    def _ranges_ascend(self) -> ComposerConfig:
        for name in ("long_side", "margin", "font_scale", "formula_height"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {(low, high)}")
        return self


@dataclass(frozen=True)
class ComposedRegion:
    quad: np.ndarray  # (4, 2) float, clockwise from the formula's own top-left
    polygon: np.ndarray  # (N, 2) float
    latex: str
    kind: Kind

    def to_json(self) -> dict:
        """The region as a page-manifest entry."""
        return {
            "quad": np.round(self.quad, 2).tolist(),
            "polygon": np.round(self.polygon, 2).tolist(),
            "latex": self.latex,
            "kind": self.kind,
        }


@dataclass(frozen=True)
class ComposedPage:
    image: np.ndarray  # BGR uint8
    regions: tuple[ComposedRegion, ...]
    orientation: int  # clockwise rotation applied to the upright page: 0, 90, 180, 270
    conditions: tuple[str, ...]  # requested conditions in the order applied (always-on effects not listed)

    def to_record(self, image: str, source: str, license: str) -> dict:
        """The page-manifest line for this page saved at `image` (relative to the manifest)."""
        height, width = self.image.shape[:2]
        return {
            "image": image,
            "width": width,
            "height": height,
            "orientation": self.orientation,
            "regions": [region.to_json() for region in self.regions],
            "conditions": list(self.conditions),
            "source": source,
            "license": license,
        }


@dataclass(frozen=True)
class _Ink:
    """A formula's ink, trimmed to its bounding box and scaled for this page."""

    alpha: np.ndarray  # float32 0..1
    colour: BGR
    latex: str
    kind: Kind
    label: str | None = None


@dataclass(frozen=True)
class _Piece:
    """Something drawn on a line: ink `alpha` at `x` (from the line start), `above` rows over the baseline."""

    x: int
    above: int
    alpha: np.ndarray
    colour: BGR
    formula: _Ink | None = None


@dataclass(frozen=True)
class _Line:
    pieces: tuple[_Piece, ...]
    width: int
    above: int  # rows above the baseline, padding of formula boxes included
    below: int


def _ink_alpha(crop: np.ndarray) -> np.ndarray | None:
    """Ink coverage 0..1 of a grey crop, trimmed to the ink; None when the crop has no ink."""
    grey = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    cumulative = np.cumsum(np.bincount(grey.ravel(), minlength=256))
    ground = float(np.searchsorted(cumulative, 0.98 * cumulative[-1]))  # 98th percentile: the crop's paper
    darkest = float(grey.min())
    if ground - darkest < 32:
        return None
    # Trim to pixels at least a quarter of the way to full ink before converting (crops are mostly margin).
    x, y, w, h = cv2.boundingRect((grey < ground - 0.25 * (ground - darkest)).astype(np.uint8))
    alpha = np.clip((ground - grey[y : y + h, x : x + w].astype(np.float32)) / (ground - darkest), 0, 1)
    alpha[alpha < 0.08] = 0  # paper grain of a scanned crop is not ink
    return alpha


def _resize(alpha: np.ndarray, height: int, width: int) -> np.ndarray:
    shrink = height < alpha.shape[0]
    return cv2.resize(
        alpha, (max(1, width), max(1, height)), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def _stamp(page: np.ndarray, alpha: np.ndarray, x: int, y: int, colour: BGR) -> None:
    """In place: ink laid on paper as a multiply blend, so the paper's texture shows through."""
    height, width = alpha.shape
    roi = page[y : y + height, x : x + width]  # a view: multiply writes into the page
    darken = cv2.merge([1 - alpha * (1 - c / 255) for c in colour])
    cv2.multiply(roi, darken, dst=roi, dtype=cv2.CV_8U)


class PageComposer:
    """Builds one synthetic photographed worksheet page from formula crops (geometry: see module doc)."""

    def __init__(self, config: ComposerConfig | None = None) -> None:
        self.config = config or ComposerConfig()

    def compose(
        self, formula_crops: Sequence[FormulaCrop], rng: np.random.Generator, conditions: Sequence[str] = ()
    ) -> ComposedPage:
        """Lay out as many of `formula_crops` as fit (in order; the rest are dropped), then photograph it."""
        steps = plan(conditions, always_on=self.config.always_on)  # validate names before any work
        page, inks, boxes = self._layout(formula_crops, rng)
        shapes, corners = [], []
        for x0, y0, x1, y1 in boxes:
            outline, corner_index = box_outline(x0, y0, x1, y1, self.config.outline_spacing)
            shapes.append(outline)
            corners.append(corner_index)
        image = page
        for _, step in steps:
            degraded = step(image, shapes, rng)
            image, shapes = degraded.image, list(degraded.shapes)
        regions = tuple(
            ComposedRegion(
                quad=outline[index].copy(), polygon=simplify_polygon(outline), latex=ink.latex, kind=ink.kind
            )
            for outline, index, ink in zip(shapes, corners, inks, strict=True)
        )
        applied = tuple(name for name, _ in steps if name in conditions)
        orientation = next((ORIENTATION[name] for name in applied if name in ORIENTATION), 0)
        return ComposedPage(image=image, regions=regions, orientation=orientation, conditions=applied)

    def _layout(
        self, crops: Sequence[FormulaCrop], rng: np.random.Generator
    ) -> tuple[np.ndarray, list[_Ink], list[tuple[float, float, float, float]]]:
        """Draw the upright page; return it, the placed formulas and their padded boxes (pixel centres)."""
        cfg = self.config
        height = int(rng.integers(cfg.long_side[0], cfg.long_side[1] + 1))
        width = int(round(height / cfg.aspect))
        font_px = max(10, int(round(width * rng.uniform(*cfg.font_scale))))
        margin = int(round(width * rng.uniform(*cfg.margin)))
        pitch = int(round(font_px * rng.uniform(1.6, 2.1)))
        sheet = paper(height, width, random_style(rng, pitch, margin, cfg.paper_kinds), rng)
        print_ink = _PRINT_INKS[int(rng.integers(len(_PRINT_INKS)))]
        writer = _Writer(cfg, rng, font_px, print_ink)
        inks = deque(self._prepare(crops, rng, font_px, print_ink))

        columns = 2 if rng.random() < cfg.two_column_share else 1
        gutter = 2 * font_px
        column_w = (width - 2 * margin - (columns - 1) * gutter) // columns
        placed: list[_Ink] = []
        boxes: list[tuple[float, float, float, float]] = []
        column, y = 0, margin
        problem = 1
        while inks and column < columns:
            for line in writer.problem(problem, inks, column_w):
                while column < columns and y + line.above + line.below > height - margin:
                    column, y = column + 1, margin
                if column == columns:
                    break
                left = margin + column * (column_w + gutter)
                baseline = y + line.above
                for piece in line.pieces:
                    top = baseline - piece.above
                    _stamp(sheet, piece.alpha, left + piece.x, top, piece.colour)
                    if piece.formula is not None:
                        ink_h, ink_w = piece.alpha.shape
                        pad = writer.pad
                        placed.append(piece.formula)
                        boxes.append(
                            (
                                left + piece.x - pad,
                                top - pad,
                                left + piece.x + ink_w - 1 + pad,
                                top + ink_h - 1 + pad,
                            )
                        )
                y = baseline + line.below + writer.leading
            y += int(round(font_px * rng.uniform(0.3, 1.5)))
            problem += 1
        return sheet, placed, boxes

    def _prepare(
        self, crops: Sequence[FormulaCrop], rng: np.random.Generator, font_px: int, print_ink: BGR
    ) -> list[_Ink]:
        """Trim each crop to its ink and scale it to the page: crops of one kind keep their relative sizes,
        and a median-height one becomes `formula_height` font sizes tall."""
        cfg = self.config
        trimmed = [(_ink_alpha(np.asarray(crop.image)), crop) for crop in crops]
        trimmed = [(alpha, crop) for alpha, crop in trimmed if alpha is not None]
        reference = {
            kind: float(np.median([alpha.shape[0] for alpha, crop in trimmed if crop.kind == kind]))
            for kind in {crop.kind for _, crop in trimmed}
        }
        page_scale = {
            kind: font_px * rng.uniform(*cfg.formula_height) / ref for kind, ref in reference.items()
        }
        pen = _PEN_INKS[int(rng.integers(len(_PEN_INKS)))]
        inks = []
        for alpha, crop in trimmed:
            target = float(
                np.clip(
                    alpha.shape[0] * page_scale[crop.kind], 0.8 * font_px, cfg.max_formula_height * font_px
                )
            )
            scale = target / alpha.shape[0]
            scaled = _resize(alpha, int(round(target)), int(round(alpha.shape[1] * scale)))
            colour = print_ink
            if crop.kind == "handwritten" and rng.random() < cfg.handwritten_pen_share:
                colour = pen
                if pen == _PEN_INKS[_PENCIL]:  # pencil: lighter and grainy
                    grain = rng.uniform(0.55, 1.0, scaled.shape).astype(np.float32)
                    scaled = scaled * grain * rng.uniform(0.6, 0.85)
            inks.append(
                _Ink(alpha=scaled.astype(np.float32), colour=colour, latex=crop.latex, kind=crop.kind,
                     label=crop.label)
            )
        return inks


class _Writer:
    """Turns problems into lines of pieces: a header (number + sentence, maybe with an inline formula),
    display formulas (maybe with sub-numbers), sometimes a trailing text line."""

    def __init__(self, config: ComposerConfig, rng: np.random.Generator, font_px: int, ink: BGR) -> None:
        self.config, self.rng, self.font_px, self.ink = config, rng, font_px, ink
        self.font = textlines.pick_font(rng)
        self.pad = max(2, int(round(config.pad * font_px)))
        self.space = max(2 * self.pad + 2, int(round(0.35 * font_px)))
        self.leading = max(2 * self.pad + 2, int(round(font_px * rng.uniform(0.35, 0.8))))
        self.mid = int(round(0.32 * font_px))  # x-height middle above the baseline: where formulas centre
        self.number_style = int(rng.integers(len(textlines.NUMBER_STYLES)))
        self.sub_style = int(rng.integers(len(textlines.SUB_NUMBER_STYLES)))

    def problem(self, number: int, inks: deque[_Ink], width: int) -> list[_Line]:
        """Lines of one problem; pops from `inks` the formulas those lines place."""
        rng, cfg = self.rng, self.config
        lines: list[_Line] = []
        if not cfg.text:
            return [self._display(inks.popleft(), None, width)]
        label = textlines.problem_number(number, self.number_style)
        header = None
        if rng.random() < cfg.inline_share:
            header = self._inline(label, inks[0], width)
            if header is not None:
                inks.popleft()
        lines.append(header or self._text_line([label, textlines.sentence(rng, cfg.korean_share)], width))
        count = int(rng.integers(0 if header else 1, 3))
        for index in range(min(count, len(inks))):
            sub = (
                textlines.sub_number(index + 1, self.sub_style) if count > 1 and rng.random() < 0.6 else None
            )
            ink = inks.popleft()
            lines.append(self._display(ink, ink.label or sub, width))
        if rng.random() < 0.2:
            lines.append(self._text_line([textlines.sentence(rng, cfg.korean_share)], width))
        return [line for line in lines if line.pieces]

    def _text_piece(self, text: str, x: int) -> _Piece:
        rendered = textlines.render_text(text, self.font, self.font_px)
        return _Piece(
            x=x, above=rendered.ascent, alpha=rendered.mask.astype(np.float32) / 255, colour=self.ink
        )

    def _formula_piece(self, ink: _Ink, x: int) -> _Piece:
        return _Piece(
            x=x + self.pad,
            above=ink.alpha.shape[0] // 2 + self.mid,
            alpha=ink.alpha,
            colour=ink.colour,
            formula=ink,
        )

    def _line(self, pieces: list[_Piece]) -> _Line:
        if not pieces:
            return _Line((), 0, 0, 0)
        pad = [self.pad if piece.formula is not None else 0 for piece in pieces]
        above = max(piece.above + p for piece, p in zip(pieces, pad, strict=True))
        below = max(piece.alpha.shape[0] - piece.above + p for piece, p in zip(pieces, pad, strict=True))
        right = max(piece.x + piece.alpha.shape[1] + p for piece, p in zip(pieces, pad, strict=True))
        return _Line(tuple(pieces), right, above, below)

    def _text_line(self, texts: list[str], width: int) -> _Line:
        """Text segments side by side, dropping from the end what does not fit."""
        pieces: list[_Piece] = []
        x = 0
        for text in texts:
            piece = self._text_piece(text, x)
            if x + piece.alpha.shape[1] > width:
                break
            pieces.append(piece)
            x += piece.alpha.shape[1] + self.space
        return self._line(pieces)

    def _inline(self, label: str, ink: _Ink, width: int) -> _Line | None:
        """Number, text, formula, text on one line; drops the trailing then the leading text if too wide."""
        before, after = textlines.around_formula(self.rng, self.config.korean_share)
        for texts in ((before, after), (before, ""), ("", "")):
            pieces = [self._text_piece(label, 0)]
            x = pieces[0].alpha.shape[1] + self.space
            if texts[0]:
                pieces.append(self._text_piece(texts[0], x))
                x += pieces[-1].alpha.shape[1] + self.space
            pieces.append(self._formula_piece(ink, x))
            x += ink.alpha.shape[1] + 2 * self.pad + self.space
            if texts[1]:
                pieces.append(self._text_piece(texts[1], x))
            line = self._line(pieces)
            if line.width <= width:
                return line
        return None

    def _display(self, ink: _Ink, label: str | None, width: int) -> _Line:
        """A formula on its own line, indented or centred, after an optional sub-number."""
        pieces: list[_Piece] = []
        x = int(round(self.font_px * self.rng.uniform(0.5, 2.5)))
        if label is not None:
            pieces.append(self._text_piece(label, x))
            x += pieces[0].alpha.shape[1] + self.space
        room = width - x - 2 * self.pad
        if ink.alpha.shape[1] > room:  # too wide for the column: shrink it to fit
            scale = room / ink.alpha.shape[1]
            ink = replace(ink, alpha=_resize(ink.alpha, int(ink.alpha.shape[0] * scale), room))
        elif label is None and self.rng.random() < 0.3:
            x = (width - ink.alpha.shape[1]) // 2 - self.pad
        pieces.append(self._formula_piece(ink, x))
        return self._line(pieces)


_OVERLAY_COLOURS: tuple[BGR, ...] = (
    (0, 0, 255),
    (0, 160, 0),
    (255, 0, 0),
    (0, 140, 255),
    (200, 0, 200),
    (160, 160, 0),
)


def draw_overlay(image: np.ndarray, regions: Sequence[ComposedRegion]) -> np.ndarray:
    """A copy of the image with each region's polygon (thin), quad (thick), first corner (dot) and index."""
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    thick = max(1, round(max(canvas.shape[:2]) / 700))
    for index, region in enumerate(regions):
        colour = _OVERLAY_COLOURS[index % len(_OVERLAY_COLOURS)]
        cv2.polylines(
            canvas, [np.round(region.polygon).astype(np.int32)], True, (255, 200, 0), 1, cv2.LINE_AA
        )
        cv2.polylines(canvas, [np.round(region.quad).astype(np.int32)], True, colour, thick, cv2.LINE_AA)
        start = tuple(int(v) for v in np.round(region.quad[0]))
        cv2.circle(canvas, start, 3 * thick + 1, colour, -1, cv2.LINE_AA)
        cv2.putText(
            canvas,
            str(index),
            (start[0] + 4 * thick, start[1] - 4 * thick),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * thick,
            colour,
            thick,
            cv2.LINE_AA,
        )
    return canvas
