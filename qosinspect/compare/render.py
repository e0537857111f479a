"""A comparison as text: the latency and rate tables (``table`` or ``markdown``), then the
anomalies of one side only and the verdict. JSON is :meth:`~.core.Comparison.document`."""

from __future__ import annotations

from typing import Any

from ..report.output import format_table
from .core import Comparison

__all__ = ["render"]


def _ci(v: Any, ci: list[Any], scale: float = 1.0, digits: int = 3) -> str:
    if v is None:
        return "-"
    lo, hi = ci
    if lo is None:
        return f"{v * scale:.{digits}f}"
    return f"{v * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:+.1f}%"


def render(c: Comparison, fmt: str = "table") -> str:
    """The comparison in ``table`` or ``markdown``."""
    lat = [[r["qos"], r["direction"], r["step"], r["n_a"], r["n_b"],
            _ci(r["p50_a"], r["p50_a_ci"]), _ci(r["p50_b"], r["p50_b_ci"]),
            _ci(r["p99_a"], r["p99_a_ci"]), _ci(r["p99_b"], r["p99_b_ci"]),
            _pct(r["p50_change"]), _pct(r["p99_change"]),
            "-" if r["p_value"] is None else f"{r['p_value']:.2g}", r["verdict"]]
           for r in c.latency]
    rates = [[r["qos"], r["metric"], f"{r['k_a']}/{r['n_a']}",
              _ci(r["rate_a"], r["rate_a_ci"], 100, 2), f"{r['k_b']}/{r['n_b']}",
              _ci(r["rate_b"], r["rate_b_ci"], 100, 2),
              "-" if r["change_pp"] is None else f"{r['change_pp']:+.2f}", r["verdict"]]
             for r in c.rates]
    out = [f"A: {c.a}", f"B: {c.b}", "",
           "latency (ms; 95% bootstrap intervals; p: Mann-Whitney U)",
           format_table(["QoS", "dir", "step", "n A", "n B", "p50 A", "p50 B", "p99 A",
                         "p99 B", "p50 B/A", "p99 B/A", "p", "verdict"], lat, fmt,
                        align="lllrrllllrrrl"),
           "", "rates (%; 95% Wilson intervals)",
           format_table(["QoS", "rate", "A", "A %", "B", "B %", "B-A (pp)", "verdict"], rates,
                        fmt, align="llrlrlrl"), ""]
    out.append("anomaly kinds only in A: " + (", ".join(c.only_a) or "none"))
    out.append("anomaly kinds only in B: " + (", ".join(c.only_b) or "none"))
    th = c.thresholds
    out.append(f"verdict: {c.verdict} (a step counts when p < {th.alpha:g} and its median moves "
               f"by {100 * th.relative:g}% and {th.min_ms:g} ms; a rate when the intervals are "
               "apart)")
    return "\n".join(out)
