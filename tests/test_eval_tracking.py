"""MLflow tracking and registry on a local SQLite store: log an eval, register, promote, list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from susik.cli import app
from susik.eval.tracking import flatten_metrics

pytest.importorskip("mlflow")


def test_flatten_metrics_names_slices_safely():
    metrics = {"n": 3, "exp_rate": 0.5, "ci": {"exp_rate": [0, 1]}, "run": {"task": "recognize"},
               "slices": {"length": {"51+": {"n": 1, "exp_rate": 0.0, "ci": {}}}}}
    assert flatten_metrics(metrics) == {"n": 3.0, "exp_rate": 0.5, "slice.length.51_.n": 1.0,
                                        "slice.length.51_.exp_rate": 0.0}


@pytest.mark.slow  # creating the MLflow schema takes ~10 s on a loaded 2-core machine
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_register_promote_list_offline(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    model = tmp_path / "model"
    model.mkdir()
    (model / "record.json").write_text(json.dumps({"name": "recognizer", "version": "abc"}))
    (model / "encoder.onnx").write_bytes(b"\0" * 64)
    evals = tmp_path / "eval"
    evals.mkdir()
    (evals / "metrics.json").write_text(json.dumps({"n": 4, "exp_rate": 0.75, "slices": {}}))
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(app, ["models", "register", str(model), "--eval", str(evals), "--tracking-uri", uri])
        assert result.exit_code == 0, result.output
    assert "version 2" in result.output
    result = runner.invoke(app, ["models", "promote", "recognizer", "1", "--tracking-uri", uri])
    assert result.exit_code == 0 and "champion -> version 1" in result.output
    result = runner.invoke(app, ["models", "promote", "recognizer", "2", "--tracking-uri", uri])
    assert "champion -> version 2 (was version 1)" in result.output
    result = runner.invoke(app, ["models", "promote", "recognizer", "1", "--alias", "challenger", "--tracking-uri", uri])
    assert result.exit_code == 0
    result = runner.invoke(app, ["models", "promote", "recognizer", "9", "--tracking-uri", uri])
    assert result.exit_code == 1 and "no version 9" in result.output
    from susik.eval.tracking import list_versions

    rows = {row.version: row for row in list_versions(uri)}
    assert rows["1"].aliases == ("challenger",) and rows["2"].aliases == ("champion",)
    assert rows["2"].metrics["exp_rate"] == 0.75
    stored = rows["2"].source.removeprefix("file://")
    assert (tmp_path / "store" / "mlartifacts").is_dir() and stored.startswith(str(tmp_path / "store"))
    assert (Path(stored) / "encoder.onnx").read_bytes() == b"\0" * 64
    result = runner.invoke(app, ["models", "list", "--tracking-uri", uri])
    assert result.exit_code == 0 and "champion" in result.output and "challenger" in result.output
