"""Recognizer training data: crop manifests in, `(grey uint8 HxW, latex)` pairs out.

- `CropStream`: an endless, seeded mixture over several crop manifests with weights, decoding images lazily
  and augmenting them (`susik.data.crop_augment`); shardable across DataLoader workers.
- `CropDataset`: a finite, indexable reader for validation manifests (no augmentation).
- `write_rendered`, `write_restored_crohme`: build crop datasets (PNG files + manifest) once, streaming.
- `restore_crohme`: the shared CROHME images are formulas letterboxed into 256x256 canvases; cropping to the
  ink gives back their own aspect ratio.

Memory stays bounded: a manifest is indexed by the byte offset of each line (8 bytes a sample) and a record
is parsed only when it is drawn.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from susik.data.crop_augment import PRESETS, AugmentConfig, augment_crop
from susik.data.manifest import CropSample, ManifestReader, ManifestWriter, image_path, parse_line
from susik.data.render import RenderConfig, render_many
from susik.runtime.image_io import ImageLoadError, load_image
from susik.runtime.preprocess import to_gray

# --- CROHME crops -------------------------------------------------------------------------------------------

# The shared CROHME PNGs are 256x256 canvases. Measured on them (train and val2013): the ink's longer side is
# always 246 px (a 5 px border) and the other side is free, and the ink's width/height tracks the TeX
# rendering of the label (log-correlation 0.8-0.9 per subset): the formula was scaled *with* its aspect and
# letterboxed, not stretched. So restoring the aspect means cropping to the ink; resizing to a TeX aspect
# would distort handwriting instead (MfrDB's ink is ~30% narrower than its TeX rendering).


def ink_box(gray: np.ndarray, threshold: int = 200) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the pixels darker than `threshold`, bottom/right exclusive."""
    ink = gray < threshold
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ink.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def restore_crohme(gray: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """A CROHME canvas cropped to its ink with a white border of `margin` x the ink's height (at least
    2 px), keeping the ink's aspect ratio; a canvas without ink is returned unchanged. Training data and
    evaluation both use this, so inference on CROHME-style canvases should too."""
    box = ink_box(gray)
    if box is None:
        return gray
    top, bottom, left, right = box
    pad = max(2, round(margin * (bottom - top)))
    ink = gray[top:bottom, left:right]
    return cv2.copyMakeBorder(ink, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)


# MathBrush's annotators wrapped handwritten letters in `\mbox { n }` (15% of CROHME train labels, none of the
# 2013 set's): handwriting has no upright/italic distinction, so the wrapper only teaches the model a habit.
_MBOX = re.compile(r"\\mbox\s*\{\s*([^{}]*?)\s*\}")


def plain_handwritten_label(latex: str) -> str:
    """A handwritten sample's label without `\\mbox{...}` wrappers around plain letters: `\\mbox { n }` -> `n`."""
    return _MBOX.sub(lambda match: " " + match.group(1) + " ", latex).strip()


# --- reading manifests lazily ------------------------------------------------------------------------------


class CropReadError(ValueError):
    """A manifest line or its image that cannot be used; the message names the file and line, `reason` is
    one of bad_record, empty_label, unreadable_image."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _LineIndex:
    """Byte offsets of the non-blank lines of a manifest; lines are read on demand."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.folder = self.path.parent
        offsets: list[int] = []
        try:
            with self.path.open("rb") as handle:
                position = 0
                for line in handle:
                    if line.strip():
                        offsets.append(position)
                    position += len(line)
        except OSError as exc:
            raise CropReadError(f"{self.path}: cannot read: {exc.strerror or exc}", "bad_manifest") from exc
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self._handle = None

    def __len__(self) -> int:
        return len(self.offsets)

    def __getstate__(self) -> dict:  # an open file does not travel to a worker process
        return {**self.__dict__, "_handle": None}

    def record(self, index: int) -> CropSample:
        if self._handle is None:
            self._handle = self.path.open("rb")
        self._handle.seek(int(self.offsets[index]))
        line = self._handle.readline().decode("utf-8", errors="replace")
        where = f"{self.path} record {index + 1}"
        try:
            sample = parse_line(line)
        except (ValueError, ValidationError) as exc:
            raise CropReadError(f"{where}: {str(exc).splitlines()[0]}", "bad_record") from exc
        if not isinstance(sample, CropSample):
            raise CropReadError(f"{where}: a page record, not a crop", "bad_record")
        if not sample.latex.strip():
            raise CropReadError(f"{where}: empty label", "empty_label")
        return sample

    def image(self, sample: CropSample) -> np.ndarray:
        try:
            return to_gray(load_image(self.folder / sample.image))
        except ImageLoadError as exc:
            raise CropReadError(f"{self.path}: {sample.image}: {exc}", "unreadable_image") from exc


class StreamSource(BaseModel):
    """One manifest in the training mixture."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest: Path
    weight: float = Field(gt=0, description="share of the stream, relative to the other sources' weights")
    augment: Literal["printed", "handwritten", "pen", "photo", "tablet", "none"] | AugmentConfig = Field(
        "printed", description="a preset of susik.data.crop_augment, 'none', or a full AugmentConfig"
    )

    def augment_config(self) -> AugmentConfig | None:
        if isinstance(self.augment, AugmentConfig):
            return self.augment
        return None if self.augment == "none" else PRESETS[self.augment]


class CropStream:
    """An endless stream of `(grey uint8 HxW, latex)` drawn from weighted manifests.

    Each source is read in epochs of a fresh permutation (seeded by `seed`, source and epoch, the same in
    every worker); worker `worker` of `workers` takes every `workers`-th position of it, so workers never
    repeat each other within an epoch. The source choice and the augmentation use a generator seeded by
    `seed` and the worker, so a stream replays identically for the same arguments (and each `iter()` starts
    it afresh: iterate once and keep the iterator).

    With a torch DataLoader, wrap it in an IterableDataset whose `__iter__` returns
    `iter(stream.shard(info.id, info.num_workers))` for `info = torch.utils.data.get_worker_info()`.

    Unusable samples (bad line, missing or undecodable image, empty label) are skipped and counted in
    `skipped` (by reason, per process); `max_failures` consecutive failures raise, since that means the data
    is missing rather than damaged.
    """

    def __init__(self, sources: Sequence[StreamSource], *, seed: int = 0, worker: int = 0, workers: int = 1,
                 max_failures: int = 1000) -> None:
        if not sources:
            raise ValueError("a stream needs at least one source")
        self.sources = tuple(sources)
        self.indexes = [_LineIndex(source.manifest) for source in self.sources]
        self._check_shard(worker, workers)
        weights = np.array([source.weight for source in self.sources], dtype=np.float64)
        self.weights = weights / weights.sum()
        self.seed, self.worker, self.workers = seed, worker, workers
        self.max_failures = max_failures
        self.skipped: Counter[str] = Counter()

    def shard(self, worker: int, workers: int) -> CropStream:
        """The same stream's part for one of `workers` workers (indexes are shared, not re-read)."""
        self._check_shard(worker, workers)
        shard = CropStream.__new__(CropStream)
        shard.__dict__.update(self.__dict__)
        shard.worker, shard.workers = worker, workers
        shard.skipped = Counter()
        return shard

    def _check_shard(self, worker: int, workers: int) -> None:
        if not 0 <= worker < workers:
            raise ValueError(f"worker {worker} is not in 0..{workers - 1}")
        for source, index in zip(self.sources, self.indexes, strict=True):
            if len(index) < workers:
                raise ValueError(f"{source.manifest}: {len(index)} samples, fewer than {workers} workers")

    def _positions(self, source: int) -> Iterator[int]:
        """This worker's sample indexes of one source, epoch after epoch."""
        size = len(self.indexes[source])
        epoch = 0
        while True:
            order = np.random.default_rng([self.seed, source, epoch]).permutation(size)
            yield from order[self.worker :: self.workers].tolist()
            epoch += 1

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        rng = np.random.default_rng([self.seed, len(self.sources), self.worker, self.workers])
        positions = [self._positions(i) for i in range(len(self.sources))]
        configs = [source.augment_config() for source in self.sources]
        failures = 0
        while True:
            choice = int(rng.choice(len(self.sources), p=self.weights))
            index = self.indexes[choice]
            try:
                sample = index.record(next(positions[choice]))
                image = index.image(sample)
                config = configs[choice]
                if config is not None:
                    image = augment_crop(image, rng, config).image
            except ValueError as exc:  # CropReadError, or augment_crop refusing a degenerate image
                self.skipped[exc.reason if isinstance(exc, CropReadError) else "degenerate_image"] += 1
                failures += 1
                if failures >= self.max_failures:
                    raise RuntimeError(f"{failures} samples in a row were unusable; last: {exc}") from exc
                continue
            failures = 0
            yield image, sample.latex


class CropDataset:
    """A finite crop manifest (e.g. a frozen validation set): `dataset[i]` is `(grey uint8 HxW, latex)`.

    `record(i)` gives the manifest record (image path, source, conditions) for reports; an unusable sample
    raises `CropReadError` naming the file and line, so an evaluation can count it instead of dying.
    """

    def __init__(self, manifest: str | Path) -> None:
        self.manifest = Path(manifest)
        self._index = _LineIndex(self.manifest)

    def __len__(self) -> int:
        return len(self._index)

    def record(self, index: int) -> CropSample:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._index.record(index)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        sample = self.record(index)
        return self._index.image(sample), sample.latex

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        for index in range(len(self)):
            yield self[index]


# --- writing crop datasets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormulaItem:
    """A formula to render, with the provenance its crop will carry."""

    latex: str
    source: str
    license: str


@dataclass
class WriteStats:
    written: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)  # the first few, as `label: why`

    def fail(self, what: str, keep: int = 20) -> None:
        self.failed += 1
        if len(self.failures) < keep:
            self.failures.append(what)


