"""Server settings, read once from the environment (`SUSIK_*`) or passed in by tests and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUSIK_", extra="forbid")

    data_dir: Path = Field(Path("susik-data"), description="uploaded images and the default SQLite database")
    db_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite (WAL) in data_dir")
    max_upload_bytes: int = Field(15_000_000, gt=0, description="bodies above this are refused with 413")
    max_image_pixels: int = Field(
        40_000_000, gt=0, description="images above this are refused before decoding"
    )
    request_timeout_s: float = Field(10.0, gt=0, description="inference longer than this answers 504")
    max_queue: int = Field(64, gt=0, description="images waiting for inference; beyond it requests get 503")
    batch_max_size: int = Field(8, gt=0, description="images run together through one pipeline call")
    batch_max_wait_ms: float = Field(
        10.0, ge=0, description="most a batch waits for requests still decoding; a lone request never waits"
    )
    api_keys: list[str] = Field(default_factory=list, description="when non-empty, /v1/* needs X-API-Key")
    rate_limit_per_minute: int = Field(600, gt=0, description="per API key, only when api_keys is set")
    onnx_threads: int | None = Field(
        None, gt=0, description="ONNX Runtime threads per model; default: all cores (one inference thread)"
    )
    katex_dir: Path | None = Field(None, description="KaTeX dist folder; default: node_modules/katex/dist")
    ort_dir: Path | None = Field(
        None, description="onnxruntime-web dist folder (on-device mode); default: node_modules/onnxruntime-web/dist"
    )
    retention_days: float | None = Field(
        180.0, gt=0, description="stored photos older than this are deleted (their metrics stay); None: kept"
    )
    purge_interval_s: float = Field(3600.0, gt=0, description="how often the server deletes expired photos")
    collection_license: str = Field(
        "susik-user-consent: training susik models; no redistribution",
        min_length=1,
        description="licence a user's consent grants on a kept photo; exported samples carry it",
    )
    model_source: Literal["bundled", "registry"] = Field(
        "bundled",
        description="bundled: models/ of the package; registry: the MLflow registry's champion (and "
        "challenger), followed as their aliases move",
    )
    tracking_uri: str | None = Field(
        None, description="MLflow store holding the registry; default: sqlite:///runs/mlflow.db"
    )
    registry_model: str = Field("recognizer", description="registered model whose aliases are served")
    registry_poll_s: float = Field(
        10.0, ge=0.5, le=600, description="how often the registry's aliases are checked for a promotion"
    )
    canary_share: float = Field(
        0.0, ge=0, le=1, description="share of requests the challenger serves while one is set"
    )

    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{(self.data_dir / 'susik.db').resolve()}"

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"
