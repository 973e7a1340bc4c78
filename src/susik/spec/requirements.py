"""Model requirements: what the service needs from a model, as a typed spec (specs/requirements.yaml).

Each requirement is something `susik gate` can measure on the machine it runs on, or read from a
measurement made elsewhere (online capture->display latency comes from the serving store's report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

ServingMode = Literal["mobile", "local_cpu", "local_gpu", "cloud"]


class RequirementsError(ValueError):
    """A requirements file that cannot be read or does not validate; one line naming file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Percentiles(_Strict):
    p50: float = Field(gt=0, description="median, milliseconds")
    p95: float = Field(gt=0, description="95th percentile, milliseconds")

    @model_validator(mode="after")
    def _ordered(self) -> Percentiles:
        if self.p50 > self.p95:
            raise ValueError(f"p50 ({self.p50}) is above p95 ({self.p95})")
        return self


class Latency(_Strict):
    offline: Percentiles = Field(description="image in -> result on the gate machine, one crop at a time")
    online: Percentiles = Field(description="capture -> display as the client measures it (display_ms)")


class Hardware(_Strict):
    cpu_cores: int = Field(ge=1, description="cores the model may use; the gate runs with this many threads")
    memory_mb: float = Field(gt=0, description="peak resident memory of the process running the model")
    model_mb: float = Field(gt=0, description="size of the model's weight files on disk")
    gpu: bool = Field(False, description="whether a GPU may be assumed")


class AccuracyTarget(_Strict):
    """A bound on one eval metric, on the whole set or one slice ("field=value", e.g. "kind=printed")."""

    metric: str = Field(description="a key of metrics.json, e.g. exp_rate, le1, cer, f1, e2e_exact; "
                        "a dotted path into a nested block, e.g. confidence.auroc")
    slice: str | None = Field(None, pattern=r"^[^=]+=.+$")
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> AccuracyTarget:
        if (self.min is None) == (self.max is None):
            raise ValueError("give exactly one of min and max")
        return self

    @property
    def label(self) -> str:
        return f"{self.metric} [{self.slice}]" if self.slice else self.metric


class Requirements(_Strict):
    serving_mode: ServingMode
    hardware: Hardware
    latency_ms: Latency
    qps: float = Field(gt=0, description="sustained crops per second on the hardware budget")
    accuracy: tuple[AccuracyTarget, ...] = Field(description="on the eval set given to the gate")


def load_requirements(path: str | Path) -> Requirements:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RequirementsError(f"{path}: cannot read: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise RequirementsError(f"{path}: not YAML: {str(error).splitlines()[0]}") from error
    try:
        return Requirements.model_validate(raw)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in item['loc'])}: "
            + ("unknown key" if item["type"] == "extra_forbidden" else item["msg"])
            for item in error.errors()
        ]
        raise RequirementsError(f"{path}: {'; '.join(problems)}") from error
