"""The one source of truth for LaTeX tokens: tokenizer, normalisation, vocabulary."""

from susik.latex.normalize import normalize, normalize_latex, normalize_tokens
from susik.latex.tokenizer import detokenize, group_end, is_spaced_dialect, tokenize
from susik.latex.vocab import Vocabulary

__all__ = [
    "Vocabulary", "detokenize", "group_end", "is_spaced_dialect", "normalize", "normalize_latex",
    "normalize_tokens", "tokenize",
]
