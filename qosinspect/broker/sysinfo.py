"""The ``$SYS`` tree: what the broker publishes about itself, and its QoS view.

Every ``BrokerConfig.sys_interval`` seconds (0: never) the broker publishes, as retained QoS 0
messages that go through the same routing and read ACL as any other (so a client reads them
only where the ACL file grants ``$SYS/...``; a filter starting with a wildcard never matches
them [MQTT-4.7.2-1]), the topics mosquitto publishes under the same names:

``$SYS/broker/version``, ``uptime`` ("N seconds"), ``clients/connected``, ``clients/total``
(connected plus offline sessions), ``clients/disconnected``, ``clients/maximum`` (most connected
at once), ``messages/received``, ``messages/sent``, ``load/messages/{received,sent}/{1min,5min,
15min}`` and ``load/connections/...`` (per minute, exponentially smoothed as mosquitto does),
``subscriptions/count``, ``retained messages/count`` and ``heap/current`` (the process's resident
memory in bytes, which the server reads from the OS).

And a view only this broker has, computed from its own QoS handshakes towards subscribers:

- ``$SYS/broker/qos/{1,2}/inflight``: flows sent and not yet acknowledged, now;
- ``$SYS/broker/qos/{1,2}/handshake_ms/p50`` and ``.../p99``: from the first send of a PUBLISH
  to the PUBACK (QoS 1) or PUBCOMP (QoS 2) that ends it, over every flow since the start, as a
  DDSketch (1 % relative accuracy, bounded memory whatever the traffic). Adding to a DDSketch
  costs about 1 us, as much as the rest of a QoS 1 message's path through the broker, so a
  completed flow only appends its duration to an array; the array is folded into the sketch
  when it holds :data:`FOLD_AT` durations and when the quantiles are read (each ``$SYS``
  interval), equal durations with one weighted ``add`` (the acks of one socket read share a
  timestamp, and so do the PUBLISH sent together: under load about 1 in 20 is distinct);
- ``$SYS/broker/qos/{1,2}/redelivered``: PUBLISH packets sent again with DUP on a resumed
  session [MQTT-4.4.0-1].

Clients may not publish under ``$SYS/`` (refused like an ACL denial), so nobody can fake it.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from array import array
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ddsketch import DDSketch

from ..mqtt.qos import Completed

if TYPE_CHECKING:
    from .core import EngineState

__all__ = ["FOLD_AT", "SYS_PREFIX", "QosView", "SysTree", "heap_bytes", "package_version"]

SYS_PREFIX = "$SYS/"
#: Handshake durations kept per QoS before they are folded into its sketch. Small, because a
#: fold runs on the event loop: at most about 1 ms (1,024 adds when no two durations are equal,
#: as at a low rate) holds up no client, where 65,536 held everyone up for 77 ms.
FOLD_AT = 1024
_NS = 1_000_000_000
_PERIODS = (("1min", 60.0), ("5min", 300.0), ("15min", 900.0))


class QosView:
    """Handshake durations of the broker's outbound QoS 1 and 2 flows, as quantile sketches
    (fed in batches: see the module docstring)."""

    __slots__ = ("_pending", "sketches")

    def __init__(self) -> None:
        self.sketches = {1: DDSketch(relative_accuracy=0.01), 2: DDSketch(relative_accuracy=0.01)}
        #: Durations (ns) not yet in the sketch, per QoS.
        self._pending = {1: array("q"), 2: array("q")}

    def completed(self, done: Iterable[Completed]) -> None:
        """Record flows that ended (refused ones too: the handshake took that long)."""
        pending = self._pending
        for flow in done:
            qos = flow.publish.qos
            durations = pending[qos]                # a sender's flows are QoS 1 or 2
            durations.append(flow.t_done_ns - flow.t_first_ns)
            if len(durations) >= FOLD_AT:
                self._fold(qos)

    def _fold(self, qos: int) -> None:
        durations = self._pending[qos]
        if not durations:
            return
        add = self.sketches[qos].add
        for ns, n in Counter(durations).items():
            add(max(0.0, ns / 1e6), n)          # the wall clock may step back: 0, not < 0
        del durations[:]

    def quantile_ms(self, qos: int, q: float) -> float | None:
        """The ``q`` quantile of the QoS ``qos`` handshakes in ms (None before the first)."""
        self._fold(qos)
        sketch = self.sketches[qos]
        return sketch.get_quantile_value(q) if sketch.count else None


class SysTree:
    """Computes the ``$SYS`` topics from the engine's state at each interval."""

    def __init__(self, version: str, started_ns: int) -> None:
        self.version = version
        self.started_ns = started_ns
        self.max_connected = 0
        self._last_ns = started_ns
        self._last: dict[str, int] = {"received": 0, "sent": 0, "connections": 0}
        self._load: dict[str, dict[str, float]] = {k: {p: 0.0 for p, _ in _PERIODS}
                                                   for k in self._last}

    def values(self, engine: EngineState, now: int, heap_bytes: int | None) -> dict[str, str]:
        """Topic (without the ``$SYS/broker/`` prefix) -> payload."""
        stats = engine.stats
        connected = sum(1 for c in engine.conns.values() if c.connected and not c.closed)
        self.max_connected = max(self.max_connected, connected)
        total = len(engine.sessions)
        counts = {"received": stats.messages_received, "sent": stats.messages_sent,
                  "connections": stats.connects}
        self._smooth(counts, now)
        out = {
            "version": f"qosinspect {self.version}",
            "uptime": f"{(now - self.started_ns) // _NS} seconds",
            "clients/connected": str(connected),
            "clients/total": str(max(total, connected)),
            "clients/disconnected": str(max(0, total - connected)),
            "clients/maximum": str(self.max_connected),
            "messages/received": str(stats.messages_received),
            "messages/sent": str(stats.messages_sent),
            "subscriptions/count": str(sum(len(s.subs) for s in engine.sessions.values())),
            "retained messages/count": str(len(engine.retained)),
        }
        if heap_bytes is not None:
            out["heap/current"] = str(heap_bytes)
        for kind, loads in self._load.items():
            name = f"messages/{kind}" if kind != "connections" else kind
            for period, value in loads.items():
                out[f"load/{name}/{period}"] = f"{value:.2f}"
        inflight = {1: 0, 2: 0}
        for sess in engine.sessions.values():
            for flight in sess.state.sender.in_flight.values():
                inflight[flight.publish.qos] = inflight.get(flight.publish.qos, 0) + 1
        for qos in (1, 2):
            out[f"qos/{qos}/inflight"] = str(inflight[qos])
            out[f"qos/{qos}/redelivered"] = str(stats.redelivered[qos])
            for name, q in (("p50", 0.5), ("p99", 0.99)):
                ms = engine.qos_view.quantile_ms(qos, q)
                if ms is not None:
                    out[f"qos/{qos}/handshake_ms/{name}"] = f"{ms:.3f}"
        return out

    def _smooth(self, counts: dict[str, int], now: int) -> None:
        """Per-minute rates smoothed over 1, 5 and 15 minutes (mosquitto's load averages)."""
        interval = (now - self._last_ns) / _NS
        if interval <= 0:
            return
        for kind, count in counts.items():
            rate = (count - self._last[kind]) * 60.0 / interval
            for period, seconds in _PERIODS:
                keep = math.exp(-interval / seconds)
                old = self._load[kind][period]
                self._load[kind][period] = keep * old + (1.0 - keep) * rate
            self._last[kind] = count
        self._last_ns = now


def heap_bytes() -> int | None:
    """Resident memory of this process (Linux ``/proc``; None elsewhere): heap/current."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def package_version() -> str:
    """The installed qosinspect's version (the package is not imported: layers)."""
    try:
        return importlib.metadata.version("qosinspect")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
