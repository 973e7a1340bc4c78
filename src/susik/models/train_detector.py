"""Training the formula detector on a cached set of synthetic pages (see `susik.models.detector_data`).

`train(config)` runs a fixed number of steps with AdamW and a warm-up + cosine learning rate. Step k's batch
is drawn from `default_rng([seed, k])`, so a resumed run sees exactly the batches the uninterrupted one
would. Every `eval_every` steps it evaluates on held-out pages with the serving postprocessing and keeps
`last.pt` and `best.pt` (by F1). Checkpoints carry weights, optimiser, step, best F1, the model and training
configs and the training set's version.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, ConfigDict, Field

from susik.eval.detect_match import DetectionCounts, match_regions
from susik.models.detector import DetectorConfig, FormulaDetector
from susik.models.detector_data import GenerateConfig, PageRecord, SampleConfig, make_sample, read_pages
from susik.runtime.detector import DetectParams, detect_page


class LossWeights(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kernel_bce: float = 1.0
    kernel_ends: float = Field(1.0, ge=1.0, description="kernel BCE weight near a formula's two ends (1: as "
                               "elsewhere; see `detector_data.end_zones`)")
    kernel_starts: float = Field(1.0, ge=1.0, description="kernel BCE weight where a printed formula starts, "
                                 "from `detector_data.START_REACH` line heights inside (1: no extra weight; "
                                 "multiplies `kernel_ends` where the zones overlap)")
    kernel_dice: float = 1.0
    kind: float = 0.5
    orientation: float = 0.5


class TrainDetectorConfig(BaseModel):
    """One training run; YAML in configs/detector_*.yaml is its serialisation."""

    model_config = ConfigDict(extra="forbid")

    model: DetectorConfig = DetectorConfig()
    train_pages: Path = Field(description="page manifest of the training cache")
    val_pages: Path | None = Field(None, description="held-out page manifest (full-size pages are fine)")
    generate_train: GenerateConfig | None = Field(None, description="how to make train_pages if it is missing")
    generate_val: GenerateConfig | None = None
    sample: SampleConfig = SampleConfig()
    params: DetectParams = DetectParams()
    loss: LossWeights = LossWeights()
    batch_size: int = Field(8, ge=1)
    steps: int = Field(2500, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup: int = Field(100, ge=0)
    threads: int = Field(1, ge=1, description="torch CPU threads")
    seed: int = 0
    log_every: int = Field(25, ge=1)
    eval_every: int = Field(500, ge=1)
    eval_pages: int = Field(100, ge=1, description="held-out pages scored at each evaluation")
    out: Path = Path("runs/detector")


def load_config(path: Path) -> TrainDetectorConfig:
    return TrainDetectorConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


# --- one step --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor
    kernel: torch.Tensor
    kernel_mask: torch.Tensor
    handwritten: torch.Tensor
    kind_mask: torch.Tensor
    ends: torch.Tensor
    starts: torch.Tensor
    orientation: torch.Tensor


def make_batch(pages: list[PageRecord], config: TrainDetectorConfig, step: int) -> Batch:
    rng = np.random.default_rng([config.seed, step])
    samples = [make_sample(pages[int(i)], config.sample, rng) for i in rng.integers(len(pages), size=config.batch_size)]

    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(s, name) for s in samples]))

    return Batch(stack("image"), stack("kernel"), stack("kernel_mask"), stack("handwritten"), stack("kind_mask"),
                 stack("ends"), stack("starts"), torch.tensor([s.orientation for s in samples]))


def detector_loss(maps: torch.Tensor, orientation: torch.Tensor, batch: Batch, weights: LossWeights) -> dict[str, torch.Tensor]:
    """Balanced BCE (hard negatives at 3:1; heavier near a formula's ends and a printed one's start) + dice on the
    kernel, BCE on kind inside formulas, CE on orientation."""
    kernel_logit, kind_logit = maps[:, 0], maps[:, 1]
    target, mask = batch.kernel, batch.kernel_mask
    weight = (mask * (1 + (weights.kernel_ends - 1) * batch.ends)
              * (1 + (weights.kernel_starts - 1) * batch.starts))
    bce = F.binary_cross_entropy_with_logits(kernel_logit, target, reduction="none") * weight
    positive = target * mask
    n_pos = int(positive.sum().item())
    negative_loss = (bce * (1 - target)).flatten()
    n_neg = min(int(((1 - target) * mask).sum().item()), max(3 * n_pos, 4096))
    hard = torch.topk(negative_loss, n_neg).values if n_neg else negative_loss[:0]
    balanced = ((bce * positive).sum() + hard.sum()) / (n_pos + n_neg + 1e-6)
    prob = torch.sigmoid(kernel_logit) * mask
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + positive.sum() + 1)
    kind_bce = F.binary_cross_entropy_with_logits(kind_logit, batch.handwritten, reduction="none")
    kind = (kind_bce * batch.kind_mask).sum() / (batch.kind_mask.sum() + 1e-6)
    turn = F.cross_entropy(orientation, batch.orientation)
    total = (weights.kernel_bce * balanced + weights.kernel_dice * dice + weights.kind * kind
             + weights.orientation * turn)
    return {"loss": total, "bce": balanced, "dice": dice, "kind": kind, "orientation": turn}


def train_step(model: FormulaDetector, optimizer: torch.optim.Optimizer, batch: Batch, weights: LossWeights) -> dict[str, float]:
    model.train()
    maps, orientation = model(batch.images)
    losses = detector_loss(maps, orientation, batch, weights)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return {name: float(value.item()) for name, value in losses.items()}


def learning_rate(step: int, config: TrainDetectorConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# --- evaluation ------------------------------------------------------------------------------------------


def torch_runner(model: FormulaDetector) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The net as `detect_page` expects it: normalised input -> (probability maps, orientation probs)."""

    def run(tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            maps, orientation = model(torch.from_numpy(tensor))
        return torch.sigmoid(maps).numpy(), torch.softmax(orientation, dim=1).numpy()

    return run


def evaluate(model: FormulaDetector, manifest: Path, params: DetectParams, limit: int | None = None) -> dict[str, float]:
    """Detection P/R/F1 at polygon IoU 0.5, orientation and kind accuracy on held-out pages."""
    import cv2

    model.eval()
    run = torch_runner(model)
    counts, right_turn, right_kind, matched, n = DetectionCounts(), 0, 0, 0, 0
    folder = manifest.parent
    for line in manifest.read_text(encoding="utf-8").splitlines()[:limit]:
        record = json.loads(line)
        image = cv2.imread(str(folder / record["image"]), cv2.IMREAD_COLOR)
        found = detect_page(image, run, params)
        truth = [r["polygon"] or r["quad"] for r in record["regions"]]
        predicted = [d.polygon for d in found.detections]
        pairs = match_regions(predicted, truth)
        counts = counts + DetectionCounts(len(pairs), len(predicted), len(truth))
        right_turn += found.orientation == record["orientation"]
        for i, j, _ in pairs:
            matched += 1
            right_kind += found.detections[i].kind == record["regions"][j]["kind"]
        n += 1
    return {"pages": n, "precision": counts.precision, "recall": counts.recall, "f1": counts.f1,
            "orientation_acc": right_turn / max(n, 1), "kind_acc": right_kind / max(matched, 1)}


# --- the run ---------------------------------------------------------------------------------------------


def data_version(manifest: Path) -> str:
    return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]


