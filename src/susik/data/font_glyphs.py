"""Handwriting fonts as extra writers in a glyph bank.

A recognizer reads formulas composed from CROHME train writers' glyphs far better than the same kind of formula
composed from unseen writers' glyphs (82% against 61% exact match for the bundled model, 400 of each), and real
CROHME 2013 handwriting worse still: it has learnt the train writers' drawings more than the shapes. Debian ships
free fonts drawn from people's handwriting (`fonts-dkg-handwriting`, `fonts-breip`, `fonts-nanum-extra`...); each
is one more hand. Their glyphs are rendered, thinned to centre lines and redrawn with an even pen, so that they
look like the tablet ink of the bank's other glyphs; a font that lacks a symbol gives none (its formulas take
that symbol from the bank's other writers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from susik.data.crop_augment import pen_strokes
from susik.data.crops import ink_box
from susik.data.glyphs import GlyphBank

FONT_ROOT = Path("/usr/share/fonts")
# Fonts with lower case letters that look written by a hand (checked by eye). Caps-only hands (`fonts-bwht`,
# Humor Sans) and outline-drawn ones (femkeklaver) are left out: they would teach wrong shapes.
HANDWRITING_FONTS = (
    "Breip.ttf", "breipfont.ttf",                                  # fonts-breip
    "dkg.ttf", "dkgIt.ttf", "dkgBd.ttf",                           # fonts-dkg-handwriting
    "KleeOne-Regular.ttf", "KleeOne-SemiBold.ttf",                 # fonts-klee
    "NanumBarunpenR.ttf", "NanumBrush.ttf", "NanumPen.ttf",        # fonts-nanum-extra
    "Rufscript010.ttf",                                            # fonts-rufscript
    "Delphine.ttf", "SteveHand.ttf",                               # fonts-sjfonts
    "ComicNeue-Regular.otf", "ComicNeue-Italic.otf",               # fonts-comic-neue
)
HANDWRITING_FONT_PACKAGES = ("fonts-breip", "fonts-dkg-handwriting", "fonts-klee", "fonts-nanum-extra",
                             "fonts-rufscript", "fonts-sjfonts", "fonts-comic-neue")

_GREEK = {r"\alpha": "α", r"\beta": "β", r"\gamma": "γ", r"\delta": "δ", r"\theta": "θ", r"\lambda": "λ",
          r"\mu": "μ", r"\pi": "π", r"\sigma": "σ", r"\phi": "φ", r"\Delta": "Δ", r"\infty": "∞"}
_OPERATORS = {r"\times": "×", r"\div": "÷", r"\pm": "±", r"\leq": "≤", r"\geq": "≥", r"\neq": "≠",
              r"\sum": "∑", r"\int": "∫", r"\rightarrow": "→", r"\in": "∈", r"\exists": "∃", r"\forall": "∀",
              r"\{": "{", r"\}": "}", r"\prime": "′", r"\cdot": "·"}
# A bank symbol -> the character a font draws it with.
SYMBOL_CHARACTERS: dict[str, str] = {
    **{c: c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"},
    **{c: c for c in "+-=()[]<>,./!|'"},
    **_GREEK,
    **_OPERATORS,
}
_EM = 64  # px: a font's glyphs are rendered at this size, about the size of the bank's CROHME glyphs
_NOT_A_CHARACTER = "\U0010fffd"  # private use: every font draws its missing-glyph box for it


def installed_handwriting_fonts(root: Path | None = None) -> list[Path]:
    """The `HANDWRITING_FONTS` found under `root` (default `FONT_ROOT`), sorted by name (empty where none is
    installed)."""
    root = FONT_ROOT if root is None else root
    wanted = set(HANDWRITING_FONTS)
    return sorted((path for path in root.rglob("*") if path.name in wanted), key=lambda path: path.name)


def _mask(font: ImageFont.FreeTypeFont, text: str) -> np.ndarray:
    """The text's coverage (0-255) on a canvas with room around it."""
    canvas = Image.new("L", (4 * _EM, 3 * _EM), 0)
    ImageDraw.Draw(canvas).text((_EM, _EM // 2), text, font=font, fill=255)
    return np.asarray(canvas)


def font_glyph(font: ImageFont.FreeTypeFont, character: str,
               missing: np.ndarray | None = None) -> np.ndarray | None:
    """The character as the bank keeps glyphs (uint8, dark ink on white, cut to its ink), redrawn as pen
    strokes; None where the font has no such glyph (`missing`: its drawing of a character it lacks)."""
    coverage = _mask(font, character)
    if missing is not None and np.array_equal(coverage, missing):
        return None
    box = ink_box(255 - coverage)
    if box is None:
        return None
    top, bottom, left, right = box
    alpha = coverage[top:bottom, left:right].astype(np.float32) / 255.0
    ink = pen_strokes(alpha, height=max(3, bottom - top), pen_px=3) if min(alpha.shape) > 4 else alpha
    glyph = np.clip(255.0 * (1.0 - ink), 0, 255).astype(np.uint8)
    inked = ink_box(glyph)
    if inked is None:
        return None
    top, bottom, left, right = inked
    return np.ascontiguousarray(glyph[top:bottom, left:right])


def add_font_writers(bank: GlyphBank, fonts: Sequence[Path],
                     symbols: Iterable[str] | None = None) -> dict[str, int]:
    """Adds each font's glyphs of `symbols` (default: every symbol of `SYMBOL_CHARACTERS`) to `bank` as one more
    writer, numbered -1, -2, ... below any font writer it holds (its own writers are source formulas, from 0).

    -> glyphs added per font name. A font file that cannot be read raises `OSError` naming it."""
    wanted = [s for s in (symbols if symbols is not None else SYMBOL_CHARACTERS) if s in SYMBOL_CHARACTERS]
    added: dict[str, int] = {}
    first = len(bank.font_writer_ids) + 1
    for index, path in enumerate(fonts, start=first):
        try:
            font = ImageFont.truetype(str(path), _EM)
        except OSError as error:
            raise OSError(f"{path}: not a font PIL can read ({error})") from error
        missing = _mask(font, _NOT_A_CHARACTER)
        writer = -index
        count = 0
        for symbol in wanted:
            glyph = font_glyph(font, SYMBOL_CHARACTERS[symbol], missing)
            if glyph is not None:
                bank.add(symbol, glyph, writer)
                count += 1
        added[path.name] = count
    return added
