import itertools
import shutil

import numpy as np
import pytest

from susik.data.corpus import TOPICS, FormulaSource, K12Generator, load_corpus
from susik.latex import tokenize
from susik.latex.validity import compile_check


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "formulas.txt"
    path.write_text("x^{2}\n\n  \\frac{1}{2}  \n\t\na+b=c\n" + "".join(f"y_{{{i}}}\n" for i in range(20)))
    return path


def test_load_corpus_streams_stripped_non_blank_lines(corpus_file):
    lines = load_corpus(corpus_file)
    assert next(lines) == "x^{2}"  # an iterator: nothing is read ahead of need
    assert list(itertools.islice(lines, 2)) == [r"\frac{1}{2}", "a+b=c"]
    assert len(list(load_corpus(corpus_file))) == 23


def test_generator_is_deterministic_per_seed():
    assert K12Generator(np.random.default_rng(3)).batch(50) == K12Generator(np.random.default_rng(3)).batch(
        50
    )
    assert K12Generator(np.random.default_rng(3)).batch(50) != K12Generator(np.random.default_rng(4)).batch(
        50
    )


def test_generator_covers_every_topic_and_short_and_long_formulas():
    generator = K12Generator(np.random.default_rng(0))
    drawn = [generator.draw() for _ in range(2000)]
    assert {d.topic for d in drawn} == set(TOPICS)
    lengths = [len(tokenize(d.latex)) for d in drawn]
    assert min(lengths) == 1 and max(lengths) >= 40 and max(lengths) <= 80
    assert sum(n <= 3 for n in lengths) > 50  # `1`, `a`, `x^2` are common enough to be learnt
    assert len({d.latex for d in drawn}) > 1500  # varied, not a handful of templates
    for topic in ("matrix", "system", "probability"):
        assert all(d.topic == topic for d in (generator.draw(topic) for _ in range(5)))
    assert any(r"\begin{cases}" in d.latex for d in drawn) and any("matrix}" in d.latex for d in drawn)


@pytest.mark.skipif(shutil.which("latex") is None, reason="needs TeX: apt install texlive-latex-base")
def test_generated_formulas_compile():
    generator = K12Generator(np.random.default_rng(11))
    formulas = [generator.sample(topic) for topic in TOPICS for _ in range(15)]
    results = compile_check(formulas)
    assert [f for f, ok in zip(formulas, results, strict=True) if not ok] == []


def test_formula_source_mixes_by_ratio_and_is_seeded(corpus_file):
    taken = FormulaSource(np.random.default_rng(0), corpus_file, generated_ratio=0.3, shuffle_buffer=8).take(
        1000
    )
    generated = [s for s in taken if s.source == "k12"]
    assert 0.25 < len(generated) / len(taken) < 0.35
    assert all(s.topic in TOPICS for s in generated)
    corpus_lines = [s.latex for s in taken if s.source == "corpus"]
    assert set(corpus_lines) == set(load_corpus(corpus_file))  # re-read past its 23 lines
    assert corpus_lines[:23] != list(load_corpus(corpus_file))  # shuffled
    again = FormulaSource(np.random.default_rng(0), corpus_file, generated_ratio=0.3, shuffle_buffer=8).take(
        1000
    )
    assert again == taken


def test_formula_source_edges(tmp_path):
    only_generated = FormulaSource(np.random.default_rng(0), generated_ratio=1.0).take(5)
    assert all(s.source == "k12" for s in only_generated)
    with pytest.raises(ValueError):
        FormulaSource(np.random.default_rng(0), generated_ratio=0.5)
    with pytest.raises(ValueError):
        FormulaSource(np.random.default_rng(0), generated_ratio=1.5)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match="no formulas"):
        FormulaSource(np.random.default_rng(0), empty, generated_ratio=0.0).take(1)
