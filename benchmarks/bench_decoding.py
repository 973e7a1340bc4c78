"""Greedy against beam search, and beam only where greedy is unsure ("rescue"), on the shared validation sets.
Prints ExpRate, CER and time per crop for each policy; it is not a test.

    nice .venv/bin/python benchmarks/bench_decoding.py --limit 300 --beam 3 --thresholds 0.5,0.7,0.8,0.9

Rescue at threshold t: decode greedily, then re-decode with beam search the crops whose greedy confidence
is below t and keep the beam's reading for them. Its cost is the greedy pass plus the beam pass over the
rescued share; the figures come from one greedy and one beam pass over every crop (the beam pass over the
rescued crops alone is timed as its share of the full beam pass).
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from susik.data.crops import CropDataset, CropReadError, restore_crohme
from susik.eval.metrics import aggregate, score_sample
from susik.runtime.recognizer import OnnxRecognizer

console = Console(width=130)


def _crops(manifest: Path, limit: int, crohme: bool) -> tuple[list[np.ndarray], list[str]]:
    dataset = CropDataset(manifest)
    images, references = [], []
    for index in range(min(limit, len(dataset))):
        try:
            image, latex = dataset[index]
        except CropReadError:
            continue
        images.append(restore_crohme(image) if crohme else image)
        references.append(latex)
    return images, references


def _timed(recognizer: OnnxRecognizer, images: list[np.ndarray], beam: int, batch: int,
           ) -> tuple[list, list[float]]:
    """Recognitions and the seconds each crop took (its batch's time shared evenly)."""
    results, seconds = [], []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        began = time.perf_counter()
        results += recognizer(chunk, beam=beam)
        seconds += [(time.perf_counter() - began) / len(chunk)] * len(chunk)
    return results, seconds


def main(
    model: str = typer.Option("recognizer", help="bundled model name or folder"),
    data: Path = typer.Option(Path("/work/shared/data"), help="the shared real data"),
    synthetic_val: Path = typer.Option(Path("work/recdata/synthetic_val/manifest.jsonl")),
    limit: int = typer.Option(300, min=1, help="first N crops of each set"),
    beam: int = typer.Option(3, min=2, max=16),
    thresholds: str = typer.Option("0.5,0.7,0.8,0.9", help="greedy confidences below which beam re-reads"),
    threads: int = typer.Option(1, min=1),
    batch: int = typer.Option(16, min=1),
) -> None:
    recognizer = OnnxRecognizer.load(model, threads=threads)
    cuts = [float(value) for value in thresholds.split(",") if value.strip()]
    sets = {"crohme2013": (data / "crohme" / "val2013.jsonl", True), "synthetic_val": (synthetic_val, False),
            "hme100k_train": (data / "hme100k" / "train.jsonl", False)}
    for name, (manifest, crohme) in sets.items():
        if not manifest.is_file():
            console.print(f"{name}: {manifest} missing, skipped")
            continue
        images, references = _crops(manifest, limit, crohme)
        greedy, greedy_s = _timed(recognizer, images, 1, batch)
        beamed, beam_s = _timed(recognizer, images, beam, batch)
        table = Table(title=f"{name}: {len(images)} crops, model {model}, beam {beam}, {threads} thread(s)")
        for column in ("policy", "re-read", "ExpRate", "<=1", "CER", "ms/crop"):
            table.add_column(column, justify="right" if column != "policy" else "left")

        def row(label: str, rescued: list[bool]) -> None:
            chosen = [b.latex if r else g.latex for g, b, r in zip(greedy, beamed, rescued)]
            metrics = aggregate([score_sample(p, ref) for p, ref in zip(chosen, references)])
            ms = 1000 * (sum(greedy_s) + sum(s for s, r in zip(beam_s, rescued) if r)) / len(images)
            table.add_row(label, f"{np.mean(rescued):.0%}", f"{metrics.exp_rate:.1%}", f"{metrics.le1:.1%}",
                          f"{metrics.cer:.3f}", f"{ms:.1f}")

        row("greedy", [False] * len(images))
        for cut in cuts:
            row(f"rescue < {cut}", [g.confidence < cut for g in greedy])
        chosen = [b.latex for b in beamed]
        metrics = aggregate([score_sample(p, ref) for p, ref in zip(chosen, references)])
        table.add_row(f"beam {beam}", "100%", f"{metrics.exp_rate:.1%}", f"{metrics.le1:.1%}",
                      f"{metrics.cer:.3f}", f"{1000 * sum(beam_s) / len(images):.1f}")
        console.print(table)
    console.print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    typer.run(main)
