"""Capacity planning as pure functions, and the `susik plan` / `susik online` commands end to end."""

import json

import pytest
from typer.testing import CliRunner

from susik.cli import app
from susik.serve.capacity import Level, models_per_gpu, plan, replica_capacity
from susik.serve.store import FeedbackStore

LEVELS = [
    Level(1, 20.0, 0.06, 0.0),
    Level(4, 45.0, 0.4, 0.0),
    Level(8, 52.0, 1.3, 0.0),
    Level(16, 60.0, 0.9, 0.05),
]


@pytest.mark.parametrize(("slo", "capacity"), [(1.0, 45.0), (2.0, 52.0), (0.06, 20.0), (0.01, 0.0)])
def test_replica_capacity_is_the_best_rate_within_the_slo_and_error_budget(slo, capacity):
    assert replica_capacity(LEVELS, slo) == capacity


@pytest.mark.parametrize(
    ("gpu", "model", "fits"), [(80, 6, 13), (24, 6, 3), (7, 6, 1), (6.5, 6, 0), (40, 39, 1)]
)
def test_models_per_gpu_is_a_step_function(gpu, model, fits):
    assert models_per_gpu(gpu, model) == fits


def test_plan_sizes_for_headroom_and_packs_gpus():
    cpu = plan(100, 45.0)
    assert (cpu.replicas, cpu.machines, cpu.models_per_gpu) == (3, 3, None)  # 100 / (45 * 0.75) = 2.96
    gpu = plan(1000, 45.0, gpu_mem_gb=24, model_mem_gb=6, gpus_per_machine=2)
    assert (gpu.replicas, gpu.replicas_per_machine, gpu.machines) == (30, 6, 5)
    with pytest.raises(ValueError, match="latency target"):
        plan(10, 0.0)
    with pytest.raises(ValueError, match="does not fit"):
        plan(10, 5.0, gpu_mem_gb=4, model_mem_gb=6)


def test_plan_command_reads_bench_results(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "mode": "crop",
                "model_version": "m1",
                "machine": {"cpus": 2},
                "levels": [
                    {"concurrency": c, "rps": rps, "error_rate": 0.0, "latency_ms": {"p95": p95}}
                    for c, rps, p95 in ((1, 20.0, 60.0), (4, 45.0, 400.0), (8, 52.0, 1300.0))
                ],
            }
        )
    )
    result = CliRunner().invoke(app, ["plan", "--qps", "100", "--p95", "1", "--bench", str(bench)])
    assert result.exit_code == 0, result.output
    assert "45 req/s" in result.output and "3 machines" in result.output
    missing = CliRunner().invoke(
        app, ["plan", "--qps", "1", "--p95", "1", "--bench", str(tmp_path / "none.json")]
    )
    assert missing.exit_code == 1 and "error:" in missing.output


def test_online_commands_report_and_export(tmp_path, monkeypatch):
    from susik.serve.fakes import sample_photo

    monkeypatch.setenv("SUSIK_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    assert (
        runner.invoke(app, ["online", "report"]).exit_code == 1
    )  # no database yet: one line, not a traceback
    store = FeedbackStore.open(
        f"sqlite:///{(tmp_path / 'data' / 'susik.db').resolve()}", tmp_path / "data" / "images"
    )
    store.receive("r1", "v7", "crop", sample_photo(200, 80), "JPEG", consent=True, license="L")
    store.complete(
        "r1",
        {
            "width": 200,
            "height": 80,
            "orientation": 0,
            "timings_ms": {},
            "regions": [
                {
                    "quad": [[0, 0], [200, 0], [200, 80], [0, 80]],
                    "polygon": [],
                    "latex": "x",
                    "confidence": 1.0,
                    "kind": "printed",
                }
            ],
        },
    )
    store.add_feedback("r1", 0, latex="y", comment="it is a y")
    store.close()

    report = runner.invoke(app, ["online", "report", "--json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.output)["model_versions"]["v7"]["correction_rate"] == 1.0
    table = runner.invoke(app, ["online", "report"])
    assert "v7" in table.output and "it is a y" in table.output
    exported = runner.invoke(app, ["online", "export", "--out", str(tmp_path / "ds")])
    assert exported.exit_code == 0, exported.output
    assert "1 samples" in exported.output and "sha256:" in exported.output
    assert json.loads((tmp_path / "ds" / "manifest.jsonl").read_text())["latex"] == "y"
