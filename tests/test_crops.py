"""Crop manifests -> training stream, validation reader, CROHME restoration and dataset writers."""

from __future__ import annotations

import itertools
import json
import pickle
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from susik.data.crop_augment import PRINTED
from susik.data.crops import (
    CropDataset,
    CropReadError,
    CropStream,
    FormulaItem,
    StreamSource,
    plain_handwritten_label,
    restore_crohme,
    write_rendered,
    write_restored_crohme,
)
from susik.data.manifest import ManifestWriter, read_manifest


def _image(text: str, height: int = 40) -> np.ndarray:
    image = np.full((height, 20 + 20 * len(text)), 255, np.uint8)
    cv2.putText(image, text, (8, height - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.9, 0, 2, cv2.LINE_AA)
    return image


def _manifest(folder: Path, labels: list[str], extra_lines: tuple[str, ...] = ()) -> Path:
    """A crop manifest of generated images, one per label, plus raw extra lines."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, label in enumerate(labels):
        cv2.imwrite(str(folder / f"{i}.png"), _image(label))
        lines.append(json.dumps({"image": f"{i}.png", "latex": label, "source": "test", "license": "CC0"}))
    path = folder / "manifest.jsonl"
    path.write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")
    return path


@pytest.fixture()
def sources(tmp_path: Path) -> list[StreamSource]:
    printed = _manifest(tmp_path / "a", [f"a{i}" for i in range(12)])
    written = _manifest(tmp_path / "b", [f"b{i}" for i in range(6)])
    return [StreamSource(manifest=printed, weight=0.8),
            StreamSource(manifest=written, weight=0.2, augment="none")]


def test_stream_is_endless_grey_and_mixes_by_weight(sources):
    samples = list(itertools.islice(CropStream(sources, seed=0), 400))
    assert all(image.dtype == np.uint8 and image.ndim == 2 for image, _ in samples)
    share_a = sum(label.startswith("a") for _, label in samples) / len(samples)
    assert 0.72 < share_a < 0.88  # 0.8 +- 4 standard deviations of a binomial share
    # 400 draws over 18 samples: every sample came back, so the stream cycles through epochs.
    assert {label for _, label in samples} == {f"a{i}" for i in range(12)} | {f"b{i}" for i in range(6)}


def test_stream_replays_for_a_seed_and_differs_across_seeds(sources):
    first = list(itertools.islice(CropStream(sources, seed=3), 30))
    again = list(itertools.islice(CropStream(sources, seed=3), 30))
    other = list(itertools.islice(CropStream(sources, seed=4), 30))
    assert [label for _, label in first] == [label for _, label in again]
    assert all(np.array_equal(x, y) for (x, _), (y, _) in zip(first, again, strict=True))
    assert [label for _, label in first] != [label for _, label in other]


def test_unaugmented_source_yields_the_stored_image(tmp_path):
    path = _manifest(tmp_path, ["x"])
    image, label = next(iter(CropStream([StreamSource(manifest=path, weight=1, augment="none")])))
    assert label == "x" and np.array_equal(image, _image("x"))


def test_workers_split_each_epoch_without_overlap(tmp_path):
    path = _manifest(tmp_path, [f"s{i}" for i in range(10)])
    stream = CropStream([StreamSource(manifest=path, weight=1, augment="none")], seed=5)
    halves = [[label for _, label in itertools.islice(stream.shard(w, 2), 5)] for w in range(2)]
    assert set(halves[0]).isdisjoint(halves[1])
    assert set(halves[0]) | set(halves[1]) == {f"s{i}" for i in range(10)}


def test_stream_travels_to_a_worker_process_after_use(sources):
    stream = CropStream(sources, seed=0)
    list(itertools.islice(stream, 5))  # opens the manifests
    copy = pickle.loads(pickle.dumps(stream.shard(1, 2)))
    assert len(list(itertools.islice(copy, 5))) == 5


def test_unusable_samples_are_skipped_and_counted(tmp_path):
    path = _manifest(tmp_path, ["good"], extra_lines=(
        "{not json",
        json.dumps({"image": "missing.png", "latex": "m", "source": "t", "license": "l"}),
        json.dumps({"image": "0.png", "latex": "  ", "source": "t", "license": "l"}),
        json.dumps({"image": "0.png", "width": 5, "height": 5, "orientation": 0, "regions": [], "source": "t",
                    "license": "l"}),
    ))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with path.open("a") as handle:
        handle.write(json.dumps({"image": "broken.png", "latex": "b", "source": "t", "license": "l"}) + "\n")
    stream = CropStream([StreamSource(manifest=path, weight=1, augment="none")], seed=0)
    labels = [label for _, label in itertools.islice(stream, 20)]
    assert set(labels) == {"good"}
    assert stream.skipped["bad_record"] > 0 and stream.skipped["unreadable_image"] > 0
    assert stream.skipped["empty_label"] > 0


def test_stream_of_only_bad_samples_raises_instead_of_spinning(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"image": "none.png", "latex": "x", "source": "t", "license": "l"}) + "\n")
    stream = CropStream([StreamSource(manifest=path, weight=1)], max_failures=50)
    with pytest.raises(RuntimeError, match="in a row"):
        next(iter(stream))


def test_stream_rejects_bad_configuration(tmp_path, sources):
    with pytest.raises(ValueError):
        CropStream([])
    with pytest.raises(ValueError):
        CropStream(sources, worker=2, workers=2)
    with pytest.raises(CropReadError):
        CropStream([StreamSource(manifest=tmp_path / "absent.jsonl", weight=1)])
    with pytest.raises(ValueError):
        StreamSource(manifest=tmp_path / "m.jsonl", weight=0)
    assert StreamSource(manifest=tmp_path / "m.jsonl", weight=1, augment="none").augment_config() is None
    assert StreamSource(manifest=tmp_path / "m.jsonl", weight=1).augment_config() == PRINTED


def test_crop_dataset_reads_records_and_reports_bad_ones(tmp_path):
    path = _manifest(tmp_path, ["p", "q"], extra_lines=(
        json.dumps({"image": "gone.png", "latex": "g", "source": "t", "license": "l",
                    "conditions": ["blur"]}),))
    dataset = CropDataset(path)
    assert len(dataset) == 3
    image, label = dataset[1]
    assert label == "q" and np.array_equal(image, _image("q"))
    assert dataset.record(2).conditions == ("blur",)
    with pytest.raises(CropReadError, match="gone.png"):
        dataset[2]
    with pytest.raises(IndexError):
        dataset.record(3)


def _letterboxed(ink_width: int, ink_height: int) -> np.ndarray:
    canvas = np.full((256, 256), 255, np.uint8)
    top, left = (256 - ink_height) // 2, (256 - ink_width) // 2
    canvas[top : top + ink_height, left : left + ink_width] = 0
    return canvas


@pytest.mark.parametrize(("width", "height"), [(246, 40), (120, 246), (30, 30)])
def test_restore_crohme_crops_to_the_ink_and_keeps_its_aspect(width, height):
    restored = restore_crohme(_letterboxed(width, height), margin=0.1)
    pad = max(2, round(0.1 * height))
    assert restored.shape == (height + 2 * pad, width + 2 * pad)
    assert (restored[:pad] == 255).all() and (restored[pad:-pad, pad:-pad] == 0).all()


def test_restore_crohme_leaves_a_blank_canvas_alone():
    blank = np.full((256, 256), 255, np.uint8)
    assert restore_crohme(blank) is blank


@pytest.mark.parametrize("label,plain", [
    (r"\mbox { n } ^ { 2 }", "n  ^ { 2 }"),
    (r"\frac{\mbox{a}}{\mbox {erf}}", r"\frac{ a }{ erf }"),
    (r"\mbox{}x", "x"),
    (r"x \mbox{ {a} }", r"x \mbox{ {a} }"),  # a nested group is not MathBrush's habit: left as written
    (r"\mathrm{cm}", r"\mathrm{cm}"),
])
def test_plain_handwritten_label_drops_mbox_wrappers(label, plain):
    assert plain_handwritten_label(label) == plain


def test_write_restored_crohme(tmp_path):
    source = tmp_path / "crohme"
    source.mkdir()
    cv2.imwrite(str(source / "a.png"), _letterboxed(200, 50))
    records = [{"image": "a.png", "latex": "x^{2} + \\mbox { y }", "source": "s", "license": "l"},
               {"image": "missing.png", "latex": "y", "source": "s", "license": "l"}]
    (source / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    out = tmp_path / "out"
    with ManifestWriter(out / "manifest.jsonl") as writer:
        stats = write_restored_crohme(source / "train.jsonl", writer, out / "images", source="crohme-train",
                                      license="CC BY-NC-SA 3.0 (believed)")
    assert (stats.written, stats.failed) == (1, 1)
    (sample,) = read_manifest(out / "manifest.jsonl")
    assert not Path(sample.image).is_absolute()
    assert (sample.latex, sample.source, sample.kind) == ("x^{2} +  y", "crohme-train", "handwritten")
    assert cv2.imread(str(out / sample.image), cv2.IMREAD_GRAYSCALE).shape == (60, 210)


@pytest.mark.skipif(shutil.which("latex") is None or shutil.which("dvipng") is None, reason="needs TeX")
def test_write_rendered_stores_crops_and_counts_failures(tmp_path):
    items = [FormulaItem(r"\frac{1}{2}", "corpus", "unknown"), FormulaItem(r"\frac{1}{", "corpus", "unknown"),
             FormulaItem("x^{2}+1", "susik-k12-generator", "Apache-2.0")]
    for augment, name in ((None, "clean"), (PRINTED, "frozen")):
        with ManifestWriter(tmp_path / name / "manifest.jsonl") as writer:
            stats = write_rendered(items, writer, tmp_path / name / "images", seed=1, augment=augment)
        assert (stats.written, stats.failed) == (2, 1)
        samples = list(read_manifest(tmp_path / name / "manifest.jsonl"))
        assert [s.source for s in samples] == ["corpus", "susik-k12-generator"]
        assert all(s.kind == "printed" and (tmp_path / name / s.image).is_file() for s in samples)
        assert all(bool(s.conditions) == (augment is not None) for s in samples)
    dataset = CropDataset(tmp_path / "frozen" / "manifest.jsonl")
    assert Counter(label for _, label in dataset) == Counter({r"\frac{1}{2}": 1, "x^{2}+1": 1})


@pytest.mark.skipif(shutil.which("latex") is None or shutil.which("dvipng") is None, reason="needs TeX")
def test_a_frozen_sets_other_crops_stay_when_one_item_changes(tmp_path):
    """Each crop's augmentation is its own: one formula rendered otherwise (wider, another label) must not
    redraw the noise, light and blur of the crops after it."""
    tail = [FormulaItem(latex, "corpus", "unknown") for latex in ("x+1", r"\sqrt{y}", "a_{n}=2n")]
    crops = {}
    for name, first in (("before", "a+b"), ("after", r"\sum_{k=1}^{n} k^{2}+a+b")):
        with ManifestWriter(tmp_path / name / "manifest.jsonl") as writer:
            write_rendered([FormulaItem(first, "corpus", "unknown"), *tail], writer, tmp_path / name / "images",
                           seed=3, augment=PRINTED)
        crops[name] = [image for image, _ in CropDataset(tmp_path / name / "manifest.jsonl")]
    assert crops["before"][0].shape != crops["after"][0].shape
    for before, after in zip(crops["before"][1:], crops["after"][1:], strict=True):
        assert np.array_equal(before, after)
