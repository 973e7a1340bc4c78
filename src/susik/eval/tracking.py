"""Experiment tracking and the model registry on MLflow's local store: fully offline, no server.

The store is a SQLite file (default `sqlite:///runs/mlflow.db`, or $SUSIK_TRACKING_URI, or --tracking-uri);
artifacts go to `mlartifacts/` beside it. Eval and training runs log params, metrics (slices flattened to
`slice.<field>.<value>.<metric>`), the dataset version hash and their output folder. A model version is a
bundled model folder (record.json + ONNX) logged as an artifact; `champion` and `challenger` are aliases.
Each alias keeps its history (a registered-model tag) so `rollback` knows what it pointed at before.
mlflow (mlflow-skinny is enough) is imported only here and only when used.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URI = "sqlite:///runs/mlflow.db"
ALIASES = ("champion", "challenger")
_UNSAFE = re.compile(r"[^\w\-. /:]")


class TrackingError(RuntimeError):
    """MLflow missing or the store unusable; one line saying what to do."""


def tracking_uri(explicit: str | None = None) -> str:
    return explicit or os.environ.get("SUSIK_TRACKING_URI") or DEFAULT_URI


def _client(uri: str):
    try:
        import mlflow  # noqa: F401
        from mlflow import MlflowClient
    except ImportError as error:
        raise TrackingError("MLflow is not installed: pip install 'susik[train]' (mlflow-skinny)") from error
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _artifact_root(uri: str) -> str | None:
    """Artifacts beside a SQLite store (MLflow's own default is ./mlruns under whatever the cwd is)."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()


def _experiment_id(client, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(name, artifact_location=_artifact_root(uri))


def flatten_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Numeric top-level scores and per-slice scores as MLflow metric names (intervals and baselines are
    in the logged metrics.json artifact)."""
    flat = {key: float(value) for key, value in metrics.items() if isinstance(value, (int, float))}
    for field, values in metrics.get("slices", {}).items():
        for value, block in values.items():
            for key, score in block.items():
                if isinstance(score, (int, float)):
                    flat[_UNSAFE.sub("_", f"slice.{field}.{value}.{key}")] = float(score)
    return flat


def log_run(
    experiment: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    *,
    artifacts: Sequence[Path] = (),
    tags: Mapping[str, str] | None = None,
    uri: str | None = None,
) -> str:
    """One finished run; returns its id."""
    uri = tracking_uri(uri)
    client = _client(uri)
    run = client.create_run(_experiment_id(client, experiment, uri), tags=dict(tags or {}))
    run_id = run.info.run_id
    try:
        from mlflow.entities import Metric, Param

        stamp = run.info.start_time
        client.log_batch(
            run_id,
            metrics=[Metric(name, value, stamp, 0) for name, value in metrics.items()],
            params=[Param(name, str(value)[:6000]) for name, value in params.items()],
        )
        for path in artifacts:
            if path.is_dir():
                client.log_artifacts(run_id, str(path), path.name)
            else:
                client.log_artifact(run_id, str(path))
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return run_id


@dataclass(frozen=True)
class ModelVersionRow:
    name: str
    version: str
    aliases: tuple[str, ...]
    run_id: str | None
    source: str
    created_ms: int
    metrics: dict[str, float]


def register_model(
    name: str, folder: Path, *, metrics: Mapping[str, float] | None = None, params: Mapping[str, Any] | None = None,
    uri: str | None = None,
) -> ModelVersionRow:
    """Log a model folder (record.json + weights) as a run's artifact and register it as a new version."""
    uri = tracking_uri(uri)
    client = _client(uri)
    from mlflow.exceptions import MlflowException

    run_id = log_run("models", {"folder": str(folder), **(params or {})}, dict(metrics or {}), uri=uri,
                     tags={"susik.model": name})
    artifact = client.get_run(run_id).info.artifact_uri
    client.log_artifacts(run_id, str(folder), "model")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(name, f"{artifact}/model", run_id=run_id)
    return _row(client, name, version)


def _row(client, name: str, version) -> ModelVersionRow:
    metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
    aliases = tuple(getattr(version, "aliases", ()) or ())
    return ModelVersionRow(name, str(version.version), aliases, version.run_id, version.source,
                           int(version.creation_timestamp or 0), dict(metrics))


def list_versions(uri: str | None = None, name: str | None = None) -> Iterator[ModelVersionRow]:
    client = _client(tracking_uri(uri))
    names = [name] if name else [model.name for model in client.search_registered_models()]
    for model_name in names:
        versions = client.search_model_versions(f"name = '{model_name}'")
        for version in sorted(versions, key=lambda v: int(v.version)):
            # search results may omit aliases on some stores: read each version fully
            yield _row(client, model_name, client.get_model_version(model_name, version.version))


def promote(name: str, version: str, alias: str, uri: str | None = None) -> str | None:
    """Point `alias` at `version`; returns the version that held it before (None if none)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri(uri))
    try:
        client.get_model_version(name, version)
    except MlflowException as error:
        raise TrackingError(f"no version {version} of model {name!r}") from error
    try:
        previous = client.get_model_version_by_alias(name, alias).version
    except MlflowException:
        previous = None
    client.set_registered_model_alias(name, alias, version)
    history = _history(client, name, alias) or ([] if previous is None else [str(previous)])
    _set_history(client, name, alias, [*history, str(version)])
    return None if previous is None else str(previous)


HISTORY_KEEP = 50  # tag values are bounded in size; fifty promotions back is plenty to roll back through


def _history_tag(alias: str) -> str:
    return f"susik.history.{alias}"


def _history(client, name: str, alias: str) -> list[str]:
    value = client.get_registered_model(name).tags.get(_history_tag(alias), "")
    return [version for version in value.split(",") if version]


def _set_history(client, name: str, alias: str, history: list[str]) -> None:
    client.set_registered_model_tag(name, _history_tag(alias), ",".join(history[-HISTORY_KEEP:]))


def rollback_target(history: Sequence[str], current: str | None) -> tuple[str, list[str]] | None:
    """The version an alias goes back to and the history after it, or None when nothing came before.

    The history ends with the current version unless someone moved the alias elsewhere (the MLflow UI):
    then its newest entry is the one to restore."""
    earlier = list(history)
    while earlier and earlier[-1] == current:
        earlier.pop()
    return (earlier[-1], earlier) if earlier else None


def rollback(name: str, alias: str = "champion", uri: str | None = None) -> tuple[str | None, str]:
    """Point `alias` back at the version it held before the newest promotion; returns (from, to)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri(uri))
    try:
        current = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        current = None
    try:
        found = rollback_target(_history(client, name, alias), current)
    except MlflowException as error:
        raise TrackingError(f"no registered model {name!r}") from error
    if found is None:
        raise TrackingError(f"{name}: no earlier {alias} recorded to roll back to")
    target, history = found
    try:
        client.get_model_version(name, target)
    except MlflowException as error:
        raise TrackingError(f"{name}: the earlier {alias}, version {target}, no longer exists") from error
    client.set_registered_model_alias(name, alias, target)
    _set_history(client, name, alias, history)
    return current, target


def alias_versions(name: str, uri: str | None = None) -> dict[str, str]:
    """alias -> version for the aliases that are set (`champion`, `challenger`)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri(uri))
    found = {}
    for alias in ALIASES:
        try:
            found[alias] = str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            continue
    return found


def fetch_version(name: str, version: str, cache: Path, uri: str | None = None) -> Path:
    """A local copy of a version's model folder under `cache` (downloaded once; the record's hashes check it)."""
    import mlflow.artifacts

    target = cache / name / version
    if (target / "record.json").is_file():
        return target
    uri = tracking_uri(uri)
    source = _client(uri).get_model_version(name, version).source
    target.parent.mkdir(parents=True, exist_ok=True)
    # Download beside the target, then rename: a crash never leaves a half-copied version under its name.
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as scratch:
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=scratch,
                                                          tracking_uri=uri, registry_uri=uri))
        folder.replace(target)
    return target
