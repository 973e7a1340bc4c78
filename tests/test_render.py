import shutil

import numpy as np
import pytest

import susik.data.render as render_module
from susik.data.render import RenderConfig, TexRenderer, _parse_log, render_many, tex_safe
from susik.latex.validity import compile_check, compiles

needs_tex = pytest.mark.skipif(
    shutil.which("latex") is None or shutil.which("dvipng") is None,
    reason="needs TeX: apt install texlive-latex-base texlive-latex-recommended texlive-fonts-recommended "
    "dvipng",
)


@pytest.fixture(autouse=True, scope="module")
def format_cache(tmp_path_factory):
    """Dumped TeX formats go to a temporary cache, not the user's (worker processes inherit the variable)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


def fixed(font="cm", **kw):
    """One font, one size, one dpi: renders that can be compared with each other."""
    return RenderConfig(fonts=[font], sizes_pt=[10.0], dpi_min=150, dpi_max=150, **kw)


@pytest.mark.parametrize(
    ("latex", "safe"),
    [
        (r"\frac{1}{2}", True),
        (r"\begin{cases} x & 1 \\ y & 2 \end{cases}", True),
        (r"\{ x \mid x > 0 \}", True),
        (r"50 \%", True),
        (r"a \\ b \\def", True),  # `\\` then the letters d, e, f: no definition
        (r"\\{", False),  # a line break, then an unbalanced brace
        ("가 + 1", True),  # TeX itself rejects it, without hanging: see test_bad_formulas...
        ("", False),
        ("   ", False),
        (r"\frac{", False),
        ("}{", False),
        ("x $ y", False),
        ("x % comment", False),
        (r"\begin{cases} x", False),
        (r"\begin{cases} x \end{pmatrix}", False),
        (r"\end{document}", False),
        (r"\begin x", False),
        (r"\def\x{\x}\x", False),
        (r"\input{/etc/passwd}", False),
        (r"\count0=5", False),
        ("^^5cdef", False),
        ("a\x00b", False),
    ],
)
def test_tex_safe_screens_what_could_break_a_shared_run(latex, safe):
    assert tex_safe(latex) is safe


def test_parse_log_attributes_errors_and_stops_at_a_broken_state():
    log = "\n".join(
        [
            "@@B:0:v@@",
            "@@S0:0:v@@",
            "[1]",
            "@@E0:0:v@@",  # clean
            "@@S1:0:v@@",
            "! Undefined control sequence.",
            "@@E1:0:v@@",  # errs
            "@@S2:0:v@@",
            "Missing character: There is no x",
            "@@E2:0:v@@",  # lost glyph
            "@@S3:0:v@@",
            "@@E3:1:x@@",  # leaves TeX inside a group
            "@@S4:1:x@@",
            "@@E4:1:x@@",  # after that: unresolved
        ]
    )
    assert _parse_log(log) == {0: True, 1: False, 2: False, 3: False}
    assert _parse_log("@@B:0:v@@\n@@S0:0:v@@\n[1]\n@@E0:0:v@@\n@@S1:0:v@@\n! Emergency stop.") == {
        0: True,
        1: False,
    }


def test_config_rejects_unknown_keys_and_inverted_dpi():
    with pytest.raises(ValueError):
        RenderConfig(dpi=100)
    with pytest.raises(ValueError):
        RenderConfig(dpi_min=300, dpi_max=100)
    with pytest.raises(ValueError):
        RenderConfig(fonts=["comic-sans"])


@needs_tex
def test_renders_dark_ink_on_white_growing_with_the_formula():
    renderer = TexRenderer(fixed(margin_px=3))
    out = renderer.render(["x", "x+y", "x+y+z+w", r"\frac{x}{y}"], np.random.default_rng(0))
    assert all(r is not None for r in out)
    for r in out:
        image = r.image
        assert image.dtype == np.uint8 and image.ndim == 2
        assert image.min() < 60  # black ink
        assert (image[:3] == 255).all() and (image[-3:] == 255).all()  # the white margin
        assert (image[:, :3] == 255).all() and (image[:, -3:] == 255).all()
        for edge in (image[3], image[-4], image[:, 3], image[:, -4]):  # ink touches the margin: a tight crop
            assert (edge < 255).any()
        assert (r.font, r.dpi, r.size_pt) == ("cm", 150, 10.0)
    widths = [r.image.shape[1] for r in out[:3]]
    assert widths[0] < widths[1] < widths[2]
    assert out[3].image.shape[0] > out[0].image.shape[0] * 1.5  # a fraction stacks
    assert [r.latex for r in out] == ["x", "x+y", "x+y+z+w", r"\frac{x}{y}"]


@needs_tex
def test_bad_formulas_are_none_in_their_slots_and_counted():
    formulas = [
        "a",
        r"\frac{",
        r"x^{2}",
        r"\undefinedcommand{x}",
        r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}",
        "가 + 1",
        r"\frac",
        r"\sqrt{2}",
        "x^",
        r"\left(",
        r"\begin{cases} x & 1 \\ y & 2 \end{cases}",
        "",
    ]
    bad = {1, 3, 5, 6, 8, 9, 11}
    renderer = TexRenderer(RenderConfig(fonts=["cm", "times"]))
    out = renderer.render(formulas, np.random.default_rng(1))
    assert {i for i, r in enumerate(out) if r is None} == bad
    assert renderer.stats.failed == len(bad) and renderer.stats.rendered == len(formulas) - len(bad)
    renderer.render(["b"], np.random.default_rng(2))
    assert renderer.stats.rendered == len(formulas) - len(bad) + 1  # stats accumulate


@needs_tex
def test_fonts_differ():
    formula = r"f(x)=\sum_{k=1}^{n} \alpha_k x^{k}"
    images = [
        TexRenderer(fixed(font)).render([formula], np.random.default_rng(0))[0].image
        for font in ("cm", "times", "palatino")
    ]
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        assert images[a].shape != images[b].shape or not np.array_equal(images[a], images[b])


@needs_tex
@pytest.mark.parametrize("font", ["cm", "times", "palatino", "txfonts", "pxfonts", "euler", "sans"])
def test_bold_symbols_look_bold_in_every_font(font):
    """A label's `\boldsymbol` must show in the image: fonts without a bold math italic set it plain."""
    bold, plain = TexRenderer(fixed(font)).render([r"\boldsymbol{a}+\boldsymbol{b}", "a+b"], np.random.default_rng(0))
    assert bold is not None and plain is not None
    ink_bold, ink_plain = (int((image.image < 128).sum()) for image in (bold, plain))
    assert ink_bold > 1.15 * ink_plain


