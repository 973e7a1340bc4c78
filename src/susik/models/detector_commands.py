"""`susik train detector`, `susik train average-detector` and `susik export detector`."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from susik.models.train_detector import TrainDetectorConfig

_err = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(message: str) -> None:
    _err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def train_detector(
    config: Annotated[Path, typer.Option(help="training config YAML (configs/detector_*.yaml)")] = Path(
        "configs/detector_small.yaml"),
    resume: Annotated[Path | None, typer.Option(help="continue from this checkpoint (e.g. OUT/last.pt)")] = None,
    out: Annotated[Path | None, typer.Option(help="run folder (overrides the config's `out`)")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="total steps (overrides the config)")] = None,
    init: Annotated[Path | None, typer.Option(help="warm-start from this checkpoint's weights with a fresh "
                                              "optimiser and schedule (a run's last.pt, or a bundle folder "
                                              "such as models/detector, rebuilt into torch weights)")] = None,
) -> None:
    """Train the formula detector on synthetic pages (made first if the config's caches are missing)."""
    import yaml

    from susik.models.train_detector import TrainDetectorConfig, train

    try:
        settings = TrainDetectorConfig.model_validate(yaml.safe_load(config.read_text(encoding="utf-8")))
    except OSError as error:
        _fail(f"{config}: cannot read: {error.strerror or error}")
    except (ValidationError, yaml.YAMLError) as error:
        _fail(f"{config}: {str(error).splitlines()[0]} ({str(error).count(chr(10))} lines of detail)")
    updates = {key: value for key, value in (("out", out), ("steps", steps)) if value is not None}
    settings = settings.model_copy(update=updates)
    for given in (resume, init):
        if given is not None and not given.is_file() and not (given is init and given.is_dir()):
            _fail(f"no checkpoint at {given}")
    if init is not None and init.is_dir():
        init = _checkpoint_from_bundle(init, settings)
    command = "susik " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    columns = (TextColumn("train detector"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=_err) as progress:
        task = progress.add_task("train", total=settings.steps, status="")

        def log(entry: dict) -> None:
            if "step" in entry:
                progress.update(task, completed=entry["step"])
            if "eval" in entry or "resumed" in entry or "init" in entry:
                progress.console.print(json.dumps(entry), markup=False)
            elif "loss" in entry:
                progress.update(task, status=f"loss {entry['loss']:.3f}")

        try:
            best = train(settings, resume, log, command, init)
        except (FileNotFoundError, ValueError) as error:
            _fail(str(error))
    typer.echo(f"best checkpoint: {best}")


def _checkpoint_from_bundle(folder: Path, settings: TrainDetectorConfig) -> Path:
    """`out/init_from_bundle.pt`: the bundled detector in `folder` rebuilt as a torch checkpoint, its
    BatchNorms refitted to 64 samples of the training pages; saved so the run and its resumes start from it."""
    import torch

    from susik.models.detector_from_bundle import calibration_samples, detector_checkpoint_from_bundle
    from susik.models.from_bundle import BundleImportError
    from susik.models.train_detector import ensure_pages

    try:
        ensure_pages(settings.train_pages, settings.generate_train, None)
        samples = calibration_samples(settings.train_pages, settings.sample, seed=settings.seed)
        checkpoint = detector_checkpoint_from_bundle(folder, samples)
    except (BundleImportError, FileNotFoundError, ValueError) as error:  # a missing record too
        _fail(f"--init {folder}: {error}")
    settings.out.mkdir(parents=True, exist_ok=True)
    path = settings.out / "init_from_bundle.pt"
    torch.save(checkpoint, path)
    typer.echo(f"rebuilt {folder} (version {checkpoint['rebuilt_from']['version']}) as {path}")
    return path


def average_detectors(
    checkpoints: Annotated[list[Path], typer.Argument(help="detector checkpoints fine-tuned from one start")],
    out: Annotated[Path, typer.Option(help="the averaged checkpoint (.pt), for `susik export detector`")],
    weight: Annotated[list[float] | None, typer.Option(
        help="one per checkpoint, in order (normalised to sum 1); default: equal")] = None,
) -> None:
    """Average detector checkpoints' weights (a fine-tune with the weights it started from keeps some of both).
    The heaviest checkpoint (the first of equals) gives the training config the export records, so put the
    fine-tune whose data the average should name first."""
    import torch

    from susik.models.averaging import (
        CheckpointError,
        average_command,
        average_states,
        reading_checkpoints,
        save_average,
    )

    weights = weight or [1.0] * len(checkpoints)
    try:
        with reading_checkpoints("detector"):
            loaded = [torch.load(path, map_location="cpu", weights_only=False) for path in checkpoints]
            model = average_states([checkpoint["model"] for checkpoint in loaded], weights)
            configs = {json.dumps(checkpoint["model_config"], sort_keys=True) for checkpoint in loaded}
    except CheckpointError as error:
        _fail(str(error))
    if len(configs) > 1:
        _fail("the checkpoints have different architectures")
    total = float(sum(weights))
    heaviest = loaded[max(range(len(loaded)), key=lambda i: weights[i])]
    averaged = {key: value for key, value in heaviest.items() if key != "optimizer"}
    averaged_from = [{"checkpoint": str(path), "weight": round(w / total, 6), "step": checkpoint.get("step"),
                      "command": checkpoint.get("command", "")}
                     for path, w, checkpoint in zip(checkpoints, weights, loaded)]
    averaged.update(model=model, command=average_command("average-detector", checkpoints, out, weights),
                    averaged_from=averaged_from)
    save_average(averaged, out)
    typer.echo(f"wrote {out}: " + ", ".join(f"{w / total:.2f} x {path}" for w, path in zip(weights, checkpoints)))


def export_detector_command(
    checkpoint: Annotated[Path, typer.Argument(help="a detector checkpoint (runs/.../best.pt)")],
    out: Annotated[Path, typer.Option(help="models folder; writes OUT/detector/{detector.onnx,record.json}")] = Path(
        "models"),
    quantize: Annotated[Literal["none", "static-int8"], typer.Option(help="weights: fp32 or static QDQ int8")] = "none",
    calibration: Annotated[Path | None, typer.Option(help="page manifest whose images calibrate int8")] = None,
    calibration_pages: Annotated[int, typer.Option(min=1, help="pages used for calibration")] = 32,
    metrics: Annotated[Path | None, typer.Option(help="JSON of measured figures to put in the record")] = None,
    params: Annotated[Path | None, typer.Option(help="YAML/JSON of tuned DetectParams (default: the "
                                                "training config's)")] = None,
) -> None:
    """Export a detector checkpoint to ONNX (optionally int8) with its record."""
    import yaml

    from susik.runtime.detect_export import export_detector
    from susik.runtime.detector import DetectParams

    if not checkpoint.is_file():
        _fail(f"no checkpoint at {checkpoint}")
    pages: list[Path] = []
    if quantize == "static-int8":
        if calibration is None or not calibration.is_file():
            _fail("--quantize static-int8 needs --calibration MANIFEST (a page manifest)")
        lines = [json.loads(line) for line in calibration.read_text(encoding="utf-8").splitlines() if line.strip()]
        pages = [calibration.parent / record["image"] for record in lines[:calibration_pages]]
    measured = json.loads(metrics.read_text(encoding="utf-8")) if metrics is not None else None
    tuned = None
    if params is not None:
        try:
            tuned = DetectParams.model_validate(yaml.safe_load(params.read_text(encoding="utf-8")))
        except (OSError, ValidationError, yaml.YAMLError) as error:
            _fail(f"{params}: {str(error).splitlines()[0]}")
    with Progress(TextColumn("export detector"), BarColumn(), TimeElapsedColumn(), console=_err,
                  transient=True) as progress:
        progress.add_task("export", total=None)
        record = export_detector(checkpoint, out, quantize, pages, measured, tuned)
    typer.echo(f"wrote {record}")
