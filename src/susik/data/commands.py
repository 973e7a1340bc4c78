"""`susik data …`: coverage against the spec, dataset versions and diffs, importers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from susik.data.corpus import load_corpus
from susik.data.crops import CropDataset, CropReadError
from susik.data.font_glyphs import HANDWRITING_FONT_PACKAGES, add_font_writers, installed_handwriting_fonts
from susik.data.glyphs import GlyphBank, build_glyph_bank
from susik.data.handwriting import HandwritingConfig
from susik.data.handwriting_set import HandwrittenSetConfig, write_handwritten_set
from susik.data.importers import ORIGINS, Origin, SourceError, read_crop_manifest, read_folder, run_import
from susik.data.manifest import ManifestError, ManifestReader, PathStyle, find_manifest
from susik.data.version import dataset_version, diff
from susik.spec.coverage import CoverageReport, Spread, coverage
from susik.spec.dataset import CONDITIONS, SpecError, load_spec

data_app = typer.Typer(help="Dataset coverage, versions, diffs and imports.", no_args_is_help=True)

_out = Console()
_err = Console(stderr=True)
_EXPECTED = (ManifestError, SpecError, SourceError, OSError, ValueError)
T = TypeVar("T")


class Source(str, Enum):
    crohme = "crohme"
    hme100k = "hme100k"
    im2latex = "im2latex"
    folder = "folder"


class KindChoice(str, Enum):
    printed = "printed"
    handwritten = "handwritten"


class Paths(str, Enum):
    auto = "auto"
    relative = "relative"
    absolute = "absolute"


def _say(text: str, *, err: bool = False) -> None:
    """A plain line: no markup, no highlighting, never wrapped (paths and LaTeX stay greppable)."""
    (_err if err else _out).print(text, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except _EXPECTED as exc:
        _say(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@contextmanager
def _progress(description: str, total: int | None) -> Iterator[Callable[[], None]]:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # off when stderr is not a terminal: rich would still write a stray blank line into logs
    with Progress(*columns, console=_err, transient=True, disable=not _err.is_terminal) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


@data_app.command()
def stats(
    manifest: Annotated[Path, typer.Argument(help="a manifest .jsonl, or a dataset folder holding one")],
    spec: Annotated[Path, typer.Option(help="dataset spec YAML")] = Path("specs/dataset.yaml"),
    total: Annotated[int | None, typer.Option(min=1, help="scale requirements to this set size "
                                              "(default: the spec's total)")] = None,
) -> None:
    """Required vs present per kind × condition cell, the cells that fall short, and label summaries."""
    with _one_line_errors():
        dataset_spec = load_spec(spec)
        path = find_manifest(manifest)
        reader = ManifestReader(path)
        with _progress("reading", _count_lines(path)) as advance:
            report = coverage(_ticking(reader, advance), dataset_spec, total=total)
        _print_coverage(report, path)


@data_app.command()
def version(
    dataset: Annotated[Path, typer.Argument(help="a dataset folder (its manifest.jsonl) or a manifest file")],
    cache: Annotated[bool, typer.Option(help="reuse image hashes kept in DATASET/.susik-hashes.json")] = True,
) -> None:
    """Content hash of a dataset: its manifest records and the bytes of every image they reference."""
    with _one_line_errors():
        path = find_manifest(dataset)
        with _progress("hashing", _count_lines(path)) as advance:
            found = dataset_version(path, use_cache=cache, on_item=advance)
        _say(found.digest)
        _say(f"{found.manifest}: {found.n_samples} samples, {found.n_images} images, "
             f"{found.n_bytes / 1e6:.1f} MB")


@data_app.command("diff")
def diff_command(
    a: Annotated[Path, typer.Argument(help="the old dataset (folder or manifest)")],
    b: Annotated[Path, typer.Argument(help="the new dataset (folder or manifest)")],
    limit: Annotated[int, typer.Option(min=0, help="list at most this many samples per section")] = 20,
) -> None:
    """Samples added, removed, moved, or changed (image bytes or label) from A to B."""
    with _one_line_errors():
        with _progress("comparing", None):
            found = diff(a, b)
        _say(f"added {len(found.added)}, removed {len(found.removed)}, changed {len(found.changed)}, "
             f"moved {len(found.moved)}")
        sections = [
            ("added", list(found.added)),
            ("removed", list(found.removed)),
            ("changed", [f"{c.image}: " + ", ".join(["image bytes"] * c.image_changed + list(c.fields))
                         for c in found.changed]),
            ("moved", [f"{old} -> {new}" for old, new in found.moved]),
        ]
        for title, lines in sections:
            for line in lines[:limit]:
                _say(f"  {title}: {line}")
            if len(lines) > limit:
                _say(f"  … {len(lines) - limit} more {title}")


@data_app.command("import")
def import_command(
    source: Annotated[Source, typer.Argument(help="crohme / hme100k / im2latex: SRC is that set's .jsonl; "
                                             "folder: SRC is a folder of x.png + x.txt, or a .csv/.tsv")],
    src: Annotated[Path, typer.Argument(help="source manifest, folder or table")],
    out: Annotated[Path, typer.Option(help="crop manifest to write")],
    copy: Annotated[bool, typer.Option(help="copy images into OUT's folder (default: refer)")] = False,
    paths: Annotated[Paths, typer.Option(help="image paths: auto = relative inside OUT's folder, else "
                                         "absolute")] = Paths.auto,
    source_name: Annotated[str | None, typer.Option("--source", help="source field (folder: needed)")] = None,
    license: Annotated[str | None, typer.Option(help="licence field, overriding the source's "
                                                "(required for folder)")] = None,
    kind: Annotated[KindChoice | None, typer.Option(help="kind field, overriding the source's")] = None,
) -> None:
    """Import crops into a susik crop manifest with source and licence on every sample."""
    with _one_line_errors():
        if source is Source.folder:
            if not (source_name and license):
                raise ValueError("importing a folder needs --source and --license")
            origin, pairs = Origin("folder"), list(read_folder(src))
        else:
            origin, pairs = ORIGINS[source.value], list(read_crop_manifest(src))
        kind_name = kind.value if kind else None
        override = Origin(origin.name, source_name, license, kind_name)  # type: ignore[arg-type]
        path_style: PathStyle = paths.value  # type: ignore[assignment]
        with _progress("importing", len(pairs)) as advance:
            report = run_import(pairs, out, origin, override=override, copy=copy, paths=path_style,
                                on_item=advance)
        _say(f"wrote {report.written} samples to {out}; skipped {len(report.skipped)}")
        for line in report.skipped[:20]:
            _say(f"  skipped {line}", err=True)
        if len(report.skipped) > 20:
            _say(f"  … {len(report.skipped) - 20} more skipped", err=True)


def _labelled_canvases(dataset: CropDataset) -> Iterator[tuple[np.ndarray, str]]:
    for index in range(len(dataset)):
        try:
            yield dataset[index]
        except CropReadError as exc:
            _say(f"  skipped {exc}", err=True)


@data_app.command("handwriting")
def handwriting_command(
    glyphs: Annotated[Path, typer.Option(help="crop manifest of handwritten formulas to cut glyphs from "
                                         "(e.g. CROHME train); its labels are also relabelled into new formulas")],
    out: Annotated[Path, typer.Option(help="crop manifest to write (images go beside it)")],
    formulas: Annotated[list[Path], typer.Option(help="formula-per-line corpus to write (repeatable)")] = [],  # noqa: B006
    count: Annotated[int, typer.Option(min=1, help="crops to write")] = 1000,
    relabel_share: Annotated[float, typer.Option(min=0, max=1, help="share of formulas that are the glyph "
                                                 "set's labels with symbols swapped")] = 0.5,
    exclude: Annotated[list[Path], typer.Option(help="crop manifest whose formulas must not be written, e.g. "
                                                "a validation set (repeatable)")] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="the output depends on this and the inputs alone")] = 0,
    bank: Annotated[Path | None, typer.Option(help="a glyph bank written by --save-bank: its glyphs are used and "
                                              "none are cut (--glyphs then gives only the labels to relabel; "
                                              "its images need not exist)")] = None,
    save_bank: Annotated[Path | None, typer.Option(help="also write the glyph bank here (.npz), font writers "
                                                   "included")] = None,
    fonts: Annotated[list[Path], typer.Option("--font", help="a handwriting font whose glyphs join the bank as "
                                              "one more writer (repeatable)")] = [],  # noqa: B006
    handwriting_fonts: Annotated[bool, typer.Option(help="also every installed font of susik's handwriting font "
                                                    "list (Debian: apt-get install "
                                                    + " ".join(HANDWRITING_FONT_PACKAGES) + ")")] = False,
    font_share: Annotated[float, typer.Option(min=0, max=1, help="chance a formula is written in a font's hand, "
                                              "where the bank has font writers")] = 0.3,
) -> None:
    """Write new handwritten formulas composed from real writers' glyphs (a crop manifest, kind handwritten)."""
    with _one_line_errors():
        fonts = [*fonts, *(installed_handwriting_fonts() if handwriting_fonts else [])]
        if handwriting_fonts and not fonts:
            raise ValueError("--handwriting-fonts: none of susik's handwriting fonts is installed (Debian: "
                             "apt-get install " + " ".join(HANDWRITING_FONT_PACKAGES) + ")")
        dataset = CropDataset(glyphs)
        if bank is not None:
            glyph_bank = GlyphBank.load(bank)
        else:
            with _progress("cutting glyphs", len(dataset)) as advance:
                glyph_bank = build_glyph_bank(_ticking(_labelled_canvases(dataset), advance))
        _print_bank(glyph_bank)
        if fonts:
            added = add_font_writers(glyph_bank, fonts)
            _say(f"font writers: {len(fonts)} fonts, glyphs " + " ".join(f"{n}:{c}" for n, c in added.items()))
        if save_bank is not None:
            _say(f"glyph bank written to {glyph_bank.save(save_bank)}")
        labels = _labels(dataset)
        corpus = [line for path in formulas for line in load_corpus(path)]
        excluded = [latex for path in exclude for latex in _labels(CropDataset(path))]
        config = HandwrittenSetConfig(count=count, relabel_share=relabel_share if corpus else 1.0,
                                      writing=HandwritingConfig(font_writer=font_share))
        with _progress("writing", count) as advance:
            stats = write_handwritten_set(glyph_bank, corpus, labels, out, config=config, seed=seed,
                                          exclude=excluded, on_item=advance)
        _say(f"wrote {stats.written} handwritten crops to {out}; failed {stats.failed}")
        for line in stats.failures:
            _say(f"  {line}", err=True)


