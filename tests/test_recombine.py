import numpy as np
import pytest

from susik.data.recombine import Recombiner, cut_formula
from susik.latex import normalize, tokenize


def test_a_formula_is_cut_at_top_level_relations_and_commas_only():
    cut = cut_formula(tokenize(r"f(x)=\frac{a=b}{2},y<1"))
    assert cut is not None
    assert cut.pieces == (tuple(tokenize("f(x)")), tuple(tokenize(r"\frac{a=b}{2}")), ("y",), ("1",))
    assert cut.separators == ("=", ",", "<")
    assert cut.length == len(tokenize(r"f(x)=\frac{a=b}{2},y<1"))


def test_formulas_whose_pieces_cannot_stand_alone_are_not_cut():
    assert cut_formula(tokenize(r"\begin{array}{c} a=b \end{array}")) is None
    assert cut_formula(["x", "}", "=", "{", "y"]) is None  # unbalanced
    assert cut_formula(tokenize("a=b,")).separators == ("=",)  # a trailing separator is dropped


def test_recombined_formulas_are_well_formed_new_and_about_as_long_as_the_originals():
    originals = [r"E=mc^2", r"\alpha+\beta=\gamma_{i}, x\in A", r"\int_0^1 f(t)dt=F(1)-F(0)", r"a<b\leq c"]
    recombiner = Recombiner(originals)
    made = recombiner.batch(200, np.random.default_rng(0))
    assert made == Recombiner(originals).batch(200, np.random.default_rng(0))  # seeded
    known = {tuple(normalize(latex)) for latex in originals}
    assert sum(tuple(normalize(latex)) not in known for latex in made) > 150
    for latex in made:
        tokens = normalize(latex)
        assert tokens.count("{") == tokens.count("}")
        assert tokens[0] not in {"=", ",", "<"} and tokens[-1] not in {"=", ",", "<"}
        assert len(tokens) <= max(len(normalize(o)) for o in originals) + max(len(normalize(o)) for o in originals)


def test_recombining_needs_pieces():
    with pytest.raises(ValueError, match="two pieces"):
        Recombiner([r"\begin{matrix} a \end{matrix}", "x"])
