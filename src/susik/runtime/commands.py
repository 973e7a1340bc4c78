"""`susik recognize`, `susik train recognizer`, `susik train average` and `susik export recognizer`.

Heavy imports (torch, the training stack) happen inside the commands, so `susik --help` stays fast and
`susik recognize` never loads torch.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from susik.models.registry import IntegrityError, ModelNotFoundError
from susik.results import CHECK_BELOW
from susik.runtime.image_io import ImageLoadError, load_image
from susik.runtime.preprocess import CropError, check_crop

if TYPE_CHECKING:
    from susik.runtime.recognizer import OnnxRecognizer

_out = Console(soft_wrap=True, highlight=False)
_err = Console(stderr=True, soft_wrap=True, highlight=False)


def _fail(message: str) -> None:
    _err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def _progress(label: str) -> Progress:
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("{task.fields[status]}"), console=_err, transient=True)


# --- recognize ----------------------------------------------------------------------------------------------


def _read_crop(path: Path) -> np.ndarray:
    image = load_image(path)
    check_crop(image)
    return image


def recognize_paths(
    paths: Sequence[Path],
    recognizer: Callable[[list[np.ndarray]], list],
    batch_size: int,
    advance: Callable[[int], None] = lambda _: None,
) -> Iterator[dict]:
    """One result dict per path, in order: `{"image", "latex", "confidence"}` or `{"image", "error"}`.
    Unusable images are reported and skipped; the rest are recognized `batch_size` at a time."""
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        results: dict[int, dict] = {}
        images: dict[int, np.ndarray] = {}
        for index, path in enumerate(chunk):
            try:
                images[index] = _read_crop(path)
            except (ImageLoadError, CropError) as error:
                results[index] = {"image": str(path), "error": str(error)}
        for index, recognition in zip(images, recognizer(list(images.values()))):
            results[index] = {"image": str(chunk[index]), "latex": recognition.latex,
                              "confidence": round(recognition.confidence, 4)}
        advance(len(chunk))
        yield from (results[index] for index in range(len(chunk)))


def recognize(
    images: Annotated[list[Path], typer.Argument(help="formula crops (PNG, JPEG, WEBP, ...), one formula each")],
    json_lines: Annotated[bool, typer.Option("--json", help='one JSON line per image: {"image","latex","confidence"}')] = False,
    model: Annotated[str, typer.Option(help="bundled model name, model folder or record.json")] = "recognizer",
    beam: Annotated[int, typer.Option(min=1, max=16, help="beam width; 1 = greedy (fastest)")] = 1,
    rescue_below: Annotated[float, typer.Option(min=0, max=1, help=(
        "greedy only: read again with beam search (width 3) the crops whose confidence is below this; "
        "0 = never (see benchmarks/bench_decoding.py)"))] = 0.0,
    thicken_below: Annotated[float, typer.Option(min=0, max=1, help=(
        "read again with thickened strokes the crops whose confidence is below this and keep the surer "
        "reading; 0 = as the model's record says"))] = 0.0,
    widen_below: Annotated[float, typer.Option(min=0, max=1, help=(
        "read again stretched sideways (by the record's widen_factors) the crops whose confidence is below "
        "this and keep the surest reading; 0 = as the model's record says"))] = 0.0,
    threads: Annotated[int | None, typer.Option(min=1, help="ONNX Runtime threads (default: all cores)")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="crops decoded together")] = 16,
    photo: Annotated[bool, typer.Option("--photo", help=(
        "each image is a photo of one formula that may show text around it: the formula is also looked for with "
        "the bundled detector and its reading kept when surer (the server's crop mode)"))] = False,
) -> None:
    """Read each formula crop as LaTeX. A bad image gets an error line and the run goes on (exit code 1)."""
    from susik.runtime.recognizer import OnnxRecognizer

    try:
        recognizer: OnnxRecognizer = OnnxRecognizer.load(model, threads=threads)
    except (ModelNotFoundError, IntegrityError) as error:
        _fail(str(error))
    if rescue_below > 0:
        recognizer.rescue_unsure(rescue_below)
    if thicken_below > 0:
        recognizer.thicken_unsure(thicken_below)
    if widen_below > 0:
        recognizer.widen_unsure(widen_below)
    table = Table()
    for column in ("image", "latex", "confidence"):
        table.add_column(column, overflow="fold")  # wrap long paths and formulas, never cut them
    failed = 0
    with _progress("recognize") as progress:
        task = progress.add_task("recognize", total=len(images), status="")
        read: Callable[[list[np.ndarray]], list] = partial(recognizer, beam=beam)
        if photo:
            read = _one_formula_reader(read, threads)
        results = recognize_paths(images, read, batch_size, lambda n: progress.advance(task, n))
        for result in results:
            failed += "error" in result
            if json_lines:
                typer.echo(json.dumps(result, ensure_ascii=False))
            elif "error" in result:
                table.add_row(result["image"], f"error: {result['error']}", "", style="red")
            else:
                unsure = result["confidence"] < CHECK_BELOW  # calibrated: more likely wrong than right
                table.add_row(result["image"], result["latex"], f"{result['confidence']:.3f}" + (" check" if unsure else ""),
                              style="yellow" if unsure else None)
    if not json_lines:
        _out.print(table)
    if failed:
        raise typer.Exit(1)


def _one_formula_reader(read: Callable[[list[np.ndarray]], list], threads: int | None
                        ) -> Callable[[list[np.ndarray]], list]:
    """`read` (crops -> readings) made to find the formula in each photo first, as the server's crop mode does."""
    from susik.one_formula import OneFormulaReader
    from susik.pipeline import Pipeline
    from susik.runtime.detector import OnnxDetector
    from susik.runtime.orient import DeskewOrienter

    try:
        detector = OnnxDetector.load(threads=threads)
    except (ModelNotFoundError, IntegrityError) as error:
        _fail(str(error))
    reader = OneFormulaReader(Pipeline(detector, read, DeskewOrienter()), Pipeline.for_crops(read))
    return lambda photos: [page.regions[0] for page in reader(photos)]


