"""Report plots (matplotlib, Agg backend): an error rate per slice value, with its 95% bootstrap interval; the
confidence's reliability diagram."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def slice_plot(slices: dict[str, dict[str, Any]], metric: str, label: str, path: Path, title: str) -> Path:
    """A bar per slice value of `metric` (e.g. 1 - exp_rate per length bucket), error bars from its `ci`."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    names = list(slices)
    values = [slices[name][metric] for name in names]
    lows = [slices[name]["ci"][metric][0] for name in names]
    highs = [slices[name]["ci"][metric][1] for name in names]
    errors = [[max(0.0, v - lo) for v, lo in zip(values, lows)], [max(0.0, hi - v) for v, hi in zip(values, highs)]]
    figure, axes = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 2), 3.0), dpi=100)
    axes.bar(range(len(names)), values, yerr=errors, capsize=3, color="#4c72b0")
    axes.set_xticks(range(len(names)), [f"{n}\n(n={slices[n]['n']})" for n in names], fontsize=8)
    axes.set_ylabel(label)
    axes.set_title(title, fontsize=10)
    axes.set_ylim(bottom=0)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def reliability_plot(bins: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Exact-match rate against mean confidence per confidence bin (`confidence.reliability_bins`, as dicts), the
    diagonal where a calibrated confidence lies, and each bin's count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    filled = [b for b in bins if b["n"]]
    figure, axes = plt.subplots(figsize=(4.0, 3.6), dpi=100)
    axes.plot([0, 1], [0, 1], color="#999999", linewidth=1, linestyle="--", label="calibrated")
    axes.bar([(b["low"] + b["high"]) / 2 for b in filled], [b["exact_rate"] for b in filled],
             width=[0.9 * (b["high"] - b["low"]) for b in filled], color="#4c72b0", alpha=0.8, label="exact rate")
    axes.plot([b["mean_confidence"] for b in filled], [b["exact_rate"] for b in filled], "o", color="#dd8452",
              markersize=4, label="(mean confidence, exact rate)")
    for b in filled:
        axes.annotate(str(b["n"]), ((b["low"] + b["high"]) / 2, b["exact_rate"]), ha="center", va="bottom", fontsize=7)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.08)
    axes.set_xlabel("confidence")
    axes.set_ylabel("exact match")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
