"""``--fail-on`` expressions: thresholds that make ``compare`` a gate for CI.

An expression is ``METRIC.qosN OP VALUE``:

- ``p50``/``p90``/``p99`` ``.qos1``/``.qos2``: the total latency of that QoS (first PUBLISH to
  final acknowledgement); ``VALUE`` in ms is B minus A, ``+20%`` is B relative to A; it is
  tested in each direction (publishing, delivering) and holds if it holds in either;
- ``completion``/``resend``/``dup``/``loss`` ``.qos0``..``.qos2`` and ``reconnect.all``: the
  rate of B minus A's in percentage points (``loss.qos0 > 0``: B lost more QoS 0 messages),
  or relative with ``%``.

``OP`` is one of ``>``, ``>=``, ``<``, ``<=``. A metric without data on either side never
fires (it is reported as such).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .core import Comparison

__all__ = ["FailOn", "parse_fail_on"]

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
_EXPR = re.compile(r"\s*(p50|p90|p99|completion|resend|dup|loss|reconnect)\.(qos[012]|all)\s*"
                   r"(>=|<=|>|<)\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*\Z")


@dataclass(frozen=True)
class FailOn:
    """One parsed expression."""

    text: str
    metric: str
    qos: int | str
    op: str
    value: float
    relative: bool

    def measures(self, c: Comparison) -> list[float]:
        """The quantities the expression tests, from ``c`` (one per direction for latency;
        none where a side has no data)."""
        pairs: list[tuple[Any, Any]]
        if self.metric.startswith("p"):
            pairs = [(r[f"{self.metric}_a"], r[f"{self.metric}_b"])
                     for r in c.latency_rows(int(self.qos), "total")]
            scale = 1.0
        else:
            r = c.rate_row(self.qos, self.metric)
            pairs = [] if r is None else [(r["rate_a"], r["rate_b"])]
            scale = 100.0  # percentage points
        out = []
        for a, b in pairs:
            if a is None or b is None:
                continue
            if self.relative:
                if a != 0:
                    out.append(100 * (b / a - 1))
            else:
                out.append(scale * (b - a))
        return out

    def fires(self, c: Comparison) -> bool:
        return any(_OPS[self.op](m, self.value) for m in self.measures(c))


def parse_fail_on(text: str) -> FailOn:
    """An expression (see the module docstring); ValueError says what is wrong."""
    m = _EXPR.match(text)
    if m is None:
        raise ValueError(f"{text!r}: expected METRIC.qosN OP VALUE[%], e.g. 'p99.qos1 > +20%' "
                         "or 'loss.qos0 > 0' (METRIC: p50 p90 p99 completion resend dup loss, "
                         "or reconnect.all)")
    metric, where, op, value, pct = m.groups()
    if metric.startswith("p") and where not in ("qos1", "qos2"):
        raise ValueError(f"{text!r}: latency is compared for qos1 and qos2")
    if (metric == "reconnect") != (where == "all"):
        raise ValueError(f"{text!r}: reconnect goes with .all, the others with .qosN")
    qos: int | str = where if where == "all" else int(where[3])
    return FailOn(text.strip(), metric, qos, op, float(value), bool(pct))