def _labels(dataset: CropDataset) -> list[str]:
    return [dataset.record(index).latex for index in range(len(dataset))]


def _print_bank(bank: GlyphBank) -> None:
    _say(f"glyphs from {bank.formulas_used} of {bank.formulas_seen} formulas (one-line formulas and "
         f"fractions of one-line parts whose ink split into one group a symbol; lone big operators), "
         f"{len(bank.symbols)} symbols:")
    _say("  " + " ".join(f"{symbol}:{bank.count(symbol)}" for symbol in bank.symbols))


def _ticking(items: Iterable[T], advance: Callable[[], None]) -> Iterator[T]:
    for item in items:
        yield item
        advance()


def _print_coverage(report: CoverageReport, path: Path) -> None:
    _say(f"{path}: {report.n} {report.level}s; requirements for a set of {report.total}")
    grid = Table(title="present / required (kind × condition)", title_justify="left")
    grid.add_column("condition")
    for kind in report.kinds:
        grid.add_column(kind, justify="right")
    by_cell = {(cell.kind, cell.condition): cell for cell in report.cells}
    for condition in CONDITIONS:
        if not any(by_cell[(kind, condition)].required or by_cell[(kind, condition)].present
                   for kind in report.kinds):
            continue  # a condition this level never uses (e.g. page rotations for crops)
        row = []
        for kind in report.kinds:
            cell = by_cell[(kind, condition)]
            text = f"{cell.present}/{cell.required}"
            row.append(f"[red]{text}[/]" if cell.shortfall else text)
        grid.add_row(condition, *row)
    _out.print(grid)
    _say("kinds: " + ", ".join(f"{k} {v}" for k, v in report.per_kind.items()))

    missing = report.missing
    if missing:
        short = Table(title=f"missing: {len(missing)} cells below requirement "
                            f"({sum(c.shortfall for c in missing)} samples short)", title_justify="left")
        for name in ("kind", "condition", "required", "present", "shortfall"):
            short.add_column(name, justify="left" if name in ("kind", "condition") else "right")
        for cell in missing:
            numbers = (cell.required, cell.present, cell.shortfall)
            short.add_row(cell.kind, cell.condition, *map(str, numbers))
        _out.print(short)
    else:
        _say("missing: none, every cell meets its requirement")

    for reason, count in report.uncounted.items():
        _say(f"not in any cell: {count} ({reason})")
    for model, count in sorted(report.answer_gaps.items()):
        _say(f"answers: {count} {report.level}s lack what {model} needs")

    summary = Table(title="labels", title_justify="left")
    for name in ("", "n", "min", "median", "p95", "max", "mean"):
        summary.add_column(name, justify="left" if not name else "right")
    spreads = {"tokens per formula": report.tokens, "formulas per page": report.formulas_per_page}
    for name, spread in spreads.items():
        if spread is not None:
            summary.add_row(name, *_spread_cells(spread))
    _out.print(summary)
    n_formulas = report.tokens.n if report.tokens else 0
    if n_formulas:
        parts = [f"{name} {count / n_formulas:.0%}" for name, count in sorted(report.structures.items())]
        _say("structures: " + (", ".join(parts) or "none"))
    if report.orientations:
        _say("orientations: " + ", ".join(f"{k}°: {v}" for k, v in report.orientations.items()))
    _say("sources: " + ", ".join(f"{k} {v}" for k, v in report.sources.items()))
    _say("licenses: " + "; ".join(f"{k} ({v})" for k, v in report.licenses.items()))


def _spread_cells(spread: Spread) -> list[str]:
    return [str(spread.n), f"{spread.min:g}", f"{spread.median:g}", f"{spread.p95:.1f}", f"{spread.max:g}",
            f"{spread.mean:.1f}"]
