import pytest

from susik.latex import Vocabulary, detokenize, is_spaced_dialect, normalize, normalize_latex, tokenize

ROUND_TRIP = [
    r"x^{2} + y^{2} \lt 1",
    r"\frac 1x",
    r"d s ^ { 2 } = ( 1 - { \frac { q c o s \theta } { r } } )",
    r"\text{if x}",
    r"\text{a\ b}",
    r"\mathrm{~A}",
    r"\begin{array} { c c } a & b \\ c & d \end{array}",
    r"\alpha x+\beta",
    r"\{ x \mid x > 0 \}",
    "가 = 1 、 2",
    r"\frac{",
]


@pytest.mark.parametrize("latex", ROUND_TRIP)
def test_tokens_round_trip_through_detokenize(latex):
    tokens = tokenize(latex)
    assert tokenize(detokenize(tokens)) == tokens


def test_tokenizer_reads_both_dialects_alike():
    assert tokenize(r"\frac{14}{x}") == tokenize(r"\frac { 1 4 } { x }")
    assert tokenize(r"\begin{cases} x \end{cases}")[0] == r"\begin{cases}"
    assert tokenize(r"a \\ b") == ["a", r"\\", "b"]


def test_text_spaces_survive_only_in_raw_text_arguments():
    assert tokenize(r"\text{if x}") == [r"\text", "{", "i", "f", "\\ ", "x", "}"]
    assert tokenize(r"\mathrm { s i n }") == [r"\mathrm", "{", "s", "i", "n", "}"]


def test_dialect_detection():
    assert is_spaced_dialect(r"\frac { 5 } { 1 4 }")
    assert not is_spaced_dialect(r"x^{2} + 14")
    assert not is_spaced_dialect(r"x^2")


MUST_BE_EQUAL = [
    (r"x^{2} + y^{2} \lt 1", r"x ^ 2 + y ^ { 2 } < 1"),
    (r"\frac 1x", r"{ \frac { 1 } { x } }"),
    (r"\left( x \right)", r"( x )"),
    (r"\Bigg( x \Bigg)", r"(x)"),
    (r"\left\{ x \right.", r"\{ x"),
    (r"\sum\limits_{i=1}^{n}", r"\sum _ { i = 1 } ^ n"),
    (r"\operatorname{s i n} x", r"\sin x"),
    (r"f^{\prime}(x)", r"f'(x)"),
    (r"a \, b \quad c", "abc"),
    (r"\sqrt[3]{x}", r"\sqrt [ 3 ] x"),
    (r"\not=", r"\neq"),
    (r"\le \ge \to", r"\leq \geq \rightarrow"),
    (r"\lbrace a \rbrace", r"\{ a \}"),
    (r"\displaystyle \int_0^1", r"\int_{0}^{1}"),
    (r"\hspace{1cm} x", "x"),
    (r"R_g\ltq^{-1}\ltl_0", r"R_g < q^{-1} < l_0"),  # CROHME labels that lost a space after \lt
    (r"a\gtMb", r"a > M b"),
    (r"\dfrac{1}{x}+\dbinom{n}{k}", r"\frac 1x+\binom nk"),  # display style, as susik reads formulas
    (r"S_{n} \text {, } \text { 2] }", "S_n,2]"),  # digits and punctuation look the same in text
]


@pytest.mark.parametrize(("a", "b"), MUST_BE_EQUAL)
def test_rendering_invisible_differences_normalise_equal(a, b):
    assert normalize(a) == normalize(b)


MUST_STAY_DIFFERENT = [
    (r"{ab}^2", r"ab^2"),
    (r"x^{2}", r"x_{2}"),
    (r"\leq", r"\leqslant"),
    (r"{-}1", r"-1"),
    (r"\frac{a}{b}", r"\frac{b}{a}"),
    (r"\tfrac{a}{b}", r"\frac{a}{b}"),  # text style is smaller
    (r"\text{PA}", "PA"),  # upright letters, not italic
    (r"\text{1-2}", "1-2"),  # a hyphen, not a minus
    (r"x^{10}", r"x^1 0"),
    (r"\sqrt{x}", r"\sqrt{x}2"),
    (r"\text{if x}", r"\text{ifx}"),
    (r"\cdots", r"\ldots"),
    (r"{a \over b} c", r"a \over b c"),
    (r"\mathrm{d}", "d"),
    (r"(x)", r"[x]"),
    (r"x'", "x"),
    (r"A \ltimes B", r"A < imes B"),  # a real command that starts like a glued \lt
]


@pytest.mark.parametrize(("a", "b"), MUST_STAY_DIFFERENT)
def test_visible_differences_survive_normalisation(a, b):
    assert normalize(a) != normalize(b)


@pytest.mark.parametrize("latex", [r"\frac{", "}}a{", r"\left", "x^", "", r"\sqrt[", r"\begin{cases}"])
def test_malformed_input_never_raises(latex):
    assert isinstance(normalize(latex), list)


def test_normalised_latex_is_compact_and_stable():
    once = normalize_latex(r"\frac { 1 } { x ^ { 2 } } + \sin x")
    assert once == r"\frac{1}{x^2}+\sin x"
    assert normalize_latex(once) == once


def test_vocabulary_encodes_decodes_and_persists(tmp_path):
    vocab = Vocabulary.build([["x", "^", "2"], ["x", "+", "1"]])
    assert vocab.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert vocab.tokens[4] == "x"  # most frequent first
    ids = vocab.encode(["x", "+", "y"])
    assert ids[0] == vocab.bos_id and ids[-1] == vocab.eos_id
    assert vocab.decode(ids) == ["x", "+", "<unk>"]
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").tokens == vocab.tokens
    with pytest.raises(ValueError):
        Vocabulary(["a", "a"])
