"""The confidence map: fitted on labelled readings, judged on held-out halves, reported by the recognizer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from recognizer_helpers import write_crop_manifest
from typer.testing import CliRunner

from susik.cli import app
from susik.eval.calibrate import RawScores, apply, calibration_report, fit_calibration, set_name
from susik.eval.confidence import expected_calibration_error, fit_logistic
from susik.runtime.decoding import ConfidenceCalibration, DecodeConfig, Hypothesis, reported_confidence
from susik.runtime.image_io import load_image
from susik.runtime.recognizer import OnnxRecognizer


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1 - p))


def _overconfident_readings(n: int, seed: int) -> tuple[list[RawScores], list[bool]]:
    """Readings whose raw scores sit near 0.8-1.0 while far fewer are right, drawn from a known logistic law."""
    rng = np.random.default_rng(seed)
    geomean = rng.uniform(0.75, 0.999, n)
    minimum = geomean ** rng.uniform(1.5, 6.0, n)
    truth = 1 / (1 + np.exp(-(0.2 * _logit(geomean) + 1.5 * _logit(minimum) - 1.0)))
    right = rng.random(n) < truth
    return [RawScores(float(g), float(m)) for g, m in zip(geomean, minimum, strict=True)], right.tolist()


def test_fit_logistic_recovers_the_law_that_drew_the_outcomes():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(20000, 2))
    right = rng.random(20000) < 1 / (1 + np.exp(-(features @ [1.5, -0.5] + 0.3)))
    weights, bias = fit_logistic(features, right, l2=0.0)
    assert weights == pytest.approx([1.5, -0.5], abs=0.08) and bias == pytest.approx(0.3, abs=0.06)


def test_fit_logistic_stays_finite_when_outcomes_separate_perfectly():
    features = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    weights, bias = fit_logistic(features, [False, False, True, True])
    assert np.isfinite(weights).all() and np.isfinite(bias) and weights[0] > 0


def test_the_map_brings_an_overconfident_score_to_the_hit_rate():
    scores, right = _overconfident_readings(4000, seed=1)
    calibration = fit_calibration(scores[:2000], right[:2000], fitted_on="drawn")
    raw, mapped = apply(None, scores[2000:]), apply(calibration, scores[2000:])
    assert expected_calibration_error(raw, right[2000:]) > 0.3
    assert expected_calibration_error(mapped, right[2000:]) < 0.05
    assert calibration.minimum > 0 and calibration.fitted_on == "drawn"


def test_fit_needs_both_outcomes_and_one_outcome_per_reading():
    scores, _ = _overconfident_readings(10, seed=2)
    with pytest.raises(ValueError, match="both right and wrong"):
        fit_calibration(scores, [True] * 10)
    with pytest.raises(ValueError, match="9 outcomes"):
        fit_calibration(scores, [True, False] * 4 + [True])


def test_report_judges_each_set_on_readings_the_half_map_never_saw():
    easy, easy_right = _overconfident_readings(600, seed=3)
    hard, hard_right = _overconfident_readings(400, seed=4)
    report = calibration_report({"easy": (easy, easy_right), "hard": (hard, hard_right)}, "easy, hard")
    assert set(report.held_out) == {"easy", "hard", "all"}
    assert report.held_out["easy"].raw.n == 300 and report.held_out["all"].raw.n == 500
    assert report.held_out["hard"].right_share == pytest.approx(np.mean(hard_right[0::2]))
    for held in report.held_out.values():
        assert held.mapped.ece < held.raw.ece / 3
    assert report.n_fit == 1000 and report.calibration.fitted_on == "easy, hard"


def test_sets_are_named_by_their_folder_and_file():
    assert set_name(Path("../shared/data/crohme/val2013.jsonl")) == "crohme/val2013"
    assert set_name(Path("work/recdata/synthetic_val/manifest.jsonl")) == "recdata/synthetic_val"
    assert set_name(Path("val.jsonl")) == "val"


def test_raw_scores_of_unfinished_readings_are_none():
    assert RawScores.of(Hypothesis((1, 2), (0.5, 0.5), "repetition")) is None
    assert RawScores.of(Hypothesis((), (), "empty")) is None
    scores = RawScores.of(Hypothesis((1, 2), (0.25, 1.0, 1.0), "eos"))
    assert scores.geomean == pytest.approx(0.25 ** (1 / 3)) and scores.minimum == 0.25


def test_reported_confidence_is_raw_without_a_map_and_mapped_with_one():
    hypothesis = Hypothesis((4, 5), (0.99, 0.6, 0.95), "eos")
    raw = reported_confidence(hypothesis, DecodeConfig())
    assert raw == pytest.approx((0.99 * 0.6 * 0.95) ** (1 / 3))
    calibration = ConfidenceCalibration(geomean=0.5, minimum=2.0, bias=-1.0)
    mapped = reported_confidence(hypothesis, DecodeConfig(calibration=calibration))
    expected = 0.5 * _logit(np.array(raw)) + 2.0 * _logit(np.array(0.6)) - 1.0
    assert mapped == pytest.approx(1 / (1 + np.exp(-expected)))
    assert reported_confidence(Hypothesis((4,), (0.9,), "length"), DecodeConfig(calibration=calibration)) == 0.0
    certain = Hypothesis((4,), (1.0, 1.0), "eos")  # float32 probabilities reach 1.0: the logit stays finite
    assert 0.5 < reported_confidence(certain, DecodeConfig(calibration=calibration)) < 1.0


@pytest.mark.usefixtures("torch_one_thread")
def test_calibrate_command_writes_the_map_the_recognizer_then_reports(tiny_bundle, tmp_path):
    bundle = tmp_path / "recognizer"
    shutil.copytree(tiny_bundle, bundle)
    crops = write_crop_manifest(tmp_path / "drawn", 1, seed=6)
    crop = tmp_path / "drawn" / "images" / "0.png"
    before = CliRunner().invoke(app, ["recognize", str(crop), "--json", "--model", str(bundle), "--threads", "1"])
    record = json.loads(before.stdout.splitlines()[0])
    # the tiny random model reads nearly nothing right: crop 0 listed under the reading it gets (read in a batch
    # as the command reads it: in fp32 noise a near-tie can go the other way alone) is right, under "x" wrong
    batched = OnnxRecognizer.load(bundle, threads=1)([load_image(crop)] * 16)[0].latex
    lines = [{"image": "images/0.png", "latex": batched if index % 4 < 2 else "x", "source": "drawn",
              "license": "CC0"} for index in range(32)]
    lines.insert(5, {**lines[0], "image": "images/gone.png"})  # unreadable: skipped with a line, the rest read
    crops.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    result = CliRunner().invoke(app, ["eval", "calibrate", "--data", str(crops), "--model", str(bundle),
                                      "--threads", "1", "--write"])
    assert result.exit_code == 0, result.output
    assert "ECE" in result.stdout and "logit(min)" in result.stdout
    assert "skipped" in result.stderr and "gone.png" in result.stderr
    written = json.loads((bundle / "record.json").read_text())["decode"]["calibration"]
    assert written["fitted_on"].endswith("/drawn (32)") and "calibrat" in (bundle / "MODEL_CARD.md").read_text()
    after = CliRunner().invoke(app, ["recognize", str(crop), "--json", "--model", str(bundle), "--threads", "1"])
    mapped = json.loads(after.stdout.splitlines()[0])
    assert mapped["latex"] == record["latex"] and mapped["confidence"] != record["confidence"]
    assert json.loads((bundle / "record.json").read_text())["version"] == json.loads(
        (tiny_bundle / "record.json").read_text())["version"]


def test_calibrate_command_says_why_it_cannot_fit(tiny_bundle, tmp_path):
    crops = write_crop_manifest(tmp_path / "drawn", 4, seed=7)  # a random tiny model reads none of them right
    result = CliRunner().invoke(app, ["eval", "calibrate", "--data", str(crops), "--model", str(tiny_bundle),
                                      "--threads", "1"])
    assert result.exit_code == 1 and "both right and wrong" in result.stderr
    before = (tiny_bundle / "record.json").read_text()
    allowed = CliRunner().invoke(app, ["eval", "calibrate", "--data", str(crops), "--model", str(tiny_bundle),
                                       "--threads", "1", "--write", "--allow-unfit"])
    assert allowed.exit_code == 0 and "record unchanged" in allowed.stderr
    assert (tiny_bundle / "record.json").read_text() == before


@pytest.mark.usefixtures("torch_one_thread")
def test_unsure_readings_are_flagged_for_checking(tiny_bundle, tmp_path):
    bundle = tmp_path / "recognizer"
    shutil.copytree(tiny_bundle, bundle)
    crop = write_crop_manifest(tmp_path / "drawn", 1, seed=8).parent / "images" / "0.png"
    table = CliRunner().invoke(app, ["recognize", str(crop), "--model", str(bundle), "--threads", "1"])
    assert table.exit_code == 0 and "check" not in table.stdout  # raw scores of the tiny model: 0.7-0.9
    record = json.loads((bundle / "record.json").read_text())
    record["decode"]["calibration"] = {"geomean": 1.0, "minimum": 1.0, "bias": -10.0}  # a map that doubts it all
    (bundle / "record.json").write_text(json.dumps(record))
    table = CliRunner().invoke(app, ["recognize", str(crop), "--model", str(bundle), "--threads", "1"])
    assert table.exit_code == 0 and "check" in table.stdout
