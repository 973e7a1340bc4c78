"""Formula images from real TeX: latex + dvipng, one run of each per font present in a batch.

A math font package is global to a LaTeX document, so a batch is grouped by font; inside a group every
formula is one DVI page (the `\\shipout` of an `\\hbox`), and one latex run plus one dvipng run render the
whole group. Markers written to the log around each formula attribute TeX errors to their formula: a formula
that errs, leaves TeX in a broken state, stops TeX or hangs it gets `None`, and the rest of the batch renders.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

FontName = Literal["cm", "times", "palatino", "txfonts", "pxfonts", "euler", "sans"]


@dataclass(frozen=True)
class _Font:
    package: str  # the .sty that must be installed
    preamble: str
    switch: str = ""  # set inside each formula's box (for fonts that are a math version)


# Fonts without a bold math italic set `\boldsymbol{a}` exactly as `a` (amsmath's fallback), so the label said
# bold where the image showed none: mathptmx (bm finds its bold), and sansmath's Latin letters (bm cannot either
# there: amsmath's \pmb overprints them).
_POOR_MANS_BOLD = r"\usepackage{bm}\let\boldsymbol\bm"

# Only fonts in texlive-latex-base/-recommended and texlive-fonts-recommended (no lmodern/newtx there).
FONTS: dict[str, _Font] = {
    "cm": _Font("amsmath.sty", ""),
    "times": _Font("mathptmx.sty", r"\usepackage{mathptmx}" + _POOR_MANS_BOLD),
    "palatino": _Font("mathpazo.sty", r"\usepackage{mathpazo}"),
    "txfonts": _Font("txfonts.sty", r"\usepackage{txfonts}"),
    "pxfonts": _Font("pxfonts.sty", r"\usepackage{pxfonts}"),
    "euler": _Font("euler.sty", r"\usepackage{euler}"),
    "sans": _Font(
        "sansmath.sty", r"\usepackage{sansmath}\renewcommand{\familydefault}{\sfdefault}\let\boldsymbol\pmb",
        r"\sansmath"
    ),
}


class RenderConfig(BaseModel):
    """How formulas are typeset. A font and a size are drawn per formula, a dpi per font group of a batch."""

    model_config = ConfigDict(extra="forbid")

    fonts: list[FontName] = Field(
        default=["cm", "times", "palatino", "txfonts", "pxfonts", "euler", "sans"], min_length=1
    )
    sizes_pt: list[float] = Field(default=[10.0, 11.0, 12.0, 14.0], min_length=1)
    dpi_min: int = Field(default=110, ge=30, le=1200)
    dpi_max: int = Field(default=220, ge=30, le=1200)
    margin_px: int = Field(default=4, ge=0, le=256)  # white border kept around the ink
    timeout_s: float = Field(default=10.0, gt=0)  # per TeX/dvipng run, plus the per-formula allowance below
    timeout_per_formula_s: float = Field(default=0.01, ge=0)

    @model_validator(mode="after")
    def _check(self) -> RenderConfig:
        if self.dpi_min > self.dpi_max:
            raise ValueError(f"dpi_min {self.dpi_min} > dpi_max {self.dpi_max}")
        if any(s <= 0 for s in self.sizes_pt):
            raise ValueError("sizes_pt must be positive")
        return self


@dataclass(frozen=True, eq=False)
class RenderedFormula:
    """A tight crop: uint8 grayscale, black ink on white, `margin_px` of white around the ink."""

    image: np.ndarray
    latex: str
    font: str
    dpi: int
    size_pt: float


@dataclass(frozen=True)
class RenderStats:
    rendered: int
    failed: int


# --- screening: what may enter a TeX run shared with other formulas ---------------------------------------

# Commands that define, redefine, read or write files, change catcodes, registers or modes, or loop: any of
# them could break the formulas after it in the same run (or the machine), and none belongs in a formula.
_DENIED = frozenset(
    ["def", "edef", "gdef", "xdef", "let", "futurelet", "newcommand", "renewcommand", "providecommand", "DeclareRobustCommand", "newenvironment", "renewenvironment", "DeclareMathOperator", "DeclareMathSymbol", "catcode", "lccode", "uccode", "mathcode", "delcode", "sfcode", "makeatletter", "makeatother", "input", "include", "InputIfFileExists", "openin", "openout", "read", "readline", "write", "immediate", "special", "shipout", "output", "everymath", "everydisplay", "everyhbox", "everyvbox", "everypar", "everycr", "everyjob", "afterassignment", "aftergroup", "csname", "endcsname", "loop", "repeat", "count", "countdef", "dimen", "dimendef", "skip", "skipdef", "toks", "toksdef", "global", "setbox", "box", "copy", "unhbox", "unvbox", "unhcopy", "unvcopy", "setcounter", "addtocounter", "stepcounter", "refstepcounter", "newcounter", "batchmode", "scrollmode", "errorstopmode", "nonstopmode", "scantokens", "detokenize", "stop", "dump", "begingroup", "endgroup", "bgroup", "egroup", "verb", "usepackage", "RequirePackage", "documentclass", "typeout", "message", "errmessage", "pdfprimitive", "primitive", "tracingonline", "showlists", "show", "showbox", "showthe"]
)
_ENVIRONMENT = re.compile(r"\\(begin|end)\s*\{([^{}]*)\}")
_BEGIN_END = re.compile(r"\\(?:begin|end)(?![A-Za-z])")
_CONTROL_SEQUENCE = re.compile(r"\\[A-Za-z]+|\\.", re.DOTALL)
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_GROUPING = re.compile(r"[{}$%]")


def tex_safe(latex: str) -> bool:
    """Whether a formula may share a TeX run: balanced braces and environments, no `$`/`%`, nothing denied."""
    if not latex.strip() or "^^" in latex or _CONTROL_CHARACTERS.search(latex):
        return False
    if not _DENIED.isdisjoint(command[1:] for command in _CONTROL_SEQUENCE.findall(latex)):
        return False
    depth = 0
    for char in _GROUPING.findall(_CONTROL_SEQUENCE.sub("", latex)):  # `\{`, `\%`, `\$` do not count
        if char in "$%":
            return False
        depth += 1 if char == "{" else -1
        if depth < 0:
            return False
    if depth != 0:
        return False
    environments = _ENVIRONMENT.findall(latex)
    if len(environments) != len(_BEGIN_END.findall(latex)):
        return False  # a \begin or \end without a braced name
    stack: list[str] = []
    for kind, name in environments:
        if name.strip() == "document":
            return False
        if kind == "begin":
            stack.append(name.strip())
        elif not stack or stack.pop() != name.strip():
            return False
    return not stack


# --- one TeX job: a group of formulas in one font, run until every formula is resolved ------------------

_STATE = r"\the\currentgrouplevel:\ifvmode v\else x\fi"
_MARK = re.compile(r"@@([BSE])(\d*):(-?\d+:[vx])@@")
_ERROR_PREFIXES = ("! ", "Missing character:")


@dataclass(frozen=True)
class _Page:
    index: int  # the formula's slot in the caller's list
    latex: str
    size_pt: float


@dataclass(frozen=True)
class _Placed:
    dvi: Path
    physical_page: int  # 1-based, as dvipng numbers its output files


def _preamble(font: _Font) -> list[str]:
    return [
        r"\RequirePackage{fix-cm}",  # Computer Modern at any size, not only the design sizes
        r"\documentclass{article}",
        r"\usepackage{amsmath,amssymb,mathrsfs}",
        font.preamble,
        r"\pagestyle{empty}\tracinglostchars=1",  # lost glyphs are logged, so they count as errors
    ]


def _document(pages: Sequence[_Page], font: _Font, preloaded: bool) -> str:
    """The job's source; without the preamble when a format holding it is `preloaded`."""
    lines = [] if preloaded else _preamble(font)
    lines += [r"\begin{document}", rf"\typeout{{@@B:{_STATE}@@}}"]
    for page in pages:
        # The formula sits on its own line so that an error's context never shows another formula.
        size = f"{page.size_pt:g}"
        lines += [
            rf"\typeout{{@@S{page.index}:{_STATE}@@}}\setbox0\hbox{{\fontsize{{{size}}}{{{size}}}\selectfont"
            rf"{font.switch}$\displaystyle",
            " ".join(page.latex.split()),
            rf"$}}\count0={page.index + 1} \shipout\box0 \typeout{{@@E{page.index}:{_STATE}@@}}",
        ]
    lines.append(r"\end{document}")
    return "\n".join(lines) + "\n"


