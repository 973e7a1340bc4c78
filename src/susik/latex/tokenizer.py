"""One tokenizer for both label dialects: raw LaTeX (CROHME, the corpus) and space-separated tokens (im2latex,
HME100K).

Tokens: a control word (`\\frac`), a control symbol (`\\{`, `\\,`, `\\\\`), `\\begin{env}` / `\\end{env}` as one
token, and otherwise one character (letters and digits are split, so `14` is `1 4`). Whitespace only separates
tokens, except inside text-mode arguments (`\\text{if x}`) of raw LaTeX, where a space is a `\\ ` token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

TEXT_COMMANDS = frozenset({r"\text", r"\mbox", r"\textrm", r"\textbf", r"\textit", r"\hbox", r"\textnormal"})
TEXT_SPACE = "\\ "

_ENV = re.compile(r"\\(begin|end)\s*\{\s*([A-Za-z]+\*?)\s*\}")
_CONTROL_WORD = re.compile(r"\\[A-Za-z]+")
_ADJACENT_ALNUM = re.compile(r"[A-Za-z0-9]{2,}")


def is_spaced_dialect(latex: str) -> bool:
    """True when whitespace is only a separator: no two letters/digits touch outside command names."""
    if " " not in latex.strip():
        return False
    without_commands = _CONTROL_WORD.sub(" ", _ENV.sub(" ", latex))
    return _ADJACENT_ALNUM.search(without_commands) is None


def tokenize(latex: str) -> list[str]:
    """Split LaTeX of either dialect into tokens."""
    spaced = is_spaced_dialect(latex)
    tokens: list[str] = []
    text_depth: list[int] = []  # brace depths at which a text-mode argument was opened
    depth = 0
    pending_text_arg = False
    i, n = 0, len(latex)
    while i < n:
        char = latex[i]
        if char.isspace():
            j = i
            while j < n and latex[j].isspace():
                j += 1
            in_text = bool(text_depth) and depth == text_depth[-1]
            if in_text and not spaced and tokens and tokens[-1] not in ("{", TEXT_SPACE):
                if j < n and latex[j] != "}":
                    tokens.append(TEXT_SPACE)
            i = j
            continue
        if char == "\\":
            env = _ENV.match(latex, i)
            if env:
                tokens.append(f"\\{env.group(1)}{{{env.group(2)}}}")
                i = env.end()
                continue
            word = _CONTROL_WORD.match(latex, i)
            if word:
                tokens.append(word.group())
                i = word.end()
                pending_text_arg = word.group() in TEXT_COMMANDS
                continue
            if i + 1 < n:
                symbol = latex[i : i + 2]
                tokens.append("\\ " if symbol[1].isspace() else symbol)
                i += 2
            else:
                tokens.append("\\")
                i += 1
            continue
        if char == "{":
            depth += 1
            if pending_text_arg:
                text_depth.append(depth)
        elif char == "}":
            if text_depth and depth == text_depth[-1]:
                text_depth.pop()
                if tokens and tokens[-1] == TEXT_SPACE:
                    tokens.pop()
            depth -= 1
        pending_text_arg = False
        tokens.append(char)
        i += 1
    return tokens


def group_end(tokens: Sequence[str], at: int, opening: str = "{", closing: str = "}") -> int | None:
    """The index of the `closing` token that matches the `opening` one at `at`; None when it is unbalanced."""
    depth = 0
    for index in range(at, len(tokens)):
        depth += (tokens[index] == opening) - (tokens[index] == closing)
        if depth == 0:
            return index
    return None


def detokenize(tokens: list[str]) -> str:
    """Join tokens into compact LaTeX that tokenizes back to the same tokens."""
    latex = _join(tokens, text_space=" ")
    if TEXT_SPACE in tokens and is_spaced_dialect(latex):
        # `\text{a b}` alone would read as the spaced dialect; a control space is unambiguous.
        latex = _join(tokens, text_space=TEXT_SPACE)
    return latex


def _join(tokens: list[str], text_space: str) -> str:
    out: list[str] = []
    text_depth: list[int] = []
    depth = 0
    pending_text_arg = False
    for token in tokens:
        in_text = bool(text_depth) and depth == text_depth[-1]
        if token == TEXT_SPACE and in_text:
            out.append(text_space)
            continue
        previous = out[-1] if out else ""
        # A control word swallows following letters: `\alpha x` needs its space.
        if _CONTROL_WORD.fullmatch(previous) and (token[:1].isalpha() or token == TEXT_SPACE):
            out.append(" ")
        out.append(token)
        if token == "{":
            depth += 1
            if pending_text_arg:
                text_depth.append(depth)
        elif token == "}":
            if text_depth and depth == text_depth[-1]:
                text_depth.pop()
            depth -= 1
        pending_text_arg = token in TEXT_COMMANDS
    return "".join(out)
