"""Training pages as `susik train detector` makes its cache (`generate_train` of a detector config), with another
seed and count: the page sets recognizer training crops are cut from (scripts/prepare_device_kit.sh).

    .venv/bin/python scripts/training_pages.py --seed 7 --n 200 --out work/det/train_s7
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from susik.models.detector_data import GenerateConfig, generate_pages


def main(
    out: Annotated[Path, typer.Option(help="folder for manifest.jsonl + images/")],
    seed: Annotated[int, typer.Option()] = 7,
    n: Annotated[int, typer.Option(min=1, help="pages")] = 200,
    config: Annotated[Path, typer.Option(help="detector config: its generate_train")] = Path(
        "configs/detector_small.yaml"),
    shared: Annotated[Path, typer.Option(help="the shared real data (corpus, CROHME train)")] = Path("../shared/data"),
    workers: Annotated[int, typer.Option(min=1)] = 2,
) -> None:
    settings = yaml.safe_load(config.read_text())["generate_train"]
    settings.update(n=n, seed=seed, workers=workers, corpus=str(shared / "corpus/im2latex_train_formulas.txt"),
                    handwritten=str(shared / "crohme/train.jsonl"))
    typer.echo(generate_pages(GenerateConfig(**settings), out))


if __name__ == "__main__":
    typer.run(main)
