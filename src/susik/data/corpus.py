"""Formula text to render: a corpus file streamed line by line, a seeded K-12 generator, and a mix of both.

The corpus (one formula a line) has no environments at all, so `cases`, matrices and the like come from the
generator; the generator also supplies the very short formulas (`1`, `a`, `x^{2}`) that recognisers mangle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np

# fmt: off
Topic = Literal[
    "short", "arithmetic", "fraction", "root", "power", "linear_equation", "quadratic", "system",
    "inequality", "function", "trigonometry", "logarithm", "sequence", "limit", "derivative", "integral",
    "vector", "matrix", "set", "probability",
]
# fmt: on
TOPICS: tuple[Topic, ...] = get_args(Topic)


def load_corpus(path: str | Path) -> Iterator[str]:
    """Formulas of a text file, one a line, stripped; blank lines skipped. Streams: never loads the file."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            formula = line.strip()
            if formula:
                yield formula


def _signed(k: int) -> str:
    return f"-{-k}" if k < 0 else f"+{k}"


@dataclass(frozen=True)
class GeneratedFormula:
    latex: str
    topic: Topic


# Letters a school text uses for unknowns, weighted towards x, y; `e`, `i` and `d` are left out (constants,
# differentials).
_VARIABLES = ("x", "y", "z", "t", "a", "b", "c", "m", "n", "k", "p", "q", "s", "u", "v", "w")
_VARIABLE_WEIGHTS = np.array([10, 6, 2, 3, 4, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1], dtype=float)
_VARIABLE_P = _VARIABLE_WEIGHTS / _VARIABLE_WEIGHTS.sum()
_GREEK = (r"\alpha", r"\beta", r"\theta", r"\pi", r"\lambda", r"\mu", r"\omega", r"\varphi", r"\sigma")
_RELATIONS = ("<", ">", r"\leq", r"\geq", r"\le", r"\ge", r"\leqslant", r"\geqslant")
_TRIG = (r"\sin", r"\cos", r"\tan")
_SEPARATORS = (", ", ",~", r", \quad ")
_OPERATORS = ("+", "-", r"\times", r"\div", r"\cdot")


