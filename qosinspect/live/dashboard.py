"""The terminal dashboard of ``qosinspect watch`` (rich), drawn from the same JSON objects as
``--format jsonl``: one source of figures, two views.

:class:`Dashboard` keeps the last snapshot and the newest notable events (a bounded list) and
:meth:`Dashboard.render` lays them out: per QoS the messages, completed and open handshakes,
re-sends, DUPs and p50/p99 per step over the last 10 s and since start; then connections,
reconnections with client, gap, session present and what was redelivered, the newest anomalies
and stalls, and the capture's drops. It draws; refreshing (about once a second) is the caller's
(:func:`live_display`, a :class:`rich.live.Live`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["NEWEST", "Dashboard", "live_display"]

#: Notable events kept for the screen.
NEWEST = 8


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


class Dashboard:
    """Feed it every JSON object of the run (:meth:`update`); :meth:`render` draws it."""

    def __init__(self, title: str = "qosinspect watch") -> None:
        self.title = title
        self.snapshot: dict[str, Any] | None = None
        self.start: dict[str, Any] | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=NEWEST)

    def update(self, item: dict[str, Any]) -> None:
        kind = item.get("type")
        if kind == "snapshot":
            self.snapshot = item
        elif kind == "start":
            self.start = item
        else:
            self.events.append(item)

    def render(self) -> RenderableType:
        parts: list[RenderableType] = []
        head = self.title
        if self.start is not None:
            head += f": {self.start.get('source')}"
            if self.start.get("filter"):
                head += f" ({self.start.get('tool')} '{self.start['filter']}')"
        snap = self.snapshot
        if snap is not None:
            drops = snap.get("drops")
            head += (f"  |  {snap['ts'] or 'no packet yet'}  |  connections open "
                     f"{snap['connections']['open']} "
                     f"(seen {snap['connections']['seen']})  |  reconnections "
                     f"{snap['reconnections']}  |  anomalies {snap['anomalies']}  |  stalls "
                     f"{snap['stalls']}  |  drops {'?' if drops is None else drops}")
        parts.append(Text(head, style="bold"))
        if snap is not None:
            parts.append(self._qos_table(snap))
        if self.events:
            parts.append(self._events_table())
        return Group(*parts)

    @staticmethod
    def _qos_table(snap: dict[str, Any]) -> Table:
        t = Table(title="per QoS", title_justify="left")
        for col in ("QoS", "messages", "completed", "open", "re-sends", "DUP", "dup delivered",
                    "not delivered", "step", "p50 10s", "p99 10s", "p50 all", "p99 all"):
            t.add_column(col, justify="right" if col != "step" else "left")
        for row in snap["per_qos"]:
            steps = list(row["latency_ms"].items()) or [("-", None)]
            for i, (step, lat) in enumerate(steps):
                first = [str(row["qos"]), str(row["messages"]), str(row["completed"]),
                         str(row["open"]), str(row["retransmissions"]),
                         str(row["dup_flagged"]), str(row["duplicates_delivered"]),
                         str(row["not_delivered"])] if i == 0 else [""] * 8
                if lat is None:
                    t.add_row(*first, step, "-", "-", "-", "-")
                    continue
                last = next(v for k, v in lat.items() if k.startswith("last_"))
                t.add_row(*first, step, _ms(last["p50"]), _ms(last["p99"]),
                          _ms(lat["since_start"]["p50"]), _ms(lat["since_start"]["p99"]))
        return t

    def _events_table(self) -> Table:
        t = Table(title="newest events", title_justify="left")
        for col in ("time", "event", "what"):
            t.add_column(col)
        for e in reversed(list(self.events)):    # a copy: the refresh thread draws it
            t.add_row(e.get("ts", ""), e["type"], _describe(e))
        return t


def _describe(e: dict[str, Any]) -> str:
    if e["type"] == "reconnection":
        r = e["redelivered"]
        return (f"{e['client_id']}: gap {_ms(e['gap_ms'])} ms after {e['cause']}, session "
                f"present {e['session_present']}, redelivered {r['publish']} PUBLISH "
                f"{r['pubrel']} PUBREL, resumed {r['resumed']}, abandoned {r['abandoned']}")
    if e["type"] == "stall":
        return (f"{e['client_id']} {e['direction']} QoS {e['qos']} id {e['packet_id']} open "
                f"{_ms(e['open_ms'])} ms after {e['last_step']}")
    if e["type"] == "anomaly":
        return f"{e['kind']} (conn {e['conn_id']}, frame {e['frame']}): {e['detail']}"
    return str({k: v for k, v in e.items() if k not in ("type", "ts", "ts_ns")})


def live_display(dashboard: Dashboard, console: Console | None = None) -> Live:
    """A :class:`rich.live.Live` redrawing ``dashboard`` about once a second (use it as a
    context manager; call ``refresh`` after updates if you want them at once)."""
    return Live(get_renderable=dashboard.render, console=console, refresh_per_second=1,
                transient=False)
