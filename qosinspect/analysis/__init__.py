"""QoS analysis: boundary events in; connections, sessions, exchanges, reconnections,
deliveries and anomalies out, as records (:mod:`.correlate`) and DataFrames (:mod:`.tables`).

Modules: :mod:`.records` (record types, packed row stores), :mod:`.state` (what the correlator
keeps open), :mod:`.exchanges` (the QoS exchange rules), :mod:`.sessions` (connections, sessions,
reconnections), :mod:`.correlate` (the streaming correlator that drives them),
:mod:`.deliveries` (end to end through the broker), :mod:`.aggregate` (what the report prints,
folded from finished exchanges: counters and latency series, exact then sketched),
:mod:`.snapshot` (where a running analysis stands, for a live view),
:mod:`.tables` (DataFrames with declared dtypes), :mod:`.metrics` (per-QoS figures) and
:mod:`.api` (``analyze``). ``analyze`` and friends load lazily: importing this package costs
nothing until they are used (the row stores are standard library only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Analysis, analyze, analyze_capture

__all__ = ["Analysis", "analyze", "analyze_capture"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
