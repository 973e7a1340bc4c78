"""A bank of handwritten symbols cut from labelled handwritten formulas, for composing new ones.

CROHME's 8.8k training expressions are too few formulas: a recognizer reads 99% of them and a fifth of unseen
ones. Their symbols, though, come from hundreds of writers. A formula written on one line (no fraction, root
or big operator) shows its symbols left to right, so when its ink splits into exactly as many column groups as
its label has visible symbols, the groups are those symbols in order. Groups are the connected components
merged where one lies mostly above another in the same columns (`=`, `i`, `\\div`, `\\leq`, a `5`'s flag); a
label whose count does not match is skipped rather than guessed. Fractions whose parts are one-line are read
the same way above and below their bar (a flat stroke with ink over and under it). Big operators (`\\sum`,
`\\int`) come from any formula holding exactly one: they are its tallest stroke by a clear margin. Per-class
outlier tests on the glyphs' aspect ratio and shape drop most of the cuts that matched by count but not by
symbol.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from susik.data.crops import plain_handwritten_label
from susik.latex import group_end, normalize

# Labels with these are not written on one line: their ink does not read left to right.
NOT_LINEAR = frozenset({
    r"\frac", r"\sqrt", r"\sum", r"\int", r"\prod", r"\lim", r"\overline", r"\underline", r"\hat", r"\vec",
    r"\bar", r"\dot", r"\tilde", r"\begin", r"\end", r"\binom", r"\mathrm", r"\text", r"\operatorname",
})
# Tokens that leave no ink of their own.
INVISIBLE = frozenset({"{", "}", "^", "_", r"\left", r"\right", r"\limits", r"\,", r"\;", r"\!", r"\quad", "~"})
# Function names are written as their letters.
SPELLED = {r"\sin": "sin", r"\cos": "cos", r"\tan": "tan", r"\log": "log", r"\ln": "ln", r"\exp": "exp",
           r"\min": "min", r"\max": "max", r"\lim": "lim", r"\sec": "sec", r"\cot": "cot", r"\csc": "csc"}
# Written as three separate dots.
DOTS = {r"\ldots": ".", r"\cdots": r"\cdot"}

_INK_THRESHOLD = 200
_MIN_COMPONENT_AREA = 3  # pixels: specks of the rendering, not strokes
_STACKED = 0.5  # a component shares more than this share of the narrower one's columns: the same symbol
_ASPECT_MAD = 3.0  # outliers: log aspect further than this many median absolute deviations from the class's
_SHAPE_MAD = 2.5  # outliers: likeness to the class's mean shape this many deviations below the median
_SHAPE_SIDE = 20  # px: glyphs are compared as shapes at this size
BIG_OPERATORS = frozenset({r"\sum", r"\int"})
_TALLEST_MARGIN = 0.8  # a big operator is cut only when every other stroke is at most this share of its size
_INSIDE = 0.7  # a stroke with this share of its box in the operator's box belongs to it (a sigma's top bar)
_BAR_ASPECT = 2.5  # a fraction bar is at least this many times wider than tall


def visible_symbols(tokens: Sequence[str]) -> list[str] | None:
    """The symbols a one-line formula shows, left to right (function names as letters, `\\ldots` as three
    dots); None when the label is not a one-line formula."""
    if any(token in NOT_LINEAR for token in tokens):
        return None
    symbols: list[str] = []
    for token in tokens:
        if token in INVISIBLE:
            continue
        if token in SPELLED:
            symbols.extend(SPELLED[token])
        elif token in DOTS:
            symbols.extend([DOTS[token]] * 3)
        else:
            symbols.append(token)
    return symbols


def _components(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Connected ink components: the label image, cv2's stats rows and the ids of those big enough to be
    strokes (not specks of the rendering)."""
    ink = (gray < _INK_THRESHOLD).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    return labels, stats, [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= _MIN_COMPONENT_AREA]


def column_groups(gray: np.ndarray) -> list[np.ndarray]:
    """Masks of the ink's symbols on a one-line canvas, left to right: connected components, merged while one
    shares most of the other's columns."""
    labels, stats, ids = _components(gray)
    parts = sorted((int(stats[i, cv2.CC_STAT_LEFT]), i) for i in ids)
    groups: list[tuple[int, int, list[int]]] = []  # left, right (exclusive), component ids
    for left, index in parts:
        right = left + int(stats[index, cv2.CC_STAT_WIDTH])
        if groups:
            g_left, g_right, members = groups[-1]
            overlap = min(g_right, right) - max(g_left, left)
            if overlap > _STACKED * min(right - left, g_right - g_left):
                groups[-1] = (min(g_left, left), max(g_right, right), [*members, index])
                continue
        groups.append((left, right, [index]))
    return [np.isin(labels, members) for _, _, members in groups]


