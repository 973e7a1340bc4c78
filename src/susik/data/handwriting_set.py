"""A crop set of composed handwritten formulas: new formulas, written with real writers' glyphs.

Two kinds of formula are written: lines of a formula corpus (K-12 printed formulas, new to handwriting) and the
glyph set's own labels with their digits and letters swapped (CROHME's structures with symbols the labels never
paired). Either way the image is not a drawing the recognizer has seen, so it cannot be read by recalling a
memorised label; the written label is exactly what was drawn (`handwritten_tokens`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from susik.data.crops import WriteStats, numbered_image_path, plain_handwritten_label, write_png
from susik.data.glyphs import GlyphBank
from susik.data.handwriting import HandwritingConfig, Unsupported, handwritten_tokens, write_formula
from susik.data.manifest import CropSample, ManifestWriter
from susik.latex import detokenize, normalize

SOURCE = "crohme-glyphs"
LICENSE = "CC BY-NC-SA 3.0 (believed): glyphs cut from CROHME train; formulas from the given corpus"
FONT_LICENSE = "; some glyphs from Debian handwriting fonts (SIL OFL 1.1, or GPL with the font exception)"
_DIGITS = "0123456789"


class HandwrittenSetConfig(BaseModel):
    count: int = Field(1000, ge=1, description="crops to write")
    relabel_share: float = Field(0.5, ge=0, le=1, description="share of the glyph set's own labels, symbols "
                                                               "swapped; the rest from the corpus")
    swap: float = Field(0.6, ge=0, le=1, description="chance each digit, and each distinct letter, is swapped")
    max_tokens: int = Field(60, ge=1, description="longer formulas are skipped (a crop of one line)")
    attempts: int = Field(20, ge=1, description="formulas tried per crop before giving up")
    writing: HandwritingConfig = HandwritingConfig()


def swap_symbols(tokens: Sequence[str], rng: np.random.Generator, letters: Sequence[str],
                 chance: float) -> list[str]:
    """Digits replaced one by one, letters consistently (every `x` becomes the same new letter), each with
    `chance`; commands and structure untouched."""
    mapping: dict[str, str] = {}
    swapped = []
    for token in tokens:
        if len(token) == 1 and token in _DIGITS and rng.random() < chance:
            token = _DIGITS[int(rng.integers(10))]
        elif len(token) == 1 and token.isalpha() and letters:
            if token not in mapping:
                mapping[token] = (letters[int(rng.integers(len(letters)))] if rng.random() < chance else token)
            token = mapping[token]
        swapped.append(token)
    return swapped


def _token_lists(formulas: Sequence[str], max_tokens: int) -> list[list[str]]:
    lists = []
    for latex in formulas:
        try:
            tokens = handwritten_tokens(normalize(latex))
        except ValueError:
            continue  # a malformed corpus line is skipped, not fatal
        if 0 < len(tokens) <= max_tokens:
            lists.append(tokens)
    return lists


def formula_stream(corpus: Sequence[str], labels: Sequence[str], bank: GlyphBank, rng: np.random.Generator,
                   config: HandwrittenSetConfig, exclude: frozenset[str] = frozenset()) -> Iterator[list[str]]:
    """Endless candidate formulas (token lists): relabelled glyph-set labels with `relabel_share`, else corpus
    lines; those whose text is in `exclude` (e.g. a validation set's labels) are never given."""
    corpus_tokens = _token_lists(corpus, config.max_tokens)
    label_tokens = _token_lists([plain_handwritten_label(label) for label in labels], config.max_tokens)
    if not corpus_tokens and not label_tokens:
        raise ValueError("no usable formula: give a corpus or a glyph set with labels")
    letters = [symbol for symbol in bank.symbols if len(symbol) == 1 and symbol.islower()]
    while True:
        relabel = label_tokens and (not corpus_tokens or rng.random() < config.relabel_share)
        if relabel:
            tokens = swap_symbols(label_tokens[int(rng.integers(len(label_tokens)))], rng, letters, config.swap)
        else:
            tokens = corpus_tokens[int(rng.integers(len(corpus_tokens)))]
        if detokenize(tokens) not in exclude:
            yield tokens


def write_handwritten_set(bank: GlyphBank, corpus: Sequence[str], labels: Sequence[str], out: Path, *,
                          config: HandwrittenSetConfig, seed: int = 0, exclude: Sequence[str] = (),
                          on_item: Callable[[], None] | None = None) -> WriteStats:
    """`config.count` handwritten crops (PNG under OUT's folder/images) and their manifest at `out`, written
    atomically. Formulas the bank cannot write are skipped for others; a crop that still fails after
    `config.attempts` formulas is counted as failed."""
    rng = np.random.default_rng(seed)
    excluded = frozenset(detokenize(handwritten_tokens(normalize(plain_handwritten_label(text))))
                         for text in exclude)
    stream = formula_stream(corpus, labels, bank, rng, config, excluded)
    images = out.parent / "images"
    sample_license = LICENSE + (FONT_LICENSE if bank.font_writer_ids else "")
    stats = WriteStats()
    with ManifestWriter(out) as writer:
        for number in range(config.count):
            for _ in range(config.attempts):
                tokens = next(stream)
                try:
                    image = write_formula(tokens, bank, rng, config.writing)
                except Unsupported:
                    continue
                path = numbered_image_path(images, number)
                write_png(path, image)
                writer.write(CropSample(image=str(path.resolve()), latex=detokenize(tokens), source=SOURCE,
                                        license=sample_license, kind="handwritten"))
                stats.written += 1
                break
            else:
                stats.fail(f"crop {number}: none of {config.attempts} formulas could be written")
            if on_item:
                on_item()
    return stats
