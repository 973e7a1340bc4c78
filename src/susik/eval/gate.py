"""The requirement gate: measure a recognizer on this machine and check it against specs/requirements.yaml.

`measure` times the model (offline latency = encoded image in -> LaTeX out, one crop at a time; throughput
= crops per second in batches), reads its size and the process's peak memory; accuracy comes from an eval
metrics.json and online latency from the serving store's report. `check` is pure: measurements in, one row
per requirement out, with the margin (positive = room to spare). A requirement with nothing measured is
"skip", which fails only under --strict.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from susik.spec.requirements import Requirements

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Measurements:
    offline_ms: tuple[float, float] | None = None  # p50, p95
    online_ms: tuple[float, float] | None = None
    qps: float | None = None
    model_mb: float | None = None
    memory_mb: float | None = None
    metrics: dict[str, Any] | None = None  # an eval metrics.json
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GateRow:
    requirement: str
    target: str
    measured: float | None
    margin: float | None
    status: Status


def _row(name: str, measured: float | None, bound: float, upper: bool) -> GateRow:
    target = f"<= {bound:g}" if upper else f">= {bound:g}"
    if measured is None:
        return GateRow(name, target, None, None, "skip")
    margin = bound - measured if upper else measured - bound
    return GateRow(name, target, measured, margin, "pass" if margin >= 0 else "fail")


def _metric(metrics: dict[str, Any] | None, metric: str, slice_: str | None) -> float | None:
    if metrics is None:
        return None
    block = metrics
    if slice_ is not None:
        field_, value = slice_.split("=", 1)
        block = metrics.get("slices", {}).get(field_, {}).get(value)
        if block is None:
            return None
    value: Any = block
    for key in metric.split("."):  # "confidence.auroc": a key of a nested block
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def check(requirements: Requirements, measured: Measurements) -> list[GateRow]:
    latency = requirements.latency_ms
    offline, online = measured.offline_ms or (None, None), measured.online_ms or (None, None)
    rows = [
        _row("offline latency p50 (ms)", offline[0], latency.offline.p50, upper=True),
        _row("offline latency p95 (ms)", offline[1], latency.offline.p95, upper=True),
        _row("online capture->display p50 (ms)", online[0], latency.online.p50, upper=True),
        _row("online capture->display p95 (ms)", online[1], latency.online.p95, upper=True),
        _row(f"throughput (crops/s on {requirements.hardware.cpu_cores} cores)", measured.qps, requirements.qps,
             upper=False),
        _row("model size (MB)", measured.model_mb, requirements.hardware.model_mb, upper=True),
        _row("peak memory (MB)", measured.memory_mb, requirements.hardware.memory_mb, upper=True),
    ]
    for target in requirements.accuracy:
        value = _metric(measured.metrics, target.metric, target.slice)
        bound = target.max if target.max is not None else target.min
        rows.append(_row(target.label, value, bound, upper=target.max is not None))  # type: ignore[arg-type]
    return rows


def passed(rows: Sequence[GateRow], strict: bool = False) -> bool:
    bad = {"fail", "skip"} if strict else {"fail"}
    return not any(row.status in bad for row in rows)


def peak_memory_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def time_model(
    predictor: Callable[[list[np.ndarray]], list],
    encoded: Sequence[bytes],
    decode: Callable[[bytes], np.ndarray],
    batch_size: int = 16,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[tuple[float, float], float]:
    """((p50, p95) ms of decode + predict for one image at a time, crops per second in batches)."""
    if not encoded:
        raise ValueError("no images to time")
    for data in encoded[:warmup]:
        predictor([decode(data)])
    latencies = []
    for data in encoded:
        start = clock()
        predictor([decode(data)])
        latencies.append((clock() - start) * 1000)
    start = clock()
    for first in range(0, len(encoded), batch_size):
        predictor([decode(data) for data in encoded[first : first + batch_size]])
    elapsed = clock() - start
    p50, p95 = np.percentile(latencies, [50, 95])
    return (float(p50), float(p95)), (len(encoded) / elapsed if elapsed > 0 else float("inf"))
