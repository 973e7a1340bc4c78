"""Training recipe of the recognizer: typed config (YAML), a width-bucketed streaming loader, `train_one_epoch`
and `evaluate` as plain functions, self-describing checkpoints with resume, and optional MLflow logging.

Data is injected: `fit` takes a `SampleSource`, any callable `(seed, worker, workers) -> iterable of (gray
uint8 HxW, latex)`; each DataLoader worker calls it once with its own index and reads its share. The seed
changes when a run is resumed, so the resumed run does not replay the data it has seen. The CLI builds one
from `susik.data.crops.CropStream`; tests pass a generator of drawn crops.

An "epoch" here is `epoch_steps` optimiser steps (the stream is endless): after each one the model is
evaluated on the fixed validation list (greedy decoding, exact match of normalised tokens) and
`last.pt` is written; `best.pt` whenever the validation exp_rate improves. With a `distill:` block a frozen
teacher adds a KD term to the loss (`susik.models.distill`).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from susik.data.crops import StreamSource
from susik.eval.metrics import aggregate, score_tokens
from susik.latex import Vocabulary, detokenize, normalize
from susik.models.distill import DistillConfig, Teacher, load_teacher
from susik.models.recognizer import Recognizer, RecognizerConfig, count_parameters
from susik.runtime.decoding import Hypothesis, sequence_confidence
from susik.runtime.preprocess import PreprocessConfig, pad_batch, preprocess

SampleSource = Callable[[int, int, int], Iterable[tuple[np.ndarray, str]]]
Log = Callable[[str], None]


class OptimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate, reached after warmup")
    min_lr_ratio: float = Field(0.02, ge=0, le=1, description="cosine decays to lr x this at the last step")
    warmup: float = Field(0.04, ge=0, lt=1, description="share of steps with a linear warmup")
    weight_decay: float = Field(0.05, ge=0, description="on matrices only (dim >= 2), not biases or norms")
    betas: tuple[float, float] = Field((0.9, 0.98), description="0.98: steadier with small noisy batches")
    grad_clip: float = Field(1.0, gt=0, description="global norm; guards the early steps of a transformer")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="keeps probabilities off 1.0: better confidence")


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[StreamSource] = Field(default_factory=list, description="weighted crop manifests (paths from cwd)")
    val_manifest: Path | None = Field(None, description="fixed held-out crops, decoded at every evaluation")
    val_limit: int = Field(400, ge=1, description="evaluate on this many, evenly spread over the manifest")
    vocab: Path | None = Field(None, description="a vocab.json; left out: built from all manifests' labels")


Precision = Literal["auto", "fp32", "bf16"]


class TrainConfig(BaseModel):
    """One training run. YAML is only its serialisation; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: RecognizerConfig = Field(default_factory=RecognizerConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    batch_size: int = Field(32, ge=1, description="32: ~1.8 CPU-seconds a step for the default model")
    steps: int = Field(5000, ge=1, description="total optimiser steps; the schedule spans exactly these")
    epoch_steps: int = Field(250, ge=1, description="steps between evaluations and checkpoints")
    bucket_batches: int = Field(8, ge=1, description="batches pooled and sorted by width: less padding")
    num_workers: int = Field(1, ge=0, description="DataLoader processes decoding and augmenting crops")
    threads: int = Field(
        1, ge=1, description="torch intra-op threads; >1 only on idle cores: OpenMP threads spin-waiting for a "
        "descheduled peer made 2 threads 2-6x slower than 1 on the shared 2-core machine"
    )
    device: str = Field("cpu", description="cpu, or cuda on an accelerator")
    precision: Precision = Field(
        "auto", description="bf16 autocast of the forward pass (weights and optimiser stay fp32); auto: on cuda, "
        "and on a CPU with AMX tiles (a training step of the default model at batch 32, 2 threads: 0.41 s fp32, "
        "0.235 s bf16); fp32 elsewhere, where bf16 is emulated and slower"
    )
    eval_batch_size: int = Field(32, ge=1)
    eval_max_tokens: int = Field(160, ge=8, description="greedy length cap while validating")
    seed: int = 0
    mlflow: bool = Field(True, description="log params and metrics to MLflow when it is importable")
    mlflow_uri: str | None = Field(None, description="default sqlite:///<out>/../mlflow.db (the runs folder)")
    experiment: str = "recognizer"
    distill: DistillConfig | None = Field(None, description="learn from a teacher checkpoint as well as labels")
    keep_epochs: bool = Field(
        False, description="also keep each evaluation's weights as step_NNNNNN.pt (no optimiser state, a quarter "
        "of last.pt): the run's last epochs averaged with `susik train average` often beat its best one"
    )


def load_config(path: Path) -> TrainConfig:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return TrainConfig.model_validate(raw)


# --- data ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # (B, 1, H, W) float, paper 0, ink 1
    widths: torch.Tensor  # (B,) valid width of each image
    tokens: torch.Tensor  # (B, T + 1) BOS ... EOS, right-padded with PAD

    def to(self, device: torch.device) -> Batch:
        return Batch(self.images.to(device), self.widths.to(device), self.tokens.to(device))


def encode_sample(
    image: np.ndarray, latex: str, vocab: Vocabulary, preprocess_config: PreprocessConfig, max_tokens: int
) -> tuple[np.ndarray, list[int]] | None:
    """(preprocessed image, BOS+ids+EOS), or None for a label that is empty or too long to train on."""
    tokens = normalize(latex)
    if not tokens or len(tokens) + 2 > max_tokens:
        return None
    return preprocess(image, preprocess_config), vocab.encode(tokens)


def collate(samples: Sequence[tuple[np.ndarray, list[int]]], preprocess_config: PreprocessConfig, pad_id: int) -> Batch:
    images, widths = pad_batch([image for image, _ in samples], preprocess_config)
    length = max(len(ids) for _, ids in samples)
    tokens = np.full((len(samples), length), pad_id, dtype=np.int64)
    for row, (_, ids) in enumerate(samples):
        tokens[row, : len(ids)] = ids
    return Batch(torch.from_numpy(images), torch.from_numpy(widths), torch.from_numpy(tokens))


class BucketedBatches(IterableDataset):
    """Batches from a sample source: pools `bucket_batches` batches of samples, sorts them by width so each
    batch holds crops of similar width (little padding), and yields them in a shuffled order."""

    def __init__(
        self,
        source: SampleSource,
        vocab: Vocabulary,
        model_config: RecognizerConfig,
        batch_size: int,
        bucket_batches: int,
        seed: int,
    ) -> None:
        self.source = source
        self.vocab = vocab
        self.preprocess_config = model_config.preprocess
        self.max_tokens = model_config.max_tokens
        self.batch_size = batch_size
        self.pool_size = batch_size * bucket_batches
        self.seed = seed

    def _encoded(self, pairs: Iterable[tuple[np.ndarray, str]]) -> Iterator[tuple[np.ndarray, list[int]]]:
        for image, latex in pairs:
            sample = encode_sample(image, latex, self.vocab, self.preprocess_config, self.max_tokens)
            if sample is not None:
                yield sample

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng([self.seed, worker])
        samples = self._encoded(self.source(self.seed, worker, workers))
        while pool := list(itertools.islice(samples, self.pool_size)):
            pool.sort(key=lambda sample: sample[0].shape[1])
            batches = [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
            for index in rng.permutation(len(batches)):
                yield collate(batches[index], self.preprocess_config, self.vocab.pad_id)


def _quiet_worker(_: int) -> None:
    # Each worker is one process on a small machine: one thread each, or they fight the training threads.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def make_loader(dataset: BucketedBatches, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        worker_init_fn=_quiet_worker if num_workers else None,
        prefetch_factor=4 if num_workers else None,
        persistent_workers=False,
    )


def endless(loader: DataLoader) -> Iterator[Batch]:
    """Cycle a loader over a finite source; an endless source is simply passed through."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the training source yielded no usable sample (empty labels or too long?)")


# --- optimisation -------------------------------------------------------------------------------------------


def build_optimizer(model: torch.nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(config.warmup * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def loss_fn(
    model: Recognizer, batch: Batch, label_smoothing: float, pad_id: int, teacher: Teacher | None = None
) -> torch.Tensor:
    logits = model(batch.images, batch.widths, batch.tokens[:, :-1])
    target = batch.tokens[:, 1:]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=pad_id, label_smoothing=label_smoothing
    )
    if teacher is None:
        return loss
    return teacher.loss(loss, logits, batch.images, batch.widths, batch.tokens, pad_id)


def uses_bf16(precision: Precision, device: torch.device) -> bool:
    """Whether a run of `precision` autocasts to bf16 on `device` (see `TrainConfig.precision`)."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    has_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private, so looked up, not assumed
    return device.type == "cpu" and has_amx is not None and bool(has_amx())


@dataclass(frozen=True)
class EpochStats:
    loss: float
    steps: int
    samples: int
    seconds: float

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0


def train_one_epoch(
    model: Recognizer,
    batches: Iterator[Batch],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    steps: int,
    optim: OptimConfig,
    pad_id: int,
    on_step: Callable[[int, float], None] | None = None,
    teacher: Teacher | None = None,
    bf16: bool = False,
) -> EpochStats:
    """`steps` optimiser steps; `on_step(i, loss)` after each (progress bars, step-level logging); with a
    `teacher`, the loss is the distillation objective; `bf16` autocasts the forward pass."""
    model.train()
    device = next(model.parameters()).device
    total_loss, samples = 0.0, 0
    start = time.perf_counter()
    for i in range(steps):
        batch = next(batches).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model, batch, optim.label_smoothing, pad_id, teacher)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        optimizer.step()
        scheduler.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"loss became {value}; lower optim.lr or check the data")
        total_loss += value
        samples += batch.images.shape[0]
        if on_step is not None:
            on_step(i, value)
    return EpochStats(total_loss / steps, steps, samples, time.perf_counter() - start)


