"""Whether LaTeX compiles, judged by the renderer's own TeX run (latex only, no images).

"Compiles" means: it may share a TeX run (`susik.data.render.tex_safe`: balanced braces and environments,
no `$`, `%` or definitions) and typesets in display math with amsmath + amssymb without any TeX error or
missing glyph. Korean or other characters TeX cannot typeset count as errors.
"""

from __future__ import annotations

from collections.abc import Sequence

from susik.data.render import tex_compiles


def compile_check(formulas: Sequence[str]) -> list[bool]:
    """One latex run for the whole list (more only where a formula breaks TeX); one flag per formula."""
    return tex_compiles(list(formulas))


def compiles(latex: str) -> bool:
    return compile_check([latex])[0]
