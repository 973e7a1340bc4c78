"""`susik annotate …`: the labeling app, pre-annotation, the guide, agreement, Label Studio / COCO interop.

`susik annotate DATASET_DIR` is short for `susik annotate open DATASET_DIR`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from susik.annotate import interop
from susik.annotate.store import Dataset, DatasetError, read_events
from susik.data.manifest import ManifestError
from susik.spec.dataset import SpecError

DEFAULT_COMMAND = "open"
_err = Console(stderr=True)
_EXPECTED = (DatasetError, ManifestError, interop.InteropError, SpecError, OSError, ValueError)


class _DefaultGroup(TyperGroup):
    """Runs `open` when the first argument is not a subcommand, so `susik annotate DIR` works."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


annotate_app = typer.Typer(
    cls=_DefaultGroup,
    help="Label page photos with formula quads or polygons + LaTeX, and review them "
    "(`susik annotate DATASET_DIR` opens the app).",
    no_args_is_help=True,
)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    try:
        yield
    except _EXPECTED as exc:
        _err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _open_dataset(folder: Path) -> Dataset:
    with _one_line_errors():
        return Dataset(folder)


@annotate_app.command(DEFAULT_COMMAND)
def open_app(
    dataset_dir: Annotated[Path, typer.Argument(help="folder with manifest.jsonl (or just images)")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8010,
    prelabel: Annotated[
        bool, typer.Option(help="propose regions + LaTeX for new pages with the bundled model")
    ] = False,
    spec: Annotated[Path, typer.Option(help="dataset spec the guide is generated from")] = Path(
        "specs/dataset.yaml"
    ),
) -> None:
    """Open the labeling app on a dataset folder."""
    import uvicorn

    from susik.annotate.app import create_app

    dataset = _open_dataset(dataset_dir)
    if prelabel:
        _prelabel(dataset)
    _err.print(
        f"annotating {len(dataset)} pages of {dataset.folder} at http://{host}:{port}/ "
        f"(review at http://{host}:{port}/review)",
        markup=False,
    )
    uvicorn.run(create_app(dataset, spec), host=host, port=port, log_level="warning")


def _prelabel(dataset: Dataset) -> None:
    from susik.annotate.prelabel import prelabel

    try:
        from susik.models.registry import get_model
        from susik.pipeline import Pipeline
        from susik.runtime.detector import load_detector_record
        from susik.runtime.served_version import served_version

        pipeline = Pipeline.default()
        version = served_version(get_model("recognizer"), load_detector_record())
    except Exception as error:  # noqa: BLE001 - missing weights or runtime, of many types: say so in one line
        _err.print(
            f"error: --prelabel needs the bundled models, which are not available: "
            f"{type(error).__name__}: {error}",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None
    new = sum(1 for item in dataset.items() if item.status == "new")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=_err, transient=True, disable=not _err.is_terminal) as progress:
        task = progress.add_task("pre-annotating", total=new)
        done = prelabel(dataset, pipeline, version, on_item=lambda: progress.advance(task))
    _err.print(f"pre-annotated {done} of {new} new pages with {version}", markup=False)


@annotate_app.command("guide")
def guide(
    out: Annotated[Path, typer.Argument(help="HTML file to write")],
    spec: Annotated[Path, typer.Option(help="dataset spec YAML")] = Path("specs/dataset.yaml"),
) -> None:
    """Write the annotation guide (from the dataset spec and the LaTeX conventions) as HTML."""
    from susik.annotate.guide import guide_html

    with _one_line_errors():
        out.write_text(guide_html(spec), encoding="utf-8")


@annotate_app.command("agreement")
def agreement(
    dataset_dir: Annotated[Path, typer.Argument(help="dataset folder with annotations.jsonl")],
    match_iou: Annotated[float, typer.Option(min=0.0, max=1.0, help="IoU at which two quads match")] = 0.5,
) -> None:
    """Inter-annotator agreement on doubly labeled pages, and per-annotator throughput, as JSON."""
    from susik.annotate.agreement import agreement_report
    from susik.annotate.store import SIDECAR

    with _one_line_errors():
        sidecar = dataset_dir / SIDECAR
        if not sidecar.is_file():
            raise DatasetError(f"{sidecar}: no annotation log (nothing saved with the app yet)")
        report = agreement_report(read_events(sidecar), match_iou)
    typer.echo(json.dumps(report, indent=2))


@annotate_app.command("export-labelstudio")
def export_labelstudio(
    manifest: Annotated[Path, typer.Argument(help="page manifest .jsonl")],
    out: Annotated[Path, typer.Argument(help="Label Studio tasks JSON to write")],
    image_prefix: Annotated[str, typer.Option(help="prefix for data.image, e.g. /data/local-files/?d=")] = "",
) -> None:
    """Page manifest -> Label Studio tasks (polygon + per-region LaTeX; pre-annotations as predictions)."""
    with _one_line_errors():
        typer.echo(f"{interop.export_labelstudio(manifest, out, image_prefix)} tasks -> {out}")


@annotate_app.command("import-labelstudio")
def import_labelstudio(
    source: Annotated[Path, typer.Argument(help="Label Studio tasks JSON")],
    out_manifest: Annotated[Path, typer.Argument(help="page manifest .jsonl to write")],
    image_prefix: Annotated[str, typer.Option(help="prefix to strip from data.image")] = "",
) -> None:
    """Label Studio tasks -> page manifest (each task's latest annotation; polygons and rectangles)."""
    with _one_line_errors():
        typer.echo(
            f"{interop.import_labelstudio(source, out_manifest, image_prefix)} pages -> {out_manifest}"
        )


@annotate_app.command("export-coco")
def export_coco(
    manifest: Annotated[Path, typer.Argument(help="page manifest .jsonl")],
    out: Annotated[Path, typer.Argument(help="COCO JSON to write")],
) -> None:
    """Page manifest -> COCO (segmentation = polygon or quad, category = kind, `latex` per annotation)."""
    with _one_line_errors():
        typer.echo(f"{interop.export_coco(manifest, out)} images -> {out}")


@annotate_app.command("import-coco")
def import_coco(
    source: Annotated[Path, typer.Argument(help="COCO JSON")],
    out_manifest: Annotated[Path, typer.Argument(help="page manifest .jsonl to write")],
) -> None:
    """COCO (polygons + `latex`) -> page manifest; a polygon's quad is derived when the file has none."""
    with _one_line_errors():
        typer.echo(f"{interop.import_coco(source, out_manifest)} pages -> {out_manifest}")
