"""Text read with a formula: answer-choice and problem labels ("C.", "(1)", "1)") at its start, a sentence's
comma or full stop at its end.

On a worksheet such a label is text beside the formula, not part of it (the annotation guide's rule). The
corpus carries it typeset, `\\text { C. } 0<x<1`; a reading of a region that took the problem number in with
the formula starts with it, typeset or bare: `\\text{1)}m=`, `(1)9v-2=46.42`, `2)6\\frac{...}`. A region that
reached past the formula's end reads the sentence's punctuation too: `A^c,`, `\\sqrt{x^2+6},`.
"""

from __future__ import annotations

import re

_LABEL = r"[A-Ea-e][.)]|\([A-Ea-e1-9][0-9]?\)|[1-9][0-9]?[.)]\.?|I{1,3}\)\.?|IV\)\.?"
_TYPESET = re.compile(rf"^\\text\s*\{{\s*(?P<label>{_LABEL})\s*\}}\s*(?P<rest>.*)$", re.DOTALL)
# "1) ..." closes a bracket nothing opened: never the start of a formula.
_BARE_CLOSING = re.compile(r"^(?P<label>[1-9][0-9]?\s*\))\s*(?P<rest>.*)$", re.DOTALL)
# "1. ..." is a label when what follows is no decimal's digits, repeating mark or ellipsis: `2.\frac{1}{a}`,
# `1.AC=BC`, but `1.5`, `1.\overline{3}` and `1.\ldots` stay formulas. (4 of 38k im2latex lines start so, all
# labels.)
_BARE_DOTTED = re.compile(
    r"^(?P<label>[1-9][0-9]?\s*\.)\s*(?P<rest>(?![0-9.,\s]|\\(?:overline|dot|ddot|dots|ldots|cdots)(?![A-Za-z])).+)$",
    re.DOTALL)
# "(1) ..." is a label unless what follows makes it a factor or an operand: (1)^2, (1)+(2), (1)=1.
_OPERAND_NEXT = r"[\^_'=+\-*/<>,.)!|:;]|\\(?:cdot|times|div|pm|mp|le|leq|leqslant|ge|geq|geqslant|ne|neq)(?![A-Za-z])"
# A formula, then one comma, full stop or semicolon: not after another stop (an ellipsis, `1,2,...`) or a
# backslash (the spaces `\,` and `\;`).
_SENTENCE_END = re.compile(r"^(?P<formula>.*[^\s.\\])\s*[,.;]\s*$", re.DOTALL)
_BARE_PARENS = re.compile(rf"^(?P<label>\(\s*(?:[1-9][0-9]?|[A-E])\s*\))\s*(?P<rest>(?!{_OPERAND_NEXT}).*)$",
                          re.DOTALL)


def split_typeset_label(latex: str) -> tuple[str | None, str]:
    """(label, formula) of a corpus line that starts with a typeset label and goes on, else (None, line)."""
    found = _TYPESET.match(latex.strip())
    if found is None or not found["rest"].strip():
        return None, latex
    return found["label"], found["rest"].strip()


def split_reading_label(latex: str) -> tuple[str | None, str]:
    """(label, formula) of a recognizer reading that starts with a label, typeset or bare, else (None, latex).

    The formula may be empty: the region held the label alone."""
    text = latex.strip()
    for pattern in (_TYPESET, _BARE_CLOSING, _BARE_PARENS, _BARE_DOTTED):
        found = pattern.match(text)
        if found is not None:
            return re.sub(r"\s+", "", found["label"]), found["rest"].strip()
    return None, latex


def strip_sentence_punctuation(latex: str) -> str:
    """A reading without the comma, full stop or semicolon of the sentence it ends in: `A^c,` -> `A^c`."""
    found = _SENTENCE_END.match(latex)
    return found["formula"] if found else latex
