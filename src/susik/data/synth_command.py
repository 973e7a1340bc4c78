"""The `susik synth` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from susik.data.synth import SynthConfig, synthesize, write_pages
from susik.spec.dataset import SpecError, load_spec


def synth(
    spec: Annotated[Path, typer.Option(help="dataset spec YAML")] = Path("specs/dataset.yaml"),
    n: Annotated[int, typer.Option("--n", min=1, help="number of pages")] = 100,
    out: Annotated[Path, typer.Option(help="output folder (manifest.jsonl + images/)")] = Path("data/synth"),
    seed: Annotated[int, typer.Option(help="the output depends on this alone")] = 0,
    corpus: Annotated[Path | None, typer.Option(help="formula-per-line text file to mix in")] = None,
    generated_ratio: Annotated[float, typer.Option(help="share of built-in K-12 formulas with --corpus")] = 0.5,
    handwritten: Annotated[Path | None, typer.Option(help="crop manifest of real handwriting")] = None,
    handwritten_license: Annotated[str, typer.Option(help="licence of that handwriting")] = "see its manifest",
    workers: Annotated[int | None, typer.Option(help="processes (default: all cores)")] = None,
) -> None:
    """Write synthetic worksheet photos with exact formula quads, following the spec's proportions."""
    console = Console(stderr=True)
    try:
        page_spec = load_spec(spec).pages
        config = SynthConfig(corpus=corpus, generated_ratio=generated_ratio if corpus else 1.0,
                             handwritten=handwritten, handwritten_license=handwritten_license)
        for path in (corpus, handwritten):
            if path is not None and not path.exists():
                raise FileNotFoundError(f"{path} does not exist")
        with Progress(TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("pages", total=n)
            written, failures = write_pages(synthesize(page_spec, n, seed, config, workers=workers), out,
                                            config.jpeg_quality, on_page=lambda: progress.advance(task))
    except (SpecError, FileNotFoundError, RuntimeError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    console.print(f"wrote {written} pages to {out / 'manifest.jsonl'} ({failures} formulas TeX rejected, replaced)")
