"""``qosinspect compare A B``: two captures, datasets or dataset slices compared per QoS.

- :mod:`.stats`: percentiles with bootstrap intervals, the two-sample test, Wilson intervals.
- :mod:`.core`: the sides, the comparison and its verdict rule.
- :mod:`.gate`: ``--fail-on`` expressions.
- :mod:`.render`: the terminal and markdown tables.
- :mod:`.plot`: the latency distributions of both sides as a figure (``--plot``).

It reads analyses and datasets (:mod:`qosinspect.analysis`, :mod:`qosinspect.dataset`) and
nothing reads it.
"""

from __future__ import annotations

from .core import Comparison, Side, Thresholds, compare, load_side
from .gate import FailOn, parse_fail_on

__all__ = ["Comparison", "FailOn", "Side", "Thresholds", "compare", "load_side",
           "parse_fail_on"]
