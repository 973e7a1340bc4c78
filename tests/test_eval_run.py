"""`susik eval` end to end on tiny generated sets with fake predictors; `eval compare` on two fake runs."""

from __future__ import annotations

import json

import pytest
from eval_helpers import CROPS, FakePipeline, FakeRecognizer, crop_manifest, page_manifest, write_lines
from typer.testing import CliRunner

from susik.cli import app
from susik.eval.run import EvalOptions, run_evaluation

FAST = EvalOptions(resamples=200)


def test_recognize_metrics_files_and_slices(tmp_path):
    manifest = crop_manifest(tmp_path / "data")
    fake = FakeRecognizer([answer for *_, answer in CROPS])
    evaluation = run_evaluation("recognize", manifest, tmp_path / "out", predictor=fake, options=FAST)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics)[:7] == ["n", "exp_rate", "le1", "le2", "cer", "norm_edit_distance", "bleu"]
    # by hand: exact on samples 0 and 2; token edits 0, 1, 0, 3, 1
    assert metrics["n"] == 5 and metrics["exp_rate"] == pytest.approx(0.4)
    assert metrics["le1"] == pytest.approx(0.8) and metrics["le2"] == pytest.approx(0.8)
    assert metrics["norm_edit_distance"] == pytest.approx((0 + 1 / 3 + 0 + 1 + 1 / 5) / 5, abs=1e-6)
    # reference characters 3 + 3 + 11 + 3 + 8 = 28, character edits 0 + 1 + 0 + 3 + 1
    assert metrics["cer"] == pytest.approx(5 / 28, abs=1e-6)
    low, high = metrics["ci"]["exp_rate"]
    assert 0.0 <= low <= 0.4 <= high <= 1.0
    assert metrics["baselines"]["empty"]["exp_rate"] == 0.0 and metrics["baselines"]["empty"]["cer"] == 1.0
    assert metrics["baselines"]["most_frequent"]["exp_rate"] == pytest.approx(0.2)  # all references differ
    printed = metrics["slices"]["kind"]["printed"]
    assert printed["n"] == 3 and printed["exp_rate"] == pytest.approx(2 / 3)
    assert metrics["slices"]["kind"]["handwritten"]["exp_rate"] == 0.0
    assert metrics["slices"]["condition"]["blur"]["n"] == 2 and metrics["slices"]["condition"]["clean"]["n"] == 3
    assert metrics["slices"]["structure"]["fraction"]["exp_rate"] == 1.0
    # every reading 0.5 sure: no ranking (ties), calibration off by |0.5 - 0.4|
    assert metrics["confidence"]["auroc"] == 0.5 and metrics["confidence"]["ece"] == pytest.approx(0.1)
    assert metrics["confidence"]["exact_at_coverage"]["80%"] == pytest.approx(0.5)  # the first four, in order
    bins = metrics["confidence"]["reliability"]  # all five in the 0.5-0.6 bin: said 0.5, 40% right
    assert [b["n"] for b in bins] == [0] * 5 + [5] + [0] * 4
    assert bins[5]["mean_confidence"] == 0.5 and bins[5]["exact_rate"] == pytest.approx(0.4)
    assert (tmp_path / "out" / "plots" / "reliability.png").stat().st_size > 1000
    lines = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert lines[1] == {"image": "c1.png", "latex": "a^{3}", "confidence": 0.5}
    assert [item.correct for item in evaluation.scored] == [True, False, True, False, False]
    report = (tmp_path / "out" / "report.html").read_text()
    assert report.index('id="s3"') < report.index('id="s1"') < report.index('id="s0"')  # worst first
    assert (tmp_path / "out" / "plots" / "norm_edit_distance_by_length.png").stat().st_size > 1000


def test_unreadable_image_is_reported_and_scored_as_empty(tmp_path):
    manifest = crop_manifest(tmp_path / "data")
    (tmp_path / "data" / "c0.png").write_bytes(b"not a png")
    fake = FakeRecognizer([answer for *_, answer in CROPS[1:]])
    evaluation = run_evaluation("recognize", manifest, tmp_path / "out", predictor=fake, options=FAST)
    assert "error" in evaluation.scored[0].prediction and not evaluation.scored[0].correct
    assert evaluation.metrics["exp_rate"] == pytest.approx(0.2)


