"""Knowledge distillation of the recognizer: a larger, frozen teacher guides a smaller student.

Logit distillation under teacher forcing: on every training batch the teacher reads the same crops and the
same label prefix as the student, and the student is pulled towards the teacher's temperature-softened
next-token distribution at every label position (Hinton et al. 2015), mixed with the usual label loss:

    loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

Why logits rather than sequence-level distillation (training on the teacher's greedy outputs): teacher forcing
needs one teacher forward per batch, no autoregressive decode (~40 sequential steps a crop) on the training
path; the soft targets carry the teacher's ranking of the wrong tokens (which symbols look alike), and the
label term keeps the student anchored where the teacher is wrong. T^2 keeps the KD gradients of the same
size whatever the temperature.

The teacher must share the student's vocabulary (same ids, same order) and input geometry, since it reads
the student's batches as they are; both are checked when it is loaded. It runs in eval mode (BatchNorm
statistics and no dropout) without gradients, and is never saved in the student's checkpoints: a resumed
run reloads it from its path, and refuses one whose sha256 differs from the teacher recorded in the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from susik.latex import Vocabulary
from susik.models.recognizer import Recognizer, RecognizerConfig, count_parameters
from susik.models.registry import sha256_file


class DistillConfig(BaseModel):
    """The `distill:` block of a training config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    teacher: Path = Field(description="the teacher's training checkpoint (runs/.../best.pt), path from cwd")
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the KD term; the label loss gets 1 - alpha")
    temperature: float = Field(
        2.0, gt=0, description="softens both distributions; >1 exposes the teacher's ranking of unlikely tokens"
    )


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, pad_id: int,
            temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher || student) of the temperature-softened distributions, averaged over the positions
    whose target is not padding (the ones the label loss counts). Computed in fp32 (bf16 under autocast
    rounds small probabilities to zero)."""
    keep = target != pad_id
    student = F.log_softmax(student_logits[keep].float() / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits[keep].float() / temperature, dim=-1)
    per_position = (teacher.exp() * (teacher - student)).sum(dim=-1)
    return temperature**2 * per_position.mean()


@dataclass(frozen=True)
class Teacher:
    model: Recognizer  # eval mode, no gradients
    config: DistillConfig
    sha256: str

    @torch.no_grad()
    def logits(self, images: torch.Tensor, widths: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(images, widths, tokens)

    def loss(self, label_loss: torch.Tensor, student_logits: torch.Tensor, images: torch.Tensor,
             widths: torch.Tensor, tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
        """The distillation objective of one teacher-forced batch: `tokens` is BOS ... EOS (the student read
        all but the last), `label_loss` the student's cross-entropy on it."""
        teacher_logits = self.logits(images, widths, tokens[:, :-1])
        distill = kd_loss(student_logits, teacher_logits, tokens[:, 1:], pad_id, self.config.temperature)
        return (1 - self.config.alpha) * label_loss + self.config.alpha * distill

    def describe(self) -> dict[str, Any]:
        """What a student checkpoint records about its teacher."""
        return {"path": str(self.config.teacher), "sha256": self.sha256,
                "parameters": count_parameters(self.model), "architecture": self.model.config.model_dump(mode="json")}


def _vocabulary_difference(teacher: list[str], student: list[str]) -> str:
    for index, (a, b) in enumerate(zip(teacher, student)):
        if a != b:
            return f"id {index} is {a!r} for the teacher, {b!r} for the student"
    return f"the teacher has {len(teacher)} tokens, the student {len(student)}"


def load_teacher(config: DistillConfig, vocab: Vocabulary, student: RecognizerConfig, device: str | torch.device,
                 recorded: dict[str, Any] | None = None) -> Teacher:
    """The frozen teacher of `config`, checked against the student's vocabulary and input geometry, and (when
    resuming) against the teacher a run `recorded` in its checkpoint."""
    path = Path(config.teacher)
    if not path.is_file():
        raise FileNotFoundError(f"distill.teacher: no checkpoint at {path}")
    digest = sha256_file(path)
    if recorded is not None and recorded.get("sha256") != digest:
        raise ValueError(f"distill.teacher {path} is not the teacher this run was trained with "
                         f"(sha256 {digest[:12]}... against {str(recorded.get('sha256'))[:12]}...)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        tokens, architecture, weights = checkpoint["vocab"], checkpoint["model_config"], checkpoint["model"]
    except Exception as error:  # noqa: BLE001 - torch raises many types for a bad file; report one line
        raise ValueError(f"distill.teacher {path}: not a recognizer checkpoint ({type(error).__name__})") from None
    if tokens != vocab.tokens:
        raise ValueError(f"distill.teacher {path}: its vocabulary differs from the student's "
                         f"({_vocabulary_difference(tokens, vocab.tokens)}); train the student with the "
                         "teacher's vocabulary (same data, or data.vocab = the teacher's exported vocab.json)")
    teacher_config = RecognizerConfig.model_validate(architecture)
    if teacher_config.preprocess != student.preprocess:
        raise ValueError(f"distill.teacher {path}: its preprocess (input height, width multiple) differs from the "
                         "student's; the teacher reads the student's batches as they are")
    if teacher_config.max_tokens < student.max_tokens:
        raise ValueError(f"distill.teacher {path}: max_tokens {teacher_config.max_tokens} is below the "
                         f"student's {student.max_tokens}")
    model = Recognizer(teacher_config)
    model.load_state_dict(weights)
    model.requires_grad_(False)
    return Teacher(model.to(device).eval(), config, digest)
