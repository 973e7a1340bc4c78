"""Bundled models: `get_model(name)` resolves `models/<name>/record.json`, the record that sits beside the
weights and says everything needed to use and trust them: files with sha256, input geometry, decoding
limits, the training command and data versions, and measured metrics. The model card is generated from the
same record. Nothing is downloaded. No torch here: serving reads records too.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from susik.models.data_card import data_section
from susik.runtime.decoding import DecodeConfig
from susik.runtime.preprocess import PreprocessConfig

RECORD_NAME = "record.json"
REPO_MODELS = Path(__file__).resolve().parents[3] / "models"  # src/susik/models/registry.py -> <repo>/models


class ModelNotFoundError(FileNotFoundError):
    """No bundled model under that name; the message says how to make one."""


class IntegrityError(ValueError):
    """A bundled file does not match the sha256 in its record."""


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="relative to the record's folder")
    sha256: str
    bytes: int


class TrainingInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str = Field(description="the exact command that trained the checkpoint")
    config: dict[str, Any] = Field(description="the full training config, as resolved")
    step: int
    best_metric: float | None = Field(description="validation exp_rate of the exported checkpoint")
    data_versions: dict[str, str] = Field(default_factory=dict, description="manifest -> dataset digest")
    sources: list[dict[str, str]] = Field(default_factory=list, description="training sources and licences")
    averaged_from: list[dict[str, Any]] = Field(
        default_factory=list, description="for a weight average (`susik train average`): each checkpoint averaged, "
        "its weight, step and the command that trained it"
    )


class ModelRecord(BaseModel):
    """The JSON record beside a bundled recognizer (the detector's record extends the shared parts)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: str = Field(description="content hash of the weight files, so any change is a new version")
    created: str
    architecture: dict[str, Any] = Field(description="RecognizerConfig as trained")
    parameters: int
    files: dict[str, FileEntry]
    preprocess: PreprocessConfig
    stride: tuple[int, int] = Field(description="encoder stride (h, w): maps input pixels to memory positions")
    decode: DecodeConfig
    quantization: dict[str, str] = Field(description="per graph: none, dynamic-int8 or static-int8")
    training: TrainingInfo
    metrics: dict[str, Any] = Field(default_factory=dict, description="measured figures, with how")
    root: Path | None = Field(None, exclude=True, description="folder the record was loaded from")

    def file(self, key: str) -> Path:
        """Absolute path of a bundled file after checking its sha256."""
        if self.root is None:
            raise ValueError("record was not loaded from disk")
        return checked_file(self.name, self.root, self.files[key])


def checked_file(name: str, root: Path, entry: FileEntry) -> Path:
    """`root / entry.path` once its sha256 matches the record's; missing or altered files are errors."""
    path = root / entry.path
    if not path.is_file():
        raise ModelNotFoundError(f"{name}: missing file {path}")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise IntegrityError(f"{path}: sha256 {digest[:12]}... differs from the record's {entry.sha256[:12]}...")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_entry(root: Path, path: Path) -> FileEntry:
    return FileEntry(path=str(Path(path).relative_to(root)), sha256=sha256_file(path), bytes=path.stat().st_size)


def load_record(path: Path) -> ModelRecord:
    """A record from `record.json` or its folder."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"no model record at {path}")
    record = ModelRecord.model_validate_json(path.read_text())
    return record.model_copy(update={"root": path.parent})


def save_record(record: ModelRecord, folder: Path) -> Path:
    """Write `record.json` atomically: a crash mid-write leaves the old record, never half a new one."""
    path = Path(folder) / RECORD_NAME
    partial = path.with_name(f".{RECORD_NAME}.tmp")
    partial.write_text(record.model_dump_json(indent=2) + "\n")
    os.replace(partial, path)
    return path


def get_model(name: str, models_dir: Path | None = None) -> ModelRecord:
    """The bundled model `name` (e.g. "recognizer") from `models_dir` (default: the repository's models/)."""
    folder = Path(models_dir or REPO_MODELS) / name
    if not (folder / RECORD_NAME).is_file():
        raise ModelNotFoundError(
            f"no bundled model '{name}' in {folder}. Train and export one: "
            f"`susik train {name} --config configs/{name}_small.yaml --out runs/{name}`, then "
            f"`susik export {name} runs/{name}/best.pt --out {folder.parent}`"
        )
    return load_record(folder)


def resolve(name_or_path: str | Path, models_dir: Path | None = None) -> ModelRecord:
    """A bundled name, a model folder or a record.json path."""
    path = Path(name_or_path)
    if path.exists():
        return load_record(path)
    if "/" in str(name_or_path) or path.suffix:
        raise ModelNotFoundError(f"no model at {path}")
    return get_model(str(name_or_path), models_dir)


def _flattening(share: float) -> str:
    if share <= 0:
        return ""
    return f", the paper's light flattened (divided by a closing {share:g} x the crop's height wide),"


def _decoding(decode: DecodeConfig) -> str:
    if decode.beam > 1:
        search = f"beam search of width {decode.beam}"
    elif decode.rescue_below > 0:
        search = (f"greedy decoding, readings less confident than {decode.rescue_below} read again by beam search "
                  f"of width {decode.rescue_beam}")
    else:
        search = "greedy decoding (beam optional)"
    if decode.thicken_below > 0:
        search += (f"; readings then still less confident than {decode.thicken_below} of thin-stroked crops "
                   f"(stroke core share below {decode.thin_core_share}) read again from the crop with thickened "
                   "strokes, the surer reading kept")
    if decode.widen_below > 0:
        factors = ", ".join(f"{factor:g}" for factor in decode.widen_factors)
        search += (f"; readings then still less confident than {decode.widen_below} read again greedily from the "
                   f"crop stretched sideways by {factors} in turn, the surest reading kept")
    return search


def _confidence(decode: DecodeConfig) -> str:
    raw = f"{decode.confidence} of the token probabilities"
    calibration = decode.calibration
    if calibration is None:
        return f"confidence = {raw} (0 when the guard fired)"
    return (f"confidence calibrated to the chance of an exact reading: sigmoid({calibration.geomean} logit(geometric "
            f"mean) + {calibration.minimum} logit(least likely token) + {calibration.bias}), fitted on "
            f"{calibration.fitted_on or 'labelled crops'} (`susik eval calibrate`); 0 when the guard fired; the "
            f"second looks are gated on the raw {raw}")


def averaged_lines(averaged_from: list[dict[str, Any]], indent: str) -> list[str]:
    """The inputs of a weight average, each with the command that trained it (and its own inputs, nested)."""
    if not averaged_from:
        return []
    lines = [f"{indent[2:]}- A weight average of:"]
    for entry in averaged_from:
        lines.append(f"{indent}- {entry.get('weight')} x `{entry.get('checkpoint')}` (step {entry.get('step')}): "
                     f"`{entry.get('command', '')}`")
        lines += averaged_lines(entry.get("averaged_from", []), indent + "  ")
    return lines


def model_card(record: ModelRecord) -> str:
    """MODEL_CARD.md text, generated from the record so the two cannot disagree."""
    size_mb = sum(entry.bytes for entry in record.files.values() if entry.path.endswith(".onnx")) / 1e6
    arch = record.architecture
    lines = [
        f"# {record.name} — model card",
        "",
        f"Version `{record.version}`, exported {record.created}; generated from `{RECORD_NAME}`.",
        "",
        "## Architecture",
        (
            f"- CNN encoder (ResNet-like, channels {arch.get('channels')}, blocks {arch.get('blocks')}, "
            f"stride {tuple(record.stride)}) with 2D sinusoidal positions, then a pre-LN transformer decoder "
            f"({arch.get('layers')} layers, d={arch.get('d_model')}, {arch.get('heads')} heads, "
            f"FFN {arch.get('ffn')}); vocabulary {arch.get('vocab_size')} tokens."
        ),
        (
            f"- {record.parameters / 1e6:.2f} M parameters; ONNX files {size_mb:.1f} MB "
            f"(quantisation: {', '.join(f'{k} {v}' for k, v in record.quantization.items())})."
        ),
        (
            f"- Input: grayscale crop{_flattening(record.preprocess.flatten)} cut to the ink, height "
            f"{record.preprocess.height} px, width up to "
            f"{record.preprocess.max_width} px; {_decoding(record.decode)}, at most "
            f"{record.decode.max_tokens} tokens, with a repetition guard; {_confidence(record.decode)}."
        ),
        "",
        "## Training",
        f"- Command: `{record.training.command}`",
        f"- Step {record.training.step}; validation exp_rate {record.training.best_metric}.",
    ]
    lines += averaged_lines(record.training.averaged_from, "  ")
    if record.training.data_versions:
        lines += ["- Data versions:"]
        lines += [f"  - `{m}`: `{v}`" for m, v in record.training.data_versions.items()]
    lines += ["", *data_section(record.training.sources)]
    lines += ["", "## Measured", ""]
    if record.metrics:
        lines += [f"- {key}: {json.dumps(value, ensure_ascii=False)}" for key, value in record.metrics.items()]
    else:
        lines += ["- nothing measured yet: run `benchmarks/` and `susik eval recognize`, then re-export."]
    lines += ["", "## Files", ""]
    lines += [f"- `{e.path}` — {e.bytes / 1e6:.2f} MB, sha256 `{e.sha256}`" for e in record.files.values()]
    return "\n".join(lines) + "\n"
