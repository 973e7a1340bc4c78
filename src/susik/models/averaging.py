"""Weight averaging of recognizer checkpoints: a "soup" of runs fine-tuned from one set of weights, or the last
few checkpoints of one run. Fine-tunes from a shared start stay in one basin, and their average sits nearer its
floor than either end; on this project's CPU stages the stage-15 bundle and stage 16 (fine-tuned from it) read
CROHME 2013 at 32.8% and 30.0% greedy, their 0.4/0.6 average at 34.0% (see the model card)."""

from __future__ import annotations

import pickle
import shlex
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from susik.models.recognizer import RecognizerConfig


class CheckpointError(Exception):
    """Checkpoints that cannot be averaged; the message says why, for a command line."""


@contextmanager
def reading_checkpoints(kind: str) -> Iterator[None]:
    """Turns what loading and averaging `kind` checkpoints raises into one CheckpointError that says what was wrong."""
    try:
        yield
    except OSError as error:
        raise CheckpointError(f"cannot read a checkpoint: {error}") from error
    except (pickle.UnpicklingError, EOFError, RuntimeError) as error:
        raise CheckpointError(f"not a torch checkpoint: {str(error).splitlines()[0]}") from error
    except KeyError as error:
        raise CheckpointError(f"not a {kind} checkpoint: no {error}") from error
    except ValueError as error:
        raise CheckpointError(str(error)) from error


# What only the run that wrote a checkpoint can use: an average starts a new history.
_RUN_ONLY = ("optimizer", "scheduler", "mlflow_run_id", "history")


def average_states(states: Sequence[Mapping[str, Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
    """The weighted mean of state dicts with the same names and shapes (weights are normalised to sum 1).
    Integer buffers (BatchNorm's batch counters) are not averaged: they come from the heaviest state."""
    if not states:
        raise ValueError("nothing to average")
    if len(weights) != len(states):
        raise ValueError(f"{len(weights)} weights for {len(states)} checkpoints")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {list(weights)}")
    total = float(sum(weights))
    shares = [w / total for w in weights]
    heaviest = states[max(range(len(states)), key=lambda i: shares[i])]
    names = set(heaviest)
    for index, state in enumerate(states):
        if set(state) != names:
            differing = sorted(names.symmetric_difference(state))[:3]
            raise ValueError(f"checkpoint {index} has other parameters than the rest ({', '.join(differing)} ...)")
    averaged: dict[str, Tensor] = {}
    for name, reference in heaviest.items():
        for index, state in enumerate(states):
            if state[name].shape != reference.shape:
                raise ValueError(f"{name}: shape {tuple(state[name].shape)} in checkpoint {index}, "
                                 f"{tuple(reference.shape)} elsewhere")
        if not reference.is_floating_point():
            averaged[name] = reference.clone()
            continue
        mean = torch.zeros_like(reference, dtype=torch.float32)
        for share, state in zip(shares, states):
            mean += share * state[name].float()
        averaged[name] = mean.to(reference.dtype)
    return averaged


def average_checkpoints(checkpoints: Sequence[Mapping[str, Any]], weights: Sequence[float],
                        names: Sequence[str]) -> dict[str, Any]:
    """A checkpoint whose weights are the weighted mean of `checkpoints` (same architecture and vocabulary).
    Its provenance is the union of theirs (every source that trained any of them), and `averaged_from`
    records each input (`names`, weight, step, best metric, command); optimiser and history are dropped."""
    if len(names) != len(checkpoints):
        raise ValueError(f"{len(names)} names for {len(checkpoints)} checkpoints")
    states = [checkpoint["model"] for checkpoint in checkpoints]
    model = average_states(states, weights)  # validates counts and weights first
    first = checkpoints[0]
    # compared as parsed configs: a setting an older checkpoint does not spell out holds its default
    config = RecognizerConfig.model_validate(first["model_config"])
    for name, checkpoint in zip(names, checkpoints):
        if RecognizerConfig.model_validate(checkpoint["model_config"]) != config:
            raise ValueError(f"{name}: another architecture or preprocessing than {names[0]}")
        if list(checkpoint["vocab"]) != list(first["vocab"]):
            raise ValueError(f"{name}: another vocabulary than {names[0]}")
    total = float(sum(weights))
    heaviest = checkpoints[max(range(len(checkpoints)), key=lambda i: weights[i])]
    sources: dict[tuple[str, str], dict[str, str]] = {}
    versions: dict[str, str] = {}
    for checkpoint in checkpoints:
        for source in checkpoint.get("sources", []):
            sources.setdefault((source.get("manifest", ""), source.get("name", "")), dict(source))
        versions.update(checkpoint.get("data_versions", {}))
    averaged = {key: value for key, value in heaviest.items() if key not in _RUN_ONLY}
    averaged.update({
        "model": model, "model_config": config.model_dump(mode="json"), "sources": list(sources.values()),
        "data_versions": versions, "best_metric": None,
        "averaged_from": [
            {"checkpoint": name, "weight": round(weight / total, 6), "step": checkpoint.get("step"),
             "best_metric": checkpoint.get("best_metric"), "command": checkpoint.get("command", ""),
             **({"averaged_from": checkpoint["averaged_from"]} if checkpoint.get("averaged_from") else {})}
            for name, weight, checkpoint in zip(names, weights, checkpoints)
        ],
    })
    return averaged


def average_command(command: str, checkpoints: Sequence[Path], out: Path, weights: Sequence[float]) -> str:
    """The `susik train <command>` line that makes this average, as its record states it."""
    return shlex.join(["susik", "train", command, *map(str, checkpoints), "--out", str(out),
                       *[part for w in weights for part in ("--weight", f"{w:g}")]])


def save_average(checkpoint: Mapping[str, Any], out: Path) -> None:
    """Write an averaged checkpoint; a kill mid-write leaves no half checkpoint at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    torch.save(dict(checkpoint), temporary)
    temporary.replace(out)
