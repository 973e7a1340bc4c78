"""Distillation table: the teacher, the student without and the student with distillation, each exported to
ONNX fp32 and int8 the way `susik export recognizer` does it, with parameters, file size, latency and
validation quality. Prints figures; it is not a test.

    nice .venv/bin/python benchmarks/bench_distill.py --teacher runs/teacher/best.pt \
        --student runs/rec/best.pt --distilled runs/rec_distill/best.pt \
        --manifest work/recdata/synthetic_val/manifest.jsonl --limit 200

(the recipe: configs/recognizer_teacher_gpu.yaml, configs/recognizer_distill_cpu.yaml). Any of the three
checkpoints may be left out. int8 = the bundle of `susik.runtime.export.export_recognizer` (dynamic int8
decoder, `--encoder-quant` encoder, calibrated on `--calibration-crops` crops of `--calibration`, by default
the validation manifest as the export command does); fp32 = the same model's unquantised graphs.

Quality: greedy decoding of the first `--limit` crops at batch 16 (ExpRate, <=1 token error, CER on
normalised tokens, as benchmarks/bench_recognizer_quality.py), and "= teacher": the share of crops whose
LaTeX equals the fp32 teacher's. Latency: wall ms per crop of real decoding (each crop stops at its own EOS,
so a model that rambles pays for it) at batch 1 over the first `--latency-crops` crops, and at batch 16
over all of them; `--threads` ONNX Runtime threads. The load average is printed: on a shared machine other
jobs inflate the wall times.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer
from bench_recognizer_quality import EvalSet, _load, _predict
from rich.console import Console
from rich.table import Table

from susik.data.crops import CropDataset
from susik.eval.metrics import aggregate, score_sample
from susik.models.recognizer import count_parameters
from susik.models.train_recognizer import load_checkpoint, model_from_checkpoint
from susik.runtime.export import export_graphs, export_recognizer
from susik.runtime.recognizer import OnnxRecognizer

console = Console(width=140)


@dataclass(frozen=True)
class Row:
    model: str
    precision: str
    parameters: int
    megabytes: float
    ms_batch1: float
    ms_batch16: float
    n: int
    exp_rate: float
    le1: float
    cer: float
    same_as_teacher: float | None


def _variants(checkpoint: Path, folder: Path, calibration: list, encoder_quant: str,
              threads: int) -> tuple[int, dict[str, tuple[OnnxRecognizer, int]]]:
    """Parameters, and the fp32 and int8 ONNX recognizers of a checkpoint with their file sizes in bytes."""
    state = load_checkpoint(checkpoint)
    model, vocab = model_from_checkpoint(state)
    record = export_recognizer(state, folder, calibration, encoder_quant=encoder_quant)  # type: ignore[arg-type]
    int8 = OnnxRecognizer.from_record(record, threads=threads)
    encoder, decoder = export_graphs(model, folder / "fp32")
    fp32 = OnnxRecognizer(encoder, decoder, vocab, model.config.preprocess, model.config.total_stride,
                          record.decode, threads=threads)
    sizes = {"fp32": encoder.stat().st_size + decoder.stat().st_size,
             "int8": record.files["encoder"].bytes + record.files["decoder"].bytes}
    return count_parameters(model), {"fp32": (fp32, sizes["fp32"]), "int8": (int8, sizes["int8"])}


def main(
    manifest: Annotated[Path, typer.Option(help="validation crop manifest (JSON lines: image, latex)")],
    teacher: Annotated[Path | None, typer.Option(help="teacher checkpoint")] = None,
    student: Annotated[Path | None, typer.Option(help="student trained without distillation")] = None,
    distilled: Annotated[Path | None, typer.Option(help="student trained with distillation")] = None,
    limit: Annotated[int, typer.Option(min=1, help="validation crops (the first N)")] = 200,
    latency_crops: Annotated[int, typer.Option(min=1, help="crops timed one at a time")] = 64,
    calibration: Annotated[Path | None, typer.Option(help="crops to calibrate int8 on (default: --manifest)")] = None,
    calibration_crops: Annotated[int, typer.Option(min=8)] = 64,
    encoder_quant: Annotated[Literal["none", "dynamic", "static", "static-conv"], typer.Option()] = "static-conv",
    threads: Annotated[int, typer.Option(min=1, help="ONNX Runtime intra-op threads")] = 1,
    out: Annotated[Path | None, typer.Option(help="also write the rows as JSON here")] = None,
) -> None:
    checkpoints = {name: path for name, path in
                   (("teacher", teacher), ("student", student), ("student+KD", distilled)) if path is not None}
    if not checkpoints:
        console.print("error: give at least one of --teacher, --student, --distilled")
        raise typer.Exit(2)
    for path in [manifest, *checkpoints.values(), *([calibration] if calibration else [])]:
        if not path.is_file():
            console.print(f"error: {path} not found")
            raise typer.Exit(1)
    images, references, _, unreadable = _load(CropDataset(manifest), limit, EvalSet(manifest))
    calibration_images = [image for image in _load(CropDataset(calibration or manifest), calibration_crops,
                                                   EvalSet(calibration or manifest))[0] if image is not None]
    console.print(f"{len(images)} validation crops ({unreadable} unreadable), {len(calibration_images)} "
                  f"calibration crops; load average before: {os.getloadavg()}")
    rows: list[Row] = []
    teacher_outputs: list[str] | None = None
    with tempfile.TemporaryDirectory() as scratch:
        for name, path in checkpoints.items():
            parameters, variants = _variants(path, Path(scratch) / name, calibration_images, encoder_quant, threads)
            for precision, (recognizer, size) in variants.items():
                outputs, _, seconds = _predict(recognizer, images, 16)
                _, _, seconds_single = _predict(recognizer, images[:latency_crops], 1)
                if name == "teacher" and precision == "fp32":
                    teacher_outputs = outputs
                metrics = aggregate([score_sample(p, r) for p, r in zip(outputs, references, strict=True)])
                decoded = max(1, sum(image is not None for image in images))
                timed = max(1, sum(image is not None for image in images[:latency_crops]))
                same = None if teacher_outputs is None else (
                    sum(a == b for a, b in zip(outputs, teacher_outputs, strict=True)) / len(outputs))
                rows.append(Row(name, precision, parameters, size / 1e6, 1000 * seconds_single / timed,
                                1000 * seconds / decoded, metrics.n, metrics.exp_rate, metrics.le1, metrics.cer, same))
    table = Table(title=f"distillation ({manifest}, first {len(images)} crops)")
    for column in ("model", "precision", "params M", "MB", "ms/crop b1", "ms/crop b16", "ExpRate", "<=1", "CER",
                   "= teacher"):
        table.add_column(column, justify="left" if column in ("model", "precision") else "right")
    for row in rows:
        table.add_row(row.model, row.precision, f"{row.parameters / 1e6:.2f}", f"{row.megabytes:.1f}",
                      f"{row.ms_batch1:.1f}", f"{row.ms_batch16:.1f}", f"{row.exp_rate:.1%}", f"{row.le1:.1%}",
                      f"{row.cer:.3f}", "-" if row.same_as_teacher is None else f"{row.same_as_teacher:.1%}")
    console.print(table)
    console.print(f"int8 = {encoder_quant} encoder + dynamic decoder; ms/crop = wall time of greedy decoding with "
                  f"{threads} thread(s), batch 1 over {min(latency_crops, len(images))} crops, batch 16 over all; "
                  f"load average after: {os.getloadavg()}")
    if out:
        out.write_text(json.dumps([asdict(row) for row in rows], indent=1))


if __name__ == "__main__":
    typer.run(main)
