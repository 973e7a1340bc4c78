"""New training formulas in the style of a small labelled set: its formulas cut at top-level relations and
commas, and the pieces joined again in new combinations.

The im2latex crops (arXiv papers) are long and dense, unlike the short K-12 corpus, and only 897 of them are
labelled: a model that sees only those learns them by heart. Recombined formulas keep the set's vocabulary,
habits and lengths (each new formula is about as long as a drawn original) while the sequences are new. The
pieces are cut where braces are balanced and outside environments, so every result is well formed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from susik.latex import detokenize, normalize_tokens, tokenize

# Where a formula is cut: relations and commas at brace depth 0. The separator is kept for the joins.
SEPARATORS = frozenset({
    "=", "<", ">", ",", ";", r"\leq", r"\geq", r"\neq", r"\approx", r"\equiv", r"\sim", r"\simeq", r"\cong",
    r"\rightarrow", r"\Rightarrow", r"\leftarrow", r"\mapsto", r"\propto", r"\in", r"\subset", r"\subseteq",
})


@dataclass(frozen=True)
class Cut:
    """One labelled formula cut into pieces, with the separators that stood between them."""

    pieces: tuple[tuple[str, ...], ...]
    separators: tuple[str, ...]  # len(pieces) - 1

    @property
    def length(self) -> int:
        return sum(len(piece) for piece in self.pieces) + len(self.separators)


def cut_formula(tokens: list[str]) -> Cut | None:
    """Pieces between top-level separators; None for a formula with an environment or unbalanced braces
    (its pieces could not stand alone)."""
    if any(token.startswith((r"\begin", r"\end")) for token in tokens):
        return None
    pieces: list[tuple[str, ...]] = []
    separators: list[str] = []
    depth, current = 0, []
    for token in tokens:
        depth += (token == "{") - (token == "}")
        if depth < 0:
            return None
        if depth == 0 and token in SEPARATORS:
            if current:
                pieces.append(tuple(current))
                separators.append(token)
            current = []
            continue
        current.append(token)
    if depth != 0:
        return None
    if current:
        pieces.append(tuple(current))
    elif separators:
        separators.pop()  # a trailing separator (`a=b,`): the join adds its own
    return Cut(tuple(pieces), tuple(separators)) if pieces else None


class Recombiner:
    """Draws new formulas from the pieces of `formulas` (LaTeX strings of any dialect)."""

    def __init__(self, formulas: Iterable[str]) -> None:
        cuts = [cut for latex in formulas if (cut := cut_formula(normalize_tokens(tokenize(latex)))) is not None]
        self.pieces = [piece for cut in cuts for piece in cut.pieces]
        self.separators = [separator for cut in cuts for separator in cut.separators] or ["="]
        self.lengths = [cut.length for cut in cuts]
        if len(self.pieces) < 2:
            raise ValueError("recombining needs at least two pieces from well-formed formulas")

    def sample(self, rng: np.random.Generator) -> str:
        """One new formula: pieces joined by separators until it is about as long as a drawn original."""
        target = int(self.lengths[int(rng.integers(len(self.lengths)))])
        tokens = list(self.pieces[int(rng.integers(len(self.pieces)))])
        while len(tokens) < target:
            tokens.append(self.separators[int(rng.integers(len(self.separators)))])
            tokens.extend(self.pieces[int(rng.integers(len(self.pieces)))])
        return detokenize(tokens)

    def batch(self, count: int, rng: np.random.Generator) -> list[str]:
        return [self.sample(rng) for _ in range(count)]
