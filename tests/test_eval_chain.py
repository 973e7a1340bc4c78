"""Issue 6's chain in one test, through the CLI on tiny drawn data: train a few steps -> export -> eval ->
report -> compare against a second model -> gate. Each link is checked against the one before it."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from susik.cli import app

pytest.importorskip("torch")
from recognizer_helpers import write_crop_manifest  # after the skip: it imports torch

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow  # trains and exports with torch, evaluates twice: ~30 s on a loaded 2-core machine
def test_train_eval_report_compare_gate(tmp_path, tiny_bundle):
    train = write_crop_manifest(tmp_path / "train", 24, seed=0, longest=4, with_kinds=True)
    val = write_crop_manifest(tmp_path / "val", 6, seed=1, longest=4, with_kinds=True)
    config = {
        "model": {"preprocess": {"height": 32, "max_width": 256, "width_multiple": 8}, "stem_channels": 8,
                  "channels": [16, 16], "blocks": [1, 1], "strides": [[2, 2], [2, 2]], "d_model": 32,
                  "heads": 4, "layers": 1, "ffn": 64, "max_tokens": 32},
        "data": {"sources": [{"manifest": str(train), "weight": 1.0, "augment": "none"}],
                 "val_manifest": str(val), "val_limit": 6},
        "batch_size": 4, "steps": 4, "epoch_steps": 2, "num_workers": 0, "threads": 1, "mlflow": False,
        "eval_max_tokens": 8,
    }
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    _ok(["train", "recognizer", "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run")])
    _ok(["export", "recognizer", str(tmp_path / "run" / "best.pt"), "--out", str(tmp_path / "models"),
         "--calibration-crops", "8"])
    trained = tmp_path / "models" / "recognizer"

    runs = {"trained": trained, "random": tiny_bundle}
    metrics = {}
    for name, model in runs.items():
        out = tmp_path / "eval" / name
        _ok(["eval", "recognize", "--data", str(val), "--out", str(out), "--model", str(model), "--no-track",
             "--threads", "1", "--resamples", "200"])
        metrics[name] = json.loads((out / "metrics.json").read_text())
        predictions = (out / "predictions.jsonl").read_text().splitlines()
        assert metrics[name]["n"] == len(predictions) == 6
        # the report puts image, rendered truth and rendered prediction side by side for every sample
        report = (out / "report.html").read_text()
        assert len(re.findall(r'<div class="sample" id="s\d+">', report)) == 6
        assert report.count('class="cell gt"') == report.count('class="cell pred"') == 6
        assert report.count("<img src=\"data:image/") >= 6

    pool = tmp_path / "compare.json"
    _ok(["eval", "compare", str(tmp_path / "eval" / "trained"), str(tmp_path / "eval" / "random"),
         "--out", str(pool), "--resamples", "200"])
    comparison = json.loads(pool.read_text())
    overall = next(s for s in comparison["slices"] if s["field"] == "all")
    assert overall["n"] == 6 and {run["run"] for run in overall["runs"]} == {"trained", "random"}
    for run in overall["runs"]:  # the pool scores each run exactly as its own eval did
        assert run["score"] == pytest.approx(metrics[run["run"]][comparison["metric"]])
    assert overall["best"] in overall["pool"]
    assert {s["value"] for s in comparison["slices"] if s["field"] == "kind"} == {"printed", "handwritten"}

    spec = tmp_path / "requirements.yaml"
    spec.write_text(
        "serving_mode: local_cpu\nhardware: {cpu_cores: 1, memory_mb: 100000, model_mb: 50}\n"
        "latency_ms: {offline: {p50: 5000, p95: 10000}, online: {p50: 1000, p95: 2000}}\nqps: 0.1\n"
        "accuracy: [{metric: exp_rate, min: 1.01}, {metric: exp_rate, slice: kind=printed, max: 1.0}]\n"
    )
    gate = ["gate", "--model", str(trained), "--requirements", str(spec), "--n", "5",
            "--metrics", str(tmp_path / "eval" / "trained" / "metrics.json")]
    assert runner.invoke(app, gate).exit_code == 1  # exp_rate can never reach 1.01
    verdict_path = tmp_path / "gate.json"
    _ok([*gate, "--report", str(verdict_path), "--no-fail"])  # the verdict goes to the report instead
    verdict = json.loads(verdict_path.read_text())
    assert verdict["passed"] is False and verdict["failed"] == ["exp_rate"]
    rows = {row["requirement"]: row for row in verdict["rows"]}
    assert rows["exp_rate"]["measured"] == pytest.approx(metrics["trained"]["exp_rate"])
    printed = rows["exp_rate [kind=printed]"]
    assert printed["measured"] == pytest.approx(metrics["trained"]["slices"]["kind"]["printed"]["exp_rate"])
    assert printed["status"] == "pass" and rows["model size (MB)"]["status"] == "pass"