def test_cli_scores_a_predictions_file_without_a_model(tmp_path):
    manifest = crop_manifest(tmp_path / "data")
    predictions = write_lines(tmp_path / "p.jsonl", [{"image": f"c{i}.png", "latex": latex, "confidence": 1.0}
                                                     for i, (_, latex, *_) in enumerate(CROPS)])
    result = CliRunner().invoke(app, ["eval", "recognize", "--data", str(manifest), "--out", str(tmp_path / "o"),
                                      "--predictions", str(predictions), "--no-track", "--resamples", "200",
                                      "--slice", "kind", "--slice", "license"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["exp_rate"] == 1.0 and set(metrics["slices"]) == {"kind", "license"}
    assert metrics["confidence"]["auroc"] is None and metrics["confidence"]["ece"] == 0.0  # all right, all sure
    assert "baseline" in result.output and "95% CI" in result.output


def test_cli_missing_prediction_is_one_clear_error(tmp_path):
    manifest = crop_manifest(tmp_path / "data")
    predictions = write_lines(tmp_path / "p.jsonl", [{"image": "c0.png", "latex": "x"}])
    result = CliRunner().invoke(app, ["eval", "recognize", "--data", str(manifest), "--out", str(tmp_path / "o"),
                                      "--predictions", str(predictions), "--no-track"])
    assert result.exit_code == 1
    assert "error: " in result.output and "no prediction for image 'c1.png'" in result.output
    assert "Traceback" not in result.output


def test_detect_end_to_end_hand_computed(tmp_path):
    manifest = page_manifest(tmp_path / "pages")
    evaluation = run_evaluation("detect", manifest, tmp_path / "out", predictor=FakePipeline(), options=FAST)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics)[:5] == ["n", "precision", "recall", "f1", "e2e_exact"]
    # 3 predictions, 3 truths, 2 matched (IoU 1 and 0.95), 1 of them read right
    assert metrics["precision"] == pytest.approx(2 / 3, abs=1e-6) and metrics["recall"] == pytest.approx(2 / 3, abs=1e-6)
    assert metrics["e2e_exact"] == pytest.approx(1 / 3, abs=1e-6)
    assert metrics["baselines"]["empty"]["recall"] == 0.0 and metrics["baselines"]["empty"]["f1"] == 0.0
    assert metrics["slices"]["condition"]["clean"]["recall"] == 0.0
    assert metrics["recognition_on_matched"]["exp_rate"] == pytest.approx(0.5)
    # every region said 0.9; one of the three predictions is a formula read exactly (a spurious one counts wrong)
    assert metrics["confidence"]["n"] == 3 and metrics["confidence"]["ece"] == pytest.approx(0.9 - 1 / 3, abs=1e-6)
    line = json.loads((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()[0])
    assert line["image"] == "p0.png" and len(line["regions"]) == 3 and "quad" in line["regions"][0]
    assert not evaluation.scored[0].correct
    assert "region (missed)" in (tmp_path / "out" / "report.html").read_text()


def test_recognize_refuses_a_page_manifest(tmp_path):
    manifest = page_manifest(tmp_path / "pages")
    result = CliRunner().invoke(app, ["eval", "recognize", "--data", str(manifest), "--out", str(tmp_path / "o"),
                                      "--predictions", str(manifest), "--no-track"])
    assert result.exit_code == 1 and "needs crops" in result.output


def test_compare_two_runs_pool_and_unique_wins(tmp_path):
    manifest = crop_manifest(tmp_path / "data")
    right = [latex for _, latex, *_ in CROPS]
    wrong = ["?"] * len(CROPS)
    first = write_lines(tmp_path / "a.jsonl", [{"image": f"c{i}.png", "latex": t} for i, t in enumerate(right)])
    second = write_lines(tmp_path / "b.jsonl", [{"image": f"c{i}.png", "latex": t}
                                                for i, t in enumerate(right[:1] + wrong[1:])])
    for name, predictions in (("good", first), ("weak", second)):
        run_evaluation("recognize", manifest, tmp_path / name, predictions=predictions, options=FAST)
    result = CliRunner().invoke(app, ["eval", "compare", str(tmp_path / "good"), str(tmp_path / "weak"),
                                      "--out", str(tmp_path / "cmp.json"), "--resamples", "500"])
    assert result.exit_code == 0, result.output
    comparison = json.loads((tmp_path / "cmp.json").read_text())
    whole = next(s for s in comparison["slices"] if s["field"] == "all")
    # 5/5 vs 1/5: every resample favours "good" (the 4 differing samples all go one way)
    assert whole["best"] == "good" and whole["pool"] == ["good"]
    weak = next(r for r in whole["runs"] if r["run"] == "weak")
    assert weak["best_minus_run"] == pytest.approx(0.8) and not weak["tied"]
    tied = next(s for s in comparison["slices"] if (s["field"], s["value"]) == ("condition", "clean"))
    # 3 samples, 2 differ: a resample of only the shared right one (1 in 27) makes the interval touch 0
    assert tied["n"] == 3 and tied["pool"] == ["good", "weak"]
    assert comparison["unique_correct"] == {"good": ["c1.png", "c2.png", "c3.png", "c4.png"], "weak": []}