# --- evaluation ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationSet:
    """Held-out crops, preprocessed once: images in width order with their reference tokens."""

    images: list[np.ndarray]
    references: list[list[str]]

    @classmethod
    def build(cls, pairs: Iterable[tuple[np.ndarray, str]], preprocess_config: PreprocessConfig) -> ValidationSet:
        prepared = [(preprocess(image, preprocess_config), normalize(latex)) for image, latex in pairs]
        prepared.sort(key=lambda pair: pair[0].shape[1])
        return cls([image for image, _ in prepared], [tokens for _, tokens in prepared])

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    predictions: list[list[str]]
    token_probs: list[list[float]]  # per prediction, EOS included; empty when no EOS within the cap


def confidence_auroc(confidences: Sequence[float], correct: Sequence[bool]) -> float | None:
    """Chance that a correct output has a higher confidence than a wrong one (ties count half); None when
    all outputs are right or all wrong."""
    scores = np.asarray(confidences, dtype=np.float64)
    labels = np.asarray(correct, dtype=bool)
    positives, negatives = scores[labels], scores[~labels]
    if positives.size == 0 or negatives.size == 0:
        return None
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (positives.size * negatives.size))


@torch.no_grad()
def evaluate(
    model: Recognizer, data: ValidationSet, vocab: Vocabulary, batch_size: int, max_tokens: int
) -> Evaluation:
    """Greedy-decode every validation crop; exact match etc. on normalised tokens, and how well each
    confidence of `susik.runtime.decoding.sequence_confidence` ranks errors (AUROC)."""
    model.eval()
    device = next(model.parameters()).device
    predictions: list[list[str]] = []
    token_probs: list[list[float]] = []
    config = model.config.preprocess
    for start in range(0, len(data), batch_size):
        batch, widths = pad_batch(data.images[start : start + batch_size], config)
        images, lengths = torch.from_numpy(batch).to(device), torch.from_numpy(widths).to(device)
        ids, probs = model.greedy(images, lengths, vocab.bos_id, vocab.eos_id, max_tokens)
        for row_ids, row_probs in zip(ids.tolist(), probs.tolist()):
            ended = vocab.eos_id in row_ids
            predictions.append(vocab.decode(row_ids))
            token_probs.append(row_probs[: row_ids.index(vocab.eos_id) + 1] if ended else [])
    scores = [score_tokens(p, r) for p, r in zip(predictions, data.references)]
    summary = aggregate(scores)
    metrics = {
        "exp_rate": summary.exp_rate, "le1": summary.le1, "le2": summary.le2, "cer": summary.cer,
        "norm_edit_distance": summary.norm_edit_distance, "bleu": summary.bleu,
    }
    correct = [s.exact for s in scores]
    for method in ("geomean", "min"):
        hypotheses = [Hypothesis((), tuple(p), "eos" if p else "length") for p in token_probs]
        auroc = confidence_auroc([sequence_confidence(h, method) for h in hypotheses], correct)
        if auroc is not None:
            metrics[f"confidence_auroc_{method}"] = auroc
    return Evaluation(metrics, predictions, token_probs)


