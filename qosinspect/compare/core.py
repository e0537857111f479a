"""``compare(A, B)``: the QoS behaviour of two sides (captures, datasets, or tag slices of a
dataset) side by side, with a verdict.

Per QoS, direction and step (QoS 1: puback and total; QoS 2: pubrec, pubrel, pubcomp and
total; c2b: a client publishing to the broker, b2c: the broker delivering to a subscriber,
apart because their acknowledgements come from different peers), the latency percentiles of
both sides with bootstrap intervals and a Mann-Whitney U test; per QoS,
the completion, re-send, duplicate and loss rates with Wilson intervals, and the reconnection
rate; the anomaly kinds seen on one side only.

The verdict rule, in one place (:meth:`Thresholds.latency_verdict`): a step is ``slower``
(``faster``) when the test says the distributions differ (p below ``alpha``) *and* the median
moved by at least ``relative`` of A's *and* by at least ``min_ms``; both effect sizes are
needed because with thousands of exchanges a test finds differences far too small to matter
(scheduling noise on a shared machine). A rate is ``worse``/``better`` when the two Wilson
intervals do not overlap. The comparison is a ``regression`` when anything is slower or
worse, an ``improvement`` when something is faster or better and nothing is worse, else
``no significant difference``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .stats import PERCENTILES, Proportion, proportion, quantiles, two_sample_p

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DIRECTIONS", "STEPS", "Comparison", "Side", "Thresholds", "compare",
           "latency_samples", "load_side"]

#: The steps compared per QoS (columns ``latency_<step>`` of the exchanges table).
STEPS = {1: ("puback", "total"), 2: ("pubrec", "pubrel", "pubcomp", "total")}
#: The rates compared per QoS: name -> (summary count or exchange flag, denominator).
RATES = ("completion", "resend", "dup", "loss")


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its exchanges, its per-QoS counts, its anomaly kinds."""

    label: str
    exchanges: pd.DataFrame
    summary: pd.DataFrame
    anomaly_kinds: frozenset[str]
    reconnects: int
    connections: int


def _tag_filter(df: pd.DataFrame, tags: Mapping[str, str], label: str) -> pd.DataFrame:
    from ..dataset.layout import TAG_PREFIX

    for name, value in tags.items():
        col = TAG_PREFIX + name
        if col not in df.columns:
            if len(df) == 0:
                return df
            raise ValueError(f"{label}: no tag {name!r} in the dataset")
        df = df[df[col] == value]
    return df


def load_side(spec: str | os.PathLike[str], tags: Mapping[str, str] | None = None, *,
              ports: tuple[int, ...] = (1883,)) -> Side:
    """A capture (analysed now) or a dataset folder (its captures with ``tags``)."""
    import pandas as pd

    label = os.fspath(spec) + "".join(f" {k}={v}" for k, v in (tags or {}).items())
    if Path(spec).is_dir():
        from ..dataset import open_dataset

        ds = open_dataset(spec)
        tables = {t: _tag_filter(ds[t], tags or {}, label)
                  for t in ("exchanges", "summary", "anomalies", "reconnects", "connections")}
        if len(tables["summary"]) == 0:
            raise ValueError(f"{label}: no capture of the dataset has these tags")
        summary = tables["summary"].drop(
            columns=[c for c in tables["summary"].columns
                     if not pd.api.types.is_numeric_dtype(tables["summary"][c])])
        summary = summary.groupby("qos").sum()
    else:
        if tags:
            raise ValueError(f"{spec}: tags select captures of a dataset, not of a capture")
        from ..analysis.api import analyze_capture
        from ..analysis.options import AnalysisOptions

        a = analyze_capture(spec, ports=ports, options=AnalysisOptions(packets=False))
        tables = {"exchanges": a.exchanges, "anomalies": a.anomalies,
                  "reconnects": a.reconnects, "connections": a.connections}
        summary = a.summary()
    kinds = frozenset(str(k) for k in tables["anomalies"].get("kind", pd.Series()).dropna())
    return Side(label, tables["exchanges"], summary, kinds, len(tables["reconnects"]),
                len(tables["connections"]))


@dataclass(frozen=True)
class Thresholds:
    """When a difference counts (see the module docstring)."""

    alpha: float = 0.01
    relative: float = 0.20
    min_ms: float = 1.0

    def latency_verdict(self, a50: float, b50: float, p: float) -> str:
        if not (p < self.alpha) or np.isnan(a50) or np.isnan(b50):
            return "same"
        moved = b50 - a50
        if abs(moved) < self.min_ms or abs(moved) < self.relative * abs(a50):
            return "same"
        return "slower" if moved > 0 else "faster"


