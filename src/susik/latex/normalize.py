"""Normalisation: remove only differences that render identically (or differ only in spacing or delimiter size).

What it does, and why each is safe:
- spacing commands (`\\,` `\\;` `\\quad` `~` `\\hspace{..}` ...) in math mode are dropped: they move glyphs, never
  change them;
- `\\left` / `\\right` / `\\big`-family sizing is dropped, keeping the delimiter (`\\left.` disappears);
- `\\limits` and `\\displaystyle` are dropped, and `\\dfrac` / `\\dbinom` are `\\frac` / `\\binom`: susik renders and
  reads formulas in display style, where they are the same (in a script `\\dfrac` stays large: a difference
  of style, as a formula's size is);
- `\\text{...}` holding only digits and punctuation is unwrapped: they look the same in text and math;
- synonyms with one glyph are unified (`\\lt`→`<`, `\\le`→`\\leq`, `\\to`→`\\rightarrow`, `\\lbrace`→`\\{`,
  `\\not=`→`\\neq`, `\\operatorname{sin}`→`\\sin`, `^{\\prime}`→`'` ...);
- braces: a command's arguments are always braced (`\\frac 1x`→`\\frac{1}{x}`); a script is braced only when it
  holds more than one token (`x^{2}`→`x^2`); a free-standing group is unwrapped unless unwrapping could change
  the rendering: it holds a lone operator (`{-}`), a scope switch (`\\over`, `\\bf` ...), or it is the base of a
  script (`{ab}^2` differs from `ab^2`).
It never drops a glyph, reorders tokens or merges two symbols that look different (`\\leq` vs `\\leqslant`
stay apart).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from susik.latex.tokenizer import TEXT_COMMANDS, TEXT_SPACE, detokenize, tokenize

SPACING = frozenset({
    r"\,", r"\;", r"\:", r"\!", r"\ ", "~", r"\quad", r"\qquad", r"\thinspace", r"\enspace", r"\medspace",
    r"\thickspace", r"\negthinspace", r"\nonumber", r"\smallskip",
})
SPACING_WITH_ARGUMENT = frozenset({r"\hspace", r"\vspace", r"\hspace*", r"\phantom", r"\hphantom", r"\vphantom"})
DROPPED = frozenset({r"\limits", r"\displaystyle"})
SIZING = frozenset({
    r"\left", r"\right", r"\middle", r"\big", r"\Big", r"\bigg", r"\Bigg", r"\bigl", r"\bigr", r"\Bigl",
    r"\Bigr", r"\biggl", r"\biggr", r"\Biggl", r"\Biggr", r"\bigm", r"\Bigm", r"\biggm", r"\Biggm",
})
SYNONYMS = {
    r"\lt": "<", r"\gt": ">", r"\le": r"\leq", r"\ge": r"\geq", r"\ne": r"\neq", r"\to": r"\rightarrow",
    r"\gets": r"\leftarrow", r"\lbrace": r"\{", r"\rbrace": r"\}", r"\lbrack": "[", r"\rbrack": "]",
    r"\vert": "|", r"\Vert": r"\|", r"\land": r"\wedge", r"\lor": r"\vee", r"\lnot": r"\neg",
    r"\owns": r"\ni", r"\dag": r"\dagger", r"\sp": "^", r"\sb": "_", r"\bot": r"\perp",
    r"\implies": r"\Longrightarrow", r"\dfrac": r"\frac", r"\dbinom": r"\binom",
}
# Some CROHME labels lost the space after `\lt`/`\gt` (`R_g\ltq^{-1}`: 3 of the 671 CROHME 2013 labels); a
# glued word that is no real command is split back (`\ltq` -> `<` `q`).
_GLUED_RELATION = re.compile(r"\\(lt|gt)([A-Za-z]+)")
_REAL_LT_GT_WORDS = frozenset({
    r"\ltimes", r"\gtrsim", r"\gtrless", r"\gtreqless", r"\gtreqqless", r"\gtrapprox", r"\gtrdot",
})
ONE_ARGUMENT = frozenset({
    r"\sqrt", r"\mathbb", r"\mathrm", r"\mathbf", r"\mathcal", r"\mathit", r"\mathsf", r"\mathtt",
    r"\mathfrak", r"\mathscr", r"\boldsymbol", r"\bm", r"\vec", r"\overrightarrow", r"\overleftarrow",
    r"\overline", r"\underline", r"\hat", r"\bar", r"\dot", r"\ddot", r"\tilde", r"\widehat", r"\widetilde",
    r"\check", r"\breve", r"\acute", r"\grave", r"\operatorname", r"\textcircled", r"\overbrace",
    r"\underbrace", r"\overparen", r"\xrightarrow", r"\xleftarrow", *TEXT_COMMANDS,
})
TWO_ARGUMENTS = frozenset({
    r"\frac", r"\dfrac", r"\tfrac", r"\cfrac", r"\binom", r"\dbinom", r"\tbinom", r"\stackrel", r"\overset",
    r"\underset",
})
OPERATOR_NAMES = frozenset({
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "coth",
    "log", "ln", "lg", "exp", "lim", "max", "min", "sup", "inf", "det", "gcd", "deg", "dim", "ker", "arg", "hom",
    "Pr", "liminf", "limsup",
})
# Unwrapping a group around one of these changes its spacing (binary/relation atoms become ordinary).
OPERATORS = frozenset({
    "+", "-", "=", "<", ">", "*", "/", "|", ",", ";", ":", r"\times", r"\div", r"\pm", r"\mp", r"\cdot",
    r"\leq", r"\geq", r"\neq", r"\approx", r"\equiv", r"\sim", r"\in", r"\notin", r"\subset", r"\subseteq",
    r"\cup", r"\cap", r"\rightarrow", r"\Rightarrow", r"\leftarrow", r"\mid", r"\circ", r"\wedge", r"\vee",
})
# Typeset upright in text as in math, from the same font: `\text{2]}` is `2]`. (Letters are upright in text,
# italic in math; a text hyphen is shorter than a minus; `<` `>` in a text font are other glyphs.)
TEXT_AS_MATH = frozenset("0123456789()[],.;:!?/")
# Inside a group these act until its end; the braces are their scope.
SCOPED = frozenset({
    r"\over", r"\choose", r"\atop", r"\bf", r"\rm", r"\it", r"\cal", r"\sf", r"\tt", r"\textstyle",
    r"\scriptstyle", r"\scriptscriptstyle", r"\small", r"\tiny", r"\scriptsize", r"\footnotesize", r"\large",
    r"\Large", r"\boldmath", r"\mit",
})


@dataclass
class _Group:
    children: list[_Group | str]


def _parse(tokens: list[str]) -> list[_Group | str]:
    """Brace tree of a token list; an unmatched `}` stays a token, an unclosed `{` closes at the end."""
    stack: list[list[_Group | str]] = [[]]
    for token in tokens:
        if token == "{":
            group = _Group([])
            stack[-1].append(group)
            stack.append(group.children)
        elif token == "}" and len(stack) > 1:
            stack.pop()
        else:
            stack[-1].append(token)
    return stack[0]


def _flat(node: _Group | str | None) -> list[_Group | str]:
    if node is None:
        return []
    return node.children if isinstance(node, _Group) else [node]


class _Normalizer:
    def __init__(self, nodes: list[_Group | str]) -> None:
        self.nodes = nodes
        self.position = 0

    def _next(self) -> _Group | str | None:
        if self.position >= len(self.nodes):
            return None
        node = self.nodes[self.position]
        self.position += 1
        return node

    def _peek(self) -> _Group | str | None:
        return self.nodes[self.position] if self.position < len(self.nodes) else None

    def _argument(self) -> list[str]:
        """The next argument's normalised tokens, skipping spacing that TeX would also skip."""
        node = self._next()
        while isinstance(node, str) and node in SPACING:
            node = self._next()
        return _normalize_nodes(_flat(node))

    def run(self) -> list[str]:
        out: list[str] = []
        while (node := self._next()) is not None:
            if isinstance(node, _Group):
                out.extend(self._free_group(node))
                continue
            out.extend(self._token(node, out))
        return out

    def _free_group(self, group: _Group) -> list[str]:
        inner = _normalize_nodes(group.children)
        following = self._peek()
        keeps_braces = (
            not inner
            or any(token in SCOPED for token in group.children if isinstance(token, str))
            or (len(inner) == 1 and inner[0] in OPERATORS)
            or (following in ("^", "_", "'") and len(inner) > 1)
        )
        return ["{", *inner, "}"] if keeps_braces else inner

    def _token(self, token: str, out: list[str]) -> list[str]:
        token = SYNONYMS.get(token, token)
        if token in SPACING or token in DROPPED:
            return []
        if token in SPACING_WITH_ARGUMENT:
            self._argument()
            return []
        if token in SIZING:
            delimiter = self._next()
            if delimiter is None or delimiter == ".":
                return []
            if isinstance(delimiter, _Group):  # `\left{...}` is not a delimiter: keep the group as written
                return ["{", *_normalize_nodes(delimiter.children), "}"]
            return [SYNONYMS.get(delimiter, delimiter)]
        if token == r"\not" and self._peek() == "=":
            self._next()
            return [r"\neq"]
        if token in ("^", "_"):
            return self._script(token)
        if token == r"\sqrt":
            return self._sqrt()
        if token == r"\operatorname":
            argument = self._argument()
            name = "".join(argument)
            if name in OPERATOR_NAMES:
                return ["\\" + name]
            return [token, "{", *argument, "}"]
        if token in TEXT_COMMANDS:
            argument = [t for t in self._argument_raw() if t not in ("~",)]
            if all(t in TEXT_AS_MATH or t == TEXT_SPACE for t in argument):
                return [t for t in argument if t != TEXT_SPACE]
            return [token, "{", *argument, "}"]
        if token in ONE_ARGUMENT:
            return [token, "{", *self._argument(), "}"]
        if token in TWO_ARGUMENTS:
            first = self._argument()
            second = self._argument()
            return [token, "{", *first, "}", "{", *second, "}"]
        return [token]

    def _argument_raw(self) -> list[str]:
        """A text-mode argument: its characters and spaces as written, trimmed."""
        node = self._next()
        tokens: list[str] = []
        for child in _flat(node):
            tokens.extend(["{", *_serialise(child.children), "}"] if isinstance(child, _Group) else [child])
        while tokens and tokens[0] == TEXT_SPACE:
            tokens.pop(0)
        while tokens and tokens[-1] == TEXT_SPACE:
            tokens.pop()
        return tokens

    def _script(self, token: str) -> list[str]:
        argument = self._argument()
        if not argument:
            return []
        if token == "^" and all(t == r"\prime" for t in argument):
            return ["'"] * len(argument)
        if len(argument) == 1:
            return [token, argument[0]]
        return [token, "{", *argument, "}"]

    def _sqrt(self) -> list[str]:
        out = [r"\sqrt"]
        if self._peek() == "[":
            self._next()
            index: list[_Group | str] = []
            while (node := self._next()) is not None and node != "]":
                index.append(node)
            out += ["[", *_normalize_nodes(index), "]"]
        return out + ["{", *self._argument(), "}"]


def _serialise(nodes: list[_Group | str]) -> list[str]:
    tokens: list[str] = []
    for node in nodes:
        tokens.extend(["{", *_serialise(node.children), "}"] if isinstance(node, _Group) else [node])
    return tokens


def _normalize_nodes(nodes: list[_Group | str]) -> list[str]:
    return _Normalizer(nodes).run()


def normalize(latex: str) -> list[str]:
    """Normalised tokens of a LaTeX string of either dialect; never raises on malformed input."""
    return normalize_tokens(tokenize(latex))


def normalize_tokens(tokens: list[str]) -> list[str]:
    return _normalize_nodes(_parse(_unglue_relations(tokens)))


def _unglue_relations(tokens: list[str]) -> list[str]:
    out: list[str] = []
    for token in tokens:
        glued = _GLUED_RELATION.fullmatch(token)
        if glued is None or token in _REAL_LT_GT_WORDS:
            out.append(token)
        else:
            out.extend(["<" if glued.group(1) == "lt" else ">", *glued.group(2)])
    return out


def normalize_latex(latex: str) -> str:
    """Normalised LaTeX as a compact string."""
    return detokenize(normalize(latex))