# --- checkpoints --------------------------------------------------------------------------------------------


@dataclass
class RunState:
    step: int = 0
    best_metric: float | None = None
    mlflow_run_id: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def save_checkpoint(
    path: Path,
    model: Recognizer,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: RunState,
    config: TrainConfig,
    vocab: Vocabulary,
    extra: dict[str, Any],
) -> None:
    """Everything needed to resume or export; written to a temporary file and renamed (a kill mid-write
    leaves the previous checkpoint intact)."""
    _write(path, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                  **_weights_payload(model, state, config, vocab, extra)})


def save_weights(path: Path, model: Recognizer, state: RunState, config: TrainConfig, vocab: Vocabulary,
                 extra: dict[str, Any]) -> None:
    """What export, --init and averaging read, without the optimiser: a snapshot of one epoch."""
    _write(path, _weights_payload(model, state, config, vocab, extra))


def _weights_payload(model: Recognizer, state: RunState, config: TrainConfig, vocab: Vocabulary,
                     extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": {name: tensor.cpu() for name, tensor in model.state_dict().items()},
        "step": state.step,
        "best_metric": state.best_metric,
        "mlflow_run_id": state.mlflow_run_id,
        "history": state.history,
        "model_config": model.config.model_dump(mode="json"),
        "train_config": config.model_dump(mode="json"),
        "vocab": vocab.tokens,
        **extra,
    }