# --- train / export -----------------------------------------------------------------------------------------


def _validation_pairs(manifest: Path | None, limit: int) -> list[tuple[np.ndarray, str]]:
    from susik.data.crops import CropDataset, CropReadError

    if manifest is None:
        return []
    dataset = CropDataset(manifest)
    picks = np.unique(np.linspace(0, len(dataset) - 1, num=min(limit, len(dataset))).round().astype(int))
    pairs = []
    for index in picks:
        try:
            pairs.append(dataset[int(index)])
        except CropReadError as error:
            _err.print(f"warning: validation sample skipped: {error}", markup=False)
    return pairs


def _scan_labels(manifests: Sequence[Path]) -> tuple[list[list[str]], list[dict[str, str]]]:
    """Normalised labels of every crop (for the vocabulary) and the (source, licence) pairs with counts."""
    from collections import Counter

    from susik.data.manifest import CropSample, ManifestReader
    from susik.latex import normalize

    labels: list[list[str]] = []
    provenance: Counter[tuple[str, str, str]] = Counter()
    for manifest in manifests:
        for sample in ManifestReader(manifest, skip_invalid=True):
            if isinstance(sample, CropSample) and sample.latex.strip():
                labels.append(normalize(sample.latex))
                provenance[(str(manifest), sample.source, sample.license)] += 1
    return labels, [{"manifest": m, "name": s, "license": lic, "samples": str(n)}
                    for (m, s, lic), n in provenance.items()]


