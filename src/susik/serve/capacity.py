"""Capacity planning from measured throughput: how many replicas and machines a target load needs.

Capacity of one replica = the highest measured throughput whose p95 stays within the SLO. Replicas are
sized for `utilisation` (0.75: headroom for bursts and a failed replica); on GPUs, the number of models per
GPU is a step function of model memory against GPU memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """One measured load level of `susik bench`."""

    concurrency: int
    rps: float
    p95_s: float
    error_rate: float


@dataclass(frozen=True)
class Plan:
    replica_rps: float  # sustainable per replica at the SLO
    replicas: int
    replicas_per_machine: int
    machines: int
    models_per_gpu: int | None


def replica_capacity(levels: list[Level], p95_s: float, max_error_rate: float = 0.01) -> float:
    """The best throughput among levels that meet the latency SLO with < 1% errors; 0 if none does."""
    good = [level.rps for level in levels if level.p95_s <= p95_s and level.error_rate < max_error_rate]
    return max(good, default=0.0)


def models_per_gpu(gpu_mem_gb: float, model_mem_gb: float, reserve_gb: float = 1.0) -> int:
    """How many model replicas fit on one GPU: floor((memory - runtime reserve) / per-model memory)."""
    if model_mem_gb <= 0:
        raise ValueError("model memory must be positive")
    return max(0, math.floor((gpu_mem_gb - reserve_gb) / model_mem_gb))


def plan(
    qps: float,
    replica_rps: float,
    *,
    utilisation: float = 0.75,
    replicas_per_machine: int = 1,
    gpu_mem_gb: float | None = None,
    model_mem_gb: float | None = None,
    gpus_per_machine: int = 1,
) -> Plan:
    if qps <= 0:
        raise ValueError("target QPS must be positive")
    if replica_rps <= 0:
        raise ValueError("no measured level meets the latency target: a replica cannot serve it at any load")
    if not 0 < utilisation <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    replicas = math.ceil(qps / (replica_rps * utilisation))
    per_gpu = None
    if gpu_mem_gb is not None:
        if model_mem_gb is None:
            raise ValueError("--gpu-mem needs --model-mem (GPU memory one model replica takes)")
        per_gpu = models_per_gpu(gpu_mem_gb, model_mem_gb)
        if per_gpu == 0:
            raise ValueError(f"a {model_mem_gb:g} GB model does not fit a {gpu_mem_gb:g} GB GPU")
        replicas_per_machine = per_gpu * gpus_per_machine
    return Plan(
        replica_rps, replicas, replicas_per_machine, math.ceil(replicas / replicas_per_machine), per_gpu
    )
