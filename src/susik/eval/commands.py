"""`susik eval recognize|detect|compare` and `susik models list|register|promote|rollback`.

Models and the tracking store are opened inside the commands, so `susik --help` stays fast.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from susik.data.manifest import ManifestError, find_manifest
from susik.eval.evaluate import DETECT_KEYS, RECOGNIZE_KEYS, EvalError, Task

_out = Console(soft_wrap=True, highlight=False)
_err = Console(stderr=True, soft_wrap=True, highlight=False)

eval_app = typer.Typer(help="Offline evaluation: metrics with intervals and baselines, slices, report.",
                       no_args_is_help=True)
models_app = typer.Typer(help="The model registry (MLflow, local store): versions and aliases.",
                         no_args_is_help=True)

DataOpt = Annotated[Path, typer.Option("--data", help="manifest.jsonl or a dataset folder holding one")]
OutOpt = Annotated[Path, typer.Option("--out", help="output folder: metrics.json, predictions.jsonl, report.html")]
PredictionsOpt = Annotated[Path | None, typer.Option(
    "--predictions", help="score this predictions JSONL (lines keyed by \"image\") instead of running a model")]
SliceOpt = Annotated[list[str] | None, typer.Option(
    "--slice", help="slice field (repeatable); default: the task's fields. Any manifest field works.")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="evaluate only the first N samples")]
SeedOpt = Annotated[int, typer.Option(help="bootstrap seed")]
ResamplesOpt = Annotated[int, typer.Option(min=100, help="bootstrap resamples")]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="ONNX Runtime threads (default: all cores)")]
TrackOpt = Annotated[bool, typer.Option(help="log the run to the MLflow store")]
UriOpt = Annotated[str | None, typer.Option(
    "--tracking-uri", help="MLflow store (default $SUSIK_TRACKING_URI or sqlite:///runs/mlflow.db)")]


def _fail(message: str) -> None:
    _err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def _progress(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=_err,
                    transient=True)


_SHORT = {"exp_rate": "ExpR", "le1": "<=1", "le2": "<=2", "cer": "CER", "norm_edit_distance": "NED",
          "bleu": "BLEU", "precision": "P", "recall": "R", "f1": "F1", "e2e_exact": "E2E"}


def _print_summary(task: Task, metrics: dict[str, Any], out: Path) -> None:
    keys = RECOGNIZE_KEYS if task == "recognize" else DETECT_KEYS
    table = Table(title=f"eval {task}: {metrics['run']['data']}", caption="full names and all intervals: metrics.json")
    table.add_column("set", no_wrap=True)
    for key in keys:
        table.add_column(_SHORT.get(key, key), justify="right", no_wrap=True)

    def row(name: str, block: dict[str, Any], style: str | None = None) -> None:
        cells = [f"{block[k]:.3f}" if isinstance(block[k], float) else str(block[k]) for k in keys]
        table.add_row(name, *cells, style=style)

    row("all", metrics)
    table.add_row("  95% CI", "", *(f"{ci[0]:.2f}-{ci[1]:.2f}" if (ci := metrics["ci"].get(k)) else "-"
                                   for k in keys[1:]), style="dim")
    for name, base in metrics["baselines"].items():
        row(f"  baseline {name}", base, style="dim")
    for field, values in metrics["slices"].items():
        for value, block in values.items():
            row(f"{field}={value}", block)
    _out.print(table)
    if "compiles" in metrics:
        _out.print(f"compiles with TeX: predictions {metrics['compiles']['prediction']:.3f}, "
                   f"references {metrics['compiles']['reference']:.3f}")
    _out.print(f"wrote {out / 'metrics.json'}, {out / 'predictions.jsonl'}, {out / 'report.html'}")


def _evaluate(task: Task, data: Path, out: Path, predictor_factory, predictions: Path | None, options,
              model: str, track: bool, tracking_uri: str | None) -> None:
    from susik.eval.run import run_evaluation

    try:
        manifest = find_manifest(data)
        predictor = None if predictions is not None else predictor_factory()
        total = sum(1 for line in manifest.open(encoding="utf-8") if line.strip())
        if options.limit:
            total = min(total, options.limit)
        with _progress(f"eval {task}") as progress:
            bar = progress.add_task(task, total=total)
            evaluation = run_evaluation(
                task, manifest, out, predictor=predictor, predictions=predictions, options=options,
                run_info={"model": "predictions file" if predictions else model,
                          **({"predictions": str(predictions)} if predictions else {})},
                advance=lambda n: progress.advance(bar, n))
    except (EvalError, ManifestError, FileNotFoundError, ValueError) as error:
        _fail(str(error).splitlines()[0])
    _print_summary(task, evaluation.metrics, out)
    if track:
        _track(task, manifest, out, evaluation.metrics, tracking_uri)


_ARTIFACTS = ("metrics.json", "predictions.jsonl", "scores.jsonl", "report.html", "plots")  # not katex/


def _track(task: Task, manifest: Path, out: Path, metrics: dict[str, Any], uri: str | None) -> None:
    from susik.data.version import dataset_version
    from susik.eval.tracking import TrackingError, flatten_metrics, log_run, tracking_uri

    try:
        version = dataset_version(manifest).digest
    except (ManifestError, OSError):  # a missing image was already scored as unreadable
        version = ""
    params = {key: value for key, value in metrics["run"].items() if key != "created"}
    try:
        run_id = log_run(f"eval-{task}", {**params, "data_version": version}, flatten_metrics(metrics),
                         artifacts=[out / name for name in _ARTIFACTS if (out / name).exists()],
                         tags={"susik.task": task, "susik.data_version": version}, uri=uri)
    except TrackingError as error:
        _err.print(f"warning: not tracked: {error}", markup=False)
        return
    _out.print(f"tracked: MLflow run {run_id} in {tracking_uri(uri)}")


def _options(slices, limit, seed, resamples, compile_check, report_limit):
    from susik.eval.run import EvalOptions

    return EvalOptions(fields=slices or None, resamples=resamples, seed=seed, limit=limit,
                       report_limit=report_limit, compile_check=compile_check)


@eval_app.command("recognize")
def eval_recognize(
    data: DataOpt,
    out: OutOpt,
    model: Annotated[str, typer.Option(help="bundled model name, model folder or record.json")] = "recognizer",
    predictions: PredictionsOpt = None,
    slices: SliceOpt = None,
    limit: LimitOpt = None,
    beam: Annotated[int, typer.Option(min=1, max=16, help="beam width; 1 = greedy")] = 1,
    threads: ThreadsOpt = None,
    compile_check: Annotated[bool, typer.Option(help="also check that predictions typeset with TeX")] = False,
    report_limit: Annotated[int, typer.Option(min=1, help="samples shown in the report, worst first")] = 200,
    seed: SeedOpt = 0,
    resamples: ResamplesOpt = 1000,
    track: TrackOpt = True,
    tracking_uri: UriOpt = None,
) -> None:
    """Evaluate a recognizer on a crop manifest (or score a predictions file)."""

    def factory():
        from susik.models.registry import IntegrityError, ModelNotFoundError
        from susik.runtime.recognizer import OnnxRecognizer

        try:
            recognizer = OnnxRecognizer.load(model, threads=threads)
        except (ModelNotFoundError, IntegrityError) as error:
            _fail(str(error))
        return lambda crops: recognizer(crops, beam=beam)

    _evaluate("recognize", data, out, factory, predictions,
              _options(slices, limit, seed, resamples, compile_check, report_limit), model, track, tracking_uri)


@eval_app.command("detect")
def eval_detect(
    data: DataOpt,
    out: OutOpt,
    model: Annotated[str | None, typer.Option(help="detector folder or record.json (default: bundled)")] = None,
    recognizer: Annotated[str, typer.Option(help="recognizer name, folder or record.json")] = "recognizer",
    predictions: PredictionsOpt = None,
    slices: SliceOpt = None,
    limit: LimitOpt = None,
    threads: ThreadsOpt = None,
    report_limit: Annotated[int, typer.Option(min=1, help="pages shown in the report, worst first")] = 100,
    seed: SeedOpt = 0,
    resamples: ResamplesOpt = 1000,
    track: TrackOpt = True,
    tracking_uri: UriOpt = None,
) -> None:
    """Evaluate detection and end-to-end reading on a page manifest (or score a predictions file)."""

    def factory():
        from susik.models.registry import IntegrityError, ModelNotFoundError
        from susik.pipeline import Pipeline
        from susik.runtime.detector import OnnxDetector
        from susik.runtime.orient import DeskewOrienter
        from susik.runtime.recognizer import OnnxRecognizer

        try:
            return Pipeline(OnnxDetector.load(model, threads=threads), OnnxRecognizer.load(recognizer, threads),
                            DeskewOrienter())
        except (ModelNotFoundError, IntegrityError) as error:
            _fail(str(error))

    _evaluate("detect", data, out, factory, predictions,
              _options(slices, limit, seed, resamples, False, report_limit), model or "detector", track,
              tracking_uri)


@eval_app.command("calibrate")
def eval_calibrate(
    data: Annotated[list[Path], typer.Option(
        "--data", help="labelled crop manifest the model did not train on (repeatable: each is a set)")],
    model: Annotated[str, typer.Option(help="bundled model name, model folder or record.json")] = "recognizer",
    limit: LimitOpt = None,
    threads: ThreadsOpt = None,
    write: Annotated[bool, typer.Option(
        help="store the map in the model's record.json (and its folder's MODEL_CARD.md): served confidences "
        "become calibrated; the weights and version stay")] = False,
    allow_unfit: Annotated[bool, typer.Option(
        help="when the readings cannot be fitted (all right or all wrong), say so and exit 0 with the record "
        "unchanged: a release pipeline goes on to its gate, which judges the raw confidence")] = False,
) -> None:
    """Fit the map from raw token probabilities to a calibrated confidence (the chance a reading is exactly
    right), judged on held-out halves: fitted on each set's odd-numbered crops, measured on the even ones."""
    from susik.data.crops import CropDataset
    from susik.eval.calibrate import calibration_report, read_set, set_name
    from susik.models.registry import IntegrityError, ModelNotFoundError, model_card, resolve, save_record
    from susik.runtime.recognizer import OnnxRecognizer

    try:
        recognizer = OnnxRecognizer.load(model, threads=threads)
    except (ModelNotFoundError, IntegrityError) as error:
        _fail(str(error))
    sets, unfinished = {}, 0
    for manifest in data:
        try:
            dataset = CropDataset(find_manifest(manifest))
        except (ManifestError, OSError) as error:
            _fail(f"{manifest}: {error}")
        with _progress(f"read {manifest}") as progress:
            task = progress.add_task("", total=len(dataset) if limit is None else min(limit, len(dataset)))
            readings = read_set(recognizer, dataset, limit, advance=partial(progress.advance, task))
        for line in readings.skipped:
            _err.print(f"skipped: {line}", markup=False)
        unfinished += readings.unfinished
        sets[set_name(manifest)] = (readings.scores, readings.right)
    fitted_on = ", ".join(f"{name} ({len(scores)})" for name, (scores, _) in sets.items())
    try:
        report = calibration_report(sets, fitted_on)
    except ValueError as error:
        if allow_unfit:
            _err.print(f"no calibration fitted, record unchanged: {error}", markup=False)
            return
        _fail(str(error))
    table = Table(title="confidence on held-out halves: raw geometric mean -> calibrated")
    for column in ("set", "n", "right", "AUROC", "ECE", "exact of surest 80%"):
        table.add_column(column)
    for name, held in report.held_out.items():
        raw, mapped = held.raw, held.mapped
        auroc = "n/a" if raw.auroc is None else f"{raw.auroc:.3f} -> {mapped.auroc:.3f}"
        table.add_row(name, str(raw.n), f"{held.right_share:.1%}", auroc,
                      f"{raw.ece:.3f} -> {mapped.ece:.3f}",
                      f"{raw.exact_at_coverage['80%']:.1%} -> {mapped.exact_at_coverage['80%']:.1%}")
    _out.print(table)
    calibration = report.calibration
    _out.print(f"map (fitted on all {report.n_fit} finished readings; {unfinished} unfinished read 0): "
               f"p = sigmoid({calibration.geomean} logit(geomean) + {calibration.minimum} logit(min) "
               f"+ {calibration.bias})")
    if write:
        record = resolve(model)
        updated = record.model_copy(update={"decode": record.decode.model_copy(update={"calibration": calibration})})
        save_record(updated, record.root)
        (record.root / "MODEL_CARD.md").write_text(model_card(updated))
        _out.print(f"written to {record.root / 'record.json'}")


