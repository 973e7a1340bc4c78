"""The requirement gate: spec validation, pass / fail / skip rows with margins, timing with a fake clock."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from susik.eval.gate import Measurements, check, passed, time_model
from susik.eval.gate_command import online_latency
from susik.spec.requirements import Requirements, RequirementsError, load_requirements

SPEC = {
    "serving_mode": "local_cpu",
    "hardware": {"cpu_cores": 2, "memory_mb": 1000, "model_mb": 50},
    "latency_ms": {"offline": {"p50": 100, "p95": 300}, "online": {"p50": 1000, "p95": 2000}},
    "qps": 5,
    "accuracy": [{"metric": "exp_rate", "min": 0.5}, {"metric": "cer", "slice": "kind=printed", "max": 0.1}],
}
METRICS = {"exp_rate": 0.6, "slices": {"kind": {"printed": {"cer": 0.05}}}}


def good() -> Measurements:
    return Measurements((80.0, 250.0), (900.0, 1800.0), 12.0, 20.0, 600.0, METRICS)


def test_the_repository_spec_validates():
    spec = load_requirements(Path(__file__).resolve().parents[1] / "specs" / "requirements.yaml")
    assert spec.serving_mode in ("mobile", "local_cpu", "local_gpu", "cloud") and spec.accuracy


def test_spec_rejects_unknown_keys_and_bad_bounds(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("serving_mode: local_cpu\nhardwre: {}\n")
    with pytest.raises(RequirementsError, match="hardwre: unknown key"):
        load_requirements(path)
    with pytest.raises(ValueError, match="exactly one of min and max"):
        Requirements.model_validate({**SPEC, "accuracy": [{"metric": "f1", "min": 0.1, "max": 0.9}]})
    with pytest.raises(ValueError, match="above p95"):
        Requirements.model_validate({**SPEC, "latency_ms": {"offline": {"p50": 9, "p95": 1},
                                                            "online": {"p50": 1, "p95": 2}}})


def test_gate_passes_with_margins():
    rows = check(Requirements.model_validate(SPEC), good())
    assert [row.status for row in rows] == ["pass"] * 9 and passed(rows)
    margins = {row.requirement: row.margin for row in rows}
    assert margins["offline latency p95 (ms)"] == pytest.approx(50.0)
    assert margins["throughput (crops/s on 2 cores)"] == pytest.approx(7.0)
    assert margins["exp_rate"] == pytest.approx(0.1) and margins["cer [kind=printed]"] == pytest.approx(0.05)


def test_gate_fails_on_any_missed_requirement():
    slow = Measurements((150.0, 250.0), (900.0, 1800.0), 12.0, 20.0, 600.0, {**METRICS, "exp_rate": 0.4})
    rows = check(Requirements.model_validate(SPEC), slow)
    failed = {row.requirement: row.margin for row in rows if row.status == "fail"}
    assert failed == {"offline latency p50 (ms)": pytest.approx(-50.0), "exp_rate": pytest.approx(-0.1)}
    assert not passed(rows)


def test_a_dotted_metric_reads_a_nested_block_of_metrics_json():
    spec = Requirements.model_validate({**SPEC, "accuracy": [{"metric": "confidence.auroc", "min": 0.8},
                                                             {"metric": "confidence.ece", "slice": "kind=printed",
                                                              "max": 0.1}]})
    metrics = {"confidence": {"auroc": 0.75}, "slices": {"kind": {"printed": {"confidence": {"ece": 0.04}}}}}
    rows = {row.requirement: row for row in check(spec, Measurements(metrics=metrics))}
    assert rows["confidence.auroc"].status == "fail" and rows["confidence.auroc"].margin == pytest.approx(-0.05)
    assert rows["confidence.ece [kind=printed]"].margin == pytest.approx(0.06)
    unjudged = {row.requirement: row.status for row in check(spec, Measurements(metrics={"confidence": None}))}
    assert unjudged["confidence.auroc"] == "skip"  # no confidences in the predictions: nothing measured


def test_unmeasured_requirements_skip_and_fail_only_when_strict():
    partial = Measurements((80.0, 250.0), None, 12.0, 20.0, 600.0, {"exp_rate": 0.9, "slices": {}})
    rows = check(Requirements.model_validate(SPEC), partial)
    skipped = [row.requirement for row in rows if row.status == "skip"]
    assert skipped == ["online capture->display p50 (ms)", "online capture->display p95 (ms)", "cer [kind=printed]"]
    assert passed(rows) and not passed(rows, strict=True)


def test_time_model_with_a_fake_clock():
    ticks = itertools.count(step=0.010)  # every clock read advances 10 ms
    calls = []

    def predictor(images):
        calls.append(len(images))
        return [None] * len(images)

    (p50, p95), qps = time_model(predictor, [b"x"] * 10, lambda _: np.zeros((2, 2), np.uint8), batch_size=4,
                                 warmup=1, clock=lambda: next(ticks))
    assert p50 == pytest.approx(10.0) and p95 == pytest.approx(10.0)
    assert calls == [1] * 11 + [4, 4, 2]
    assert qps == pytest.approx(10 / 0.010)


def test_online_latency_from_the_serving_report():
    report = {"model_versions": {"a": {"feedback": 1, "display_ms_p50": 900, "display_ms_p95": 1500},
                                 "b": {"feedback": 5, "display_ms_p50": 700, "display_ms_p95": 1200}}}
    assert online_latency(report, None) == (700.0, 1200.0)
    assert online_latency(report, "a") == (900.0, 1500.0)
    assert online_latency({"model_versions": {"a": {"display_ms_p50": None, "display_ms_p95": None}}}, None) is None


@pytest.mark.slow  # exports a model with torch: ~12 s on a loaded 2-core machine
def test_gate_cli_on_a_tiny_exported_model(tmp_path):
    """The whole chain on a random-weight model: it is fast and small, so the latency and size rows pass,
    and it reads nothing right, so the accuracy rows fail and the gate exits 1."""
    pytest.importorskip("torch")
    from eval_helpers import crop_manifest
    from recognizer_helpers import export_tiny_bundle
    from typer.testing import CliRunner

    from susik.cli import app

    bundle = export_tiny_bundle(tmp_path / "models")
    manifest = crop_manifest(tmp_path / "data")
    spec = tmp_path / "req.yaml"
    spec.write_text(
        "serving_mode: local_cpu\nhardware: {cpu_cores: 1, memory_mb: 100000, model_mb: 50}\n"
        "latency_ms: {offline: {p50: 5000, p95: 10000}, online: {p50: 1000, p95: 2000}}\nqps: 0.5\n"
        "accuracy: [{metric: exp_rate, min: 0.5}, {metric: confidence.auroc, slice: kind=printed, min: 0.0}]\n"
    )
    args = ["gate", "--model", str(bundle), "--requirements", str(spec), "--data", str(manifest), "--n", "5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "skip" in result.output  # online latency: no report given
    assert "confidence.auroc [kind=printed]" in result.output  # the slice shows, not taken for markup
    accuracy_free = tmp_path / "req2.yaml"
    accuracy_free.write_text(spec.read_text().split("accuracy:")[0] + "accuracy: []\n")
    result = CliRunner().invoke(app, [*args[:3], "--requirements", str(accuracy_free), *args[5:]])
    assert result.exit_code == 0 and "PASS" in result.output