def _write(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def model_from_checkpoint(checkpoint: dict[str, Any]) -> tuple[Recognizer, Vocabulary]:
    """The trained model (eval mode) and its vocabulary."""
    vocab = Vocabulary(checkpoint["vocab"])
    model = Recognizer(RecognizerConfig.model_validate(checkpoint["model_config"]))
    model.load_state_dict(checkpoint["model"])
    return model.eval(), vocab


# --- tracking -----------------------------------------------------------------------------------------------


class Tracker:
    """MLflow when enabled and importable, otherwise nothing; training never fails because of tracking."""

    def __init__(self, enabled: bool, uri: str, experiment: str, log: Log) -> None:
        self.mlflow = None
        self.log = log
        if not enabled:
            return
        try:
            import mlflow
        except Exception as error:  # noqa: BLE001 - any import failure just disables tracking
            log(f"mlflow unavailable ({error}); metrics go to the console and checkpoints only")
            return
        try:
            mlflow.set_tracking_uri(uri)
            mlflow.set_experiment(experiment)
        except Exception as error:  # noqa: BLE001
            log(f"mlflow store {uri} unusable ({error}); tracking disabled")
            return
        self.mlflow = mlflow

    def start(self, run_id: str | None, params: dict[str, Any]) -> str | None:
        if self.mlflow is None:
            return None
        run = self.mlflow.start_run(run_id=run_id)
        if run_id is None:
            self.mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        return run.info.run_id

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.mlflow is not None:
            self.mlflow.log_metrics(values, step=step)

    def end(self) -> None:
        if self.mlflow is not None:
            self.mlflow.end_run()


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: value}


def _examples(val: ValidationSet, evaluation: Evaluation, count: int) -> list[str]:
    """A few misread validation crops, to eyeball what the model gets wrong as it trains."""
    wrong = [i for i, (p, r) in enumerate(zip(evaluation.predictions, val.references)) if p != r]
    return [f"  want {detokenize(val.references[i])}  got {detokenize(evaluation.predictions[i])}"
            for i in wrong[:count]]


# --- the run ------------------------------------------------------------------------------------------------


def _require_same_model(checkpoint: dict[str, Any], config: TrainConfig, path: Path, purpose: str) -> None:
    saved = RecognizerConfig.model_validate(checkpoint["model_config"])
    if saved.model_copy(update={"vocab_size": None}) != config.model.model_copy(update={"vocab_size": None}):
        raise ValueError(f"{path} was trained with another model config; {purpose} needs the same one")


@dataclass(frozen=True)
class FitResult:
    step: int
    best_metric: float | None
    last: Path
    best: Path | None
    history: list[dict[str, float]]