def save_checkpoint(path: Path, model: FormulaDetector, optimizer: torch.optim.Optimizer, step: int,
                    best_f1: float, config: TrainDetectorConfig, version: str, command: str) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "best_f1": best_f1,
        "model_config": config.model.model_dump(mode="json"), "train_config": config.model_dump(mode="json"),
        "data_version": version, "command": command,
    }, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind


def load_model(path: Path) -> tuple[FormulaDetector, dict[str, Any]]:
    """A model from a checkpoint, in eval mode, and the checkpoint's metadata."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model = FormulaDetector(DetectorConfig.model_validate(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    model.eval()
    return model, {key: value for key, value in checkpoint.items() if key not in ("model", "optimizer")}


def ensure_pages(manifest: Path, generate: GenerateConfig | None, on_page: Callable[[int], None] | None) -> None:
    if manifest.exists():
        return
    if generate is None:
        raise FileNotFoundError(f"{manifest} does not exist and the config says no way to generate it")
    from susik.models.detector_data import generate_pages

    generate_pages(generate, manifest.parent, on_page)


def train(config: TrainDetectorConfig, resume: Path | None = None,
          log: Callable[[dict[str, Any]], None] = print, command: str = "susik train detector",
          init: Path | None = None) -> Path:
    """Train; returns the path of the best checkpoint. `command` is recorded in checkpoints.

    `resume` continues a run (weights, optimiser, step, best F1); `init` warm-starts a new run from another
    run's weights with a fresh optimiser and schedule (fine-tuning on new pages, say). The two exclude each other.
    """
    if resume is not None and init is not None:
        raise ValueError("give either resume (continue a run) or init (warm-start a new one), not both")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    ensure_pages(config.train_pages, config.generate_train, None)
    if config.val_pages is not None:
        ensure_pages(config.val_pages, config.generate_val, None)
    pages = read_pages(config.train_pages)
    version = data_version(config.train_pages)
    model = FormulaDetector(config.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start, best_f1 = 0, -1.0
    if resume is not None:
        checkpoint = torch.load(resume, map_location="cpu", weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        start, best_f1 = checkpoint["step"], checkpoint["best_f1"]
        log({"resumed": str(resume), "step": start, "best_f1": best_f1})
    elif init is not None:
        warm = torch.load(init, map_location="cpu", weights_only=False)
        if DetectorConfig.model_validate(warm["model_config"]) != config.model:
            raise ValueError(f"{init} holds another architecture than the config's model")
        model.load_state_dict(warm["model"])
        log({"init": str(init), "its_step": warm["step"]})
    best = config.out / "best.pt"
    running: dict[str, float] = {}
    clock = time.perf_counter()
    for step in range(start, config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        losses = train_step(model, optimizer, make_batch(pages, config, step), config.loss)
        running = {k: running.get(k, 0.0) + v for k, v in losses.items()}
        done = step + 1
        if done % config.log_every == 0:
            elapsed = time.perf_counter() - clock
            log({"step": done, "lr": round(learning_rate(step, config), 6), "s_per_step": round(elapsed / config.log_every, 3),
                 **{k: round(v / config.log_every, 4) for k, v in running.items()}})
            running, clock = {}, time.perf_counter()
        if done % config.eval_every == 0 or done == config.steps:
            if data_version(config.train_pages) != version:  # the cache was still growing: take the new pages
                pages, version = read_pages(config.train_pages), data_version(config.train_pages)
                log({"step": done, "train_pages": len(pages)})
            scores = evaluate(model, config.val_pages, config.params, config.eval_pages) if config.val_pages else {}
            f1 = scores.get("f1", 0.0)
            log({"step": done, "eval": {k: round(v, 4) for k, v in scores.items()}})
            if f1 > best_f1 or not best.exists():
                best_f1 = max(f1, best_f1)
                save_checkpoint(best, model, optimizer, done, best_f1, config, version, command)
            save_checkpoint(config.out / "last.pt", model, optimizer, done, best_f1, config, version, command)
            clock = time.perf_counter()
    return best
