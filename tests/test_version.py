"""Dataset versions (content hash of manifest records + image bytes) and dataset diffs."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from susik.data import version as version_module
from susik.data.manifest import CropSample, ManifestError, read_manifest, write_manifest
from susik.data.version import CACHE_NAME, dataset_version, diff


def _dataset(folder: Path, labels: dict[str, str]) -> Path:
    """A crop dataset: one image per label, its bytes derived from its name."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    for name, latex in labels.items():
        (folder / "images" / name).write_bytes(f"image bytes of {name}".encode())
        samples.append(CropSample(image=f"images/{name}", latex=latex, source="synth", license="CC0"))
    write_manifest(folder / "manifest.jsonl", samples)
    return folder


LABELS = {"a.png": "x^2", "b.png": r"\frac{1}{2}", "c.png": r"\sqrt{3}"}


def _relabel(folder: Path, image: str, latex: str) -> None:
    samples = [s.model_copy(update={"latex": latex}) if s.image == image else s
               for s in read_manifest(folder / "manifest.jsonl")]
    write_manifest(folder / "manifest.jsonl", samples)


def test_version_is_stable_and_counts_the_dataset(tmp_path: Path):
    folder = _dataset(tmp_path / "d", LABELS)
    first = dataset_version(folder)
    assert first.digest.startswith("sha256:") and len(first.digest) == 7 + 64
    assert (first.n_samples, first.n_images) == (3, 3)
    assert first.n_bytes == sum(len(f"image bytes of {name}") for name in LABELS)
    assert dataset_version(folder) == first
    assert dataset_version(folder / "manifest.jsonl", use_cache=False).digest == first.digest


def test_version_ignores_mtimes_formatting_line_order_and_location(tmp_path: Path):
    folder = _dataset(tmp_path / "d", LABELS)
    digest = dataset_version(folder).digest
    for image in (folder / "images").iterdir():
        os.utime(image, (1_000_000, 1_000_000))
    assert dataset_version(folder).digest == digest
    manifest = folder / "manifest.jsonl"
    lines = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    reformatted = [json.dumps(dict(reversed(list(raw.items()))), indent=None, separators=(" ,", " : "))
                   for raw in reversed(lines)]
    manifest.write_text("\n".join(reformatted) + "\n\n", encoding="utf-8")
    assert dataset_version(folder).digest == digest
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(folder, moved)
    assert dataset_version(moved).digest == digest


def test_version_changes_with_one_image_byte(tmp_path: Path):
    folder = _dataset(tmp_path / "d", LABELS)
    digest = dataset_version(folder).digest  # caches the hashes
    image = folder / "images" / "b.png"
    stat = image.stat()
    data = bytearray(image.read_bytes())
    data[0] ^= 1
    image.write_bytes(bytes(data))
    # same size and same mtime: only the bytes differ, which a (size, mtime) cache alone would miss
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dataset_version(folder).digest != digest


def test_version_changes_with_a_label(tmp_path: Path):
    folder = _dataset(tmp_path / "d", LABELS)
    digest = dataset_version(folder).digest
    _relabel(folder, "images/c.png", r"\sqrt{2}")
    assert dataset_version(folder).digest != digest
    _relabel(folder, "images/c.png", r"\sqrt{3}")
    assert dataset_version(folder).digest == digest


def test_settled_files_are_not_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _dataset(tmp_path / "d", LABELS)
    settled = time.time() - 60
    for image in (folder / "images").iterdir():
        os.utime(image, (settled, settled))
    digest = dataset_version(folder).digest
    assert (folder / CACHE_NAME).is_file()
    calls = []
    real = version_module.file_sha256
    monkeypatch.setattr(version_module, "file_sha256", lambda path: calls.append(path) or real(path))
    assert dataset_version(folder).digest == digest
    assert calls == []
    assert dataset_version(folder, use_cache=False).digest == digest
    assert len(calls) == 3


def test_missing_image_is_an_error_naming_the_line(tmp_path: Path):
    folder = _dataset(tmp_path / "d", LABELS)
    (folder / "images" / "b.png").unlink()
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:2: cannot read image"):
        dataset_version(folder)


def test_diff_reports_exactly_the_changes(tmp_path: Path):
    old = _dataset(tmp_path / "old", {"keep.png": "a", "gone.png": "b", "bytes.png": "c", "label.png": "d",
                                      "both.png": "e", "from.png": "f"})
    new = tmp_path / "new"
    shutil.copytree(old, new)
    (new / "images" / "bytes.png").write_bytes(b"other bytes")
    (new / "images" / "both.png").write_bytes(b"other bytes too")
    (new / "images" / "new.png").write_bytes(b"a new image")
    (new / "images" / "from.png").rename(new / "images" / "to.png")
    samples = []
    for sample in read_manifest(new / "manifest.jsonl"):
        if sample.image == "images/gone.png":
            continue
        if sample.image in ("images/label.png", "images/both.png"):
            sample = sample.model_copy(update={"latex": sample.latex + "'"})
        if sample.image == "images/from.png":
            sample = sample.model_copy(update={"image": "images/to.png"})
        samples.append(sample)
    samples.append(CropSample(image="images/new.png", latex="g", source="synth", license="CC0"))
    write_manifest(new / "manifest.jsonl", samples)

    found = diff(old, new)
    assert found.added == ("images/new.png",)
    assert found.removed == ("images/gone.png",)
    assert found.moved == (("images/from.png", "images/to.png"),)
    changes = {(c.image, c.image_changed, c.fields) for c in found.changed}
    assert changes == {("images/bytes.png", True, ()), ("images/label.png", False, ("latex",)),
                       ("images/both.png", True, ("latex",))}
    assert not found.identical
    assert diff(old, old).identical
