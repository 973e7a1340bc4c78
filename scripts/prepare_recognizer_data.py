"""Pre-render the recognizer's training crops once, into crop manifests that `CropStream` mixes.

    nice .venv/bin/python scripts/prepare_recognizer_data.py --out work/recdata --workers 2

Writes under OUT (git-ignored):
  synthetic/manifest.jsonl      corpus formulas in 1-2 random TeX fonts each + generated K-12 formulas
                                (clean: the stream augments them on the fly)
  synthetic_val/manifest.jsonl  held-out corpus formulas + K-12 formulas of another seed, rendered with
                                another seed, photo augmentation applied and frozen (deterministic eval).
                                The corpus part is formula-disjoint from synthetic/ (its formulas are kept
                                out); the K-12 part is only seed-disjoint: the generator repeats textbook
                                identities, and dropping them from training would remove whole kinds of
                                formula, so summary.json counts how many of them training also drew.
  crohme/manifest.jsonl         CROHME train canvases cropped to their ink (new PNGs)
  im2latex_recombined/manifest.jsonl
                                new formulas cut and joined from the im2latex train labels (arXiv style,
                                `susik.data.recombine`), rendered clean (the stream augments them)
  hme100k.jsonl, im2latex.jsonl references to the shared HME100K train photos and im2latex train crops
  hme100k_heldout.jsonl         with --hme-holdout N: N HME100K photos kept out of hme100k.jsonl
  summary.json                  counts, failures and timings
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from susik.data.corpus import K12Generator, load_corpus
from susik.data.crop_augment import PRINTED
from susik.data.crops import FormulaItem, WriteStats, write_rendered, write_restored_crohme
from susik.data.importers import ORIGINS, read_crop_manifest, run_import
from susik.data.manifest import ManifestWriter
from susik.data.recombine import Recombiner
from susik.latex import normalize_latex

CORPUS = ("corpus", "unknown (research use)")
K12 = ("susik-k12-generator", "Apache-2.0")
CROHME = ("crohme-train", "CC BY-NC-SA 3.0 (believed)")
RECOMBINED = ("im2latex-recombined", ORIGINS["im2latex"].license)

console = Console()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def _report(name: str, stats: WriteStats, seconds: float) -> dict:
    console.print(f"[bold]{name}[/]: {stats.written} written, {stats.failed} failed, {seconds:.0f} s")
    for failure in stats.failures[:5]:
        console.print(f"  failed: {failure}")
    return {"written": stats.written, "failed": stats.failed, "seconds": round(seconds, 1),
            "failures": stats.failures}


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.png"))


def main(
    out: Path = typer.Option(Path("work/recdata"), help="output folder (keep it git-ignored)"),
    data: Path = typer.Option(Path("/work/shared/data"), help="the shared real data"),
    k12: int = typer.Option(20000, min=0, help="generated K-12 formulas for training"),
    second_font: float = typer.Option(0.5, min=0, max=1, help="chance of a second rendering"),
    val_corpus: int = typer.Option(1000, min=0, help="corpus formulas held out for synthetic validation"),
    val_k12: int = typer.Option(500, min=0, help="generated formulas (other seed) for synthetic validation"),
    recombined: int = typer.Option(20000, min=0, help="formulas recombined from the im2latex train labels"),
    workers: int = typer.Option(2, min=1, help="TeX worker processes"),
    seed: int = typer.Option(0, help="training seed"),
    val_seed: int = typer.Option(1, help="held-out seed: validation formulas, fonts and augmentation"),
    hme_holdout: int = typer.Option(0, min=0, help="HME100K photos kept out of hme100k.jsonl and written to "
                                    "hme100k_heldout.jsonl: unseen real photos for benchmarks (a model is only "
                                    "measured fairly there when neither it nor a model it started from saw them)"),
) -> None:
    if seed == val_seed:
        raise typer.BadParameter("must differ from the training seed", param_hint="--val-seed")
    corpus_file = data / "corpus" / "im2latex_train_formulas.txt"
    if not corpus_file.is_file():
        console.print(f"error: {corpus_file} not found (pass --data)")
        raise typer.Exit(1)
    started = time.perf_counter()
    summary: dict = {"seed": seed, "val_seed": val_seed}

    corpus = list(load_corpus(corpus_file))
    picked = np.random.default_rng(val_seed).choice(len(corpus), min(val_corpus, len(corpus)), replace=False)
    held = set(picked.tolist())
    val_items = [FormulaItem(corpus[i], *CORPUS) for i in sorted(held)]
    val_generator = K12Generator(np.random.default_rng([val_seed, 12]))
    val_generated_list = val_generator.batch(val_k12)
    val_items += [FormulaItem(latex, *K12) for latex in val_generated_list]
    held_corpus = {normalize_latex(corpus[i]) for i in held}
    val_generated = {normalize_latex(latex) for latex in val_generated_list}

    with _progress() as progress:
        task = progress.add_task("synthetic validation", total=len(val_items))
        t0 = time.perf_counter()
        folder = out / "synthetic_val"
        with ManifestWriter(folder / "manifest.jsonl") as writer:
            stats = write_rendered(val_items, writer, folder / "images", workers=workers, seed=val_seed,
                                   augment=PRINTED, on_item=lambda: progress.advance(task))
        summary["synthetic_val"] = _report("synthetic validation (augmented, frozen)", stats,
                                           time.perf_counter() - t0)

        dropped = {"corpus": 0, "k12": 0}  # equal to a held-out corpus formula
        shared: set[str] = set()  # held-out K-12 formulas that training drew too

        def training_items() -> Iterator[FormulaItem]:
            rng = np.random.default_rng([seed, 0])
            for i, latex in enumerate(corpus):
                if i in held:
                    continue
                if normalize_latex(latex) in held_corpus:
                    dropped["corpus"] += 1
                    continue
                for _ in range(1 + int(rng.random() < second_font)):
                    yield FormulaItem(latex, *CORPUS)
            generator = K12Generator(np.random.default_rng([seed, 12]))
            for _ in range(k12):
                latex = generator.sample()
                key = normalize_latex(latex)
                if key in held_corpus:
                    dropped["k12"] += 1
                    continue
                if key in val_generated:
                    shared.add(key)
                yield FormulaItem(latex, *K12)

        expected = round((len(corpus) - len(held)) * (1 + second_font)) + k12
        task = progress.add_task("synthetic training", total=expected)
        t0 = time.perf_counter()
        folder = out / "synthetic"
        with ManifestWriter(folder / "manifest.jsonl") as writer:
            stats = write_rendered(training_items(), writer, folder / "images", workers=workers, seed=seed,
                                   on_item=lambda: progress.advance(task))
        summary["synthetic"] = _report("synthetic training", stats, time.perf_counter() - t0)
        summary["synthetic"]["dropped_as_held_out_corpus"] = dropped
        summary["synthetic_val"]["k12_formulas_also_in_training"] = f"{len(shared)} of {len(val_generated)}"
        console.print(f"  dropped because they equal a held-out corpus formula: {dropped}; held-out K-12 "
                      f"formulas also drawn for training: {len(shared)} of {len(val_generated)} distinct")

        crohme_manifest = data / "crohme" / "train.jsonl"
        task = progress.add_task("CROHME train", total=sum(1 for _ in crohme_manifest.open()))
        t0 = time.perf_counter()
        folder = out / "crohme"
        with ManifestWriter(folder / "manifest.jsonl") as writer:
            stats = write_restored_crohme(crohme_manifest, writer, folder / "images", source=CROHME[0],
                                          license=CROHME[1], on_item=lambda: progress.advance(task))
        summary["crohme"] = _report("CROHME train (cropped to ink)", stats, time.perf_counter() - t0)

        recombiner = Recombiner(pair.latex for pair in read_crop_manifest(data / "im2latex" / "train.jsonl"))
        made = recombiner.batch(recombined, np.random.default_rng([seed, 21]))
        task = progress.add_task("im2latex recombined", total=len(made))
        t0 = time.perf_counter()
        folder = out / "im2latex_recombined"
        with ManifestWriter(folder / "manifest.jsonl") as writer:
            stats = write_rendered((FormulaItem(latex, *RECOMBINED) for latex in made), writer, folder / "images",
                                   workers=workers, seed=seed + 21, on_item=lambda: progress.advance(task))
        summary["im2latex_recombined"] = _report("im2latex recombined", stats, time.perf_counter() - t0)

    hme = list(read_crop_manifest(data / "hme100k" / "train.jsonl"))
    held_photos = set(np.random.default_rng([val_seed, 100]).permutation(len(hme))[:hme_holdout].tolist())
    imports = [("hme100k", [pair for i, pair in enumerate(hme) if i not in held_photos]),
               ("im2latex", read_crop_manifest(data / "im2latex" / "train.jsonl"))]
    if hme_holdout:
        imports.append(("hme100k_heldout", [pair for i, pair in enumerate(hme) if i in held_photos]))
    for name, pairs in imports:
        origin = ORIGINS[name.removesuffix("_heldout")]
        report = run_import(pairs, out / f"{name}.jsonl", origin, paths="relative")
        console.print(f"[bold]{name}[/] references: {report.written} written, {len(report.skipped)} skipped")
        for line in report.skipped[:5]:
            console.print(f"  skipped: {line}")
        summary[name] = {"written": report.written, "skipped": report.skipped}

    for name in ("synthetic", "synthetic_val", "crohme", "im2latex_recombined"):
        summary[name]["png_bytes"] = _folder_bytes(out / name)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    sizes = ", ".join(f"{name} {summary[name]['png_bytes'] / 2**20:.1f} MiB"
                      for name in ("synthetic", "synthetic_val", "crohme"))
    console.print(f"done in {summary['seconds']:.0f} s -> {out.resolve()} (PNG: {sizes})")


if __name__ == "__main__":
    typer.run(main)