class K12Generator:
    """Seeded generator of school math formulas (arithmetic to integrals, sets and probability).

    Every formula is plain LaTeX math content that compiles with amsmath + amssymb. Braces around single
    super/subscripts and spaces vary as they do in real labels; the normaliser makes them equal.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._topics: dict[Topic, Callable[[], str]] = {
            "short": self._short,
            "arithmetic": self._arithmetic,
            "fraction": self._fraction,
            "root": self._root,
            "power": self._power,
            "linear_equation": self._linear_equation,
            "quadratic": self._quadratic,
            "system": self._system,
            "inequality": self._inequality,
            "function": self._function,
            "trigonometry": self._trigonometry,
            "logarithm": self._logarithm,
            "sequence": self._sequence,
            "limit": self._limit,
            "derivative": self._derivative,
            "integral": self._integral,
            "vector": self._vector,
            "matrix": self._matrix,
            "set": self._set,
            "probability": self._probability,
        }

    def draw(self, topic: Topic | None = None) -> GeneratedFormula:
        """A formula of `topic` (or of a random topic); one in ten joins two of the same topic by a comma."""
        chosen: Topic = topic or TOPICS[int(self._rng.integers(len(TOPICS)))]
        latex = self._topics[chosen]()
        if chosen not in ("short", "system", "matrix") and self._rng.random() < 0.1:
            latex = latex + self._pick(_SEPARATORS) + self._topics[chosen]()
        return GeneratedFormula(latex, chosen)

    def sample(self, topic: Topic | None = None) -> str:
        return self.draw(topic).latex

    def batch(self, n: int, topic: Topic | None = None) -> list[str]:
        return [self.sample(topic) for _ in range(n)]

    # --- pieces ---------------------------------------------------------------------------------------------

    def _pick(self, options: tuple[str, ...] | list[str]) -> str:
        return options[int(self._rng.integers(len(options)))]

    def _chance(self, p: float) -> bool:
        return bool(self._rng.random() < p)

    def _var(self) -> str:
        return _VARIABLES[int(self._rng.choice(len(_VARIABLES), p=_VARIABLE_P))]

    def _int(self, low: int = 1, high: int = 12) -> int:
        return int(self._rng.integers(low, high + 1))

    def _number(self) -> str:
        """Mostly small integers, sometimes big ones or decimals."""
        roll = self._rng.random()
        if roll < 0.7:
            return str(self._int(0, 20))
        if roll < 0.85:
            return str(self._int(21, 9999))
        return f"{self._int(0, 99)}.{self._int(1, 99)}"

    def _script(self, base: str, exponent: str, mark: str = "^") -> str:
        # `x^2` and `x^{2}` are the same formula; labels carry both spellings
        if len(exponent) == 1 and self._chance(0.3):
            return f"{base}{mark}{exponent}"
        return f"{base}{mark}{{{exponent}}}"

    def _term(self, var: str, power: int, first: bool) -> str:
        """`±c·var^power` with the coefficient 1 left out, as written by hand."""
        coefficient = self._int(1, 9)
        sign = "-" if self._chance(0.35) else ("" if first else "+")
        body = "" if coefficient == 1 and power > 0 else str(coefficient)
        if power >= 1:
            body += var if power == 1 else self._script(var, str(power))
        return sign + body

    def _polynomial(self, var: str, degree: int) -> str:
        powers = [degree] + [p for p in range(degree - 1, -1, -1) if self._chance(0.7)]
        return "".join(self._term(var, p, i == 0) for i, p in enumerate(powers))

    def _linear(self, var: str) -> str:
        return self._polynomial(var, 1)

    def _frac(self, top: str, bottom: str) -> str:
        command = r"\dfrac" if self._chance(0.25) else r"\frac"
        return rf"{command}{{{top}}}{{{bottom}}}"

    def _paren(self, inner: str) -> str:
        return rf"\left({inner}\right)" if self._chance(0.3) else f"({inner})"

    def _rel(self, relations: tuple[str, ...] = _RELATIONS) -> str:
        relation = self._pick(relations)
        return relation + " " if relation.startswith("\\") else relation  # `\leq x`, not `\leqx`

    # --- topics -------------------------------------------------------------------------------------------

    def _short(self) -> str:
        v = self._var()
        return self._pick(
            [
                str(self._int(0, 9)),
                self._number(),
                v,
                self._script(v, "2"),
                f"-{self._int(1, 20)}",
                self._pick(_GREEK),
                f"{self._int(2, 9)}{v}",
                self._script(v, self._var(), "_"),
                f"{v}'",
                rf"\frac{{1}}{{{self._int(2, 9)}}}",
                rf"\sqrt{{{self._int(2, 9)}}}",
                rf"{self._int(1, 90)}^{{\circ}}",
                r"\infty",
                f"{v}+{self._var()}",
            ]
        )

    def _arithmetic(self) -> str:
        parts = [self._number()]
        for _ in range(self._int(1, 5)):
            operand = self._number()
            if self._chance(0.2):
                operand = self._paren(f"{self._int(1, 30)}{self._pick(_OPERATORS[:2])}{self._int(1, 30)}")
            elif self._chance(0.15):
                operand = f"({-self._int(1, 20)})"
            parts.append(f"{self._pick(_OPERATORS)}{operand}")
        tail = self._pick(["", "=", f"={self._number()}", r"=\square"])
        return "".join(parts) + tail

    def _fraction(self) -> str:
        a, b, c, d = (self._int(1, 15) for _ in range(4))
        v = self._var()
        return self._pick(
            [
                self._frac(str(a), str(b))
                + self._pick(_OPERATORS)
                + self._frac(str(c), str(d))
                + self._pick(["", "="]),
                f"{self._frac(str(a), str(b))}+{self._frac(str(c), str(d))}="
                + self._frac(str(a * d + b * c), str(b * d)),
                self._frac(v, self._var()),
                rf"{self._int(1, 5)}{self._frac(str(a), str(a + b))}",
                self._frac(self._linear(v), self._linear(v)),
                f"{self._frac(str(a), v)}+{self._frac(str(c), f'{v}+{d}')}="
                + self._frac(self._linear(v), f"{v}({v}+{d})"),
                rf"{self._frac(str(a), str(b))}={self._frac(str(a * c), str(b * c))}",
            ]
        )

    def _root(self) -> str:
        v = self._var()
        n = self._int(2, 12)
        return self._pick(
            [
                rf"\sqrt{{{n}}}",
                rf"\sqrt{{{n * n}}}={n}",
                rf"\sqrt[3]{{{n**3}}}={n}",
                rf"{self._int(2, 9)}\sqrt{{{n}}}+\sqrt{{{n * 4}}}",
                rf"\sqrt{{{self._script(v, '2')}+{n}}}",
                rf"\sqrt{{{n}}}\times\sqrt{{{self._int(2, 12)}}}",
                self._frac("1", rf"\sqrt{{{n}}}"),
                rf"\sqrt[{self._int(3, 5)}]{{{self._script(v, str(self._int(2, 9)))}}}",
                rf"\sqrt{{{self._linear(v)}}}={self._int(1, 9)}",
            ]
        )

    def _power(self) -> str:
        v = self._var()
        m, n = self._int(2, 9), self._int(2, 9)
        return self._pick(
            [
                self._script(str(self._int(2, 10)), str(self._int(2, 12))),
                rf"{self._script(v, str(m))}\cdot {self._script(v, str(n))}={self._script(v, str(m + n))}",
                rf"{self._script(f'({self._script(v, str(m))})', str(n))}={self._script(v, str(m * n))}",
                self._script(v, f"-{n}"),
                self._script("10", f"-{n}"),
                rf"{self._number()}\times 10^{{{n}}}",
                rf"{self._script('a', 'm')}\cdot {self._script('a', 'n')}={self._script('a', 'm+n')}",
                self._script(self._paren(self._frac(str(m), str(n))), str(self._int(2, 4))),
                self._script(v, self._frac("1", str(n))),
            ]
        )

    def _linear_equation(self) -> str:
        v = self._var()
        a, b, c = self._int(2, 9), self._int(1, 20), self._int(1, 20)
        return self._pick(
            [
                f"{self._linear(v)}={self._number()}",
                f"{self._linear(v)}={self._linear(v)}",
                f"{a}({v}-{b})={self._linear(v)}",
                f"{v}={self._pick([str(b), f'-{b}', self._frac(str(b), str(a))])}",
                f"y={self._linear('x')}",
                f"{self._frac(self._linear(v), str(a))}={c}",
                f"{a}{v}+{b}y={c}",
            ]
        )

    def _quadratic(self) -> str:
        v = self._var()
        r, s = self._int(-9, 9), self._int(-9, 9)
        return self._pick(
            [
                f"{self._polynomial(v, 2)}=0",
                rf"{v}=\frac{{-b\pm\sqrt{{b^{{2}}-4ac}}}}{{2a}}",
                f"({v}{_signed(r)})({v}{_signed(s)})=0",
                f"{self._script(v, '2')}={self._int(1, 100)}",
                f"a{self._script(v, '2')}+b{v}+c=0",
                rf"D={self._script('b', '2')}-4ac",
                f"y={self._polynomial('x', 2)}",
                f"{self._script(f'({v}{_signed(r)})', '2')}={self._int(0, 50)}",
                rf"{v}_{{1}}+{v}_{{2}}=-\frac{{b}}{{a}}, {v}_{{1}}{v}_{{2}}=\frac{{c}}{{a}}",
            ]
        )

    def _system(self) -> str:
        first, second = self._pick(["x", "a", "m", "p"]), self._pick(["y", "b", "n", "q"])
        rows = []
        for _ in range(self._int(2, 3) if self._chance(0.3) else 2):
            lhs = f"{self._term(first, 1, True)}{self._term(second, 1, False)}"
            rows.append(f"{lhs}{self._pick(['=', '=', '=', '<', '>'])}{self._int(-20, 30)}")
        body = r" \\ ".join(rows)
        return self._pick(
            [
                rf"\begin{{cases}} {body} \end{{cases}}",
                rf"\begin{{cases}}{body}\end{{cases}}",
                rf"\left\{{\begin{{array}}{{l}} {body} \end{{array}}\right.",
                rf"\begin{{cases}} {self._pick(['x', 'y'])}^{{2}}+1 & {self._pick(['x', 'y'])}\geq 0 \\ "
                rf"{self._int(1, 9)} & \text{{otherwise}} \end{{cases}}",
            ]
        )

    def _inequality(self) -> str:
        v = self._var()
        a, b = sorted((self._int(-10, 10), self._int(-10, 10)))
        return self._pick(
            [
                f"{self._linear(v)}{self._rel()}{self._number()}",
                f"{a}{self._rel(_RELATIONS[::2])}{v}{self._rel(_RELATIONS[::2])}{b + 1}",
                f"{self._polynomial(v, 2)}{self._rel()}0",
                rf"|{v}-{self._int(1, 9)}|{self._rel()}{self._int(1, 9)}",
                rf"{v}\neq {self._int(0, 9)}",
                r"a+b\geq 2\sqrt{ab}",
                f"{self._frac(self._linear(v), self._linear(v))}{self._rel()}0",
            ]
        )

    def _function(self) -> str:
        name = self._pick(["f", "f", "g", "h"])
        v = self._pick(["x", "x", "x", "t"])
        return self._pick(
            [
                f"{name}({v})={self._polynomial(v, self._int(1, 3))}",
                f"{name}({v})={self._frac(str(self._int(1, 9)), self._linear(v))}",
                f"y={self._polynomial('x', self._int(1, 3))}",
                rf"{name}({self._int(-5, 5)})={self._int(-20, 20)}",
                f"{name}(g({v}))",
                rf"{self._script(name, '-1')}({v})",
                rf"{name}:\mathbb{{R}}\to\mathbb{{R}}",
                rf"y=a{self._script('(x-p)', '2')}+q",
                rf"{name}({v})=|{self._linear(v)}|",
                rf"{name}({v})=\begin{{cases}} {self._linear(v)} & ({v}\geq 0) \\ "
                rf"{self._linear(v)} & ({v}<0) \end{{cases}}",
            ]
        )

    def _trigonometry(self) -> str:
        angle = self._pick([*_GREEK[:4], "x", "A"])
        trig = self._pick(_TRIG)
        deg = self._pick(["30", "45", "60", "90", "120", "150", "180"])
        return self._pick(
            [
                rf"\sin^{{2}}{angle}+\cos^{{2}}{angle}=1",
                rf"{trig}{deg}^{{\circ}}",
                rf"{trig}\left(\alpha+\beta\right)",
                rf"\sin 2{angle}=2\sin {angle}\cos {angle}",
                rf"\tan {angle}=\frac{{\sin {angle}}}{{\cos {angle}}}",
                rf"\cos\frac{{\pi}}{{{self._int(2, 6)}}}",
                rf"y={self._int(1, 5)}{trig}\left({self._int(1, 4)}x"
                rf"+\frac{{\pi}}{{{self._int(2, 6)}}}\right)",
                r"\frac{a}{\sin A}=\frac{b}{\sin B}=2R",
                r"c^{2}=a^{2}+b^{2}-2ab\cos C",
                rf"{trig} {angle}=\frac{{{self._int(1, 5)}}}{{{self._int(6, 13)}}}",
            ]
        )

    def _logarithm(self) -> str:
        base = self._int(2, 10)
        v = self._var()
        return self._pick(
            [
                rf"\log_{{{base}}}{base ** self._int(1, 4)}={self._int(1, 4)}",
                rf"\log_{{{base}}}{v}",
                r"\ln e=1",
                rf"\log {v}+\log y=\log {v}y",
                r"\log_{a}b=\frac{\log b}{\log a}",
                rf"\ln({self._linear(v)})",
                rf"\log_{{{base}}}({self._linear(v)})={self._int(1, 5)}",
                rf"\log {self._script(v, 'n')}=n\log {v}",
                r"y=\log_{" + self._pick(["2", "3", r"\frac{1}{2}"]) + "}x",
                rf"\lg {self._int(2, 1000)}",
            ]
        )

    def _sequence(self) -> str:
        a = self._pick(["a", "b", "c"])
        k = self._pick(["k", "i", "n"])
        return self._pick(
            [
                rf"{a}_{{n}}={self._linear('n')}",
                rf"{a}_{{n+1}}={a}_{{n}}+{self._int(1, 9)}",
                rf"{a}_{{n+1}}={self._int(2, 5)}{a}_{{n}}",
                r"S_{n}=\frac{n(n+1)}{2}",
                rf"\sum_{{{k}=1}}^{{n}}{self._script(k, str(self._int(1, 3)))}",
                rf"\sum_{{{k}=1}}^{{{self._int(5, 100)}}}({self._linear(k)})",
                rf"{a}_{{1}}, {a}_{{2}}, \cdots, {a}_{{n}}",
                rf"{a}_{{n}}={a}_{{1}}r^{{n-1}}",
                rf"S_{{n}}=\frac{{{a}_{{1}}(1-r^{{n}})}}{{1-r}}",
                rf"{a}_{{{self._int(1, 20)}}}={self._int(-50, 99)}",
            ]
        )

    def _limit(self) -> str:
        v = self._pick(["x", "x", "n", "h"])
        to = self._pick(["0", r"\infty", str(self._int(1, 5)), "a", r"0+"])
        return self._pick(
            [
                rf"\lim_{{{v}\to {to}}}{self._frac(self._polynomial(v, 2), self._linear(v))}",
                r"\lim_{x\to 0}\frac{\sin x}{x}=1",
                r"\lim_{n\to\infty}\left(1+\frac{1}{n}\right)^{n}=e",
                rf"\lim_{{{v}\to {to}}}f({v})",
                r"\lim_{h\to 0}\frac{f(x+h)-f(x)}{h}",
                rf"\lim_{{n\to\infty}}\frac{{{self._linear('n')}}}{{{self._linear('n')}}}",
            ]
        )

    def _derivative(self) -> str:
        v = self._pick(["x", "x", "t"])
        return self._pick(
            [
                rf"f'({v})={self._polynomial(v, 2)}",
                rf"f''({v})",
                rf"\frac{{d}}{{d{v}}}{self._script(v, 'n')}=n{self._script(v, 'n-1')}",
                rf"\frac{{dy}}{{d{v}}}",
                rf"y'={self._polynomial(v, self._int(1, 3))}",
                rf"\left(\sin {v}\right)'=\cos {v}",
                rf"(e^{{{v}}})'=e^{{{v}}}",
                rf"f'({self._int(-3, 5)})=0",
                rf"\frac{{d}}{{d{v}}}\left({self._polynomial(v, 3)}\right)",
                r"(fg)'=f'g+fg'",
            ]
        )

    def _integral(self) -> str:
        v = self._pick(["x", "x", "t"])
        a, b = self._int(0, 3), self._int(4, 9)
        d = self._pick([f"d{v}", rf"\,d{v}", rf"\, d{v}"])
        return self._pick(
            [
                rf"\int_{{{a}}}^{{{b}}}{self._polynomial(v, 2)}{d}",
                rf"\int({self._polynomial(v, 2)}){d}",
                rf"\int_{{a}}^{{b}}f({v}){d}=F(b)-F(a)",
                rf"\int {self._script(v, 'n')}{d}=\frac{{{self._script(v, 'n+1')}}}{{n+1}}+C",
                rf"\int_{{0}}^{{\pi}}\sin {v}{d}=2",
                rf"\int\frac{{1}}{{{v}}}{d}=\ln|{v}|+C",
                rf"\int_{{{a}}}^{{{b}}}|{self._linear(v)}|{d}",
                rf"\left[{self._polynomial(v, 2)}\right]_{{{a}}}^{{{b}}}",
            ]
        )

    def _vector(self) -> str:
        u, w = self._pick(["a", "u", "p"]), self._pick(["b", "v", "q"])
        pq = self._pick(["AB", "OA", "OP", "BC", "PQ", "MN"])
        coords = ",".join(str(self._int(-9, 9)) for _ in range(self._int(2, 3)))
        arrow = self._pick([r"\vec", r"\vec", r"\overrightarrow"])
        return self._pick(
            [
                rf"\vec{{{u}}}+\vec{{{w}}}",
                rf"\overrightarrow{{{pq}}}=({coords})",
                rf"|\vec{{{u}}}|=\sqrt{{{self._int(2, 30)}}}",
                rf"\vec{{{u}}}\cdot\vec{{{w}}}=0",
                rf"{arrow}{{{u}}}=({coords})",
                rf"\vec{{{u}}}\perp\vec{{{w}}}",
                rf"\overrightarrow{{{pq}}}+\overrightarrow{{{pq[::-1]}}}=\vec{{0}}",
                rf"\vec{{{u}}}\cdot\vec{{{w}}}=|\vec{{{u}}}||\vec{{{w}}}|\cos\theta",
                rf"{self._int(2, 5)}\vec{{{u}}}-\vec{{{w}}}",
            ]
        )

    def _matrix_literal(self, rows: int, cols: int) -> str:
        cells = [
            [self._var() if self._chance(0.15) else str(self._int(-9, 12)) for _ in range(cols)]
            for _ in range(rows)
        ]
        body = r" \\ ".join(" & ".join(row) for row in cells)
        env = self._pick(["pmatrix", "pmatrix", "bmatrix", "vmatrix"])
        return rf"\begin{{{env}}} {body} \end{{{env}}}"

    def _matrix(self) -> str:
        rows, cols = self._int(1, 3), self._int(1, 3)
        if rows * cols == 1:
            rows = 2
        matrix = self._matrix_literal(rows, cols)
        return self._pick(
            [
                matrix,
                f"A={matrix}",
                rf"\det A={self._int(-20, 20)}",
                matrix + self._matrix_literal(cols, self._int(1, 2)),
                r"A^{-1}=\frac{1}{ad-bc}\begin{pmatrix} d & -b \\ -c & a \end{pmatrix}",
                rf"{self._int(2, 5)}{matrix}",
                f"{matrix}={self._matrix_literal(rows, cols)}",
            ]
        )

    def _set(self) -> str:
        elements = ",".join(str(self._int(0, 12)) for _ in range(self._int(1, 6)))
        v = self._pick(["x", "x", "n"])
        space = self._pick([r"\mathbb{R}", r"\mathbb{N}", r"\mathbb{Z}", r"\mathbb{Q}"])
        return self._pick(
            [
                r"A\cup B",
                r"A\cap B",
                rf"A=\{{{elements}\}}",
                rf"\{{{v}\mid {self._linear(v)}{self._rel()}{self._int(0, 9)}\}}",
                r"A\cap B=\emptyset",
                rf"{v}\in {space}",
                r"A\subset B",
                rf"{self._int(0, 9)}\notin A",
                rf"\{{{v} \mid {v}\in {space}, {v}{self._rel()}{self._int(0, 9)}\}}",
                r"n(A\cup B)=n(A)+n(B)-n(A\cap B)",
                r"A^{c}",
                r"(A\cup B)^{c}=A^{c}\cap B^{c}",
                r"A\subseteq B",
                r"\varnothing",
            ]
        )

    def _probability(self) -> str:
        n = self._int(2, 12)
        r = self._int(0, n)
        return self._pick(
            [
                r"P(A|B)=\frac{P(A\cap B)}{P(B)}",
                rf"\binom{{{n}}}{{{r}}}",
                rf"{{}}_{{{n}}}C_{{{r}}}",
                rf"{{}}_{{{n}}}P_{{{r}}}",
                r"{}_{n}C_{r}=\frac{n!}{r!(n-r)!}",
                r"P(X=k)=\binom{n}{k}p^{k}(1-p)^{n-k}",
                r"E(X)=np",
                rf"P(A)={self._frac(str(r), str(n))}",
                r"V(X)=np(1-p)",
                r"P(A\cup B)=P(A)+P(B)-P(A\cap B)",
                rf"{min(n, 7)}!={math.factorial(min(n, 7))}",
                r"\sigma(X)=\sqrt{V(X)}",
                r"P(A)P(B)=P(A\cap B)",
            ]
        )


@dataclass(frozen=True)
class SourcedFormula:
    latex: str
    source: Literal["corpus", "k12"]
    topic: Topic | None  # None for corpus lines


class FormulaSource:
    """An endless, seeded stream mixing corpus lines (shuffled through a buffer, re-read when exhausted) and
    generated K-12 formulas; `generated_ratio` of the stream is generated."""

    def __init__(
        self,
        rng: np.random.Generator,
        corpus: str | Path | None = None,
        generated_ratio: float = 0.5,
        shuffle_buffer: int = 4096,
    ) -> None:
        if not 0.0 <= generated_ratio <= 1.0:
            raise ValueError(f"generated_ratio must lie in [0, 1], got {generated_ratio}")
        if corpus is None and generated_ratio < 1.0:
            raise ValueError("a generated_ratio below 1 needs a corpus")
        self._rng = rng
        self._corpus = Path(corpus) if corpus is not None else None
        self._ratio = generated_ratio
        self._buffer_size = max(1, shuffle_buffer)
        self._generator = K12Generator(rng)

    def __iter__(self) -> Iterator[SourcedFormula]:
        lines = self._corpus_lines() if self._ratio < 1.0 else iter(())
        while True:
            if self._rng.random() < self._ratio:
                drawn = self._generator.draw()
                yield SourcedFormula(drawn.latex, "k12", drawn.topic)
            else:
                yield SourcedFormula(next(lines), "corpus", None)

    def take(self, n: int) -> list[SourcedFormula]:
        stream = iter(self)
        return [next(stream) for _ in range(n)]

    def _corpus_lines(self) -> Iterator[str]:
        """Corpus lines forever, each pass shuffled through a buffer of `shuffle_buffer` lines."""
        assert self._corpus is not None
        buffer: list[str] = []
        while True:
            seen = False
            for line in load_corpus(self._corpus):
                seen = True
                if len(buffer) < self._buffer_size:
                    buffer.append(line)
                    continue
                slot = int(self._rng.integers(len(buffer)))
                yield buffer[slot]
                buffer[slot] = line
            if not seen:
                raise ValueError(f"corpus {self._corpus} has no formulas")
            if len(buffer) >= self._buffer_size:
                continue  # the buffer carries over into the next pass
            while buffer:  # a corpus smaller than the buffer: emit it shuffled, then read it again
                yield buffer.pop(int(self._rng.integers(len(buffer))))
