"""A release profile (configs/release*.yaml): the sizes, inputs and options of every pipeline stage, and the
training configs it derives, which point the base recipes at the pipeline's own datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DATA = Path("release/data")  # where dvc.yaml puts the datasets; `configure` points the training configs here


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthSet(_Strict):
    spec: Path = Path("specs/dataset.yaml")
    pages: int = Field(ge=1)
    seed: int = Field(description="train and val differ in seed, so the validation pages are held out")
    args: str = Field("", description="more `susik synth` options, e.g. --corpus FILE --handwritten MANIFEST")


class SynthSets(_Strict):
    train: SynthSet
    val: SynthSet


class ImportSet(_Strict):
    source: Literal["crohme", "hme100k", "im2latex", "folder"]
    src: Path = Field(description="the source's manifest, folder or table (a DVC dependency)")
    args: str = Field("", description="more `susik data import` options (--copy, --license, ...)")


class HandwritingSet(_Strict):
    glyphs: str = Field(description="an `imports` name: handwritten crops whose glyphs write new formulas")
    count: int = Field(ge=1, description="crops to write")
    seed: int = 0
    args: str = Field("", description="more `susik data handwriting` options (--formulas FILE, --exclude ...)")


class Corrections(_Strict):
    db: Path = Field(description="the serving store's SQLite file; `susik online export` reads it")


class MixEntry(_Strict):
    weight: float = Field(gt=0)
    augment: str = Field("none", description="a susik.data.crop_augment preset or 'none'")


class RecognizerPlan(_Strict):
    base: Path = Field(description="a configs/recognizer_*.yaml: model and schedule")
    sources: dict[str, MixEntry] = Field(
        min_length=1, description="training mixture: 'synth', 'corrections', an `imports` or a `handwriting` "
                                  "name -> weight")
    override: dict[str, Any] = Field(default_factory=dict, description="merged into the base config")


class DetectorPlan(_Strict):
    base: Path = Field(description="a configs/detector_*.yaml")
    override: dict[str, Any] = Field(default_factory=dict, description="merged into the base config")


class ExportPlan(_Strict):
    recognizer: str = Field("", description="more `susik export recognizer` options")
    detector: str = Field("", description="more `susik export detector` options")


class EvalPlan(_Strict):
    recognizer_data: Path = Field(DATA / "crops/val", description="fixed validation crops")
    detector_data: Path = Field(DATA / "pages/val", description="fixed validation pages")
    args: str = Field("", description="more `susik eval` options for both, e.g. --resamples 200")


class GatePlan(_Strict):
    requirements: Path = Path("specs/requirements.yaml")
    args: str = Field("", description="more `susik gate` options, e.g. --n 40 --strict")


class RegistryPlan(_Strict):
    uri: str = Field("sqlite:///release/store/mlflow.db", description="MLflow store; outside all outputs")
    alias: Literal["champion", "challenger"] = "champion"


class ReleaseProfile(_Strict):
    """One release profile (YAML). dvc.yaml interpolates its values; unknown keys are errors."""

    synth: SynthSets
    crop_height: int = Field(64, ge=16, description="crops are at most twice this high, as at inference")
    crop_margin: float = Field(0.0, ge=0, le=1, description="each quad grows by a random share of its line height "
                               "below this before it is cut, as the pipeline widens a detection")
    imports: dict[str, ImportSet] = Field(min_length=1)
    handwriting: dict[str, HandwritingSet] = Field(
        min_length=1, description="new handwritten formulas composed from an import's glyphs")
    corrections: Corrections
    recognizer: RecognizerPlan
    detector: DetectorPlan
    export: ExportPlan = Field(default_factory=ExportPlan)
    eval: EvalPlan = Field(default_factory=EvalPlan)
    gate: GatePlan = Field(default_factory=GatePlan)
    registry: RegistryPlan = Field(default_factory=RegistryPlan)


class ReleaseError(RuntimeError):
    """A profile or a step that cannot go on; one line saying why."""


def load_profile(path: Path) -> ReleaseProfile:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        profile = ReleaseProfile.model_validate(raw)
    except OSError as error:
        raise ReleaseError(f"{path}: cannot read: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ReleaseError(f"{path}: {str(error).splitlines()[0]}") from error
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ReleaseError(f"{path}: {problems}") from error
    clash = {"synth", "corrections"} & set(profile.imports)
    if clash:
        raise ReleaseError(f"{path}: imports may not be named {', '.join(sorted(clash))} (built-in names)")
    clash = {"synth", "corrections", *profile.imports} & set(profile.handwriting)
    if clash:
        raise ReleaseError(f"{path}: handwriting sets may not share a name with imports or built-in data: "
                           f"{', '.join(sorted(clash))}")
    for name, entry in profile.handwriting.items():
        if entry.glyphs not in profile.imports:
            raise ReleaseError(f"{path}: handwriting.{name}.glyphs names no import: {entry.glyphs}")
    unknown = set(profile.recognizer.sources) - {"synth", "corrections", *profile.imports, *profile.handwriting}
    if unknown:
        raise ReleaseError(f"{path}: recognizer.sources names unknown data: {', '.join(sorted(unknown))}")
    return profile


def check_inputs(profile: ReleaseProfile, repo: Path) -> None:
    """Every file the profile names exists (relative to the project folder): one clear line if not, before
    DVC's own 'missing dependency' halfway through."""
    named = {"recognizer.base": profile.recognizer.base, "detector.base": profile.detector.base,
             "gate.requirements": profile.gate.requirements,
             **{f"synth.{name}.spec": entry.spec for name, entry in (("train", profile.synth.train),
                                                                       ("val", profile.synth.val))},
             **{f"imports.{name}.src": entry.src for name, entry in profile.imports.items()}}
    for key, path in named.items():
        if not (repo / path).exists():
            raise ReleaseError(f"{key}: {path} does not exist")
    if not (repo / profile.corrections.db).is_file():
        raise ReleaseError(f"corrections.db: no serving store at {profile.corrections.db} (`susik serve` "
                           "makes one; `susik release tiny-inputs` makes the tiny profile's)")


