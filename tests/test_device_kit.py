"""scripts/device_kit.py: crop sets packed here come back intact there; writer sets join; weights halve."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from script_helpers import load_script

from susik.data.crops import CropDataset


@pytest.fixture(scope="module")
def kit():
    return load_script("device_kit.py")


def _crop_set(folder: Path, count: int, jpeg_at: int | None = None) -> Path:
    """A manifest with `count` crops (one of them a JPEG when `jpeg_at`), images in a subfolder."""
    rng = np.random.default_rng(count)
    lines = []
    for number in range(count):
        suffix = ".jpg" if number == jpeg_at else ".png"
        relative = f"images/{number}{suffix}"
        (folder / "images").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / relative), rng.integers(0, 256, (12, 30), dtype=np.uint8))
        lines.append(json.dumps({"image": relative, "latex": f"x+{number}", "source": "test", "license": "test",
                                 "kind": "printed"}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_packed_sets_unpack_to_the_same_images_and_labels(kit, tmp_path: Path):
    manifest = _crop_set(tmp_path / "source", 5, jpeg_at=2)
    crops, size = kit.pack_crops("printed", manifest, 4, tmp_path / "kit")  # the first four travel
    assert crops == 4 and size == sum((tmp_path / "source" / "images" / name).stat().st_size
                       for name in ["0.png", "1.png", "2.jpg", "3.png"])
    assert kit.unpack_crops(tmp_path / "kit", tmp_path / "there") == {"printed": 4}
    original, restored = CropDataset(manifest), CropDataset(tmp_path / "there" / "printed" / "manifest.jsonl")
    assert len(restored) == 4
    for index in range(4):
        image, latex = restored[index]
        expected, expected_latex = original[index]
        assert latex == expected_latex and np.array_equal(image, expected)
        assert restored.record(index).source == "test"
    assert restored.record(2).image.endswith(".jpg")  # a JPEG stays a JPEG


def test_writer_sets_join_into_one_manifest_with_relative_paths(kit, tmp_path: Path):
    first, second = _crop_set(tmp_path / "hw_0", 2), _crop_set(tmp_path / "hw_1", 3)
    joined = tmp_path / "hw" / "manifest.jsonl"
    assert kit.join_manifests([first, second], joined) == 5
    dataset = CropDataset(joined)
    assert [dataset[i][1] for i in range(5)] == ["x+0", "x+1", "x+0", "x+1", "x+2"]
    assert all(not Path(dataset.record(i).image).is_absolute() for i in range(5))  # the folder can move


def test_labels_travel_without_their_images(kit, tmp_path: Path):
    manifest = _crop_set(tmp_path / "source", 3)
    target = tmp_path / "labels" / "glyph_labels.jsonl"
    kit.labels_only(manifest, target)
    dataset = CropDataset(target)
    assert [dataset.record(i).latex for i in range(3)] == ["x+0", "x+1", "x+2"]


def test_weights_travel_in_half_precision_and_nothing_else(kit, tmp_path: Path):
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": {"w": torch.randn(3, 3), "steps": torch.tensor(7)}, "optimizer": {"big": torch.ones(9)},
                "model_config": {"d_model": 8}, "vocab": ["a"], "step": 7, "command": "susik train"}, checkpoint)
    kit.half_precision_weights(kit.starting_checkpoint(checkpoint, None), tmp_path / "kit" / "init.pt")
    halved = torch.load(tmp_path / "kit" / "init.pt", weights_only=False)
    assert "optimizer" not in halved and halved["step"] == 7 and halved["vocab"] == ["a"]
    assert halved["model"]["w"].dtype == torch.float16 and halved["model"]["steps"].dtype == torch.int64


def test_the_half_command_brings_a_trained_checkpoint_back_in_half_precision(tmp_path: Path):
    # what device_train.sh runs on the device after training: a checkpoint path in, float16 weights out
    checkpoint = tmp_path / "best.pt"
    torch.save({"model": {"w": torch.randn(2, 2)}, "optimizer": {"big": torch.ones(4)}, "step": 3}, checkpoint)
    script = Path(__file__).parents[1] / "scripts" / "device_kit.py"
    subprocess.run([sys.executable, str(script), "half", str(checkpoint), str(tmp_path / "out" / "best_fp16.pt")],
                   check=True, capture_output=True, timeout=120)
    halved = torch.load(tmp_path / "out" / "best_fp16.pt", weights_only=False)
    assert halved["model"]["w"].dtype == torch.float16 and halved["step"] == 3 and "optimizer" not in halved


def test_a_bundle_folder_as_init_is_rebuilt_into_weights_the_trainer_loads(kit, tmp_path: Path):
    from recognizer_helpers import draw_crop, export_tiny_bundle

    from susik.models.train_recognizer import model_from_checkpoint

    bundle = export_tiny_bundle(tmp_path / "bundle", encoder_quant="static-conv")
    (tmp_path / "cal" / "images").mkdir(parents=True)
    lines = []
    for number in range(8):
        cv2.imwrite(str(tmp_path / "cal" / "images" / f"{number}.png"), draw_crop(f"{number}+x"))
        lines.append(json.dumps({"image": f"images/{number}.png", "latex": f"{number}+x", "source": "test",
                                 "license": "test", "kind": "printed"}))
    (tmp_path / "cal" / "manifest.jsonl").write_text("\n".join(lines) + "\n")

    with pytest.raises(SystemExit, match="calibration"):
        kit.starting_checkpoint(bundle, None)
    kit.half_precision_weights(kit.starting_checkpoint(bundle, tmp_path / "cal" / "manifest.jsonl"),
                               tmp_path / "kit" / "init.pt")
    halved = torch.load(tmp_path / "kit" / "init.pt", weights_only=False)
    assert halved["step"] == 7 and halved["sources"] == [{"name": "drawn", "license": "CC0"}]
    model, vocabulary = model_from_checkpoint({**halved, "model": {k: v.float() for k, v in halved["model"].items()}})
    assert len(vocabulary) == model.config.vocab_size
