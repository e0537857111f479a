"""A comparison as a figure: per QoS, direction and step, the latency distributions of both
sides as empirical CDFs on a log scale, with each side's p50 and p99 and their bootstrap
intervals, and the step's verdict in its title.

Why CDFs rather than box plots or histograms: two CDFs on one axis show a shift of the whole
distribution, of its tail only, or of a few outliers at a glance, and they need no bin width;
the percentile lines are the numbers of the table (:meth:`~.core.Comparison.document`), drawn
from the same rows. Like :mod:`qosinspect.report.plots`, a new Figure not registered with
pyplot: nothing here changes matplotlib's global state.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .core import Comparison, Side, latency_samples

__all__ = ["MAX_POINTS", "comparison_figure", "ecdf", "save_comparison_figure"]

#: Points per CDF at most: a million exchanges draw as the same curve from this many quantiles.
MAX_POINTS = 2000
_COLORS = {"a": "#1f77b4", "b": "#ff7f0e"}
_VERDICT_COLORS = {"slower": "#d62728", "faster": "#2ca02c"}
_FLOOR_MS = 1e-3  # a log axis needs > 0: 1 us stands for anything faster


def ecdf(ms: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF of ``ms`` as (x, y), at most ``max_points`` steps (evenly spaced
    quantiles past that; the smallest and largest value are always in)."""
    x = np.sort(np.maximum(np.asarray(ms, dtype=np.float64), _FLOOR_MS))
    y = np.arange(1, x.size + 1) / max(x.size, 1)
    if x.size > max_points:
        keep = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(np.int64))
        x, y = x[keep], y[keep]
    return x, y


def _panel(ax: Axes, a: Side, b: Side, row: dict[str, object]) -> None:
    qos, direction, step = int(str(row["qos"])), str(row["direction"]), str(row["step"])
    for side, label in ((a, "a"), (b, "b")):
        ms = latency_samples(side.exchanges, qos, direction, step)
        color = _COLORS[label]
        if ms.size:
            x, y = ecdf(ms)
            ax.step(x, y, where="post", color=color, lw=1.4,
                    label=f"{label.upper()} (n={ms.size})")
        for pc, style in ((50, "--"), (99, ":")):
            value = row.get(f"p{pc}_{label}")
            if value is None:
                continue
            ax.axvline(max(float(str(value)), _FLOOR_MS), color=color, ls=style, lw=1)
            ci = row.get(f"p{pc}_{label}_ci")
            if isinstance(ci, list) and None not in ci:
                ax.axvspan(max(float(ci[0]), _FLOOR_MS), max(float(ci[1]), _FLOOR_MS),
                           color=color, alpha=0.12, lw=0)
    verdict = str(row["verdict"])
    ax.set_title(f"QoS {qos} {direction} {step}: {verdict}", fontsize=9,
                 color=_VERDICT_COLORS.get(verdict, "black"))
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def comparison_figure(a: Side, b: Side, result: Comparison) -> Figure:
    """One panel per QoS, direction and step that either side has latencies for (dashed:
    p50, dotted: p99, shaded: their 95 % bootstrap intervals)."""
    rows = [r for r in result.latency if r["n_a"] or r["n_b"]]
    cols = 2 if len(rows) > 1 else 1
    lines = max(1, math.ceil(len(rows) / cols))
    fig = Figure(figsize=(5.5 * cols, 2.8 * lines + 0.9), layout="constrained")
    fig.suptitle(f"B: {result.b}\nagainst A: {result.a}\nverdict: {result.verdict}",
                 fontsize=9)
    if not rows:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no QoS 1 or QoS 2 latency on either side", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    for i, row in enumerate(rows):
        ax = fig.add_subplot(lines, cols, i + 1)
        _panel(ax, a, b, row)
        ax.set_xlabel("latency (ms, log scale)", fontsize=8)
        ax.set_ylabel("fraction of exchanges", fontsize=8)
    return fig


def save_comparison_figure(a: Side, b: Side, result: Comparison, path: str | Path,
                           dpi: int = 110) -> Path:
    """Write the figure to ``path`` (its suffix picks the format: png, svg, pdf)."""
    out = Path(path)
    comparison_figure(a, b, result).savefig(out, dpi=dpi)
    return out