def numbered_image_path(folder: Path, number: int) -> Path:
    # a thousand files a folder keeps directory listings fast
    return folder / f"{number // 1000:04d}" / f"{number:07d}.png"


def write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"cannot write {path}")


def write_rendered(items: Iterable[FormulaItem], writer: ManifestWriter, images: Path, *,
                   render: RenderConfig | None = None, workers: int = 1, seed: int = 0,
                   augment: AugmentConfig | None = None,
                   on_item: Callable[[], None] | None = None) -> WriteStats:
    """Typeset each item with TeX (font, size and dpi drawn per item) into a PNG under `images` and a printed
    crop record in `writer`. With `augment`, the stored image is one augmented version (a frozen evaluation
    set) and the record carries its conditions; each item's augmentation is drawn from a generator of its own
    (seed, position), so fixing one item's rendering leaves every other crop of a frozen set as it was. Streams:
    only the batches in flight are held."""
    stats = WriteStats()
    for_render, for_records = itertools.tee(items)
    rendered = render_many((item.latex for item in for_render), render, workers=workers, seed=seed)
    for number, (item, result) in enumerate(zip(for_records, rendered, strict=True)):
        if on_item:
            on_item()
        if result is None:
            stats.fail(f"{item.latex}: TeX could not render it")
            continue
        image, conditions = result.image, ()
        if augment is not None:
            augmented = augment_crop(image, np.random.default_rng([seed, 1, number]), augment)
            image, conditions = augmented.image, augmented.conditions
        path = numbered_image_path(images, number)
        write_png(path, image)
        writer.write(CropSample(image=str(path.resolve()), latex=item.latex, source=item.source,
                                license=item.license, kind="printed", conditions=conditions))
        stats.written += 1
    return stats


