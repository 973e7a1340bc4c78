"""Composed handwriting (`susik data handwriting`): how much of a handwritten set gives glyphs, how much of a
formula corpus its glyphs can write (and what stops the rest), and how fast and in how much memory crops are
written. Prints figures; it is not a test.

    .venv/bin/python benchmarks/bench_handwriting.py
    .venv/bin/python benchmarks/bench_handwriting.py --glyphs ../shared/data/crohme/train.jsonl --formulas 5000
"""

from __future__ import annotations

import json
import resource
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from susik.data.corpus import load_corpus
from susik.data.crops import CropDataset
from susik.data.glyphs import build_glyph_bank
from susik.data.handwriting import Unsupported, handwritten_tokens, write_formula
from susik.latex import normalize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(
    glyphs: Annotated[Path, typer.Option(help="handwritten crop manifest to cut glyphs from")] = SHARED
    / "crohme/train.jsonl",
    corpus: Annotated[Path, typer.Option(help="formula-per-line corpus")] = SHARED
    / "corpus/im2latex_train_formulas.txt",
    formulas: Annotated[int, typer.Option(help="corpus lines to try")] = 3000,
    seed: int = 0,
    out: Annotated[Path | None, typer.Option(help="also write the figures to this JSON file")] = None,
) -> None:
    if not glyphs.is_file() or not corpus.is_file():
        print(f"no glyph manifest at {glyphs} or no corpus at {corpus}: pass --glyphs and --corpus")
        raise typer.Exit(0)
    started = time.perf_counter()
    bank = build_glyph_bank(iter(CropDataset(glyphs)))
    bank_seconds = time.perf_counter() - started

    rng = np.random.default_rng(seed)
    written, pixels, blockers = 0, 0, Counter()
    lines = [line for _, line in zip(range(formulas), load_corpus(corpus), strict=False)]
    started = time.perf_counter()
    for line in lines:
        try:
            image = write_formula(handwritten_tokens(normalize(line)), bank, rng)
        except Unsupported as why:
            blockers[str(why).removeprefix("no handwritten glyph for ")] += 1
            continue
        written += 1
        pixels += image.size
    write_seconds = time.perf_counter() - started

    report = {
        "glyph_formulas_used": bank.formulas_used, "glyph_formulas_seen": bank.formulas_seen,
        "symbols": len(bank.symbols), "glyphs": sum(bank.count(symbol) for symbol in bank.symbols),
        "bank_seconds": round(bank_seconds, 1),
        "corpus_tried": len(lines), "corpus_written": written,
        "corpus_written_share": round(written / max(len(lines), 1), 3),
        "ms_per_written_formula": round(1000 * write_seconds / max(written, 1), 2),
        "mean_megapixels": round(pixels / max(written, 1) / 1e6, 4),
        "top_blockers": dict(blockers.most_common(12)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(report))
    if out:
        out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    typer.run(main)