def default_cache_dir() -> Path:
    """Where dumped TeX formats are kept: `$XDG_CACHE_HOME/susik/tex`, else `~/.cache/susik/tex`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "susik" / "tex"


@cache
def _latex_format_stamp() -> str:
    """Identifies the installed LaTeX format: a dumped format is only valid for the one it was built on."""
    found = subprocess.run(
        ["kpsewhich", "-engine=pdftex", "latex.fmt"], capture_output=True, text=True, check=False
    )
    path = found.stdout.strip()
    if not path:
        return "unknown"
    stat = Path(path).stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def _format(font: _Font, cache_dir: Path | None, timeout: float) -> Path | None:
    """A format with the font's preamble already loaded (it saves a third of latex's start-up, paid once per
    font in every batch), built on first use and cached; None when it cannot be built or stored."""
    if cache_dir is None:
        return None
    key = hashlib.sha256("\n".join([_latex_format_stamp(), *_preamble(font)]).encode()).hexdigest()[:16]
    target = cache_dir / f"susik-{key}.fmt"
    if target.exists():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            (Path(tmp) / "preamble.tex").write_text(
                "\n".join([*_preamble(font), r"\dump"]) + "\n", encoding="utf-8"
            )
            _run(
                ["latex", "-ini", "-jobname=susik", "-interaction=batchmode", "&latex", "preamble.tex"],
                Path(tmp),
                timeout,
            )
            built = Path(tmp) / "susik.fmt"
            if not built.exists():
                return None
            os.replace(built, target)  # atomic: processes building the same format at once do not clash
    except OSError:
        return None
    return target


def _parse_log(log: str) -> dict[int, bool]:
    """Each resolved formula's outcome. Parsing stops where TeX's state was left broken: what follows is
    unresolved and must run again."""
    base: str | None = None
    current: int | None = None
    errored = False
    outcome: dict[int, bool] = {}
    for line in log.splitlines():
        mark = _MARK.fullmatch(line.rstrip())
        if mark is None:
            if current is not None and line.startswith(_ERROR_PREFIXES):
                errored = True
            continue
        kind, index, state = mark.groups()
        if kind == "B":
            base = state
        elif kind == "S":
            if current is not None:  # its end marker was swallowed
                outcome[current] = False
            if state != base:
                return outcome
            current, errored = int(index), False
        elif current == int(index):
            outcome[current] = not errored and state == base
            current = None
            if state != base:
                return outcome
    if current is not None:  # TeX stopped inside this formula
        outcome[current] = False
    return outcome


def _dvi_page_numbers(path: Path) -> list[int]:
    r"""`\count0` of each page in physical order, read from the DVI's chain of bop commands."""
    data = path.read_bytes()
    end = len(data)
    while end > 0 and data[end - 1] == 223:  # trailing padding bytes
        end -= 1
    if end < 6 or data[end - 1] != 2 or data[end - 6] != 249:
        raise ValueError(f"{path.name} has no DVI postamble")
    (post,) = struct.unpack(">i", data[end - 5 : end - 1])
    if data[post] != 248:
        raise ValueError(f"{path.name} has a broken DVI postamble")
    (bop,) = struct.unpack(">i", data[post + 1 : post + 5])
    counts: list[int] = []
    while bop >= 0:
        count0, *_ = struct.unpack(">10i", data[bop + 1 : bop + 41])
        counts.append(count0)
        (previous,) = struct.unpack(">i", data[bop + 41 : bop + 45])
        if previous >= bop:
            raise ValueError(f"{path.name} has a broken chain of pages")
        bop = previous
    return counts[::-1]