def fit(
    config: TrainConfig,
    source: SampleSource,
    validation: Sequence[tuple[np.ndarray, str]],
    vocab: Vocabulary,
    out: Path,
    *,
    resume: bool = False,
    init: Path | None = None,
    provenance: dict[str, Any] | None = None,
    log: Log = print,
    on_step: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train until `config.steps`, evaluating and checkpointing every `epoch_steps`; with `resume`, continue
    from `out/last.pt` (weights, optimiser, schedule, step, best metric, MLflow run). `init` warm-starts a
    fresh run from another run's weights and vocabulary (new optimiser and schedule: fine-tuning, or a longer
    schedule after a short one); a resumed run ignores it, its last.pt already holds those weights.
    `provenance` (the command, data versions, sources and licences) is stored in every checkpoint, and with
    `config.distill` the teacher's path, sha256 and architecture too."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out / "last.pt", out / "best.pt"
    state = RunState()
    checkpoint = None
    if resume:
        if not last_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {last_path}")
        checkpoint = load_checkpoint(last_path)
        vocab = Vocabulary(checkpoint["vocab"])
        _require_same_model(checkpoint, config, last_path, "resume")
        state = RunState(checkpoint["step"], checkpoint["best_metric"], checkpoint.get("mlflow_run_id"),
                         list(checkpoint.get("history", [])))
    warm_start = None
    if checkpoint is None and init is not None:
        warm_start = load_checkpoint(Path(init))
        _require_same_model(warm_start, config, Path(init), "--init")
        vocab = Vocabulary(warm_start["vocab"])
    model_config = config.model.model_copy(update={"vocab_size": len(vocab)})
    torch.manual_seed(config.seed)
    model = Recognizer(model_config).to(config.device)
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, config.steps)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        log(f"resumed from {last_path} at step {state.step} (best exp_rate {state.best_metric})")
    elif warm_start is not None:
        model.load_state_dict(warm_start["model"])
        log(f"warm start from {init} (its step {warm_start['step']}); fresh optimiser and schedule")
    bf16 = uses_bf16(config.precision, torch.device(config.device))
    log(f"model: {count_parameters(model) / 1e6:.2f} M parameters, vocabulary {len(vocab)}; "
        f"{'bf16 autocast' if bf16 else 'fp32'}")
    teacher = None
    if config.distill is not None:
        recorded = checkpoint.get("teacher") if checkpoint is not None else None
        teacher = load_teacher(config.distill, vocab, model_config, config.device, recorded)
        log(f"distilling from {config.distill.teacher} ({count_parameters(teacher.model) / 1e6:.2f} M parameters), "
            f"alpha {config.distill.alpha}, temperature {config.distill.temperature}")

    val = ValidationSet.build(validation, model_config.preprocess)
    # A resumed run draws a fresh stream (seeded by the step) rather than replaying the one it was killed in.
    dataset = BucketedBatches(source, vocab, model_config, config.batch_size, config.bucket_batches,
                              seed=config.seed * 1_000_003 + state.step)
    batches = endless(make_loader(dataset, config.num_workers))
    uri = config.mlflow_uri or f"sqlite:///{out.resolve().parent / 'mlflow.db'}"
    tracker = Tracker(config.mlflow, uri, config.experiment, log)
    extra = {"command": "", "data_versions": {}, "sources": [], **(provenance or {})}
    if checkpoint is not None and checkpoint.get("command"):
        extra["command"] = checkpoint["command"]  # a resumed run is the run its first command started (--init)
    if teacher is not None:
        extra["teacher"] = teacher.describe()
    try:
        state.mlflow_run_id = tracker.start(state.mlflow_run_id, _flatten("", config.model_dump(mode="json")))
        while state.step < config.steps:
            steps = min(config.epoch_steps, config.steps - state.step)
            base = state.step
            stats = train_one_epoch(
                model, batches, optimizer, scheduler, steps, config.optim, vocab.pad_id,
                on_step=None if on_step is None else (lambda i, loss, base=base: on_step(base + i + 1, loss)),
                teacher=teacher, bf16=bf16,
            )
            state.step += steps
            record: dict[str, float] = {
                "step": state.step, "loss": stats.loss, "steps_per_s": stats.steps_per_second,
                "lr": scheduler.get_last_lr()[0],
            }
            if len(val):
                evaluation = evaluate(model, val, vocab, config.eval_batch_size, config.eval_max_tokens)
                record.update({f"val_{k}": v for k, v in evaluation.metrics.items()})
                improved = state.best_metric is None or evaluation.metrics["exp_rate"] > state.best_metric
                if improved:
                    state.best_metric = evaluation.metrics["exp_rate"]
            else:
                improved = False
            state.history.append(record)
            tracker.metrics({k: v for k, v in record.items() if k != "step"}, state.step)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if len(val):
                for line in _examples(val, evaluation, count=2):
                    log(line)
            save_checkpoint(last_path, model, optimizer, scheduler, state, config, vocab, extra)
            if config.keep_epochs:
                save_weights(out / f"step_{state.step:06d}.pt", model, state, config, vocab, extra)
            if improved:
                save_checkpoint(best_path, model, optimizer, scheduler, state, config, vocab, extra)
    finally:
        tracker.end()
    return FitResult(state.step, state.best_metric, last_path, best_path if best_path.is_file() else None,
                     state.history)
