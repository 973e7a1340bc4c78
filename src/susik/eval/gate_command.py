"""`susik gate --model M`: measure a recognizer here and print a pass/fail table against the requirements."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from susik.eval.gate import GateRow, Measurements, check, passed, peak_memory_mb, time_model
from susik.spec.requirements import Requirements, RequirementsError, load_requirements

_out = Console(soft_wrap=True, highlight=False)
_err = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(message: str) -> None:
    _err.print(f"error: {message}", markup=False)
    raise typer.Exit(2)


def synthetic_crops(n: int, rng: np.random.Generator) -> list[bytes]:
    """PNG crops of drawn digit strings, for timing when no eval set is given."""
    import cv2

    crops = []
    for _ in range(n):
        text = "".join(rng.choice(list("0123456789+-=x"), int(rng.integers(3, 12))))
        image = np.full((48, 24 * len(text) + 20), 255, np.uint8)
        cv2.putText(image, text, (10, 36), cv2.FONT_HERSHEY_SIMPLEX, 1.0, 0, 2, cv2.LINE_AA)
        crops.append(cv2.imencode(".png", image)[1].tobytes())
    return crops


def online_latency(report: dict[str, Any], version: str | None) -> tuple[float, float] | None:
    """(p50, p95) display_ms of one model version in a `/v1/online/report` JSON (default: most feedback)."""
    versions = report.get("model_versions", {})
    if version is None and versions:
        version = max(versions, key=lambda v: versions[v].get("feedback", 0))
    entry = versions.get(version or "", {})
    p50, p95 = entry.get("display_ms_p50"), entry.get("display_ms_p95")
    return (float(p50), float(p95)) if p50 is not None and p95 is not None else None


def print_rows(rows: list[GateRow], requirements: Requirements, notes: dict[str, str]) -> None:
    table = Table(title=f"gate: serving mode {requirements.serving_mode}")
    for column in ("requirement", "target", "measured", "margin", "status"):
        table.add_column(column, justify="left" if column == "requirement" else "right")
    colours = {"pass": "green", "fail": "red", "skip": "yellow"}
    for row in rows:
        measured = "—" if row.measured is None else f"{row.measured:.3f}"
        margin = "—" if row.margin is None else f"{row.margin:+.3f}"
        table.add_row(escape(row.requirement), row.target, measured, margin,
                      f"[{colours[row.status]}]{row.status}[/]")
    _out.print(table)
    for name, note in notes.items():
        _out.print(f"{name}: {note}", markup=False)


def write_report(path: Path, model: str, requirements: Requirements, rows: list[GateRow],
                 notes: dict[str, str], ok: bool, strict: bool) -> None:
    """The gate's verdict as JSON: what a release pipeline reads to decide whether to promote."""
    failed = [row.requirement for row in rows if row.status == "fail" or (strict and row.status == "skip")]
    verdict = {"passed": ok, "failed": failed, "strict": strict, "model": model,
               "serving_mode": requirements.serving_mode, "rows": [asdict(row) for row in rows], "notes": notes}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(verdict, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def gate(
    model: Annotated[str, typer.Option(help="recognizer: bundled name, model folder or record.json")] = "recognizer",
    requirements: Annotated[Path, typer.Option(help="requirements YAML")] = Path("specs/requirements.yaml"),
    data: Annotated[Path | None, typer.Option(help="validation crop manifest: accuracy targets and timing images")] = None,
    metrics: Annotated[Path | None, typer.Option(help="an eval metrics.json instead of evaluating --data")] = None,
    online: Annotated[Path | None, typer.Option(help="a /v1/online/report JSON for capture->display latency")] = None,
    online_version: Annotated[str | None, typer.Option(help="model version in the online report")] = None,
    n: Annotated[int, typer.Option(min=5, help="crops timed one by one")] = 40,
    limit: Annotated[int | None, typer.Option(min=1, help="evaluate only the first N samples of --data")] = None,
    strict: Annotated[bool, typer.Option(help="a requirement that could not be measured fails the gate")] = False,
    seed: Annotated[int, typer.Option(help="seed for synthetic timing crops")] = 0,
    report: Annotated[Path | None, typer.Option(help="also write the verdict and every row as JSON here")] = None,
    fail: Annotated[bool, typer.Option(
        help="exit code 1 when the gate fails; --no-fail leaves the verdict to --report (pipelines)")] = True,
) -> None:
    """Measure the model on this machine against the requirements; exit code 1 if any requirement fails."""
    from susik.data.manifest import ManifestError, find_manifest, image_path, read_manifest
    from susik.models.registry import IntegrityError, ModelNotFoundError, resolve
    from susik.runtime.image_io import load_image
    from susik.runtime.recognizer import OnnxRecognizer

    try:
        spec = load_requirements(requirements)
        record = resolve(model)
        recognizer = OnnxRecognizer.from_record(record, threads=spec.hardware.cpu_cores)
    except (RequirementsError, ModelNotFoundError, IntegrityError) as error:
        _fail(str(error))
    notes: dict[str, str] = {}
    manifest = None
    try:
        if data is not None:
            manifest = find_manifest(data)
            samples = list(read_manifest(manifest))[: limit]
            encoded = [image_path(manifest, s).read_bytes() for s in samples[:n]]
            notes["timing images"] = f"first {len(encoded)} of {manifest}"
        else:
            encoded = synthetic_crops(n, np.random.default_rng(seed))
            notes["timing images"] = f"{n} synthetic digit crops (no --data)"
    except (ManifestError, OSError) as error:
        _fail(str(error))
    offline, qps = time_model(recognizer, encoded, load_image)
    eval_metrics = None
    if metrics is not None:
        eval_metrics = json.loads(metrics.read_text(encoding="utf-8"))
        notes["accuracy"] = str(metrics)
    elif manifest is not None:
        from susik.eval.run import EvalOptions, run_evaluation

        with tempfile.TemporaryDirectory(prefix="susik-gate-") as tmp:
            evaluation = run_evaluation("recognize", manifest, Path(tmp), predictor=recognizer,
                                        options=EvalOptions(limit=limit, resamples=200, report_limit=1))
        eval_metrics = evaluation.metrics
        notes["accuracy"] = f"{evaluation.metrics['n']} samples of {manifest}"
    online_ms = None
    if online is not None:
        online_ms = online_latency(json.loads(online.read_text(encoding="utf-8")), online_version)
    model_mb = sum(entry.bytes for entry in record.files.values() if entry.path.endswith(".onnx")) / 1e6
    measured = Measurements(offline, online_ms, qps, model_mb, peak_memory_mb(), eval_metrics, notes)
    rows = check(spec, measured)
    print_rows(rows, spec, notes)
    ok = passed(rows, strict)
    _out.print("[green]PASS[/]" if ok else "[red]FAIL[/]")
    if report is not None:
        write_report(report, model, spec, rows, notes, ok, strict)
    if not ok and fail:
        raise typer.Exit(1)
