"""Report plots (matplotlib, Agg backend): an error rate per slice value, with its 95% bootstrap interval."""

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
