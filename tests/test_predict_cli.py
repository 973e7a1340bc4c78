"""`susik predict` end to end with a real ONNX Runtime detector (a tiny hand-made graph: dark = formula) and a
fake recognizer."""

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import typer
from onnx import TensorProto, helper
from typer.testing import CliRunner

from susik.pipeline import Pipeline
from susik.results import Recognition
from susik.runtime import predict_command
from susik.runtime.detector import OnnxDetector


def _darkness_detector(path: Path) -> Path:
    """maps = sigmoid(-10 * mean 2x2 pool of the channel mean) (ink is ~-2 after normalisation, paper ~+2);
    handwritten = 0; orientation = upright. Enough to exercise the real predictor and postprocessing."""
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["gray"], axes=[1], keepdims=1),
        helper.make_node("AveragePool", ["gray"], ["pooled"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Mul", ["pooled", "gain"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["kernel"]),
        helper.make_node("Mul", ["kernel", "zero"], ["hand"]),
        helper.make_node("Concat", ["kernel", "hand"], ["maps"], axis=1),
        helper.make_node("Constant", [], ["orientation"], value=helper.make_tensor("o", TensorProto.FLOAT, [1, 4], [1, 0, 0, 0])),
    ]
    graph = helper.make_graph(
        nodes, "darkness",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, 2, None, None]),
         helper.make_tensor_value_info("orientation", TensorProto.FLOAT, [1, 4])],
        initializer=[helper.make_tensor("gain", TensorProto.FLOAT, [], [-10.0]),
                     helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


class CountingRecognizer:
    def __call__(self, crops):
        return [Recognition(f"w{crop.shape[1]}", 0.9) for crop in crops]


@pytest.fixture()
def cli(tmp_path, monkeypatch):
    detector = OnnxDetector(_darkness_detector(tmp_path / "darkness.onnx"), threads=1)
    monkeypatch.setattr(predict_command, "default_pipeline",
                        lambda *args: Pipeline(detector, CountingRecognizer()))
    app = typer.Typer()
    app.command()(predict_command.predict)
    app.command("noop")(lambda: None)  # two commands, so `predict` is addressed by name as in `susik`
    return lambda *args: CliRunner().invoke(app, ["predict", *map(str, args)])


def _photo(path: Path, boxes) -> Path:
    image = np.full((600, 800, 3), 230, np.uint8)
    for x0, y0, x1, y1 in boxes:
        cv2.rectangle(image, (x0, y0), (x1, y1), (30, 30, 30), -1)
    cv2.imwrite(str(path), image)
    return path


def test_json_lines_per_image_with_errors_and_empty_pages(cli, tmp_path):
    page = _photo(tmp_path / "page.png", [(100, 100, 400, 140), (120, 300, 500, 350)])
    blank = _photo(tmp_path / "blank.jpg", [])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    result = cli(page, broken, blank, "--json", "--overlay", tmp_path / "overlays")
    assert result.exit_code == 1  # one input failed; the others were still read
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(page), str(broken), str(blank)]
    first, error, empty = lines
    assert set(first) == {"image", "width", "height", "orientation", "regions", "timings_ms"}
    assert (first["width"], first["height"], first["orientation"]) == (800, 600, 0)
    assert len(first["regions"]) == 2
    top = first["regions"][0]
    assert set(top) == {"quad", "polygon", "latex", "confidence", "kind", "label"}
    quad = np.array(top["quad"])
    # the whole dark bar is the kernel here, so the quad is the bar grown by the unclip, clockwise from top-left
    (x0, y0), (x1, y1) = quad.min(axis=0), quad.max(axis=0)
    assert np.allclose(quad, [[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    assert x0 < 100 and y0 < 100 and x1 > 400 and y1 > 140
    assert np.allclose(quad.mean(axis=0), [250, 120], atol=2)
    assert top["latex"].startswith("w") and top["kind"] == "printed"
    assert {"detect", "rectify", "recognize", "total"} <= set(first["timings_ms"])
    assert set(error) == {"image", "error"} and "not an image" in error["error"]
    assert empty["regions"] == []
    assert (tmp_path / "overlays" / "page.overlay.jpg").is_file()
    assert not (tmp_path / "overlays" / "broken.overlay.jpg").exists()


def test_plain_output_and_exit_code_zero(cli, tmp_path):
    page = _photo(tmp_path / "page.png", [(100, 100, 400, 140)])
    blank = _photo(tmp_path / "blank.png", [])
    result = cli(page, blank)
    assert result.exit_code == 0
    found, empty = result.stdout.split(f"{blank}:")
    assert "1 formula(s)" in found and "[0] printed" in found and "recognize" not in found
    assert empty.lstrip().startswith("0 formula(s)")
    assert f"if it shows one formula alone: susik recognize {blank}" in empty


def test_missing_model_is_one_clear_error_line(tmp_path):
    app = typer.Typer()
    app.command()(predict_command.predict)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["predict", str(tmp_path / "x.png"), "--detector", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: no detector record at")
    assert "Traceback" not in result.output


def test_any_image_mode_and_exif_rotation(cli, tmp_path):
    from PIL import Image

    bar = np.full((120, 200), 230, np.uint8)
    bar[40:60, 30:170] = 20
    Image.fromarray(bar.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit grey
    rgba = np.dstack([np.repeat(bar[:, :, None], 3, axis=2), np.full_like(bar, 255)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the viewer turns it 90 degrees clockwise
    Image.fromarray(bar.T.copy()).convert("RGB").save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    result = cli(tmp_path / "deep.png", tmp_path / "alpha.png", tmp_path / "phone.jpg", "--json")
    assert result.exit_code == 0, result.output
    pages = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(p["width"], p["height"], len(p["regions"])) for p in pages[:2]] == [(200, 120, 1)] * 2
    assert (pages[2]["width"], pages[2]["height"]) == (200, 120)  # stored 120 x 200, shown upright by EXIF
    (region,) = pages[2]["regions"]
    quad = np.array(region["quad"])
    assert np.ptp(quad[:, 0]) > 3 * np.ptp(quad[:, 1])  # the bar lies level again


def test_rescue_below_reaches_the_recognizer(tmp_path, monkeypatch):
    asked = []

    def pipeline(detector, recognizer, threads, rescue_below=0.0):
        asked.append(rescue_below)
        return Pipeline(OnnxDetector(_darkness_detector(tmp_path / "d.onnx"), threads=1), CountingRecognizer())

    monkeypatch.setattr(predict_command, "default_pipeline", pipeline)
    app = typer.Typer()
    app.command()(predict_command.predict)
    app.command("noop")(lambda: None)
    photo = _photo(tmp_path / "p.png", [(100, 100, 300, 140)])
    for extra in ([], ["--rescue-below", "0.95"]):
        result = CliRunner().invoke(app, ["predict", str(photo), *extra])
        assert result.exit_code == 0, result.output
    assert asked == [0.0, 0.95]
    assert CliRunner().invoke(app, ["predict", str(photo), "--rescue-below", "1.5"]).exit_code != 0
