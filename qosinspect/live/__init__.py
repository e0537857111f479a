"""Live QoS: ``qosinspect watch`` (sources that stream events, the incremental core, outputs).

It sits at the level of :mod:`qosinspect.report`: it may import the analysis and the report,
never the reverse. :mod:`.core` is pure (events and a time in, JSON-ready dicts out);
:mod:`.sources` and :mod:`.run` are the drivers (subprocesses, pipes, signals, the clock).
"""

from __future__ import annotations

__all__: list[str] = []