def _read_page_numbers(path: Path) -> list[int]:
    """As `_dvi_page_numbers`, but no pages when TeX left no readable DVI (its formulas then fail)."""
    try:
        return _dvi_page_numbers(path)
    except (OSError, ValueError, IndexError, struct.error):
        return []


def _run(command: list[str], cwd: Path, timeout: float) -> bool:
    """Run a TeX tool; False when it ran out of time."""
    try:
        subprocess.run(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    return True


def _typeset(
    pages: Sequence[_Page], font: _Font, workdir: Path, config: RenderConfig, fmt: Path | None = None
) -> dict[int, _Placed]:
    """Run latex over the pages until each is placed in a DVI or failed; returns the placed ones.

    A run that TeX stops or that breaks TeX's state keeps what it resolved and queues the rest for a fresh
    run; a run that times out (its log and DVI are then unusable) is bisected down to the hanging formula.
    A format `fmt` that fails to load is deleted and the preamble read from source instead.
    """
    placed: dict[int, _Placed] = {}
    queue: deque[list[_Page]] = deque([list(pages)])
    job = 0
    while queue:
        group = queue.popleft()
        job += 1
        name = f"job{job}"
        (workdir / f"{name}.tex").write_text(_document(group, font, fmt is not None), encoding="utf-8")
        command = ["latex", "-interaction=batchmode", "-no-shell-escape", f"{name}.tex"]
        if fmt is not None:
            command.insert(1, f"-fmt={fmt.with_suffix('')}")
        timeout = config.timeout_s + config.timeout_per_formula_s * len(group)
        if not _run(command, workdir, timeout):
            if len(group) > 1:
                queue.extendleft([group[len(group) // 2 :], group[: len(group) // 2]])
            continue
        log_path = workdir / f"{name}.log"
        log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        if "@@B:" not in log:
            if fmt is not None:
                fmt.unlink(missing_ok=True)
                fmt = None
                queue.appendleft(group)
                continue
            tail = "\n".join(log.splitlines()[-20:])
            raise RuntimeError(f"latex failed before the first formula (font preamble?):\n{tail}")
        outcome = _parse_log(log)
        if not outcome:  # no progress at all: blame the first formula so the loop always advances
            outcome = {group[0].index: False}
        dvi = workdir / f"{name}.dvi"
        physical: dict[int, int] = {}  # \count0 -> physical page; -1 where a \count0 repeats
        for page_number, count0 in enumerate(_read_page_numbers(dvi) if any(outcome.values()) else [], 1):
            physical[count0] = -1 if count0 in physical else page_number
        for index, ok in outcome.items():
            if ok and physical.get(index + 1, -1) > 0:
                placed[index] = _Placed(dvi, physical[index + 1])
        rest = [page for page in group if page.index not in outcome]
        if rest:
            queue.appendleft(rest)
    return placed


def _rasterise(dvi: Path, dpi: int, timeout: float) -> None:
    """All pages of a DVI to PNGs `<stem>-<physical page>.png` beside it, one dvipng run."""
    options = ["-q", "-T", "tight", "-D", str(dpi), "-bg", "White", "-fg", "Black", "-z", "1"]
    _run(["dvipng", *options, "-o", f"{dvi.stem}-%d.png", dvi.name], dvi.parent, timeout)


def _crop(image: np.ndarray, margin: int) -> np.ndarray | None:
    """Crop to the ink (dvipng's `tight` box may keep blank rows) and pad with white; None without ink."""
    x, y, w, h = cv2.boundingRect(cv2.bitwise_not(image))
    if w == 0 or h == 0:
        return None
    return cv2.copyMakeBorder(
        image[y : y + h, x : x + w], margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255
    )


@cache
def _installed(filename: str) -> bool:
    found = subprocess.run(["kpsewhich", filename], capture_output=True, text=True, check=False)
    return bool(found.stdout.strip())


def available_fonts() -> list[str]:
    """Fonts of `FONTS` whose packages this TeX installation has."""
    if shutil.which("kpsewhich") is None:
        return []
    return [name for name, font in FONTS.items() if _installed(font.package)]


def _require_tex(fonts: Iterable[str], programs: Iterable[str]) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: install texlive-latex-base and dvipng")
    absent = [f for f in fonts if not _installed(FONTS[f].package)]
    if absent:
        raise RuntimeError(f"fonts {absent} are not installed (have {available_fonts()})")


class TexRenderer:
    """Renders batches of math formulas (content without `$`) in display style to tight grayscale crops."""

    def __init__(self, config: RenderConfig | None = None, cache_dir: Path | None = None) -> None:
        """`cache_dir` keeps the dumped TeX formats (default `default_cache_dir()`)."""
        self.config = config or RenderConfig()
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        _require_tex(self.config.fonts, ("latex", "dvipng", "kpsewhich"))
        self._rendered = 0
        self._failed = 0

    @property
    def stats(self) -> RenderStats:
        return RenderStats(rendered=self._rendered, failed=self._failed)

    def render(self, formulas: Sequence[str], rng: np.random.Generator) -> list[RenderedFormula | None]:
        """One image per formula, `None` where TeX could not render it (bad LaTeX, blank output, timeout)."""
        config = self.config
        fonts = rng.integers(len(config.fonts), size=len(formulas))
        sizes = rng.choice(np.asarray(config.sizes_pt, dtype=float), size=len(formulas))
        results: list[RenderedFormula | None] = [None] * len(formulas)
        with tempfile.TemporaryDirectory(prefix="susik-tex-") as tmp:
            for slot, font in enumerate(config.fonts):
                dpi = int(rng.integers(config.dpi_min, config.dpi_max + 1))
                members = np.flatnonzero(fonts == slot)
                pages = [
                    _Page(int(i), formulas[i], float(sizes[i])) for i in members if tex_safe(formulas[i])
                ]
                if not pages:
                    continue
                workdir = Path(tmp) / f"{slot}-{font}"  # a font may be listed twice, to weight it
                workdir.mkdir()
                for index, image in self._render_group(pages, font, dpi, workdir).items():
                    results[index] = RenderedFormula(image, formulas[index], font, dpi, float(sizes[index]))
        rendered = sum(r is not None for r in results)
        self._rendered += rendered
        self._failed += len(formulas) - rendered
        return results

    def _render_group(self, pages: list[_Page], font: str, dpi: int, workdir: Path) -> dict[int, np.ndarray]:
        """One latex run (more only after failures) and one dvipng run for the pages of one font."""
        config = self.config
        fmt = _format(FONTS[font], self.cache_dir, config.timeout_s)
        placed = _typeset(pages, FONTS[font], workdir, config, fmt)
        timeout = config.timeout_s + config.timeout_per_formula_s * len(pages)
        for dvi in sorted({p.dvi for p in placed.values()}):
            _rasterise(dvi, dpi, timeout)
        images: dict[int, np.ndarray] = {}
        for index, where in placed.items():
            png = cv2.imread(
                str(workdir / f"{where.dvi.stem}-{where.physical_page}.png"), cv2.IMREAD_GRAYSCALE
            )
            crop = _crop(png, config.margin_px) if png is not None else None
            if crop is not None:
                images[index] = crop
        return images


def tex_compiles(
    formulas: Sequence[str], config: RenderConfig | None = None, cache_dir: Path | None = None
) -> list[bool]:
    """Whether each formula typesets without a TeX error in Computer Modern (latex only, no images)."""
    config = config or RenderConfig(fonts=["cm"])
    _require_tex(["cm"], ("latex", "kpsewhich"))
    pages = [_Page(i, latex, 10.0) for i, latex in enumerate(formulas) if tex_safe(latex)]
    if not pages:
        return [False] * len(formulas)
    fmt = _format(FONTS["cm"], cache_dir if cache_dir is not None else default_cache_dir(), config.timeout_s)
    with tempfile.TemporaryDirectory(prefix="susik-tex-") as tmp:
        placed = _typeset(pages, FONTS["cm"], Path(tmp), config, fmt)
    return [i in placed for i in range(len(formulas))]


# --- across processes -------------------------------------------------------------------------------------


def _render_batch(
    config: RenderConfig, cache_dir: Path | None, formulas: list[str], seed: int, batch: int
) -> list[RenderedFormula | None]:
    return TexRenderer(config, cache_dir).render(formulas, np.random.default_rng([seed, batch]))


def _batches(formulas: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for formula in formulas:
        batch.append(formula)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def render_many(
    formulas: Iterable[str],
    config: RenderConfig | None = None,
    *,
    workers: int | None = None,
    batch_size: int = 2048,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> Iterator[RenderedFormula | None]:
    """Render a stream of formulas on `workers` processes (default: all cores), yielding results in order.

    Batch k draws its fonts, sizes and dpi from `default_rng([seed, k])`, so the output does not depend on
    `workers`. At most two batches per worker are in flight, so the input may be an endless stream. Big
    batches pay off: latex starts once per font present in a batch (~0.15 s each).
    """
    config = config or RenderConfig()
    workers = workers or os.cpu_count() or 1
    _require_tex(config.fonts, ("latex", "dvipng", "kpsewhich"))
    if workers == 1:
        for k, batch in enumerate(_batches(formulas, batch_size)):
            yield from _render_batch(config, cache_dir, batch, seed, k)
        return
    # spawn, not fork: the caller may hold torch/OpenMP threads that a forked child would inherit broken
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        pending: deque[Future[list[RenderedFormula | None]]] = deque()
        for k, batch in enumerate(_batches(formulas, batch_size)):
            pending.append(pool.submit(_render_batch, config, cache_dir, batch, seed, k))
            if len(pending) >= 2 * workers:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()