def split_fractions(tokens: Sequence[str]) -> tuple[list[str], list[tuple[list[str], list[str]]]] | None:
    """A formula's top-level fractions taken out: the tokens around them (`\\frac` left as a marker) and
    each fraction's numerator and denominator tokens; None when its arguments are not two braced groups."""
    outer: list[str] = []
    fractions: list[tuple[list[str], list[str]]] = []
    at = 0
    while at < len(tokens):
        if tokens[at] != r"\frac":
            outer.append(tokens[at])
            at += 1
            continue
        parts = []
        at += 1
        for _ in range(2):
            end = group_end(tokens, at) if at < len(tokens) and tokens[at] == "{" else None
            if end is None:
                return None
            parts.append(list(tokens[at + 1 : end]))
            at = end + 1
        outer.append(r"\frac")
        fractions.append((parts[0], parts[1]))
    return outer, fractions


def fraction_cuts(gray: np.ndarray, tokens: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """(symbol, mask) of every symbol of a one-line formula with fractions of one-line parts; empty when the
    ink does not match the label (bars, groups above or below a bar, or groups between them)."""
    split = split_fractions(tokens)
    if split is None:
        return []
    outer, fractions = split
    segments, segment = [], []  # the outer tokens between fractions
    for token in outer:
        if token == r"\frac":
            segments.append(segment)
            segment = []
        else:
            segment.append(token)
    segments.append(segment)
    outer_symbols = [visible_symbols(part) for part in segments]
    if any(symbols is None for symbols in outer_symbols):
        return []
    labels, stats, parts = _components(gray)
    boxes = {i: tuple(int(v) for v in stats[i, :4]) for i in parts}

    def over(i: int, bar: int) -> bool:
        x, y, w, h = boxes[i]
        bx, by, bw, _ = boxes[bar]
        return bx <= x + w / 2 <= bx + bw and y + h <= by + 1

    def under(i: int, bar: int) -> bool:
        x, y, w, _ = boxes[i]
        bx, by, bw, bh = boxes[bar]
        return bx <= x + w / 2 <= bx + bw and y >= by + bh - 1

    def is_bar(i: int) -> bool:  # flat, with ink over and under it, none of it wider (a minus under a bar)
        parted = [j for j in parts if over(j, i) or under(j, i)]
        return (boxes[i][2] >= _BAR_ASPECT * boxes[i][3] and any(over(j, i) for j in parted)
                and any(under(j, i) for j in parted) and all(boxes[j][2] < boxes[i][2] for j in parted))

    def groups_of(members: list[int]) -> list[np.ndarray]:  # column groups of these components alone
        return column_groups(np.where(np.isin(labels, members), gray, 255)) if members else []

    bars = sorted(filter(is_bar, parts), key=lambda i: boxes[i][0])
    if len(bars) != len(fractions):
        return []
    cuts: list[tuple[str, np.ndarray]] = []
    taken = set(bars)
    for bar, (numerator, denominator) in zip(bars, fractions, strict=True):
        for members, row in (([j for j in parts if j not in taken and over(j, bar)], numerator),
                             ([j for j in parts if j not in taken and under(j, bar)], denominator)):
            symbols = visible_symbols(row)
            masks = groups_of(members)
            if not symbols or len(masks) != len(symbols):
                return []
            cuts.extend(zip(symbols, masks, strict=True))
            taken.update(members)
    rest = [j for j in parts if j not in taken]
    masks = groups_of(rest)
    if len(masks) != sum(len(symbols) for symbols in outer_symbols):
        return []
    rights = [int(np.flatnonzero(mask.any(axis=0))[-1]) for mask in masks]
    before = 0
    for bar, symbols in zip(bars, outer_symbols, strict=False):  # groups left of a bar: those before it
        before += len(symbols)
        if sum(right < boxes[bar][0] for right in rights) != before:
            return []
    cuts.extend(zip((symbol for symbols in outer_symbols for symbol in symbols), masks, strict=True))
    return cuts


def big_operator_mask(gray: np.ndarray) -> np.ndarray | None:
    """The mask of the big operator on a canvas holding one: the tallest stroke, with the strokes drawn inside
    its box; None when another stroke is nearly as tall (a bracket, a fraction's tall part) — ambiguous."""
    labels, stats, parts = _components(gray)
    if len(parts) < 2:
        return None
    heights = {i: int(stats[i, cv2.CC_STAT_HEIGHT]) for i in parts}
    tallest = max(parts, key=heights.__getitem__)
    if max(heights[i] for i in parts if i != tallest) > _TALLEST_MARGIN * heights[tallest]:
        return None
    left, top, width, height = (int(v) for v in stats[tallest, :4])
    members = [tallest]
    for i in parts:
        x, y, w, h = (int(v) for v in stats[i, :4])
        inside_w = max(0, min(x + w, left + width) - max(x, left))
        inside_h = max(0, min(y + h, top + height) - max(y, top))
        if i != tallest and inside_w * inside_h >= _INSIDE * w * h:
            members.append(i)
    return np.isin(labels, members)


def cut_glyph(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The masked symbol's ink on white, cropped to its box (other symbols' strokes inside the box blanked)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    glyph = np.where(mask, gray, 255)[top:bottom, left:right]
    return np.ascontiguousarray(glyph, dtype=np.uint8)


@dataclass
class GlyphBank:
    """Handwritten symbol images by LaTeX symbol; `writers[i]` says which source formula glyph i came from, so
    a composed formula can keep one writer's hand where that writer wrote the symbol."""

    glyphs: dict[str, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    writers: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    formulas_used: int = 0
    formulas_seen: int = 0
    _writer_ids: list[int] | None = field(default=None, init=False, repr=False)  # cached; reset on change

    def add(self, symbol: str, glyph: np.ndarray, writer: int) -> None:
        self.glyphs[symbol].append(glyph)
        self.writers[symbol].append(writer)
        self._writer_ids = None

    @property
    def writer_ids(self) -> list[int]:
        """The source formulas that gave glyphs (each one writer's hand), numbered from 0."""
        return [who for who in self._all_writers() if who >= 0]

    @property
    def font_writer_ids(self) -> list[int]:
        """The handwriting fonts that gave glyphs (`susik.data.font_glyphs`), numbered -1, -2, ..."""
        return [who for who in self._all_writers() if who < 0]

    def _all_writers(self) -> list[int]:
        if self._writer_ids is None:
            self._writer_ids = sorted({who for whos in self.writers.values() for who in whos})
        return self._writer_ids

    def __contains__(self, symbol: str) -> bool:
        return bool(self.glyphs.get(symbol))

    @property
    def symbols(self) -> list[str]:
        return sorted(symbol for symbol, items in self.glyphs.items() if items)

    def count(self, symbol: str) -> int:
        return len(self.glyphs.get(symbol, ()))

    def pick(self, symbol: str, rng: np.random.Generator, writer: int | None = None,
             min_height: float = 0.0) -> np.ndarray:
        """One glyph of `symbol`: the given writer's when they wrote it, else any writer's. Glyphs shorter than
        `min_height` px are avoided while others exist: enlarged far, their strokes blur into blobs."""
        items = self.glyphs[symbol]
        if writer is not None:
            own = [i for i, who in enumerate(self.writers[symbol]) if who == writer]
            if own:
                return items[own[int(rng.integers(len(own)))]]
        for _ in range(8):
            glyph = items[int(rng.integers(len(items)))]
            if glyph.shape[0] >= min_height:
                return glyph
        return glyph

    def save(self, path: Path) -> Path:
        """Writes the bank to one compressed .npz (glyph pixels concatenated, with their shapes, symbols and
        writers), atomically: a kill mid-write leaves no half file under `path`."""
        order = [(symbol, i) for symbol in self.symbols for i in range(self.count(symbol))]
        glyphs = [self.glyphs[symbol][i] for symbol, i in order]
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")  # np.savez adds .npz to other names
        np.savez_compressed(
            partial,
            pixels=np.concatenate([g.ravel() for g in glyphs]) if glyphs else np.zeros(0, np.uint8),
            shapes=np.array([g.shape for g in glyphs], np.int32).reshape(-1, 2),
            symbols=np.array([symbol for symbol, _ in order], dtype=str),
            writers=np.array([self.writers[symbol][i] for symbol, i in order], np.int64),
            formulas=np.array([self.formulas_used, self.formulas_seen], np.int64),
        )
        partial.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> GlyphBank:
        """A bank written by `save`."""
        with np.load(path, allow_pickle=False) as saved:
            pixels, shapes = saved["pixels"], saved["shapes"]
            symbols, writers = saved["symbols"].tolist(), saved["writers"].tolist()
            used, seen = (int(v) for v in saved["formulas"])
        if int(np.prod(shapes, axis=1).sum()) != len(pixels):
            raise ValueError(f"{path}: glyph shapes do not add up to its pixels; not a bank saved by susik")
        bank = cls(formulas_used=used, formulas_seen=seen)
        start = 0
        for symbol, writer, (height, width) in zip(symbols, writers, shapes.tolist(), strict=True):
            bank.add(symbol, pixels[start : start + height * width].reshape(height, width).copy(), writer)
            start += height * width
        return bank

    def drop_outliers(self, min_count: int = 8) -> int:
        """Drops glyphs whose aspect ratio is far from their class's (a cut that matched by count, not by
        symbol); classes with fewer than `min_count` glyphs are kept whole. Returns how many were dropped."""
        dropped, self._writer_ids = 0, None
        for symbol in list(self.glyphs):
            items = self.glyphs[symbol]
            if len(items) < min_count:
                continue
            aspect = np.array([np.log(g.shape[1] / g.shape[0]) for g in items])
            median = float(np.median(aspect))
            spread = max(float(np.median(np.abs(aspect - median))), 0.1)
            keep = (np.abs(aspect - median) <= _ASPECT_MAD * spread) & _typical_shapes(items)
            dropped += int((~keep).sum())
            self.glyphs[symbol] = [g for g, k in zip(items, keep, strict=True) if k]
            self.writers[symbol] = [w for w, k in zip(self.writers[symbol], keep, strict=True) if k]
        return dropped


def _typical_shapes(glyphs: Sequence[np.ndarray]) -> np.ndarray:
    """Which glyphs look like their class: correlation of each one's blurred shape with the class's mean
    shape, against the class's spread. Catches cuts that matched by count and aspect but hold another
    symbol (an `i` that is an `n`)."""
    shapes = np.stack([cv2.GaussianBlur(cv2.resize(255.0 - g.astype(np.float32), (_SHAPE_SIDE, _SHAPE_SIDE),
                                                   interpolation=cv2.INTER_AREA), (5, 5), 1.5).ravel()
                       for g in glyphs])
    shapes -= shapes.mean(axis=1, keepdims=True)
    shapes /= np.linalg.norm(shapes, axis=1, keepdims=True) + 1e-6
    keep = np.ones(len(glyphs), bool)
    for _ in range(2):  # the second mean is made without the first pass's outliers
        mean = shapes[keep].mean(axis=0)
        likeness = shapes @ (mean / (np.linalg.norm(mean) + 1e-6))
        median = float(np.median(likeness[keep]))
        spread = max(float(np.median(np.abs(likeness[keep] - median))), 0.03)
        keep = likeness >= median - _SHAPE_MAD * spread
    return keep


def formula_cuts(gray: np.ndarray, tokens: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """(symbol, mask) of the symbols a labelled handwritten formula gives: all of a one-line formula's
    (fractions of one-line parts included), a lone big operator, or none when its ink does not match."""
    operators = [token for token in tokens if token in BIG_OPERATORS]
    if len(operators) == 1:
        mask = big_operator_mask(gray)
        return [] if mask is None else [(operators[0], mask)]
    if r"\frac" in tokens:
        return fraction_cuts(gray, tokens)
    symbols = visible_symbols(tokens)
    if not symbols:
        return []
    masks = column_groups(gray)
    return list(zip(symbols, masks, strict=True)) if len(masks) == len(symbols) else []


def build_glyph_bank(samples: Iterable[tuple[np.ndarray, str]]) -> GlyphBank:
    """A bank from (grayscale canvas, LaTeX label) pairs of handwritten formulas (see `formula_cuts`)."""
    bank = GlyphBank()
    for writer, (gray, latex) in enumerate(samples):
        bank.formulas_seen += 1
        cuts = formula_cuts(gray, normalize(plain_handwritten_label(latex)))
        bank.formulas_used += bool(cuts)
        for symbol, mask in cuts:
            bank.add(symbol, cut_glyph(gray, mask), writer)
    bank.drop_outliers()
    return bank