@needs_tex
def test_same_seed_same_images_and_choices_vary():
    formulas = [f"x_{{{i}}}" for i in range(24)]
    renderer = TexRenderer(RenderConfig(fonts=["cm", "times"], sizes_pt=[9.0, 14.0]))
    first = renderer.render(formulas, np.random.default_rng(7))
    second = renderer.render(formulas, np.random.default_rng(7))
    assert all(
        np.array_equal(a.image, b.image) and a.font == b.font for a, b in zip(first, second, strict=True)
    )
    assert len({r.font for r in first}) == 2 and len({r.size_pt for r in first}) == 2


@needs_tex
def test_a_cached_format_renders_exactly_what_the_preamble_does(monkeypatch):
    formulas = [r"\frac{a}{b}", r"\mathbb{R}\ni x", r"\text{A. } \sqrt[3]{8}"]
    config = RenderConfig(fonts=["cm", "palatino"])
    cached = TexRenderer(config).render(formulas, np.random.default_rng(3))
    assert list(render_module.default_cache_dir().glob("*.fmt"))
    monkeypatch.setattr(render_module, "_format", lambda *args: None)
    plain = TexRenderer(config).render(formulas, np.random.default_rng(3))
    assert all(np.array_equal(a.image, b.image) for a, b in zip(cached, plain, strict=True))


@needs_tex
def test_a_broken_cached_format_is_replaced(tmp_path):
    renderer = TexRenderer(fixed(), cache_dir=tmp_path)
    renderer.render(["x"], np.random.default_rng(0))
    (fmt,) = tmp_path.glob("*.fmt")
    fmt.write_bytes(b"not a format")
    assert renderer.render(["y"], np.random.default_rng(0))[0] is not None  # fell back to the preamble
    assert not fmt.exists()


@needs_tex
def test_a_run_out_of_time_gives_none_not_an_exception():
    renderer = TexRenderer(fixed(timeout_s=0.001, timeout_per_formula_s=0.0))
    assert renderer.render(["a", "b", "c"], np.random.default_rng(0)) == [None, None, None]


@needs_tex
def test_render_many_keeps_order_and_does_not_depend_on_workers():
    formulas = ["a", r"\frac{", "b", "c", r"\sqrt{d}", "e", "f"]
    config = RenderConfig(fonts=["cm", "times"])
    serial = list(render_many(formulas, config, workers=1, batch_size=3, seed=5))
    parallel = list(render_many(iter(formulas), config, workers=2, batch_size=3, seed=5))
    assert [r is None for r in serial] == [False, True, False, False, False, False, False]
    assert [r and r.latex for r in parallel] == [r and r.latex for r in serial]
    assert all(
        np.array_equal(a.image, b.image) for a, b in zip(serial, parallel, strict=True) if a is not None
    )


@needs_tex
def test_compile_check():
    formulas = [
        r"x^{2}",
        r"\frac",
        r"\sqrt{x}",
        "",
        r"\binom{n}{k}",
        r"\frac{1}{",
        r"\notacommand x",
        "한글",
        r"\begin{bmatrix} a & b \end{bmatrix}",
    ]
    assert compile_check(formulas) == [True, False, True, False, True, False, False, False, True]
    assert compiles(r"\frac{1}{2}") and not compiles(r"\left(")
    assert compile_check([]) == []
