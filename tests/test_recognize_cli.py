"""`susik train recognizer` -> `susik export recognizer` -> `susik recognize`, end to end on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from recognizer_helpers import draw_crop, formula_between_sentences, random_text, write_crop_manifest
from typer.testing import CliRunner

from susik.cli import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _bad_images(folder: Path) -> dict[str, Path]:
    paths = {
        "good": folder / "good.png", "garbage": folder / "garbage.png", "blank": folder / "blank.png",
        "tiny": folder / "tiny.png", "missing": folder / "missing.png",
    }
    cv2.imwrite(str(paths["good"]), draw_crop("12+x"))
    paths["garbage"].write_bytes(b"this is not a png")
    cv2.imwrite(str(paths["blank"]), np.full((40, 100), 250, np.uint8))
    cv2.imwrite(str(paths["tiny"]), np.zeros((2, 2), np.uint8))
    return paths


def test_recognize_json_reports_each_image_and_goes_on_after_bad_ones(tiny_bundle, tmp_path):
    paths = _bad_images(tmp_path)
    order = ["good", "garbage", "blank", "tiny", "missing", "good"]
    result = runner.invoke(app, ["recognize", *(str(paths[n]) for n in order), "--json", "--model", str(tiny_bundle),
                                 "--threads", "1", "--batch-size", "2"])
    assert result.exit_code == 1  # some images failed, all were answered
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["image"] for line in lines] == [str(paths[n]) for n in order]
    good, garbage, blank, tiny, missing, again = lines
    assert set(good) == {"image", "latex", "confidence"} and 0.0 <= good["confidence"] <= 1.0
    assert again["latex"] == good["latex"]
    assert "not an image" in garbage["error"]
    assert "blank" in blank["error"]
    assert "too small" in tiny["error"]
    assert "no such file" in missing["error"]


def test_recognize_prints_a_table_without_json(tiny_bundle, tmp_path):
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), draw_crop("7=x"))
    result = runner.invoke(app, ["recognize", str(path), "--model", str(tiny_bundle), "--threads", "1", "--beam", "2"])
    assert result.exit_code == 0, result.output
    assert "crop.png" in result.stdout and "confidence" in result.stdout


def _read(paths: list[Path], model: Path, *options: str) -> list[str]:
    """`susik recognize --json` of `paths`: the LaTeX of each."""
    result = runner.invoke(app, ["recognize", *map(str, paths), "--json", "--model", str(model), "--threads", "1",
                                 *options])
    assert result.exit_code == 0, result.output
    return [json.loads(line)["latex"] for line in result.stdout.splitlines() if line.startswith("{")]


def test_rescue_below_one_rereads_every_crop_with_beam_search(tiny_bundle, tmp_path):
    rng = np.random.default_rng(4)
    paths = []
    for index in range(4):
        paths.append(tmp_path / f"{index}.png")
        cv2.imwrite(str(paths[-1]), draw_crop(random_text(rng)))

    greedy, beamed = _read(paths, tiny_bundle), _read(paths, tiny_bundle, "--beam", "3")
    assert greedy != beamed  # the tiny model's beam reads some crops otherwise: the check has teeth
    assert _read(paths, tiny_bundle, "--rescue-below", "1") == beamed  # no reading is fully sure: all re-read
    assert _read(paths, tiny_bundle, "--rescue-below", "0") == greedy


def test_thicken_below_one_looks_at_every_crop_again(tiny_bundle, tmp_path):
    import shutil

    bundle = tmp_path / "recognizer"  # the tiny bundle with the thin-stroke gate open: every crop counts as thin
    shutil.copytree(tiny_bundle, bundle)
    record = json.loads((bundle / "record.json").read_text())
    record["decode"]["thin_core_share"] = 1.0
    (bundle / "record.json").write_text(json.dumps(record))
    rng = np.random.default_rng(5)
    paths = []
    for index in range(10):
        paths.append(tmp_path / f"{index}.png")
        crop = draw_crop(random_text(rng), scale=0.6 + 0.2 * (index % 3), thickness=1 + index % 2)
        cv2.imwrite(str(paths[-1]), crop)

    plain, thickened = _read(paths, bundle), _read(paths, bundle, "--thicken-below", "1")
    assert len(thickened) == len(plain) == 10 and thickened != plain  # the surer, thickened reading won some


def test_widen_below_one_reads_every_crop_stretched_and_keeps_surer_readings(tiny_bundle, tmp_path):
    rng = np.random.default_rng(8)
    paths = []
    for index in range(10):
        paths.append(tmp_path / f"{index}.png")
        cv2.imwrite(str(paths[-1]), draw_crop(random_text(rng), scale=0.6 + 0.2 * (index % 3)))
    plain, widened = _read(paths, tiny_bundle), _read(paths, tiny_bundle, "--widen-below", "1")
    assert len(widened) == len(plain) == 10 and widened != plain


def test_recognize_without_a_model_fails_with_one_clear_line(tmp_path):
    path = tmp_path / "crop.png"
    cv2.imwrite(str(path), draw_crop("1"))
    result = runner.invoke(app, ["recognize", str(path), "--model", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert "no model at" in result.output and "Traceback" not in result.output


def test_train_export_recognize_round_trip(tmp_path):
    train = write_crop_manifest(tmp_path / "train", 24, seed=0)
    val = write_crop_manifest(tmp_path / "val", 6, seed=1)
    config = {
        "model": {"preprocess": {"height": 32, "max_width": 256, "width_multiple": 8}, "stem_channels": 8,
                  "channels": [16, 16], "blocks": [1, 1], "strides": [[2, 2], [2, 2]], "d_model": 32, "heads": 4,
                  "layers": 1, "ffn": 64, "max_tokens": 32},
        "data": {"sources": [{"manifest": str(train), "weight": 1.0, "augment": "none"}],
                 "val_manifest": str(val), "val_limit": 4},
        "batch_size": 4, "steps": 4, "epoch_steps": 2, "num_workers": 0, "threads": 1, "mlflow": False,
        "eval_max_tokens": 8,
    }
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(config))
    run = tmp_path / "runs" / "rec"

    trained = runner.invoke(app, ["train", "recognizer", "--config", str(config_path), "--out", str(run)])
    assert trained.exit_code == 0, trained.output
    assert (run / "last.pt").is_file() and (run / "best.pt").is_file()
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    assert checkpoint["step"] == 4 and checkpoint["command"].startswith("susik train recognizer")
    assert checkpoint["sources"] == [{"manifest": str(train), "name": "drawn", "license": "CC0", "samples": "24"}]
    assert list(checkpoint["data_versions"]) == [str(train)]

    config["steps"] = 6
    config_path.write_text(yaml.safe_dump(config))
    resumed = runner.invoke(app, ["train", "recognizer", "--config", str(config_path), "--out", str(run), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert torch.load(run / "last.pt", weights_only=True)["step"] == 6

    models = tmp_path / "models"
    exported = runner.invoke(app, ["export", "recognizer", str(run / "last.pt"), "--out", str(models),
                                   "--calibration-crops", "8", "--rescue-below", "0.9", "--rescue-beam", "4",
                                   "--thicken-below", "0.8", "--widen-below", "0.7", "--widen-factor", "1.2",
                                   "--widen-factor", "1.4"])
    assert exported.exit_code == 0, exported.output
    folder = models / "recognizer"
    for name in ("encoder.onnx", "decoder.onnx", "vocab.json", "record.json", "MODEL_CARD.md"):
        assert (folder / name).is_file(), name
    record = json.loads((folder / "record.json").read_text())
    assert record["training"]["step"] == 6 and record["training"]["sources"][0]["license"] == "CC0"
    assert (record["decode"]["rescue_below"], record["decode"]["rescue_beam"]) == (0.9, 4)
    assert record["decode"]["thicken_below"] == 0.8
    assert (record["decode"]["widen_below"], record["decode"]["widen_factors"]) == (0.7, [1.2, 1.4])
    card = (folder / "MODEL_CARD.md").read_text()
    assert "less confident than 0.9 read again by beam search of width 4" in card
    assert "still less confident than 0.8 of thin-stroked crops (stroke core share below 0.2) read again" in card
    assert "still less confident than 0.7 read again greedily from the crop stretched sideways by 1.2, 1.4 in turn" in card

    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), draw_crop("3+4"))
    recognized = runner.invoke(app, ["recognize", str(crop), "--json", "--model", str(folder), "--threads", "1"])
    assert recognized.exit_code == 0, recognized.output
    assert set(json.loads(recognized.stdout.splitlines()[-1])) == {"image", "latex", "confidence"}

    # The bundle itself warm-starts the next run: no torch checkpoint of the first run is needed.
    again = tmp_path / "runs" / "from_bundle"
    warm = runner.invoke(app, ["train", "recognizer", "--config", str(config_path), "--out", str(again),
                               "--init", str(folder)])
    assert warm.exit_code == 0, warm.output
    assert (again / "init_from_bundle.pt").is_file()
    checkpoint = torch.load(again / "last.pt", weights_only=True)
    assert checkpoint["step"] == 6 and checkpoint["command"].endswith(f"--init {folder}")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "record.json").write_text("{}")
    refused = runner.invoke(app, ["train", "recognizer", "--config", str(config_path), "--out", str(tmp_path / "x"),
                                  "--init", str(broken)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output


def test_train_and_export_fail_with_one_line_on_bad_input(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 3\nnot_a_field: 1\n")
    result = runner.invoke(app, ["train", "recognizer", "--config", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "not_a_field" in result.output and "Traceback" not in result.output

    missing_data = tmp_path / "missing.yaml"
    missing_data.write_text(yaml.safe_dump({"data": {"sources": [{"manifest": str(tmp_path / "no.jsonl"), "weight": 1}]}}))
    result = runner.invoke(app, ["train", "recognizer", "--config", str(missing_data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "missing manifest" in result.output

    result = runner.invoke(app, ["export", "recognizer", str(tmp_path / "none.pt"), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "no checkpoint" in result.output
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["export", "recognizer", str(junk), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "not a recognizer checkpoint" in result.output


@pytest.mark.slow
def test_photo_reads_the_formula_between_lines_of_text(tmp_path):
    """The bundled models: a formula photographed with a sentence above and below, read whole, is squeezed into
    one line and misread; `--photo` finds it and reads it (susik.one_formula). A tight crop reads as before."""
    photo = formula_between_sentences()
    paths = [tmp_path / "photo.png", tmp_path / "crop.png", tmp_path / "garbage.png"]
    cv2.imwrite(str(paths[0]), photo)
    cv2.imwrite(str(paths[1]), draw_crop("x+7=12", 2.0))
    paths[2].write_bytes(b"not an image")
    whole, photos = ([json.loads(line) for line in runner.invoke(
        app, ["recognize", *map(str, paths), "--json", "--threads", "1", *options]).stdout.splitlines()]
        for options in ([], ["--photo"]))
    assert whole[0]["latex"] != "x+7=12" and photos[0]["latex"] == "x+7=12"
    assert photos[0]["confidence"] > whole[0]["confidence"] + 0.1
    assert photos[1]["latex"] == whole[1]["latex"]  # no region in it reads surer by the margin
    assert "error" in photos[2]