# --- configure: training configs that point into the pipeline's data ----------------------------------------


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it: mappings merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dataset_manifest(name: str, data: Path = DATA, *, composed: bool = False) -> Path:
    """Where the pipeline puts the crop dataset called `name` in a profile (`composed`: a handwriting set)."""
    if name == "synth":
        return data / "crops/train/manifest.jsonl"
    if name == "corrections":
        return data / "corrections/manifest.jsonl"
    return data / ("handwriting" if composed else "import") / name / "manifest.jsonl"


def _has_samples(manifest: Path) -> bool:
    with manifest.open(encoding="utf-8") as lines:
        return any(line.strip() for line in lines)


def training_configs(profile: ReleaseProfile, data: Path = DATA) -> tuple[dict[str, Any], dict[str, Any]]:
    """(recognizer, detector) training configs: each base config with the profile's override and the
    pipeline's datasets. A source with no samples yet (no corrections exported) is left out."""
    sources = []
    for name, entry in profile.recognizer.sources.items():
        manifest = dataset_manifest(name, data, composed=name in profile.handwriting)
        if not manifest.is_file():
            raise ReleaseError(f"{manifest}: missing (recognizer.sources names {name!r})")
        if _has_samples(manifest):
            sources.append({"manifest": manifest.as_posix(), "weight": entry.weight,
                            "augment": entry.augment})
    if not sources:
        raise ReleaseError("every recognizer source is empty: nothing to train on")
    recognizer = merge(read_yaml(profile.recognizer.base), profile.recognizer.override)
    recognizer["data"] = {**recognizer.get("data", {}), "sources": sources,
                          "val_manifest": (data / "crops/val/manifest.jsonl").as_posix()}
    if recognizer.get("mlflow", True) and "mlflow_uri" not in recognizer:
        recognizer["mlflow_uri"] = profile.registry.uri
    detector = merge(read_yaml(profile.detector.base), profile.detector.override)
    detector.update({"train_pages": (data / "pages/train/manifest.jsonl").as_posix(),
                     "val_pages": (data / "pages/val/manifest.jsonl").as_posix(),
                     "generate_train": None, "generate_val": None})
    return recognizer, detector


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ReleaseError(f"{path}: {str(error).splitlines()[0]}") from error
