"""Removing samples from a dataset in place: the manifest is rewritten without them and their image files are
deleted, so the dataset's next version no longer holds them (a user's right to have their data erased)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from susik.data.manifest import Sample, find_manifest, image_path, read_manifest, write_manifest
from susik.data.version import CACHE_NAME, DatasetVersion, dataset_version


@dataclass(frozen=True)
class SampleRemoval:
    manifest: Path
    removed: int  # manifest records dropped
    files_deleted: int  # their image files (a file another kept record still uses stays)
    version: DatasetVersion  # the dataset after the removal


def remove_samples(dataset: str | Path, drop: Callable[[Sample], bool]) -> SampleRemoval:
    """Drop every record of a dataset folder (or manifest) that `drop` picks, and its image file."""
    manifest = find_manifest(dataset)
    samples = list(read_manifest(manifest))
    dropped = [sample for sample in samples if drop(sample)]
    deleted = 0
    if dropped:
        kept = [sample for sample in samples if not drop(sample)]
        write_manifest(manifest, kept, paths="absolute")  # "absolute": every kept record stays as written
        in_use = {image_path(manifest, sample).resolve() for sample in kept}
        for file in sorted({image_path(manifest, sample).resolve() for sample in dropped} - in_use):
            if file.is_file():
                file.unlink()
                deleted += 1
        (manifest.parent / CACHE_NAME).unlink(missing_ok=True)  # its keys still name the deleted files
    return SampleRemoval(manifest, len(dropped), deleted, dataset_version(manifest, use_cache=False))
