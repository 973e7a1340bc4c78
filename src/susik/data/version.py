"""Dataset versions: a dataset is identified by the content of its manifest records and of the images they
reference, and two datasets are compared sample by sample.

The version is a sha256 over the sorted per-record digests, each covering the record as canonical JSON (so
JSON formatting and line order do not matter; the image path as written does) and the sha256 of its image's
bytes. File mtimes, the folder's location and the hash cache never enter it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from susik.data.manifest import ManifestError, ManifestReader, Sample, find_manifest, image_path

CACHE_NAME = ".susik-hashes.json"
# A file modified this close to the moment it was hashed may change again within the mtime's resolution
# without its (size, mtime) changing ("racy git"); such entries are re-hashed rather than trusted.
_RACY_NS = 2_000_000_000
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetVersion:
    digest: str  # "sha256:<hex>"
    manifest: Path
    n_samples: int
    n_images: int  # distinct image files
    n_bytes: int  # their total size


@dataclass(frozen=True)
class SampleChange:
    image: str
    image_changed: bool
    fields: tuple[str, ...]  # record fields whose values differ (the label side)


@dataclass(frozen=True)
class DatasetDiff:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[SampleChange, ...]
    moved: tuple[tuple[str, str], ...]  # (old path, new path): same bytes and label under a new path

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed or self.moved)


class HashCache:
    """sha256 of files keyed by (path, size, mtime_ns), kept in a JSON sidecar; unreadable or unwritable
    sidecars just mean no caching."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._entries: dict[str, dict] = {}
        self._dirty = False
        if path is not None:
            try:
                self._entries = json.loads(path.read_text(encoding="utf-8"))["files"]
            except (OSError, ValueError, KeyError, TypeError):
                self._entries = {}

    def sha256(self, file: Path) -> tuple[str, int]:
        """(hex digest, size) of a file's bytes."""
        key = str(file.resolve())
        stat = file.stat()
        entry = self._entries.get(key)
        if (
            entry
            and entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and entry.get("hashed_ns", 0) - stat.st_mtime_ns > _RACY_NS
        ):
            return entry["sha256"], stat.st_size
        digest = file_sha256(file)
        self._entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest,
                              "hashed_ns": time.time_ns()}
        self._dirty = True
        return digest, stat.st_size

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        try:
            fd, temp = tempfile.mkstemp(prefix=f"{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"files": self._entries}, handle)
            os.replace(temp, self.path)
        except OSError:
            return  # a read-only dataset folder: versioning still works, only slower next time
        self._dirty = False


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class _Entry:
    image: str  # as written in the manifest
    image_sha256: str
    label: dict  # the record without its image path
    size: int

    def digest(self) -> str:
        body = json.dumps({"image": self.image, "label": self.label, "image_sha256": self.image_sha256},
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


def dataset_version(
    path: str | Path, *, use_cache: bool = True, on_item: Callable[[], None] | None = None
) -> DatasetVersion:
    """The version of a dataset folder (its `manifest.jsonl`) or of a manifest file.

    Raises `ManifestError` for a malformed manifest or a missing image.
    """
    manifest = find_manifest(path)
    entries = list(_entries(manifest, use_cache, on_item))
    combined = hashlib.sha256()
    for digest in sorted(entry.digest() for entry in entries):
        combined.update(digest.encode("ascii"))
    images = {entry.image: entry.size for entry in entries}
    return DatasetVersion(f"sha256:{combined.hexdigest()}", manifest, len(entries), len(images),
                          sum(images.values()))


def diff(a: str | Path, b: str | Path, *, use_cache: bool = True) -> DatasetDiff:
    """What changed from dataset `a` to dataset `b`, sample by sample, matched by image path as written.

    An image path that occurs several times is matched by occurrence order.
    """
    old = _keyed(_entries(find_manifest(a), use_cache, None))
    new = _keyed(_entries(find_manifest(b), use_cache, None))
    changed = []
    for key in sorted(old.keys() & new.keys()):
        before, after = old[key], new[key]
        fields = tuple(sorted(name for name in before.label.keys() | after.label.keys()
                              if before.label.get(name) != after.label.get(name)))
        image_changed = before.image_sha256 != after.image_sha256
        if fields or image_changed:
            changed.append(SampleChange(before.image, image_changed, fields))
    removed = [old[key] for key in sorted(old.keys() - new.keys())]
    added = [new[key] for key in sorted(new.keys() - old.keys())]
    # a removed sample whose bytes and label reappear under a new path was moved, not replaced
    waiting: dict[tuple[str, str], list[int]] = {}
    for index, entry in enumerate(added):
        waiting.setdefault(_content(entry), []).append(index)
    moved, still_removed, taken = [], [], set()
    for entry in removed:
        slots = waiting.get(_content(entry))
        if slots:
            index = slots.pop(0)
            taken.add(index)
            moved.append((entry.image, added[index].image))
        else:
            still_removed.append(entry.image)
    return DatasetDiff(
        added=tuple(entry.image for index, entry in enumerate(added) if index not in taken),
        removed=tuple(still_removed),
        changed=tuple(changed),
        moved=tuple(moved),
    )


def _entries(manifest: Path, use_cache: bool, on_item: Callable[[], None] | None) -> Iterator[_Entry]:
    cache = HashCache(manifest.parent / CACHE_NAME if use_cache else None)
    try:
        for number, sample in ManifestReader(manifest).numbered():
            file = image_path(manifest, sample)
            try:
                sha, size = cache.sha256(file)
            except OSError as exc:
                reason = exc.strerror or exc
                raise ManifestError(f"{manifest}:{number}: cannot read image {file}: {reason}") from exc
            yield _Entry(sample.image, sha, _label(sample), size)
            if on_item:
                on_item()
    finally:
        cache.save()


def _label(sample: Sample) -> dict:
    raw = sample.model_dump(mode="json")
    raw.pop("image")
    return raw


def _keyed(entries: Iterator[_Entry]) -> dict[tuple[str, int], _Entry]:
    seen: Counter[str] = Counter()
    keyed = {}
    for entry in entries:
        keyed[(entry.image, seen[entry.image])] = entry
        seen[entry.image] += 1
    return keyed


def _content(entry: _Entry) -> tuple[str, str]:
    return entry.image_sha256, json.dumps(entry.label, sort_keys=True, ensure_ascii=False)
