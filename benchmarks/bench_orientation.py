"""Orientation: the detector's own 4-way head against a separate tiny page classifier. Prints figures.

    .venv/bin/python benchmarks/bench_orientation.py --steps 400

The separate classifier (a 5-layer CNN on a 256-px grey thumbnail of the whole page, ~50k parameters) is
trained here on the detector's training cache with the same random quarter turns, for `--steps` steps on
one thread, then both are scored on the held-out pages (every page turned by each of the 4 quarter turns, so
all classes count equally) and timed per page. The detector head costs nothing extra at serving time (it
shares the detection pass); the classifier is one more pass.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Annotated

import cv2
import numpy as np
import torch
import typer
from torch import nn

from susik.models.detector_data import read_pages
from susik.runtime.detector import OnnxDetector

THUMB = 256


class PageOrientation(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in (16, 24, 32, 48, 64):
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c_in, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.body(x)
        return self.head(torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1))


def thumbnail(image: np.ndarray) -> np.ndarray:
    """Grey page letterboxed into THUMB x THUMB, normalised."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    scale = THUMB / max(gray.shape)
    small = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
    canvas = np.full((THUMB, THUMB), 128, np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    return (canvas.astype(np.float32) / 255 - 0.5) / 0.25


def train_classifier(manifest: Path, steps: int, batch: int, seed: int) -> tuple[PageOrientation, float]:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    pages = read_pages(manifest)
    model = PageOrientation()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    start = time.perf_counter()
    for step in range(steps):
        rng = np.random.default_rng([seed, step])
        xs, ys = [], []
        for index in rng.integers(len(pages), size=batch):
            page = pages[int(index)]
            image = cv2.imdecode(np.frombuffer(page.image, np.uint8), cv2.IMREAD_GRAYSCALE)
            turns = int(rng.integers(4))
            xs.append(thumbnail(np.rot90(image, k=-turns)))
            ys.append((page.orientation // 90 + turns) % 4)
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * 0.5 * (1 + np.cos(np.pi * step / steps))
        model.train()
        loss = nn.functional.cross_entropy(model(torch.from_numpy(np.stack(xs))[:, None]), torch.tensor(ys))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), time.perf_counter() - start


def main(
    train_pages: Annotated[Path, typer.Option()] = Path("work/det/train/manifest.jsonl"),
    val_pages: Annotated[Path, typer.Option()] = Path("work/det/val/manifest.jsonl"),
    detector: Annotated[Path | None, typer.Option(help="detector folder (default: models/detector)")] = None,
    steps: Annotated[int, typer.Option()] = 400,
    batch: Annotated[int, typer.Option()] = 16,
    limit: Annotated[int, typer.Option(help="held-out pages (each scored in 4 turns)")] = 100,
    seed: int = 0,
) -> None:
    classifier, train_s = train_classifier(train_pages, steps, batch, seed)
    found = OnnxDetector.load(detector, threads=1)
    records = [json.loads(line) for line in val_pages.read_text(encoding="utf-8").splitlines()[:limit]]
    right = {"detector_head": 0, "separate_classifier": 0}
    timing: dict[str, list[float]] = {"detector_pass_ms": [], "classifier_ms": []}
    n = 0
    for record in records:
        image = cv2.imread(str(val_pages.parent / record["image"]), cv2.IMREAD_COLOR)
        for turns in range(4):
            turned = np.ascontiguousarray(np.rot90(image, k=-turns))
            truth = (record["orientation"] + 90 * turns) % 360
            start = time.perf_counter()
            right["detector_head"] += found([turned])[0].orientation == truth
            timing["detector_pass_ms"].append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            with torch.no_grad():
                logits = classifier(torch.from_numpy(thumbnail(turned))[None, None])
            timing["classifier_ms"].append((time.perf_counter() - start) * 1000)
            right["separate_classifier"] += int(logits.argmax()) * 90 == truth
            n += 1
    print(json.dumps({
        "scored": n, "accuracy": {k: round(v / n, 4) for k, v in right.items()},
        "p50_ms": {k: round(statistics.median(v), 1) for k, v in timing.items()},
        "classifier": {"steps": steps, "batch": batch, "train_s": round(train_s, 1),
                       "parameters": sum(p.numel() for p in classifier.parameters())},
    }, indent=1))


if __name__ == "__main__":
    typer.run(main)