def write_restored_crohme(manifest: Path, writer: ManifestWriter, images: Path, *, source: str, license: str,
                          on_item: Callable[[], None] | None = None) -> WriteStats:
    """Each CROHME record's canvas cropped to its ink (`restore_crohme`) as a new PNG, with a handwritten crop
    record carrying `source` and `license` and its label's `\\mbox` wrappers dropped
    (`plain_handwritten_label`). Unreadable lines and images are counted, not fatal."""
    stats = WriteStats()
    reader = ManifestReader(manifest, skip_invalid=True)
    for number, sample in enumerate(reader):
        if on_item:
            on_item()
        if not isinstance(sample, CropSample) or not sample.latex.strip():
            stats.fail(f"{sample.image}: not a crop with a label")
            continue
        try:
            gray = to_gray(load_image(image_path(manifest, sample)))
        except ImageLoadError as exc:
            stats.fail(f"{sample.image}: {exc}")
            continue
        if ink_box(gray) is None:
            stats.fail(f"{sample.image}: no ink")
            continue
        path = numbered_image_path(images, number)
        write_png(path, restore_crohme(gray))
        writer.write(CropSample(image=str(path.resolve()), latex=plain_handwritten_label(sample.latex),
                                source=source, license=license, kind="handwritten"))
        stats.written += 1
    for error in reader.skipped:
        stats.fail(str(error))
    return stats
