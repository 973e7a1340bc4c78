"""A dataset being annotated: its page manifest (the labels) and a sidecar log of the annotation work.

The manifest stays the one source of truth for labels and is rewritten atomically on every save. The sidecar
`annotations.jsonl` beside it records who did what: one event per save (annotator, seconds spent, the regions
as saved), per review (verdict and comment) and per pre-annotation (model proposals). It is rewritten atomically too
(temp file + fsync + rename), after the manifest, so a crash between the two keeps the edit.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
from pydantic import BaseModel, ConfigDict, Field

from susik.data.manifest import ManifestError, PageRegion, PageSample, read_manifest, write_manifest
from susik.data.version import dataset_version

SIDECAR = "annotations.jsonl"
# The manifest as it was before this session's first save, beside it so its image paths still resolve:
# `susik data diff DIR/.manifest.session-start.jsonl DIR` shows what the session changed.
BASELINE = ".manifest.session-start.jsonl"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
Status = Literal["new", "pre-annotated", "annotated", "reviewed", "rejected"]
STATUSES: tuple[str, ...] = ("new", "pre-annotated", "annotated", "reviewed", "rejected")


class Event(BaseModel):
    """One line of the sidecar log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["save", "review", "prelabel"]
    image: str
    at: float = Field(description="unix seconds")
    annotator: str = ""
    seconds: float = Field(0.0, ge=0, description="time spent on the item in this session")
    regions: tuple[PageRegion, ...] = ()
    orientation: Literal[0, 90, 180, 270] = 0
    verdict: Literal["accepted", "rejected"] | None = None
    comment: str = Field("", description="the reviewer's reason, for the annotator")
    model_version: str | None = None
    version: str | None = Field(None, description="the dataset version a save produced or a review saw")
    scores: tuple[float, ...] = ()  # per region, for pre-annotations


class DatasetError(ValueError):
    """A dataset folder the tool cannot open or an item it does not hold."""


@dataclass(frozen=True)
class Item:
    index: int
    sample: PageSample
    status: Status
    prelabel: Event | None


def atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    """Replace `path` with the lines, durably: temp file beside it, fsync, rename, fsync the folder."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read_events(path: Path) -> list[Event]:
    if not path.is_file():
        return []
    events = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                events.append(Event.model_validate_json(line))
            except ValueError as exc:
                raise DatasetError(f"{path}:{number}: {exc}") from exc
    return events


def status_of(sample: PageSample, events: list[Event]) -> Status:
    """The latest human event decides: a review its verdict, a save "annotated" (labels changed after a review
    need another); with neither, proposals (a model's or existing unreviewed labels) make it pre-annotated."""
    human = [event for event in events if event.type in ("save", "review")]
    if human:
        last = human[-1]
        if last.type == "save":
            return "annotated"
        return "reviewed" if last.verdict == "accepted" else "rejected"
    if sample.regions or any(event.type == "prelabel" for event in events):
        return "pre-annotated"
    return "new"


def manifest_from_images(folder: Path, source: str, license: str) -> list[PageSample]:
    """Unlabeled page records for the images of a folder that has no manifest yet."""
    samples = []
    for file in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        if image is None:
            continue
        height, width = image.shape[:2]
        samples.append(
            PageSample(
                image=file.name,
                width=width,
                height=height,
                orientation=0,
                regions=(),
                source=source,
                license=license,
            )
        )
    return samples


class Dataset:
    """The pages of one dataset folder and their annotation log; thread-safe (one lock, short sections)."""

    def __init__(self, folder: str | Path, *, source: str = "annotate", license: str = "unspecified") -> None:
        self.folder = Path(folder).resolve()
        if not self.folder.is_dir():
            raise DatasetError(f"{folder}: no such folder")
        self.manifest = self.folder / "manifest.jsonl"
        self.sidecar = self.folder / SIDECAR
        self._lock = threading.Lock()
        if not self.manifest.is_file():
            samples = manifest_from_images(self.folder, source, license)
            if not samples:
                raise DatasetError(f"{folder}: no manifest.jsonl and no images")
            write_manifest(self.manifest, samples)
        try:
            samples = list(read_manifest(self.manifest))
        except ManifestError as exc:
            raise DatasetError(str(exc)) from exc
        if not all(isinstance(sample, PageSample) for sample in samples):
            raise DatasetError(f"{self.manifest}: not a page manifest (crop records found)")
        self.samples: list[PageSample] = samples  # type: ignore[assignment]
        self.events = read_events(self.sidecar)
        self._baseline_kept = False

    def __len__(self) -> int:
        return len(self.samples)

    def events_for(self, image: str) -> list[Event]:
        return [event for event in self.events if event.image == image]

    def item(self, index: int) -> Item:
        if not 0 <= index < len(self.samples):
            raise DatasetError(f"no item {index}: the dataset has {len(self.samples)}")
        sample = self.samples[index]
        events = self.events_for(sample.image)
        prelabels = [event for event in events if event.type == "prelabel"]
        return Item(index, sample, status_of(sample, events), prelabels[-1] if prelabels else None)

    def items(self) -> list[Item]:
        return [self.item(index) for index in range(len(self.samples))]

    def image_file(self, index: int) -> Path:
        return self.folder / self.item(index).sample.image

    def save(
        self,
        index: int,
        regions: tuple[PageRegion, ...],
        orientation: int,
        annotator: str,
        seconds: float,
        conditions: tuple[str, ...] | None = None,
    ) -> str:
        """Write the page's labels to the manifest and log the work; returns the new dataset version.

        `conditions` None keeps the page's conditions as they are.
        """
        with self._lock:
            sample = self.item(index).sample
            changes = {"regions": [r.model_dump() for r in regions], "orientation": orientation}
            if conditions is not None:
                changes["conditions"] = list(conditions)
            updated = PageSample.model_validate({**sample.model_dump(), **changes})
            samples = [*self.samples[:index], updated, *self.samples[index + 1 :]]
            if not self._baseline_kept:
                atomic_write_lines(
                    self.folder / BASELINE, self.manifest.read_text(encoding="utf-8").splitlines()
                )
                self._baseline_kept = True
            write_manifest(self.manifest, samples)
            self.samples = samples
            version = dataset_version(self.manifest).digest
            self._log(
                Event(
                    type="save",
                    image=sample.image,
                    at=time.time(),
                    annotator=annotator,
                    seconds=seconds,
                    regions=regions,
                    orientation=orientation,
                    version=version,
                )
            )  # type: ignore[arg-type]
            return version

    def review(
        self,
        index: int,
        reviewer: str,
        verdict: Literal["accepted", "rejected"],
        seconds: float,
        comment: str = "",
    ) -> None:
        """Log a verdict on the page's labels as they are now (the version it saw is recorded with it)."""
        with self._lock:
            image = self.item(index).sample.image
            self._log(
                Event(
                    type="review",
                    image=image,
                    at=time.time(),
                    annotator=reviewer,
                    verdict=verdict,
                    comment=comment,
                    seconds=seconds,
                    version=dataset_version(self.manifest).digest,
                )
            )

    def add_prelabels(self, proposals: list[Event]) -> None:
        with self._lock:
            self.events.extend(proposals)
            self._write_sidecar()

    def version(self) -> str:
        return dataset_version(self.manifest).digest

    def _log(self, event: Event) -> None:
        self.events.append(event)
        self._write_sidecar()

    def _write_sidecar(self) -> None:
        atomic_write_lines(self.sidecar, (e.model_dump_json(exclude_defaults=True) for e in self.events))
