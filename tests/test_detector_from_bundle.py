"""Rebuilding a trainable torch detector from its exported fp32 ONNX bundle."""

from pathlib import Path

import numpy as np
import pytest
import torch

from susik.models.detector import DetectorConfig, FormulaDetector
from susik.models.detector_from_bundle import detector_checkpoint_from_bundle
from susik.models.from_bundle import BundleImportError
from susik.models.train_detector import TrainDetectorConfig, load_model, save_checkpoint
from susik.runtime.detect_export import export_detector
from susik.runtime.detector import DetectParams

TINY = DetectorConfig(widths=(8, 8, 8, 16, 16), depths=(0, 1, 1, 1, 1), fpn=8, head=8)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _samples(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(3, 64, 64)).astype(np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[FormulaDetector, Path]:
    """A tiny detector whose BatchNorms hold non-trivial statistics, and its fp32 export."""
    root = tmp_path_factory.mktemp("bundle")
    torch.manual_seed(0)
    model = FormulaDetector(TINY)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    config = TrainDetectorConfig(model=TINY, train_pages=Path("pages.jsonl"), params=DetectParams(long_side=320))
    save_checkpoint(root / "best.pt", model, torch.optim.AdamW(model.parameters()), 9, 0.5, config, "v", "susik x")
    return model.eval(), export_detector(root / "best.pt", root / "models").parent


def test_the_rebuilt_detector_computes_what_the_bundle_does(bundle):
    original, folder = bundle
    checkpoint = detector_checkpoint_from_bundle(folder, _samples(8, 0))
    assert checkpoint["step"] == 9 and checkpoint["rebuilt_from"]["bundle"] == str(folder)
    rebuilt = FormulaDetector(DetectorConfig.model_validate(checkpoint["model_config"]))
    rebuilt.load_state_dict(checkpoint["model"])
    rebuilt.eval()
    x = torch.from_numpy(np.stack(_samples(2, 1)))
    with torch.no_grad():
        (want_maps, want_turn), (maps, turn) = original(x), rebuilt(x)
    assert torch.allclose(maps, want_maps, atol=1e-4) and torch.allclose(turn, want_turn, atol=1e-4)
    # Its BatchNorms hold the statistics of the calibration inputs, so training mode stays close on them.
    rebuilt.train()
    with torch.no_grad():
        train_maps, _ = rebuilt(torch.from_numpy(np.stack(_samples(8, 0))))
        rebuilt.eval()
        eval_maps, _ = rebuilt(torch.from_numpy(np.stack(_samples(8, 0))))
    assert torch.allclose(train_maps, eval_maps, atol=1e-3)


def test_a_rebuilt_checkpoint_warm_starts_training(bundle, tmp_path):
    _, folder = bundle
    path = tmp_path / "init.pt"
    torch.save(detector_checkpoint_from_bundle(folder, _samples(4, 0)), path)
    model, meta = load_model(path)
    assert isinstance(model, FormulaDetector) and meta["step"] == 9


def test_another_architecture_or_no_calibration_is_refused(bundle, tmp_path):
    _, folder = bundle
    with pytest.raises(ValueError, match="calibration"):
        detector_checkpoint_from_bundle(folder, [])
    record = (folder / "record.json").read_text()
    other = tmp_path / "other"
    other.mkdir()
    (other / "detector.onnx").write_bytes((folder / "detector.onnx").read_bytes())
    (other / "record.json").write_text(record.replace('"depths": [\n      0,\n      1,\n      1,\n      1,\n      1',
                                                      '"depths": [\n      0,\n      1,\n      2,\n      1,\n      1'))
    with pytest.raises(BundleImportError, match="convolutions"):
        detector_checkpoint_from_bundle(other, _samples(2, 0))


def test_train_command_warm_starts_from_a_bundle_folder(bundle, tmp_path):
    import json

    import cv2
    import yaml
    from typer.testing import CliRunner

    from susik.cli import app

    _, folder = bundle
    image = np.full((96, 128, 3), 230, np.uint8)
    cv2.rectangle(image, (20, 30), (100, 46), (30, 30, 30), -1)
    cv2.imwrite(str(tmp_path / "page.png"), image)
    quad = [[18, 28], [102, 28], [102, 48], [18, 48]]
    record = {"image": "page.png", "width": 128, "height": 96, "orientation": 0,
              "regions": [{"quad": quad, "polygon": quad, "latex": "x", "kind": "printed"}]}
    (tmp_path / "pages.jsonl").write_text(json.dumps(record) + "\n")
    config = TrainDetectorConfig(model=TINY, train_pages=tmp_path / "pages.jsonl", batch_size=2, steps=1,
                                 eval_every=1, out=tmp_path / "run", params=DetectParams(long_side=128))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["train", "detector", "--config", str(tmp_path / "config.yaml"),
                                      "--init", str(folder)])
    assert result.exit_code == 0, result.output
    assert "rebuilt" in result.output and (tmp_path / "run" / "init_from_bundle.pt").is_file()
    assert (tmp_path / "run" / "last.pt").is_file()
    result = CliRunner().invoke(app, ["train", "detector", "--config", str(tmp_path / "config.yaml"),
                                      "--init", str(tmp_path)])  # a folder without a record
    assert result.exit_code != 0 and "--init" in result.output
