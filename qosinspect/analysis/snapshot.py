"""Where a running analysis stands: what a live view (``qosinspect watch``) reads while events
still come.

The :class:`~.correlate.Correlator` answers through :meth:`~.correlate.Correlator.snapshot`
(counters of everything finished so far, and the handshakes still open, by QoS) and
:meth:`~.correlate.Correlator.open_handshakes` (the open handshakes published before a time:
the stalled ones), and tells its listeners of each anomaly, reconnection and finished exchange
as it is found. A live view thus never reads the correlator's stores or trackers by name, and
those are free to fold and release what is finished (:mod:`.aggregate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = ["OpenHandshake", "Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Figures of a running analysis.

    ``per_qos``: one dict per QoS level with the report's counters (:mod:`.metrics`) of the
    exchanges finished so far (latencies are left to the live view's own sketches: None here);
    ``open_by_qos``: handshakes still open; ``brokers`` the server endpoints seen (as the
    report names them) and, in their order, ``per_broker`` the same two of each broker; the
    rest counts what was seen so far. ``clients`` (when asked for): one row per session
    followed (not a released one), in the order they were first seen, ``(session code, client
    id or session key, exchanges the client sent,
    exchanges it was sent, QoS 1 open, QoS 2 open, MQTT-level re-sends on its exchanges)``; the
    exchanges are counted as they start (every QoS, a re-send is not a new one) and the
    re-sends as they are seen, so a row only grows.
    """

    per_qos: list[dict[str, Any]]
    open_by_qos: dict[int, int]
    brokers: list[str]
    per_broker: list[tuple[list[dict[str, Any]], dict[int, int]]]
    connections_open: int
    connections_seen: int
    tcp_retransmissions: int
    anomalies: int
    reconnects: int
    events: int
    clients: list[tuple[int, str, int, int, int, int, int]] = field(default_factory=list)


class OpenHandshake(NamedTuple):
    """A QoS 1/2 exchange still waiting for an acknowledgement."""

    ex_id: int
    session: str
    client_id: str | None
    conn_id: int
    direction: str
    qos: int
    packet_id: int
    last_step: str
    t_publish: int
