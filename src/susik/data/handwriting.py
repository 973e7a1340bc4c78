"""New handwritten formulas composed from a glyph bank: LaTeX in, an image of it written by hand out.

A small layout engine for what school handwriting holds: rows of symbols, super- and subscripts, fractions,
roots (with an index), sums and integrals, and `\\lim` and `\\sum` with their limits below (and above). Each
symbol is a real handwritten glyph (`susik.data.glyphs`) scaled to its typographic zone (x-height letters,
ascenders, descenders, operators on the math axis), with the writer's own jitter in size, baseline and
spacing, each copy bent a little (turned, stretched, wobbled) and the whole formula slanted; fraction bars are
handwritten minus signs stretched to width; radicals, bars and arrows over an argument, a few geometry and
logic symbols (`\\perp`, `\\triangle`, `\\angle`, `\\therefore`, `\\Rightarrow`...) and capitals no writer of
the bank wrote (`D`, `U`, `W`...) are drawn as pen strokes. Anything else (a product, a matrix, a symbol no
writer of the bank wrote) makes the formula unsupported: the caller picks another rather than a wrong picture.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from pydantic import BaseModel, Field

from susik.data.crops import ink_box
from susik.data.glyphs import DOTS, SPELLED, GlyphBank
from susik.latex import group_end

AXIS = 0.6  # the math axis (minus, equals, fraction bars) in x-heights above the baseline
_SOURCE_STROKE = 2.0  # px: the width of the strokes in the shared CROHME renderings


class Unsupported(ValueError):
    """The formula holds a construct or a symbol the engine cannot write."""


class HandwritingConfig(BaseModel):
    x_height: tuple[float, float] = Field((20.0, 30.0), description="px of an x-height at the top level")
    pen: tuple[float, float] = Field((1.6, 3.2), description="stroke width in px")
    gap: tuple[float, float] = Field((0.12, 0.45), description="space between symbols, in x-heights")
    size_jitter: float = Field(0.12, ge=0, lt=0.5, description="a symbol's size varies by up to this share")
    baseline_jitter: float = Field(0.08, ge=0, lt=0.5, description="in x-heights")
    one_writer: float = Field(0.6, ge=0, le=1, description="chance a formula keeps one writer's glyphs where "
                                                           "that writer wrote the symbol")
    font_writer: float = Field(0.0, ge=0, le=1, description="chance a formula is written in one of the bank's "
                                                             "handwriting fonts' hands, where the bank has any")
    script_scale: tuple[float, float] = Field((0.6, 0.78), description="scripts' size against their base")
    margin: float = Field(0.4, ge=0, description="white border, in x-heights")
    # A glyph bank of a few thousand formulas repeats its drawings; bending each copy a little makes every
    # written symbol new, so a recognizer learns shapes rather than memorising drawings.
    slant: float = Field(0.2, ge=0, lt=1, description="a writer's slant: the formula is sheared up to this")
    glyph_rotation: float = Field(6.0, ge=0, lt=45, description="degrees a symbol turns, at most")
    glyph_stretch: float = Field(0.12, ge=0, lt=0.5, description="a symbol's width varies up to this share")
    elastic: float = Field(0.025, ge=0, lt=0.2, description="a smooth wobble of the strokes, as a share of "
                                                              "the symbol's size")


# Typographic zones in x-heights: (bottom, top) above the baseline; height is what the glyph is scaled to.
_X = (0.0, 1.0)
_ASCENDER = (0.0, 1.45)
_DESCENDER = (-0.45, 1.0)
_BOTH = (-0.45, 1.45)
_TALL = (-0.4, 1.6)
ZONES: dict[str, tuple[float, float]] = {
    **dict.fromkeys("acemnorsuvwxz", _X),
    **dict.fromkeys([r"\alpha", r"\pi", r"\sigma", r"\omega", r"\epsilon", r"\varepsilon", r"\nu", r"\kappa",
                     r"\iota", r"\tau", r"\upsilon"], _X),
    **dict.fromkeys("gpqy", _DESCENDER),
    **dict.fromkeys([r"\gamma", r"\mu", r"\rho", r"\eta", r"\chi", r"\varphi"], _DESCENDER),
    **dict.fromkeys("fj", _BOTH),
    **dict.fromkeys([r"\beta", r"\phi", r"\psi", r"\xi", r"\zeta"], _BOTH),
    **dict.fromkeys(["(", ")", "[", "]", "|", r"\{", r"\}", "/", r"\|"], _TALL),
    r"\mid": _TALL, r"\circ": (0.85, 1.35),
    "i": (0.0, 1.35), ".": (0.0, 0.2), ",": (-0.3, 0.2), "'": (0.95, 1.5), r"\prime": (0.95, 1.5),
}
# Operators centred on the axis: ("h", size) scales the glyph's height, ("w", size) its width (flat symbols).
AXIAL: dict[str, tuple[str, float]] = {
    "+": ("h", 0.95), r"\times": ("h", 0.75), r"\div": ("h", 0.9), r"\pm": ("h", 1.0), r"\mp": ("h", 1.0),
    r"\cdot": ("h", 0.2), r"\in": ("h", 0.9), "<": ("h", 0.85), ">": ("h", 0.85), r"\leq": ("h", 1.05),
    r"\geq": ("h", 1.05), r"\neq": ("h", 1.1), "-": ("w", 0.85), "=": ("w", 0.85), r"\approx": ("w", 0.85),
    r"\equiv": ("w", 0.85), r"\sim": ("w", 0.8), r"\rightarrow": ("w", 1.5), r"\infty": ("w", 1.4),
    r"\sum": ("h", 2.2), r"\int": ("h", 2.6),
}
STACKED_LIMITS = frozenset({r"\lim", r"\sum"})  # their subscript goes under them, their superscript over
# Written with another symbol's glyph (placed in their own zone).
BORROWED = {r"\mid": "|", r"\circ": "o", "O": "0"}  # a written O and a zero look alike


def _arc(centre: tuple[float, float], radii: tuple[float, float], start: float, end: float,
         points: int = 10) -> list[tuple[float, float]]:
    """Points along an elliptic arc from `start` to `end` degrees (counter-clockwise from the right)."""
    angles = np.deg2rad(np.linspace(start, end, points))
    return [(centre[0] + radii[0] * float(np.cos(angle)), centre[1] + radii[1] * float(np.sin(angle)))
            for angle in angles]


def _dot(x: float, y: float) -> list[tuple[float, float]]:
    return [(x, y), (x + 0.07, y), (x + 0.035, y + 0.06), (x, y)]  # a tiny filled loop


# Drawn as pen strokes, in x-heights: (x, height above the baseline) per stroke. Letters here are drawn only
# while the bank has no glyph of theirs (CROHME's writers wrote no D, though school geometry is full of them).
DRAWN: dict[str, list[list[tuple[float, float]]]] = {
    r"\perp": [[(0.5, 0.0), (0.5, 1.3)], [(0.0, 0.0), (1.0, 0.0)]],
    r"\triangle": [[(0.0, 0.0), (0.55, 1.3), (1.1, 0.0), (0.0, 0.0)]],
    r"\angle": [[(1.0, 1.2), (0.0, 0.0), (1.1, 0.0)]],
    r"\parallel": [[(0.2, -0.3), (0.2, 1.4)], [(0.6, -0.3), (0.6, 1.4)]],
    r"\square": [[(0.0, 0.0), (0.0, 1.2), (1.2, 1.2), (1.2, 0.0), (0.0, 0.0)]],
    r"\therefore": [_dot(0.0, 0.1), _dot(0.5, 0.1), _dot(0.25, 0.8)],
    r"\because": [_dot(0.0, 0.8), _dot(0.5, 0.8), _dot(0.25, 0.1)],
    r"\uparrow": [[(0.3, -0.2), (0.3, 1.45)], [(0.0, 1.1), (0.3, 1.45), (0.6, 1.1)]],
    r"\downarrow": [[(0.3, 1.45), (0.3, -0.2)], [(0.0, 0.15), (0.3, -0.2), (0.6, 0.15)]],
    r"\Rightarrow": [[(0.0, 0.85), (1.1, 0.85)], [(0.0, 0.35), (1.1, 0.35)],
                     [(0.85, 1.1), (1.35, 0.6), (0.85, 0.1)]],
    r"\cong": [[(0.0, 0.3), (1.0, 0.3)], [(0.0, 0.6), (1.0, 0.6)], _arc((0.25, 0.95), (0.25, 0.15), 180, 0, 6)
               + _arc((0.75, 0.95), (0.25, 0.15), 180, 360, 6)],
    "D": [[(0.0, 0.0), (0.0, 1.45)], [(0.0, 1.45), *_arc((0.05, 0.725), (0.8, 0.725), 90, -90), (0.0, 0.0)]],
    "U": [[(0.0, 1.45), *_arc((0.4, 0.45), (0.4, 0.45), 180, 360), (0.8, 1.45)]],
    "W": [[(0.0, 1.45), (0.3, 0.0), (0.6, 1.0), (0.9, 0.0), (1.2, 1.45)]],
    "Z": [[(0.0, 1.45), (0.85, 1.45), (0.0, 0.0), (0.9, 0.0)]],
    "K": [[(0.0, 0.0), (0.0, 1.45)], [(0.8, 1.45), (0.05, 0.6), (0.85, 0.0)]],
    "J": [[(0.25, 1.45), (0.95, 1.45)], [(0.6, 1.45), (0.6, 0.3), *_arc((0.3, 0.3), (0.3, 0.3), 0, -170, 6)]],
    "Q": [_arc((0.6, 0.725), (0.6, 0.725), 90, 450, 16), [(0.6, 0.35), (1.15, -0.15)]],
}
ACCENTS = frozenset({r"\overline", r"\bar", r"\overrightarrow", r"\vec"})
ARROWS = frozenset({r"\overrightarrow", r"\vec"})
_MIN_SOURCE_SHARE = 0.45  # a glyph enlarged more than ~2x looks blurred: prefer sources at least this tall

# Printed spellings that handwriting does not distinguish, written and labelled as the handwritten form.
HANDWRITTEN_FORMS = {
    r"\leqslant": r"\leq", r"\geqslant": r"\geq", r"\le": r"\leq", r"\ge": r"\geq", r"\ne": r"\neq",
    r"\lt": "<", r"\gt": ">", r"\to": r"\rightarrow", r"\dfrac": r"\frac", r"\tfrac": r"\frac",
}
# Font switches have no handwritten form: their argument is written plainly.
FONT_SWITCHES = frozenset({r"\mathrm", r"\mathbf", r"\mathit", r"\boldsymbol", r"\text", r"\mbox", r"\rm"})
_SPACES = frozenset({"~", r"\,", r"\;", r"\!", r"\quad", r"\qquad", r"\ "})


def handwritten_tokens(tokens: Sequence[str]) -> list[str]:
    """Normalised tokens as a hand writes them: no font switches (their braces go too) or spacing, printed
    variants folded (`\\leqslant` -> `\\leq`). This is the label of a composed sample."""
    kept: list[str] = []
    dropped_braces: set[int] = set()  # positions of a font switch's braces
    for at, token in enumerate(tokens):
        if at in dropped_braces or token in _SPACES:
            continue
        if token in FONT_SWITCHES:
            if at + 1 < len(tokens) and tokens[at + 1] == "{":
                depth = 0
                for close in range(at + 1, len(tokens)):
                    depth += (tokens[close] == "{") - (tokens[close] == "}")
                    if depth == 0:
                        dropped_braces.update((at + 1, close))
                        break
            continue
        kept.append(HANDWRITTEN_FORMS.get(token, token))
    return kept


@dataclass(frozen=True)
class Box:
    """Ink coverage (0..1, float32) with the row of its baseline: rows above it are ascent, the rest descent."""

    ink: np.ndarray
    baseline: int

    @property
    def width(self) -> int:
        return self.ink.shape[1]

    @property
    def ascent(self) -> int:
        return self.baseline

    @property
    def descent(self) -> int:
        return self.ink.shape[0] - self.baseline


def combine(parts: Sequence[tuple[Box, float, float]]) -> Box:
    """Boxes placed at (x, raise above the common baseline) on one canvas; ink overlaps by maximum."""
    placed = [(box, round(x), round(up)) for box, x, up in parts]
    left = min(x for _, x, _ in placed)
    ascent = max(box.ascent + up for box, _, up in placed)
    descent = max(box.descent - up for box, _, up in placed)
    width = max(x - left + box.width for box, x, _ in placed)
    canvas = np.zeros((max(ascent + descent, 1), max(width, 1)), np.float32)
    for box, x, up in placed:
        top, col = ascent - up - box.ascent, x - left
        region = canvas[top:top + box.ink.shape[0], col:col + box.width]
        np.maximum(region, box.ink, out=region)
    return Box(canvas, ascent)


def _group_end(tokens: Sequence[str], at: int, opening: str, closing: str) -> int:
    end = group_end(tokens, at, opening, closing)
    if end is None:
        raise Unsupported(f"unbalanced {opening}{closing}")
    return end


def _tokens_arg(tokens: Sequence[str], at: int) -> tuple[list[str], int]:
    """The tokens of one argument starting at `at` (a braced group without its braces, or one token) and the
    index after it."""
    if at >= len(tokens):
        raise Unsupported("an argument is missing")
    if tokens[at] != "{":
        return [tokens[at]], at + 1
    end = _group_end(tokens, at, "{", "}")
    return list(tokens[at + 1:end]), end + 1


def _tokens_optional(tokens: Sequence[str], at: int) -> tuple[list[str] | None, int]:
    """A `[...]` argument (a root's index) at `at`, if there is one."""
    if at >= len(tokens) or tokens[at] != "[":
        return None, at
    end = _group_end(tokens, at, "[", "]")
    return list(tokens[at + 1:end]), end + 1


def symbols_needed(tokens: Sequence[str]) -> Iterator[str]:
    """The bank symbols a formula's glyphs come from (function names as letters; fraction bars are minus signs)."""
    for token in tokens:
        if token in ("{", "}", "^", "_", "[", "]") or token == r"\sqrt" or token in DRAWN or token in ACCENTS:
            continue
        if token == r"\frac":
            yield "-"
        elif token == ":":
            yield "."
        elif token in BORROWED:
            yield BORROWED[token]
        elif token in SPELLED:
            yield from SPELLED[token]
        elif token in DOTS:
            yield DOTS[token]
        else:
            yield token


class Writer:
    """Writes one formula by hand; a new instance per formula (it holds that formula's pen, writer and size)."""

    def __init__(self, bank: GlyphBank, config: HandwritingConfig, rng: np.random.Generator) -> None:
        self.bank, self.config, self.rng = bank, config, rng
        self.pen = float(rng.uniform(*config.pen))
        self.writer: int | None = None
        fonts = bank.font_writer_ids
        if fonts and rng.random() < config.font_writer:  # no draw without fonts: older banks write as before
            self.writer = fonts[int(rng.integers(len(fonts)))]
        elif rng.random() < config.one_writer and bank.writer_ids:
            self.writer = bank.writer_ids[int(rng.integers(len(bank.writer_ids)))]

    def write(self, tokens: Sequence[str]) -> np.ndarray:
        """The formula as a grayscale image (dark ink on white) with a margin."""
        x_height = float(self.rng.uniform(*self.config.x_height))
        box = self._row(list(tokens), x_height)
        pad = max(2, round(self.config.margin * x_height))
        ink = cv2.copyMakeBorder(box.ink, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0.0)
        ink = _slanted(ink, float(self.rng.uniform(-self.config.slant, self.config.slant)))
        return np.clip(255.0 * (1.0 - ink), 0, 255).astype(np.uint8)

    # --- rows and atoms ----------------------------------------------------------------------------------

    def _row(self, tokens: list[str], unit: float) -> Box:
        if not tokens:
            raise Unsupported("an empty group")
        parts: list[tuple[Box, float, float]] = []
        x, at = 0.0, 0
        while at < len(tokens):
            box, at = self._atom(tokens, at, unit)
            parts.append((box, x, self.rng.normal(0, self.config.baseline_jitter) * unit))
            x += box.width + self.rng.uniform(*self.config.gap) * unit
        return combine(parts)

    def _atom(self, tokens: list[str], at: int, unit: float) -> tuple[Box, int]:
        token = tokens[at]
        stacked = token in STACKED_LIMITS
        if token == "{":
            inner, at = _tokens_arg(tokens, at)
            base = self._row(inner, unit)
        elif token == r"\frac":
            numerator, at = _tokens_arg(tokens, at + 1)
            denominator, at = _tokens_arg(tokens, at)
            base = self._fraction(numerator, denominator, unit)
        elif token == r"\sqrt":
            index, at = _tokens_optional(tokens, at + 1)
            body, at = _tokens_arg(tokens, at)
            base = self._root(body, index, unit)
        elif token in SPELLED:
            base, at = self._word(SPELLED[token], unit), at + 1
        elif token in DOTS:
            base, at = self._word([DOTS[token]] * 3, unit), at + 1
        elif token in ACCENTS:
            body, at = _tokens_arg(tokens, at + 1)
            base = self._accent(token, body, unit)
        elif token in DRAWN and token not in self.bank:
            base, at = self._drawn(token, unit), at + 1
        elif token == ":":
            base, at = self._colon(unit), at + 1
        elif token in ("^", "_"):
            raise Unsupported(f"a script without a base: {token}")
        else:
            base, at = self._glyph(token, unit), at + 1
        superscript = subscript = None
        while at < len(tokens) and tokens[at] in ("^", "_"):
            which = tokens[at]
            argument, at = _tokens_arg(tokens, at + 1)
            if which == "^":
                superscript = argument
            else:
                subscript = argument
        if superscript is None and subscript is None:
            return base, at
        return self._scripts(base, superscript, subscript, unit, stacked=stacked), at

    def _glyph(self, symbol: str, unit: float) -> Box:
        source = BORROWED.get(symbol, symbol)
        if source not in self.bank:
            raise Unsupported(f"no handwritten glyph for {symbol}")
        jitter = 1.0 + self.rng.uniform(-self.config.size_jitter, self.config.size_jitter)
        if symbol in AXIAL:
            measure, size = AXIAL[symbol]
            target = size * unit * jitter
            least = _MIN_SOURCE_SHARE * target if measure == "h" else 0.0
            glyph = self._bent(self.bank.pick(symbol, self.rng, self.writer, min_height=least))
            scale = target / (glyph.shape[0] if measure == "h" else glyph.shape[1])
            ink = self._ink(glyph, scale)
            return Box(ink, round(AXIS * unit + ink.shape[0] / 2))
        bottom, top = ZONES.get(symbol, _ASCENDER)
        target = (top - bottom) * unit * jitter
        least = _MIN_SOURCE_SHARE * target
        glyph = self._bent(self.bank.pick(source, self.rng, self.writer, min_height=least))
        scale = target / glyph.shape[0]
        ink = self._ink(glyph, scale)
        return Box(ink, round(ink.shape[0] + bottom * unit))

    def _bent(self, glyph: np.ndarray) -> np.ndarray:
        """The glyph (ink on white) turned, stretched and wobbled a little, cropped to its ink again."""
        config = self.config
        if not (config.glyph_rotation or config.glyph_stretch or config.elastic):
            return glyph
        size = max(glyph.shape)
        pad = round(0.2 * size) + 2
        canvas = cv2.copyMakeBorder(glyph, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
        height, width = canvas.shape
        angle = np.deg2rad(self.rng.uniform(-config.glyph_rotation, config.glyph_rotation))
        stretch = 1.0 + self.rng.uniform(-config.glyph_stretch, config.glyph_stretch)
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        linear = turn @ np.diag([stretch, 1.0])
        centre = np.array([width / 2, height / 2])
        affine = np.hstack([linear, (centre - linear @ centre)[:, None]]).astype(np.float32)
        canvas = cv2.warpAffine(canvas, affine, (width, height), flags=cv2.INTER_LINEAR, borderValue=255)
        if config.elastic:
            # a random shift on a coarse grid, smoothly interpolated: bends at the scale of a stroke's curve
            amplitude = config.elastic * size
            shift_x, shift_y = (cv2.resize(self.rng.uniform(-amplitude, amplitude, (4, 4)).astype(np.float32),
                                           (width, height), interpolation=cv2.INTER_CUBIC) for _ in range(2))
            grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32),
                                         np.arange(height, dtype=np.float32))
            canvas = cv2.remap(canvas, grid_x + shift_x, grid_y + shift_y, cv2.INTER_LINEAR, borderValue=255)
        box = ink_box(canvas)
        if box is None:  # a faint glyph bent away to nothing: keep the original
            return glyph
        top, bottom, left, right = box
        return np.ascontiguousarray(canvas[top:bottom, left:right])

    def _ink(self, glyph: np.ndarray, scale: float) -> np.ndarray:
        """The glyph's ink resized by `scale`, its strokes brought back to this formula's pen width."""
        height = max(1, round(glyph.shape[0] * scale))
        width = max(1, round(glyph.shape[1] * scale))
        coverage = (255.0 - glyph.astype(np.float32)) / 255.0
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        ink = cv2.resize(coverage, (width, height), interpolation=interpolation)
        # a shrunk thin stroke turns grey; a pen's ink is not: full strength, solid beyond the edges
        ink = np.clip(1.5 * ink / max(float(ink.max()), 1e-3), 0.0, 1.0)
        change = round((self.pen - _SOURCE_STROKE * scale) / 2)
        if change > 0:
            ink = cv2.dilate(cv2.copyMakeBorder(ink, change, change, change, change, cv2.BORDER_CONSTANT,
                                                value=0.0), _disc(change))
        elif change < 0:
            thinned = cv2.erode(ink, _disc(-change))
            # thinning must not erase a small symbol, nor leave it grey
            if thinned.max() > 0.5:
                ink = thinned / float(thinned.max())
        return np.clip(ink, 0.0, 1.0)

    def _word(self, letters: Sequence[str], unit: float) -> Box:
        parts, x = [], 0.0
        for letter in letters:
            box = self._glyph(letter, unit)
            parts.append((box, x, self.rng.normal(0, self.config.baseline_jitter / 2) * unit))
            x += box.width + self.rng.uniform(0.05, 0.2) * unit
        return combine(parts)

    # --- structures --------------------------------------------------------------------------------------

    def _scripts(self, base: Box, superscript: list[str] | None, subscript: list[str] | None, unit: float, *,
                 stacked: bool) -> Box:
        small = unit * float(self.rng.uniform(*self.config.script_scale))
        parts: list[tuple[Box, float, float]] = [(base, 0.0, 0.0)]
        if stacked:
            gap = 0.2 * unit
            if subscript is not None:
                limit = self._row(subscript, small)
                parts.append((limit, (base.width - limit.width) / 2, -(base.descent + gap + limit.ascent)))
            if superscript is not None:
                limit = self._row(superscript, small)
                parts.append((limit, (base.width - limit.width) / 2, base.ascent + gap + limit.descent))
            return combine(parts)
        x = base.width + self.rng.uniform(0.02, 0.15) * unit
        if superscript is not None:
            sup = self._row(superscript, small)
            up = max(0.75 * unit, base.ascent - 0.5 * sup.ascent) + self.rng.normal(0, 0.06) * unit
            parts.append((sup, x, up))
        if subscript is not None:
            sub = self._row(subscript, small)
            down = max(0.3 * unit, sub.ascent - 0.55 * unit) + self.rng.normal(0, 0.06) * unit
            parts.append((sub, x, -down))
        return combine(parts)

    def _fraction(self, numerator: list[str], denominator: list[str], unit: float) -> Box:
        size = unit * float(self.rng.uniform(0.8, 0.95))
        top, bottom = self._row(numerator, size), self._row(denominator, size)
        overhang = self.rng.uniform(0.05, 0.3) * unit
        width = max(top.width, bottom.width) + 2 * overhang
        bar = self._bar(width, unit)
        gap_up, gap_down = self.rng.uniform(0.15, 0.35, size=2) * unit
        axis = AXIS * unit
        return combine([
            (bar, 0.0, axis + bar.descent - bar.ink.shape[0] / 2),
            (top, (width - top.width) / 2 + self.rng.normal(0, 0.05) * unit, axis + gap_up + top.descent),
            (bottom, (width - bottom.width) / 2 + self.rng.normal(0, 0.05) * unit,
             axis - gap_down - bottom.ascent),
        ])

    def _bar(self, width: float, unit: float) -> Box:
        """A fraction bar: a handwritten minus stretched to `width` (its slope and wobble kept, flattened to at
        most a quarter x-height), its stroke brought to the pen's width."""
        glyph = self.bank.pick("-", self.rng, self.writer)
        scale_y = min(1.0, 0.25 * unit / max(glyph.shape[0], 1))
        coverage = (255.0 - glyph.astype(np.float32)) / 255.0
        ink = cv2.resize(coverage, (max(1, round(width)), max(1, round(glyph.shape[0] * scale_y))),
                         interpolation=cv2.INTER_LINEAR)
        thickness = (ink > 0.5).sum(axis=0)
        current = float(np.median(thickness[thickness > 0])) if (thickness > 0).any() else self.pen
        change = round((self.pen - current) / 2)
        if change > 0:
            ink = cv2.dilate(cv2.copyMakeBorder(ink, change, change, change, change, cv2.BORDER_CONSTANT,
                                                value=0.0), _disc(change))
        ink = np.clip(ink, 0.0, 1.0)
        return Box(ink, ink.shape[0])

    def _root(self, body_tokens: list[str], index_tokens: list[str] | None, unit: float) -> Box:
        body = self._row(body_tokens, unit)

        def jitter() -> float:  # a pen's wobble
            return float(self.rng.normal(0, 0.05)) * unit

        low, high = -body.descent - 0.15 * unit, body.ascent + self.rng.uniform(0.15, 0.35) * unit
        hook = 0.65 * unit
        right = hook + 0.15 * unit + body.width + self.rng.uniform(0.05, 0.3) * unit
        sign, left = self._figure([[
            (0.0, low + 0.45 * (high - low) + jitter()), (0.18 * unit, low + 0.52 * (high - low)),
            (0.38 * unit + jitter(), low), (hook + jitter(), high), (right, high + jitter())]])
        parts = [(sign, left, 0.0), (body, hook + 0.15 * unit, 0.0)]
        if index_tokens:
            index = self._row(index_tokens, unit * 0.55)
            parts.append((index, 0.3 * unit - index.width, low + 0.55 * (high - low) + index.descent))
        return combine(parts)

    def _accent(self, token: str, body_tokens: list[str], unit: float) -> Box:
        """A bar or an arrow drawn over its argument."""
        body = self._row(body_tokens, unit)
        height = body.ascent + self.rng.uniform(0.15, 0.35) * unit
        tilt = float(self.rng.normal(0, 0.04)) * unit
        line = [(0.0, height), (body.width, height + tilt)]
        strokes = [line]
        if token in ARROWS:
            head = 0.25 * unit
            strokes.append([(body.width - head, height + tilt + 0.7 * head), (body.width, height + tilt),
                            (body.width - head, height + tilt - 0.7 * head)])
        figure, left = self._figure(strokes)
        return combine([(body, 0.0, 0.0), (figure, left, 0.0)])

    def _drawn(self, token: str, unit: float) -> Box:
        """A symbol drawn as pen strokes (x-heights: x to the right, height above the baseline)."""
        size = unit * (1.0 + self.rng.uniform(-self.config.size_jitter, self.config.size_jitter))
        wobble = self.rng.normal(0, (0.03, 0.02), size=(sum(map(len, DRAWN[token])), 2)) * unit
        points = iter(wobble)
        strokes = [[(x * size + dx, y * size + dy) for (x, y), (dx, dy) in zip(line, points)]
                   for line in DRAWN[token]]
        figure, left = self._figure(strokes)
        return combine([(figure, left, 0.0)])

    def _colon(self, unit: float) -> Box:
        dot = self._glyph(".", unit)
        gap = self.rng.uniform(0.4, 0.6) * unit
        return combine([(dot, 0.0, 0.0), (dot, self.rng.normal(0, 0.05) * unit, gap + dot.ascent)])

    def _figure(self, strokes: list[list[tuple[float, float]]]) -> tuple[Box, float]:
        """Pen strokes given in (x, height above the baseline) as a Box, and the x where its left edge lies."""
        xs = [x for line in strokes for x, _ in line]
        ys = [y for line in strokes for _, y in line]
        left, top = min(xs) - self.pen, max(ys) + self.pen
        width, height = max(xs) + self.pen - left, top - (min(ys) - self.pen)
        canvas = np.zeros((max(1, round(height)), max(1, round(width))), np.uint8)
        shift = 4  # cv2 draws at 1/16 px with this
        lines = [np.array([[round((x - left) * 16), round((top - y) * 16)] for x, y in line], np.int32)
                 for line in strokes]
        # antialiased cv2 lines come out about a pixel bolder than their thickness
        cv2.polylines(canvas, lines, False, 255, thickness=max(1, round(self.pen - 1)), lineType=cv2.LINE_AA,
                      shift=shift)
        return Box(canvas.astype(np.float32) / 255.0, round(top)), left


def _slanted(ink: np.ndarray, shear: float) -> np.ndarray:
    """Ink coverage sheared horizontally about its middle row (positive leans right), widened to fit."""
    height, width = ink.shape
    grow = round(abs(shear) * height / 2)
    if not grow:
        return ink
    affine = np.float32([[1, -shear, grow + shear * height / 2], [0, 1, 0]])
    return cv2.warpAffine(ink, affine, (width + 2 * grow, height), flags=cv2.INTER_LINEAR, borderValue=0.0)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def write_formula(tokens: Sequence[str], bank: GlyphBank, rng: np.random.Generator,
                  config: HandwritingConfig | None = None) -> np.ndarray:
    """`tokens` (normalised LaTeX, already in `handwritten_tokens` form) written by hand from `bank`; raises
    Unsupported for what it cannot write."""
    missing = sorted({symbol for symbol in symbols_needed(tokens) if symbol not in bank})
    if missing:
        raise Unsupported(f"no handwritten glyph for {' '.join(missing)}")
    return Writer(bank, config or HandwritingConfig(), rng).write(tokens)