def _checkpoint_from_bundle(folder: Path, out: Path, pairs: Sequence[tuple[np.ndarray, str]]) -> Path:
    """`out/init_from_bundle.pt`, the bundle in `folder` rebuilt as a torch checkpoint (BatchNorm measured on
    up to 64 of `pairs`); saved so the run and its resumes start from one file."""
    import torch

    from susik.models.from_bundle import BundleImportError, checkpoint_from_bundle

    try:
        checkpoint = checkpoint_from_bundle(folder, [image for image, _ in pairs[:64]])
    except (BundleImportError, ModelNotFoundError, ValueError) as error:
        _fail(f"--init {folder}: {error}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "init_from_bundle.pt"
    torch.save(checkpoint, path)
    typer.echo(f"rebuilt {folder} (version {checkpoint['rebuilt_from']['version']}) as {path}")
    return path


def train_recognizer(
    config: Annotated[Path, typer.Option(help="training config YAML (configs/recognizer_*.yaml)")] = Path(
        "configs/recognizer_small.yaml"),
    out: Annotated[Path, typer.Option(help="run folder: last.pt, best.pt (MLflow store in its parent)")] = Path(
        "runs/recognizer"),
    resume: Annotated[bool, typer.Option("--resume", help="continue from OUT/last.pt after a kill")] = False,
    init: Annotated[Path | None, typer.Option(
        help="warm-start a fresh run from this checkpoint's weights and vocabulary (new schedule), or from a "
        "bundled model folder (models/recognizer): its int8 ONNX rebuilt into torch weights")] = None,
) -> None:
    """Train the recognizer on the crop manifests of a config; evaluates and checkpoints as it goes."""
    import torch
    import yaml
    from pydantic import ValidationError

    from susik.data.crops import CropStream
    from susik.data.version import dataset_version
    from susik.latex import Vocabulary
    from susik.models.train_recognizer import fit, load_config

    try:
        settings = load_config(config)
    except OSError as error:
        _fail(f"{config}: cannot read: {error.strerror or error}")
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        _fail(f"{config}: {problems}")
    except (ValueError, yaml.YAMLError) as error:  # YAML syntax
        _fail(f"{config}: {str(error).splitlines()[0]}")
    sources = settings.data.sources
    if not sources:
        _fail(f"{config}: data.sources is empty: nothing to train on")
    manifests = list(dict.fromkeys(source.manifest for source in sources))  # one may feed two augmentations
    for path in [*manifests, *([settings.data.val_manifest] if settings.data.val_manifest else [])]:
        if not path.is_file():
            _fail(f"missing manifest {path} (see the config's header for how to make the data)")
    torch.set_num_threads(settings.threads)
    try:
        labels, sources_seen = _scan_labels(manifests)
        vocab = Vocabulary.load(settings.data.vocab) if settings.data.vocab else Vocabulary.build(labels)
        versions = {str(path): dataset_version(path).digest for path in manifests}
        validation = _validation_pairs(settings.data.val_manifest, settings.data.val_limit)
    except (OSError, ValueError) as error:
        _fail(str(error))
    def source(seed: int, worker: int, workers: int) -> CropStream:
        return CropStream(sources, seed=seed, worker=worker, workers=workers)

    command = shlex.join(["susik", "train", "recognizer", "--config", str(config), "--out", str(out),
                          *(["--init", str(init)] if init is not None else [])])
    if init is not None and init.is_dir() and not resume:
        init = _checkpoint_from_bundle(init, out, validation or _validation_pairs(manifests[0], 64))
    elif init is not None and not init.is_file() and not resume:
        _fail(f"--init: no checkpoint at {init}")
    with _progress("train recognizer") as progress:
        task = progress.add_task("train", total=settings.steps, status="")

        def on_step(step: int, loss: float) -> None:
            progress.update(task, completed=step, status=f"loss {loss:.3f}")

        try:
            provenance = {"command": command, "data_versions": versions, "sources": sources_seen}
            result = fit(settings, source, validation, vocab, out, resume=resume, init=init, provenance=provenance,
                         log=lambda line: progress.console.print(line, markup=False), on_step=on_step)
        except (FileNotFoundError, ValueError, FloatingPointError) as error:
            _fail(str(error))
    typer.echo(f"done at step {result.step}; best validation exp_rate {result.best_metric}; "
               f"checkpoints: {result.best or result.last}")


def average_recognizers(
    checkpoints: Annotated[list[Path], typer.Argument(help="recognizer checkpoints (runs/.../best.pt, ...)")],
    out: Annotated[Path, typer.Option(help="the averaged checkpoint (.pt), for --init or `susik export recognizer`")],
    weight: Annotated[list[float] | None, typer.Option(
        help="one per checkpoint, in order (normalised to sum 1); default: equal")] = None,
) -> None:
    """Average recognizer checkpoints' weights: a soup of fine-tunes from one start, or a run's last epochs."""
    from susik.models.averaging import (
        CheckpointError,
        average_checkpoints,
        average_command,
        reading_checkpoints,
        save_average,
    )
    from susik.models.train_recognizer import load_checkpoint

    weights = weight or [1.0] * len(checkpoints)
    try:
        with reading_checkpoints("recognizer"):
            loaded = [load_checkpoint(path) for path in checkpoints]
            averaged = average_checkpoints(loaded, weights, [str(path) for path in checkpoints])
    except CheckpointError as error:
        _fail(str(error))
    averaged["command"] = average_command("average", checkpoints, out, weights)
    save_average(averaged, out)
    shares = ", ".join(f"{w / sum(weights):.2f} x {path}" for w, path in zip(weights, checkpoints))
    typer.echo(f"wrote {out}: {shares}")


def export_recognizer(
    checkpoint: Annotated[Path, typer.Argument(help="a recognizer checkpoint (runs/.../best.pt)")],
    out: Annotated[Path, typer.Option(help="models folder; writes OUT/recognizer/")] = Path("models"),
    encoder_quant: Annotated[Literal["none", "dynamic", "static", "static-conv"], typer.Option(
        help="encoder weights: fp32, dynamic int8, static QDQ int8 (calibrated), or static int8 on the "
        "convolutions only")] = "static",
    calibration: Annotated[Path | None, typer.Option(
        help="crop manifest to calibrate int8 on (default: the checkpoint's validation manifest)")] = None,
    calibration_crops: Annotated[int, typer.Option(min=8, help="crops used for calibration")] = 64,
    confidence: Annotated[Literal["geomean", "min"], typer.Option(
        help="confidence from token probabilities; pick by the val_confidence_auroc_* of training")] = "geomean",
    rescue_below: Annotated[float, typer.Option(min=0, max=1, help=(
        "the record's default decoding: greedy readings less confident than this are read again with beam "
        "search (0: greedy only); the server and the in-browser reader both follow it"))] = 0.0,
    rescue_beam: Annotated[int, typer.Option(min=2, max=16, help="beam width of such a rescue")] = 3,
    thicken_below: Annotated[float, typer.Option(min=0, max=1, help=(
        "the record's second look: readings less confident than this are read again with thickened strokes "
        "and the surer reading kept (0: never); the server and the in-browser reader both follow it"))] = 0.0,
    widen_below: Annotated[float, typer.Option(min=0, max=1, help=(
        "the record's widened looks: readings less confident than this are read again stretched sideways by "
        "each of --widen-factor and the surest reading kept (0: never); server and browser follow it"))] = 0.0,
    widen_factor: Annotated[list[float] | None, typer.Option(min=0.5, max=2.0, help=(
        "a width scale of the widened looks, repeatable (default 1.15)"))] = None,
) -> None:
    """Export a checkpoint to ONNX (encoder + decoder step, int8) with vocab, record.json and MODEL_CARD.md."""
    from susik.models.train_recognizer import load_checkpoint
    from susik.runtime.decoding import DecodeConfig
    from susik.runtime.export import export_recognizer as export

    if not checkpoint.is_file():
        _fail(f"no checkpoint at {checkpoint}")
    try:
        state = load_checkpoint(checkpoint)
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file; report one line
        _fail(f"{checkpoint}: not a recognizer checkpoint ({type(error).__name__}: {str(error).splitlines()[0]})")
    data = state.get("train_config", {}).get("data", {})
    manifest = calibration or (Path(data["val_manifest"]) if data.get("val_manifest") else None)
    if manifest is None or not manifest.is_file():
        _fail("no calibration crops: pass --calibration MANIFEST (a crop manifest like the validation set)")
    crops = [image for image, _ in _validation_pairs(manifest, calibration_crops)]
    with _progress("export recognizer") as progress:
        progress.add_task("export", total=None, status="ONNX, quantisation, parity check")
        try:
            record = export(state, out, crops, encoder_quant=encoder_quant,
                            decode=DecodeConfig(confidence=confidence, rescue_below=rescue_below,
                                                rescue_beam=rescue_beam, thicken_below=thicken_below,
                                                widen_below=widen_below,
                                                **({"widen_factors": tuple(widen_factor)} if widen_factor else {})))
        except (RuntimeError, ValueError, KeyError) as error:
            _fail(str(error))
    sizes = ", ".join(f"{entry.path} {entry.bytes / 1e6:.1f} MB" for entry in record.files.values())
    typer.echo(f"wrote {record.root} ({sizes}); parity {record.metrics['export_check']}")
