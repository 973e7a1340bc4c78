"""Choice and problem labels at the start of LaTeX: typeset in corpus lines, typeset or bare in readings."""

from __future__ import annotations

import pytest

from susik.latex.labels import split_reading_label, split_typeset_label, strip_sentence_punctuation


@pytest.mark.parametrize("line, label, rest", [
    (r"\text { C. } 0<x<1", "C.", "0<x<1"),
    (r"\text { (1) } S_{2}=64, \text { (2) } S_{3}=96", "(1)", r"S_{2}=64, \text { (2) } S_{3}=96"),
    (r"\text { 1). } x", "1).", "x"),
    (r"\text { I). } y=2", "I).", "y=2"),
    (r"\text{A.}-\frac{1}{2}", "A.", r"-\frac{1}{2}"),
])
def test_split_typeset_label_takes_a_leading_label_off(line, label, rest):
    assert split_typeset_label(line) == (label, rest)


@pytest.mark.parametrize(
    "line", [r"\text { D. }", r"\text { PA } x", r"\text { () } x", "x+1", r"f(x) \text { (1) }"]
)
def test_split_typeset_label_leaves_other_lines_alone(line):
    assert split_typeset_label(line) == (None, line)


@pytest.mark.parametrize("reading, label, rest", [
    (r"\text{1)}m=", "1)", "m="),
    (r"\text { C. } 0<x<1", "C.", "0<x<1"),
    ("(1)9v-2=46.42", "(1)", "9v-2=46.42"),
    (r"( 2 ) \sin^2\pi+\cos^2\pi=1", "(2)", r"\sin^2\pi+\cos^2\pi=1"),
    (r"2)6\frac{\sqrt{3}}{4}", "2)", r"6\frac{\sqrt{3}}{4}"),
    (r"12 ) a\cdot b=", "12)", r"a\cdot b="),
    ("(B) x>1", "(B)", "x>1"),
    ("(1)", "(1)", ""),  # a region that holds the label alone
    ("10)", "10)", ""),
    (r"\text{D.}", "D.", ""),
    (r"2.\frac{1}{a^2}+\frac{2}{b^2}", "2.", r"\frac{1}{a^2}+\frac{2}{b^2}"),
    ("1.AC=BC=1", "1.", "AC=BC=1"),
    ("7 . x-y-15=0", "7.", "x-y-15=0"),
])
def test_split_reading_label_takes_typeset_and_bare_labels_off(reading, label, rest):
    assert split_reading_label(reading) == (label, rest)


@pytest.mark.parametrize("reading", [
    "x+1", "(1)^{-1}", "(1)+(2)=3", "(1)=1", r"(2)\cdot 3", r"(3)\times(4)", "1.5+x", "(x)y", "(12)'",
    r"f(x)=1)", r"\text{PA}x", "(0)=2", r"1.\overline{3}", r"1.\dot{6}", r"1.\ldots", "2. 5", "3.,4", "1.",
])
def test_split_reading_label_leaves_formulas_alone(reading):
    assert split_reading_label(reading) == (None, reading)


@pytest.mark.parametrize("reading, formula", [
    ("A^c,", "A^c"),
    (r"\sqrt{x^2+6} , ", r"\sqrt{x^2+6}"),
    (r"l:y=kx+\sqrt{2}.", r"l:y=kx+\sqrt{2}"),
    ("x=1;", "x=1"),
    (r"\{1,2\}.", r"\{1,2\}"),
    ("1,2,3,...", "1,2,3,..."),  # an ellipsis is the formula's
    (r"a\;", r"a\;"),  # a space command, not punctuation
    (r"x\,", r"x\,"),
    ("x_{1}, x_{2}", "x_{1}, x_{2}"),
    (",", ","),  # nothing would be left
])
def test_strip_sentence_punctuation_takes_only_the_sentence_end(reading, formula):
    assert strip_sentence_punctuation(reading) == formula
