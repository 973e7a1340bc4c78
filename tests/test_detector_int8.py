"""Static int8 export of the detector: calibrated on generated pages, checked against fp32 (maps and quads)."""

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from susik.cli import app
from susik.eval.detect_match import match_regions, polygon_iou
from susik.models.detector import DetectorConfig, FormulaDetector
from susik.models.detector_data import SampleConfig, read_pages
from susik.models.train_detector import TrainDetectorConfig, make_batch, save_checkpoint, train_step
from susik.runtime.detector import DetectParams, OnnxDetector, load_detector_record, preprocess

runner = CliRunner()

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = DetectorConfig(widths=(8, 8, 8, 16, 16), depths=(0, 1, 1, 1, 1), fpn=8, head=8)
PARAMS = DetectParams(long_side=256, kernel_threshold=0.5, box_threshold=0.6)


def _generated_pages(folder: Path, n: int, rng: np.random.Generator) -> Path:
    """Pages of a few dark bars (the 'formulas') on uneven light paper, with their quads."""
    lines = []
    for index in range(n):
        image = np.clip(rng.normal(225, 8, (192, 256, 3)), 0, 255).astype(np.uint8)
        regions = []
        for row in range(3):
            x, y = int(rng.integers(10, 90)), 20 + 55 * row + int(rng.integers(0, 15))
            w, h = int(rng.integers(60, 150)), int(rng.integers(12, 22))
            cv2.rectangle(image, (x, y), (x + w, y + h), (40, 40, 40), -1)
            quad = [[x - 2, y - 2], [x + w + 2, y - 2], [x + w + 2, y + h + 2], [x - 2, y + h + 2]]
            regions.append({"quad": quad, "polygon": quad, "latex": "x", "kind": "printed"})
        cv2.imwrite(str(folder / f"{index}.png"), image)
        lines.append(json.dumps({"image": f"{index}.png", "width": 256, "height": 192, "orientation": 0,
                                 "regions": regions, "conditions": ["clean"], "source": "test", "license": "test"}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    """A tiny detector trained until its maps hold the bars: int8 must then reproduce real blobs, not noise."""
    folder = tmp_path_factory.mktemp("pages")
    manifest = _generated_pages(folder, 6, np.random.default_rng(0))
    config = TrainDetectorConfig(model=TINY, train_pages=manifest, params=PARAMS, batch_size=4, lr=1e-2,
                                 sample=SampleConfig(size=128, scale=(0.9, 1.1), quarter_turn_share=0.0,
                                                     gray_share=0.0))
    torch.manual_seed(0)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # module-scoped: set up before the function-scoped `torch_one_thread`
    model = FormulaDetector(TINY)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    pages = read_pages(manifest)
    for step in range(120):
        train_step(model, optimizer, make_batch(pages, config, step), config.loss)
    torch.set_num_threads(previous)
    save_checkpoint(folder / "best.pt", model, optimizer, 120, 0.0, config, "abc", "susik train detector")
    return folder / "best.pt", manifest


def _pages_and_truth(manifest: Path) -> list[tuple[np.ndarray, list]]:
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    return [(cv2.imread(str(manifest.parent / r["image"])), [g["quad"] for g in r["regions"]]) for r in records]


def test_static_int8_follows_fp32_on_held_out_generated_pages(trained_checkpoint, tmp_path):
    from susik.runtime.detect_export import export_detector

    checkpoint, manifest = trained_checkpoint
    fp32 = OnnxDetector.load(export_detector(checkpoint, tmp_path / "fp32").parent, threads=1)
    calibration = sorted(manifest.parent.glob("*.png"))
    record_path = export_detector(checkpoint, tmp_path / "int8", "static-int8", calibration, {"f1": 0.5})
    int8 = OnnxDetector.load(record_path.parent, threads=1)
    record = load_detector_record(record_path.parent)
    assert record.quantization == "static-int8" and record.metrics["f1"] == 0.5
    check = record.metrics["int8_check"]
    assert check["pages"] == len(calibration) and check["fp32_quads"] >= len(calibration)
    assert check["quads_matched_at_iou_0.5"] == 1.0 and check["kernel_mean_abs_diff"] < 0.01
    graph = onnx.load(str(record_path.parent / "detector.onnx"))
    int8_weights = [t for t in graph.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= sum(node.op_type == "Conv" for node in graph.graph.node) > 0

    for image, truth in _pages_and_truth(_generated_pages(tmp_path, 4, np.random.default_rng(1))):
        tensor = preprocess(image, PARAMS.long_side)[0]
        (maps_a, turn_a), (maps_b, turn_b) = fp32._run(tensor), int8._run(tensor)
        difference = np.abs(maps_a[0, 0] - maps_b[0, 0])
        assert difference.mean() < 0.01 and difference.max() < 0.3
        assert np.argmax(turn_a) == np.argmax(turn_b)
        found_a, found_b = fp32([image])[0].detections, int8([image])[0].detections
        # fp32 really finds the bars, so agreeing with it is not agreeing on nothing
        assert len(match_regions([d.quad.points for d in found_a], truth)) == len(truth) == len(found_a)
        assert len(found_b) == len(found_a)
        pairs = match_regions([d.quad.points for d in found_a], [d.quad.points for d in found_b], 0.8)
        assert len(pairs) == len(found_a)
        assert all(polygon_iou(found_a[i].polygon, found_b[j].polygon) > 0.8 for i, j, _ in pairs)


def test_export_command_quantizes_with_calibration_pages_from_a_manifest(trained_checkpoint, tmp_path):
    checkpoint, manifest = trained_checkpoint
    base = ["export", "detector", str(checkpoint), "--out", str(tmp_path), "--quantize", "static-int8"]
    result = runner.invoke(app, base)
    assert result.exit_code != 0 and "--calibration" in result.output
    result = runner.invoke(app, [*base, "--calibration", str(manifest), "--calibration-pages", "2"])
    assert result.exit_code == 0, result.output
    record = load_detector_record(tmp_path / "detector")
    assert record.quantization == "static-int8" and record.metrics["int8_check"]["pages"] == 2
    assert "quantisation: static-int8" in (tmp_path / "detector" / "MODEL_CARD.md").read_text()