@eval_app.command("compare")
def eval_compare(
    runs: Annotated[list[Path], typer.Argument(help="eval output folders (from `susik eval ...`) on one manifest")],
    out: Annotated[Path | None, typer.Option(help="also write the comparison as JSON here")] = None,
    seed: SeedOpt = 0,
    resamples: ResamplesOpt = 1000,
) -> None:
    """Candidate pool: per slice, the best run and the runs statistically tied with it (paired bootstrap)."""
    from susik.eval.compare import CompareError, compare, load_run, to_json

    try:
        comparison = compare([load_run(path) for path in runs], np.random.default_rng(seed), resamples)
    except CompareError as error:
        _fail(str(error))
    table = Table(title=f"candidate pool by {comparison.metric} (tied = 95% CI of best − run holds 0)")
    for column in ("slice", "n", "best", "pool (tied with best)", "others: score [best − run CI]"):
        table.add_column(column, overflow="fold")
    for s in comparison.slices:
        best = next(e for e in s.entries if e.run == s.best)
        others = ", ".join(f"{e.run} {e.score:.3f} [{e.low:+.3f}, {e.high:+.3f}]"
                           for e in s.entries if e.run != s.best)
        table.add_row(f"{s.field}={s.value}" if s.field != "all" else "all", str(s.n),
                      f"{s.best} {best.score:.3f}", ", ".join(s.pool), others)
    _out.print(table)
    for run, images in comparison.unique.items():
        shown = ", ".join(images[:5]) + (" ..." if len(images) > 5 else "")
        _out.print(f"only {run} gets right: {len(images)}" + (f" ({shown})" if images else ""))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(to_json(comparison), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --- models -----------------------------------------------------------------------------------------------


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Option(help="only this registered model")] = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Registered model versions with their aliases and logged metrics."""
    from susik.eval.tracking import TrackingError, list_versions

    table = Table(title="registered models")
    for column in ("name", "version", "aliases", "metrics", "source"):
        table.add_column(column, overflow="fold")
    try:
        for row in list_versions(tracking_uri, name):
            metrics = ", ".join(f"{k}={v:.3f}" for k, v in sorted(row.metrics.items()) if "." not in k)
            table.add_row(row.name, row.version, ", ".join(row.aliases), metrics, row.source)
    except TrackingError as error:
        _fail(str(error))
    _out.print(table)


@models_app.command("register")
def models_register(
    folder: Annotated[Path, typer.Argument(help="a model folder holding record.json and its weights")],
    name: Annotated[str | None, typer.Option(help="registered name (default: the record's name)")] = None,
    eval_dir: Annotated[Path | None, typer.Option("--eval", help="an eval folder whose metrics.json to attach")] = None,
    tracking_uri: UriOpt = None,
) -> None:
    """Register a model folder as a new version (its files are copied into the store)."""
    from susik.eval.tracking import TrackingError, flatten_metrics, register_model

    record = folder / "record.json"
    if not record.is_file():
        _fail(f"{folder}: no record.json (export a model first)")
    raw = json.loads(record.read_text(encoding="utf-8"))
    metrics: dict[str, float] = {}
    if eval_dir is not None:
        path = eval_dir / "metrics.json"
        if not path.is_file():
            _fail(f"{eval_dir}: no metrics.json")
        metrics = flatten_metrics(json.loads(path.read_text(encoding="utf-8")))
    params = {"record_version": raw.get("version", ""), "created": raw.get("created", "")}
    try:
        row = register_model(name or raw.get("name", folder.name), folder, metrics=metrics, params=params,
                             uri=tracking_uri)
    except TrackingError as error:
        _fail(str(error))
    _out.print(f"registered {row.name} version {row.version} (run {row.run_id})")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[str, typer.Argument(help="version number")],
    alias: Annotated[str, typer.Option(help="champion (serves) or challenger (shadow / A-B)")] = "champion",
    tracking_uri: UriOpt = None,
) -> None:
    """Point an alias (champion / challenger) at a version."""
    from susik.eval.tracking import ALIASES, TrackingError, promote

    if alias not in ALIASES:
        _fail(f"alias must be one of {', '.join(ALIASES)}, got {alias!r}")
    try:
        previous = promote(name, version, alias, tracking_uri)
    except TrackingError as error:
        _fail(str(error))
    moved = f" (was version {previous})" if previous else ""
    _out.print(f"{name}: {alias} -> version {version}{moved}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="registered model name")],
    alias: Annotated[str, typer.Option(help="the alias to move back")] = "champion",
    tracking_uri: UriOpt = None,
) -> None:
    """Point an alias back at the version it held before its newest promotion (servers follow it)."""
    from susik.eval.tracking import ALIASES, TrackingError, rollback

    if alias not in ALIASES:
        _fail(f"alias must be one of {', '.join(ALIASES)}, got {alias!r}")
    try:
        current, target = rollback(name, alias, tracking_uri)
    except TrackingError as error:
        _fail(str(error))
    moved = f" (was version {current})" if current else ""
    _out.print(f"{name}: {alias} -> version {target}{moved}")
