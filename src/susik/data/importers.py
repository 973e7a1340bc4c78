"""Importers: existing crop manifests (CROHME, HME100K, im2latex) or folders of image + LaTeX pairs into a
susik crop manifest with source and licence on every sample.

Images are referenced where they are, or copied under `<manifest folder>/images/<origin>/` on request.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from susik.data.manifest import CropSample, ManifestWriter, PathStyle
from susik.spec.dataset import Kind

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


class SourceError(ValueError):
    """A source that cannot be imported at all (not a per-sample problem)."""


@dataclass(frozen=True)
class Origin:
    """Provenance of imported samples: the defaults where a source record says nothing, or (passed as
    `override`) values that replace the record's; None fields do neither."""

    name: str
    source: str | None = None
    license: str | None = None
    kind: Kind | None = None


ORIGINS: dict[str, Origin] = {
    "crohme": Origin("crohme", "crohme", "CC BY-NC-SA 3.0 (believed)", "handwritten"),
    "hme100k": Origin("hme100k", "hme100k", "research use only (TAL)", "handwritten"),
    "im2latex": Origin("im2latex", "im2latex", "research use (arXiv-derived, no explicit licence)",
                       "printed"),
}


@dataclass(frozen=True)
class Pair:
    """An image and its label as found in a source, before provenance is settled."""

    image: Path  # absolute
    latex: str
    root: Path  # folder the source's image paths are relative to; keeps the layout when copying
    where: str  # file:line or file, for messages
    source: str | None = None
    license: str | None = None
    kind: Kind | None = None


@dataclass
class ImportReport:
    written: int = 0
    skipped: list[str] = field(default_factory=list)  # one `where: why` line per skipped sample


def read_crop_manifest(path: str | Path) -> Iterator[Pair]:
    """Pairs of a JSON-lines crop manifest like the shared data's: `image` (relative to the manifest's
    folder) and `latex` are required; `source`, `license` and `kind` are taken when present."""
    path = Path(path)
    root = path.parent.resolve()
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                raw = json.loads(line)
            except ValueError as exc:
                raise SourceError(f"{where}: {exc}") from exc
            if not isinstance(raw, dict) or "regions" in raw:
                raise SourceError(f"{where}: not a crop record (expected an object with image and latex)")
            if not isinstance(raw.get("image"), str) or not isinstance(raw.get("latex"), str):
                raise SourceError(f"{where}: needs string fields 'image' and 'latex'")
            yield Pair(root / raw["image"], raw["latex"], root, where, raw.get("source"), raw.get("license"),
                       raw.get("kind"))


def read_folder(path: str | Path) -> Iterator[Pair]:
    """Pairs from a folder of `name.<image>` + `name.txt` (searched recursively), or from a CSV/TSV file
    with `image` and `latex` columns (image paths relative to the file's folder)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in (".csv", ".tsv"):
        yield from _read_table(path)
        return
    if not path.is_dir():
        raise SourceError(f"{path}: expected a folder of image + .txt pairs or a .csv/.tsv file")
    root = path.resolve()
    for image in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        label = image.with_suffix(".txt")
        if label.is_file():
            # a label spread over several lines is one formula
            yield Pair(image, " ".join(label.read_text(encoding="utf-8").split()), root, str(label))


def _read_table(path: Path) -> Iterator[Pair]:
    root = path.parent.resolve()
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        if not rows.fieldnames or not {"image", "latex"} <= set(rows.fieldnames):
            raise SourceError(f"{path}: needs a header with 'image' and 'latex' columns, "
                              f"got {rows.fieldnames}")
        for row in rows:
            # DictReader counts the header as line 1, so line_num is the file line of this row
            yield Pair(root / row["image"], (row["latex"] or "").strip(), root, f"{path}:{rows.line_num}")


def import_crops(
    pairs: Iterable[Pair],
    writer: ManifestWriter,
    origin: Origin,
    *,
    override: Origin | None = None,
    copy: bool = False,
    on_item: Callable[[], None] | None = None,
) -> ImportReport:
    """Write one crop record per usable pair; pairs without an image file or a label are skipped.

    Provenance per field: `override` if set, else the source record's, else `origin`'s.
    """
    report = ImportReport()
    override = override or Origin(origin.name)
    copies = writer.folder / "images" / origin.name
    for pair in pairs:
        if on_item:
            on_item()
        problem = _problem(pair)
        sample = None
        if problem is None:
            try:
                sample = CropSample(
                    image=str(_copy(pair, copies) if copy else pair.image),
                    latex=pair.latex,
                    source=override.source or pair.source or origin.source or "",
                    license=override.license or pair.license or origin.license or "",
                    kind=override.kind or pair.kind or origin.kind,
                )
            except ValidationError as exc:
                problem = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        if sample is None:
            report.skipped.append(f"{pair.where}: {problem}")
            continue
        writer.write(sample)
        report.written += 1
    return report


def run_import(
    pairs: Iterable[Pair],
    out: str | Path,
    origin: Origin,
    *,
    override: Origin | None = None,
    copy: bool = False,
    paths: PathStyle = "auto",
    on_item: Callable[[], None] | None = None,
) -> ImportReport:
    """`import_crops` into a new manifest at `out`, written atomically."""
    with ManifestWriter(out, paths=paths) as writer:
        return import_crops(pairs, writer, origin, override=override, copy=copy, on_item=on_item)


def _problem(pair: Pair) -> str | None:
    if not pair.latex.strip():
        return "empty label"
    if not pair.image.is_file():
        return f"image not found: {pair.image}"
    return None


def _copy(pair: Pair, folder: Path) -> Path:
    try:
        relative = pair.image.resolve().relative_to(pair.root)
    except ValueError:
        relative = Path(pair.image.name)
    target = folder / relative
    if not (target.is_file() and target.stat().st_size == pair.image.stat().st_size):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pair.image, target)  # not copy2: read-only source modes would follow
    return target