@dataclass
class Comparison:
    """The rows of a comparison and its verdict (:meth:`document` for JSON)."""

    a: str
    b: str
    thresholds: Thresholds
    latency: list[dict[str, Any]] = field(default_factory=list)
    rates: list[dict[str, Any]] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        marks = {r["verdict"] for r in self.latency} | {r["verdict"] for r in self.rates}
        if marks & {"slower", "worse"}:
            return "regression"
        if marks & {"faster", "better"}:
            return "improvement"
        return "no significant difference"

    def latency_rows(self, qos: int, step: str) -> list[dict[str, Any]]:
        """The rows of ``qos`` and ``step``, one per direction."""
        return [r for r in self.latency if r["qos"] == qos and r["step"] == step]

    def rate_row(self, qos: int | str, metric: str) -> dict[str, Any] | None:
        return next((r for r in self.rates if r["qos"] == qos and r["metric"] == metric), None)

    def document(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "verdict": self.verdict,
                "thresholds": {"alpha": self.thresholds.alpha,
                               "relative": self.thresholds.relative,
                               "min_ms": self.thresholds.min_ms},
                "latency_ms": self.latency, "rates": self.rates,
                "anomalies_only_in_a": self.only_a, "anomalies_only_in_b": self.only_b}


#: The directions of an exchange: c2b (a client publishes), b2c (the broker delivers).
DIRECTIONS = ("c2b", "b2c")


def latency_samples(ex: pd.DataFrame, qos: int, direction: str, step: str) -> np.ndarray:
    """The latencies (ms) of one QoS, direction and step of an exchanges table: what the
    percentiles, the test and the plot of a comparison are made of."""
    col = f"latency_{step}"
    if col not in ex.columns or len(ex) == 0:
        return np.empty(0)
    s = ex.loc[(ex["qos"] == qos) & (ex["direction"] == direction), col].dropna()
    return np.asarray(s.dt.total_seconds().to_numpy(dtype=np.float64) * 1e3)


def _latency_row(a: Side, b: Side, qos: int, direction: str, step: str,
                 th: Thresholds) -> dict[str, Any]:
    xa = latency_samples(a.exchanges, qos, direction, step)
    xb = latency_samples(b.exchanges, qos, direction, step)
    qa, qb = quantiles(xa), quantiles(xb)
    p = two_sample_p(xa, xb)
    row: dict[str, Any] = {"qos": qos, "direction": direction, "step": step, "n_a": qa.n,
                           "n_b": qb.n}
    for pc in PERCENTILES:
        for side, q in (("a", qa), ("b", qb)):
            row[f"p{pc}_{side}"] = _num(q.values[pc])
            row[f"p{pc}_{side}_ci"] = [_num(q.low[pc]), _num(q.high[pc])]
        va, vb = qa.values[pc], qb.values[pc]
        row[f"p{pc}_change"] = _num(vb / va - 1) if va else None  # relative; NaN -> None
    row["p_value"] = _num(p)
    row["verdict"] = th.latency_verdict(qa.values[50], qb.values[50], p)
    return row


def _num(v: float) -> float | None:
    """JSON-ready: NaN as None, six significant decimals."""
    return None if v != v else round(float(v), 6)


def _counts(side: Side, qos: int, metric: str) -> tuple[int, int]:
    s = side.summary
    if qos not in s.index:
        return 0, 0
    row = {str(k): v for k, v in s.loc[qos].to_dict().items()}
    n = int(row["publishes"])
    if metric == "completion":
        return int(row["completed"]), n
    if metric == "dup":
        return int(row["duplicates_delivered"]), n
    if metric == "loss":
        return int(row["not_delivered"]), n
    ex = side.exchanges
    mine = ex[ex["qos"] == qos] if len(ex) else ex
    return int((mine["retransmissions"] > 0).sum()) if len(mine) else 0, len(mine)


def _rate_row(pa_: Proportion, pb: Proportion, qos: int | str, metric: str) -> dict[str, Any]:
    disjoint = pa_.n and pb.n and (pb.low > pa_.high or pb.high < pa_.low)
    worse_up = metric != "completion"  # more re-sends, dups, losses, reconnects is worse
    verdict = "same"
    if disjoint:
        up = pb.rate > pa_.rate
        verdict = "worse" if up == worse_up else "better"
    return {"qos": qos, "metric": metric, "k_a": pa_.k, "n_a": pa_.n, "rate_a": _num(pa_.rate),
            "rate_a_ci": [_num(pa_.low), _num(pa_.high)], "k_b": pb.k, "n_b": pb.n,
            "rate_b": _num(pb.rate), "rate_b_ci": [_num(pb.low), _num(pb.high)],
            "change_pp": _num(100 * (pb.rate - pa_.rate)), "verdict": verdict}


def compare(a: Side, b: Side, thresholds: Thresholds | None = None) -> Comparison:
    """Compare side ``b`` against side ``a`` (the reference)."""
    th = thresholds or Thresholds()
    out = Comparison(a.label, b.label, th)
    for qos, steps in STEPS.items():
        for direction in DIRECTIONS:
            for step in steps:
                out.latency.append(_latency_row(a, b, qos, direction, step, th))
    for qos in (0, 1, 2):
        for metric in RATES:
            if qos == 0 and metric in ("completion", "resend"):
                continue  # QoS 0 has no handshake to complete or resend
            out.rates.append(_rate_row(proportion(*_counts(a, qos, metric)),
                                       proportion(*_counts(b, qos, metric)), qos, metric))
    out.rates.append(_rate_row(proportion(a.reconnects, a.connections),
                               proportion(b.reconnects, b.connections), "all", "reconnect"))
    out.only_a = sorted(a.anomaly_kinds - b.anomaly_kinds)
    out.only_b = sorted(b.anomaly_kinds - a.anomaly_kinds)
    return out
