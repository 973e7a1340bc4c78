"""The candidate pool: which runs cannot be told apart from the best one, slice by slice.

Runs are eval output folders (metrics.json + scores.jsonl) on the same samples. Per slice, the best run is
the one with the highest score (recognize: exp_rate; detect: e2e_exact); every other run is compared to it
with a paired bootstrap over the slice's samples (the same resamples for both), and is *tied* when the 95%
interval of (best - run) holds 0. The pool of a slice is the best run plus its ties. "Unique" counts the
samples a run gets right that no other run does — what it would bring to an ensemble or a data review.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from susik.eval import bootstrap


class CompareError(ValueError):
    """Runs that cannot be compared; one line saying why."""


@dataclass(frozen=True)
class Run:
    name: str
    task: str
    scores: list[dict[str, Any]]  # scores.jsonl lines, in manifest order

    def key(self, line: dict[str, Any]) -> tuple[int, str]:
        return (line["index"], line["image"])


def load_run(folder: Path) -> Run:
    metrics_path, scores_path = folder / "metrics.json", folder / "scores.jsonl"
    if not metrics_path.is_file() or not scores_path.is_file():
        raise CompareError(f"{folder}: not an eval folder (needs metrics.json and scores.jsonl)")
    task = json.loads(metrics_path.read_text(encoding="utf-8")).get("run", {}).get("task", "recognize")
    with scores_path.open(encoding="utf-8") as handle:
        scores = [json.loads(line) for line in handle if line.strip()]
    return Run(folder.name if folder.name else str(folder), task, scores)


@dataclass(frozen=True)
class Entry:
    run: str
    score: float
    difference: float  # best - this run
    low: float
    high: float
    tied: bool  # True for the best run itself


@dataclass(frozen=True)
class SliceComparison:
    field: str
    value: str
    n: int
    best: str
    entries: tuple[Entry, ...]

    @property
    def pool(self) -> tuple[str, ...]:
        return tuple(entry.run for entry in self.entries if entry.tied)


@dataclass(frozen=True)
class Comparison:
    metric: str
    slices: tuple[SliceComparison, ...]
    unique: dict[str, list[str]]  # run -> images only it gets right


def _statistic(task: str, lines: Sequence[dict[str, Any]]) -> bootstrap.Statistic:
    if task == "recognize":
        return bootstrap.mean(np.array([line["correct"] for line in lines], float))
    counts = {name: np.array([line[name] for line in lines], float) for name in ("exact", "predictions", "truths")}
    return bootstrap.f1(counts["exact"], counts["predictions"], counts["truths"])


def _aligned(runs: Sequence[Run]) -> list[list[dict[str, Any]]]:
    """Each run's score lines for the samples every run has, in one order."""
    keyed = [{run.key(line): line for line in run.scores} for run in runs]
    common = set(keyed[0]).intersection(*keyed[1:])
    if not common:
        raise CompareError("the runs share no sample: were they evaluated on the same manifest?")
    order = sorted(common)
    return [[table[key] for key in order] for table in keyed]


def compare(runs: Sequence[Run], rng: np.random.Generator, resamples: int = 1000, level: float = 0.95) -> Comparison:
    if len(runs) < 2:
        raise CompareError("compare needs at least two runs")
    tasks = {run.task for run in runs}
    if len(tasks) > 1:
        raise CompareError(f"runs of different tasks: {sorted(tasks)}")
    task = tasks.pop()
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise CompareError(f"two runs share a folder name: {names}")
    lines = _aligned(runs)
    groups: dict[tuple[str, str], list[int]] = {("all", "all"): list(range(len(lines[0])))}
    for index, line in enumerate(lines[0]):
        for field, values in line["slices"].items():
            for value in values:
                groups.setdefault((field, value), []).append(index)
    slices = []
    for (field, value), indices in groups.items():
        stats = [_statistic(task, [run_lines[i] for i in indices]) for run_lines in lines]
        weights = bootstrap.draws(len(indices), rng, resamples)
        ones = np.ones((1, len(indices)))
        observed = [float(stat(ones)[0]) for stat in stats]
        best = int(np.argmax(observed))
        entries = []
        for r, stat in enumerate(stats):
            if r == best:
                entries.append(Entry(names[r], observed[r], 0.0, 0.0, 0.0, True))
                continue
            diff = bootstrap.paired_difference(stats[best], stat, weights, level)
            entries.append(Entry(names[r], observed[r], diff.difference, diff.low, diff.high, diff.tied))
        slices.append(SliceComparison(field, value, len(indices), names[best], tuple(entries)))
    correct = np.array([[line["correct"] for line in run_lines] for run_lines in lines], bool)
    unique = {
        names[r]: [lines[r][i]["image"] for i in np.flatnonzero(correct[r] & (correct.sum(axis=0) == 1))]
        for r in range(len(runs))
    }
    metric = "exp_rate" if task == "recognize" else "e2e_exact"
    return Comparison(metric, tuple(sorted(slices, key=lambda s: (s.field != "all", s.field, s.value))), unique)


def to_json(comparison: Comparison) -> dict[str, Any]:
    return {
        "metric": comparison.metric,
        "slices": [
            {"field": s.field, "value": s.value, "n": s.n, "best": s.best, "pool": list(s.pool),
             "runs": [{"run": e.run, "score": round(e.score, 6), "best_minus_run": round(e.difference, 6),
                       "ci": [round(e.low, 6), round(e.high, 6)], "tied": e.tied} for e in s.entries]}
            for s in comparison.slices
        ],
        "unique_correct": comparison.unique,
    }
