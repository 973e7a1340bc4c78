"""`susik data purge`: erase users' photos and what was derived from them, or the photos past retention."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from susik.serve.commands import DbOption, _fail, _open_store, _progress, console
from susik.serve.settings import Settings

if TYPE_CHECKING:
    from susik.serve.privacy import PurgeReport


def purge(
    request_id: Annotated[
        list[str] | None, typer.Option("--request-id", help="a request to erase (repeat for several)")
    ] = None,
    dataset: Annotated[
        list[Path] | None,
        typer.Option(
            help="another dataset (folder or manifest) that may hold exported samples; the exports recorded "
            "in the store are always searched"
        ),
    ] = None,
    expired: Annotated[
        bool,
        typer.Option(
            "--expired", help="delete stored photos past SUSIK_RETENTION_DAYS and any kept without consent"
        ),
    ] = False,
    db: DbOption = None,
) -> None:
    """Erase users' photos: a request's photo and every sample derived from it (store, exported datasets,
    which get a new version), or with --expired every photo past the retention period."""
    from susik.data.manifest import ManifestError
    from susik.serve.privacy import purge_expired, purge_requests

    if not request_id and not expired:
        raise _fail("give --request-id ID (repeatable) or --expired")
    try:
        retention = Settings().retention_days
    except ValueError as error:
        raise _fail(f"bad SUSIK_* setting: {error}") from None
    store = _open_store(db)
    try:
        if expired:
            aged = purge_expired(store, retention)
            kept = f"older than {retention:g} days" if retention else "(no retention period set)"
            console.print(f"deleted the photos of {len(aged.requests)} requests {kept} or without consent; "
                          f"{aged.files_deleted} files")
        if request_id:
            datasets = list(dataset or [])
            with _progress() as progress:
                exports = sum(Path(row.path).is_dir() for row in store.exports())
                task = progress.add_task("purging datasets", total=exports + len(datasets))
                advance = partial(progress.advance, task)
                report = purge_requests(store, request_id, datasets, on_dataset=advance)
            _print_report(report)
    except (ManifestError, OSError) as error:
        raise _fail(str(error)) from None
    finally:
        store.close()


def _print_report(report: PurgeReport) -> None:
    console.print(
        f"store: {len(report.store.requests)} requests lost their photo and consent; "
        f"{report.store.files_deleted} photo files deleted"
    )
    if report.unknown:
        console.print(f"[yellow]not in the store: {', '.join(report.unknown)} (datasets searched anyway)[/]")
    for removal in report.datasets:
        console.print(
            f"{removal.manifest}: removed {removal.removed} samples, {removal.files_deleted} files -> "
            f"version {removal.version.digest}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if report.stray_files:
        console.print(f"deleted {report.stray_files} crops left outside the exports' manifests")
