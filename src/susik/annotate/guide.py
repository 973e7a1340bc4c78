"""The annotation guide page, generated from the dataset spec and the LaTeX conventions of `susik.latex`,
so the rules annotators read are the ones the data pipeline checks."""

from __future__ import annotations

import html
import importlib
from pathlib import Path

from susik.latex import normalize
from susik.spec.dataset import SpecError, load_spec

DEFAULT_SPEC = Path(__file__).resolve().parents[3] / "specs" / "dataset.yaml"
# typed the way annotators do; the guide shows the tokens each is compared as
EXAMPLES = (
    r"\frac 1 2 + x^{2}",
    r"\left( a+b \right)^2",
    r"x \le 3 \, , \; y \ne 0",
    r"\sqrt[3]{8} = 2",
)

_RULES = """
<h2>What a region is</h2>
<ul>
<li>One region = one formula as a reader would copy it: an equation, an expression, or a single symbol that is
math (a lone <i>x</i> in a sentence counts). Ordinary words and Korean text are not regions.</li>
<li>A multi-line derivation is one region per line; a fraction or a matrix spanning lines is one region.</li>
<li>Problem numbers and answer-choice labels beside a formula (<i>1)</i>, <i>(1)</i>, <i>3.</i>, <i>C.</i>,
&#9312;) are text: leave them outside the region and out of its LaTeX (synthetic pages follow the same rule).</li>
<li>Kind: <b>printed</b> for typeset or typed text, <b>handwritten</b> for anything written by hand (also
handwritten corrections on a printed page).</li>
</ul>
<h2>How to draw a quad</h2>
<ul>
<li>Click 4 corners <b>clockwise starting at the formula's top-left</b> (top-left as the formula reads, even when
the photo is turned: the tool stores the page orientation separately).</li>
<li>Fit the ink tightly with a few pixels of margin; include superscripts, limits and fraction bars.</li>
<li>On curved or crumpled paper follow the paper: the quad may be a trapezoid; keep its top edge along the
formula's baseline direction. Do not cut off descenders to make the box rectangular.</li>
<li>Drag a corner to move it, drag inside a region to move it whole; select a region and press <kbd>d</kbd> to
delete it; <kbd>Ctrl+Z</kbd> undoes.</li>
</ul>
<h2>When a quad does not fit: draw a polygon</h2>
<ul>
<li>For a formula on strongly curved or crumpled paper, or one that bends around other ink, press <kbd>g</kbd>
and click around the formula's outline (any number of points, at least 3, without crossing edges); click the
first point again or press <kbd>Enter</kbd> to close it. <kbd>Backspace</kbd> takes back the last point.</li>
<li>Edit it afterwards: drag a vertex; drag the small dot in the middle of an edge to add a vertex; click a
vertex and press <kbd>Delete</kbd> to remove it.</li>
<li>You never draw the quad of a polygon: on save the tool derives it (the smallest rectangle around the
polygon, starting at the formula's top-left for the page's orientation) and shows it dashed.</li>
</ul>
<h2>Review</h2>
<ul>
<li>The review view (<a href="/review">/review</a>) walks the saved pages, filtered by status and annotator. For
each region it shows the upright crop the recognizer will learn from beside the LaTeX rendered: check that
every glyph matches and that the crop holds the whole formula and nothing else.</li>
<li><kbd>a</kbd> accepts; <kbd>x</kbd> rejects and needs a comment saying what is wrong: the annotator sees it
on the labeling page. A page saved again after a review is back to <i>annotated</i> and needs a new review.</li>
</ul>
<h2>Keys</h2>
<p><kbd>q</kbd> start a quad · <kbd>g</kbd> start a polygon · <kbd>Enter</kbd> close it · <kbd>Esc</kbd> cancel ·
<kbd>d</kbd> delete selected · <kbd>Delete</kbd> delete the picked polygon vertex · <kbd>k</kbd> toggle kind ·
<kbd>r</kbd> rotate orientation · <kbd>s</kbd> save · <kbd>n</kbd>/<kbd>p</kbd> next/previous image ·
<kbd>Ctrl+Z</kbd> undo · mouse wheel zooms; dragging the page outside any region (or with Shift or the middle
button) pans.</p>
"""


def guide_html(spec_path: Path | None = None) -> str:
    """The whole guide as one HTML page."""
    spec_path = spec_path or DEFAULT_SPEC
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>susik annotation guide</title>",
        "<link rel='stylesheet' href='/static/style.css'></head><body class='guide'>",
        "<h1>Annotation guide</h1>",
        _RULES,
        _conditions(spec_path),
        _latex_conventions(),
        "</body></html>",
    ]
    return "\n".join(parts)


def _conditions(spec_path: Path) -> str:
    try:
        spec = load_spec(spec_path)
    except SpecError as error:
        return f"<h2>Photo conditions</h2><p>(spec unavailable: {html.escape(str(error))})</p>"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{share:.0%}</td></tr>"
        for name, share in spec.pages.conditions.items()
    )
    answers = "".join(
        f"<li><b>{html.escape(model)}</b>: page {', '.join(a.page) or '-'}; region {', '.join(a.region) or '-'}</li>"
        for model, a in spec.answers.items()
    )
    kinds = ", ".join(f"{html.escape(k)} {v:.0%}" for k, v in spec.pages.kinds.items())
    return (
        f"<h2>What the dataset needs ({html.escape(spec_path.name)})</h2>"
        f"<p>Page kinds: {kinds}. Formulas per page: {spec.pages.formulas_per_page.min}–"
        f"{spec.pages.formulas_per_page.max}.</p>"
        "<p>Conditions a photo may show (tick them in the page panel; several may apply):</p>"
        f"<table><tr><th>condition</th><th>target share</th></tr>{rows}</table>"
        f"<p>Every labeled page must carry these answers:</p><ul>{answers}</ul>"
    )


def _latex_conventions() -> str:
    # by module name: `susik.latex.normalize` as an attribute is the function, which shadows the module
    doc = html.escape(importlib.import_module("susik.latex.normalize").__doc__ or "")
    rows = "".join(
        f"<tr><td><code>{html.escape(example)}</code></td><td><code>{html.escape(' '.join(normalize(example)))}"
        "</code></td></tr>"
        for example in EXAMPLES
    )
    return (
        "<h2>LaTeX conventions</h2>"
        "<p>Type the formula as it is written, in plain LaTeX math (no <code>$</code>). Spacing and sizing "
        "differences do not matter: the tools normalise them away as below, so do not spend time on them. "
        "What matters is every glyph. The TeX check must pass before a region counts as labeled.</p>"
        f"<pre>{doc}</pre>"
        f"<table><tr><th>you type</th><th>compared as (tokens)</th></tr>{rows}</table>"
    )
