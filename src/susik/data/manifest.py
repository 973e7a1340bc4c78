"""Manifest records (JSON lines) and their streaming reader and atomic writer.

crop: {"image", "latex", "source", "license"} (+ optional "kind", "conditions")
page: {"image", "width", "height", "orientation", "regions": [{"quad", "polygon"?, "latex", "kind"}],
       "conditions", "source", "license"}
Image paths are relative to the manifest's folder (an absolute path is allowed and kept).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from susik.spec.dataset import Condition, Kind

Point = tuple[float, float]
PathStyle = Literal["auto", "relative", "absolute"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(min_length=1)
    source: str = Field(min_length=1, description="where the sample comes from (dataset and split, or synth)")
    license: str = Field(min_length=1, description="terms the sample is used under")

    def to_json_line(self) -> str:
        return _dumps(self.model_dump(mode="json", exclude_defaults=True))


class CropSample(_Record):
    """One formula crop and its LaTeX."""

    latex: str
    kind: Kind | None = None
    conditions: tuple[Condition, ...] = ()


class PageRegion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quad: tuple[Point, Point, Point, Point] = Field(description="clockwise from the formula's top-left")
    polygon: tuple[Point, ...] | None = None
    latex: str
    kind: Kind

    @field_validator("polygon")
    @classmethod
    def _enough_points(cls, polygon: tuple[Point, ...] | None) -> tuple[Point, ...] | None:
        if polygon is not None and len(polygon) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(polygon)}")
        return polygon


class PageSample(_Record):
    """One photo of a page and the formulas on it."""

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    orientation: Literal[0, 90, 180, 270] = Field(description="degrees clockwise the photo is turned")
    regions: tuple[PageRegion, ...]
    conditions: tuple[Condition, ...] = ()

    @property
    def kind(self) -> str | None:
        """printed, handwritten, mixed (both on one page), or None for a page without formulas."""
        kinds = {region.kind for region in self.regions}
        if len(kinds) > 1:
            return "mixed"
        return next(iter(kinds), None)

    def to_json_line(self) -> str:
        # conditions is part of the page contract even when empty, so it is always written
        raw = self.model_dump(mode="json", exclude_defaults=True)
        raw["conditions"] = list(self.conditions)
        return _dumps(raw)


Sample = CropSample | PageSample


class ManifestError(ValueError):
    """A manifest line that cannot be read; the message starts with `file:line:`."""


def parse_line(line: str) -> Sample:
    """One JSON line as a record: a page if it has `regions`, otherwise a crop."""
    raw = json.loads(line)
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    model = PageSample if "regions" in raw else CropSample
    return model.model_validate(raw)


class ManifestReader:
    """Streams the records of a manifest; blank lines are ignored.

    With `skip_invalid`, malformed lines are skipped and collected in `skipped` (as `ManifestError`s);
    otherwise the first one raises.
    """

    def __init__(self, path: str | Path, *, skip_invalid: bool = False) -> None:
        self.path = Path(path)
        self.skip_invalid = skip_invalid
        self.skipped: list[ManifestError] = []

    def __iter__(self) -> Iterator[Sample]:
        return (sample for _, sample in self.numbered())

    def numbered(self) -> Iterator[tuple[int, Sample]]:
        """(line number, record) pairs."""
        try:
            handle = self.path.open(encoding="utf-8")
        except OSError as exc:
            raise ManifestError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, parse_line(line)
                except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
                    error = ManifestError(f"{self.path}:{number}: {_one_line(exc)}")
                    if not self.skip_invalid:
                        raise error from exc
                    self.skipped.append(error)


def read_manifest(path: str | Path) -> Iterator[Sample]:
    """Stream the records of a manifest; a malformed line raises `ManifestError` naming file:line."""
    return iter(ManifestReader(path))


def image_path(manifest: str | Path, sample: Sample) -> Path:
    """Where a record's image is on disk: relative paths are relative to the manifest's folder."""
    return Path(manifest).parent / sample.image


def find_manifest(path: str | Path) -> Path:
    """A manifest file, or a dataset folder holding `manifest.jsonl` (or exactly one `*.jsonl`)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ManifestError(f"{path}: no such file or folder")
    if (path / "manifest.jsonl").is_file():
        return path / "manifest.jsonl"
    candidates = sorted(path.glob("*.jsonl"))
    if len(candidates) != 1:
        raise ManifestError(f"{path}: no manifest.jsonl and {len(candidates)} other *.jsonl files; name one")
    return candidates[0]


class ManifestWriter:
    """Writes records to a temporary file beside `path` and renames it into place only on a clean close,
    so a crash or an exception never leaves a partial manifest (an existing one stays as it was).

    `paths` says how an absolute image path is written: "auto" makes it relative when the image lies under
    the manifest's folder, "relative" always makes it relative (with `..` if needed), "absolute" never does.
    Relative image paths are taken as already relative to the manifest's folder and kept.
    """

    def __init__(self, path: str | Path, *, paths: PathStyle = "auto") -> None:
        self.path = Path(path)
        self.folder = self.path.parent.resolve()
        self.paths = paths
        self.count = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.folder)
        self._temp = Path(temp)
        # mkstemp makes the file private; a manifest keeps the mode of the one it replaces, else rw-r--r--
        os.chmod(fd, self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644)
        self._handle = os.fdopen(fd, "w", encoding="utf-8")

    def image_ref(self, image: str | Path) -> str:
        """The image path as it should appear in this manifest."""
        image = Path(image)
        if not image.is_absolute():
            return image.as_posix()
        if self.paths == "absolute":
            return image.as_posix()
        if self.paths == "relative":
            return Path(os.path.relpath(image, self.folder)).as_posix()
        try:
            return image.relative_to(self.folder).as_posix()
        except ValueError:
            return image.as_posix()

    def write(self, sample: Sample) -> None:
        ref = self.image_ref(sample.image)
        if ref != sample.image:
            sample = sample.model_copy(update={"image": ref})
        self._handle.write(sample.to_json_line() + "\n")
        self.count += 1

    def close(self) -> None:
        """Make the manifest durable and visible under its name."""
        if self._handle.closed:
            return
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._temp, self.path)
        _fsync_folder(self.folder)

    def abort(self) -> None:
        """Drop everything written; the target path is left untouched."""
        if not self._handle.closed:
            self._handle.close()
        self._temp.unlink(missing_ok=True)

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_manifest(path: str | Path, samples: Iterable[Sample], *, paths: PathStyle = "auto") -> int:
    """Write all `samples` atomically; returns how many were written."""
    with ManifestWriter(path, paths=paths) as writer:
        for sample in samples:
            writer.write(sample)
    return writer.count


def _dumps(raw: dict) -> str:
    # provenance last, so the lines read image, label, ..., source, license
    ordered = {key: value for key, value in raw.items() if key not in ("source", "license")}
    ordered["source"], ordered["license"] = raw["source"], raw["license"]
    return json.dumps(ordered, ensure_ascii=False)


def _fsync_folder(folder: Path) -> None:
    # the rename itself is durable only once the folder entry is flushed (POSIX; not possible on Windows)
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
            parts.append(f"{where}: {message}" if where else message)
        return "; ".join(parts)
    return str(exc).replace("\n", " ")
