"""Replay: publish again, to a broker of your choice, the messages a capture's clients sent.

Reads the capture with the project's decoder, takes every PUBLISH a client sent (c2b), and sends
the same topic, payload, QoS and retain flag (and, between MQTT 5 peers, the message properties)
from one client per original client id, keeping the original timing scaled by ``speed``. Then
it says what the target broker acknowledged: per client and QoS, how many were completed, refused
(with the reason codes) or left without an answer.

Rules, and why:

- One message per application message: a PUBLISH resent by the same client with the same packet
  id (DUP=1, or silently, while that id was in flight) is the same message, sent once. Replaying
  it twice would invent a duplicate the original client never meant.
- Client ids: by default ``replay-<original id>`` with clean sessions, so a replay never takes
  over a live session of the original client; ``same_ids`` uses the original ids with their
  session settings (clean start, keep alive, session expiry) as seen in CONNECT.
- The MQTT version of each client is the one its original connection used (or ``version``).
- A topic alias is replaced by its topic (the decoder resolved it); Subscription Identifiers
  are dropped (a broker sets them); other MQTT 5 properties are kept.
- Timing: message ``i`` goes out at ``(t_i - t_0) / speed`` after the start; ``speed`` 0 sends
  as fast as the clients can, which keeps the order of each client's messages but not the
  order between clients (the broker reads their connections as they become ready).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..capture.decoder import iter_events
from ..client import Client
from ..client.errors import ClientError
from ..client.messages import PublishResult
from ..client.reconnect import Backoff
from ..errors import QosinspectError
from ..events import MqttPacketEvent
from ..mqtt.enums import Direction
from ..mqtt.packets import Connect, PubAck, PubComp, Publish, PubRec
from ..mqtt.properties import NO_PROPERTIES, PropertyId
from ..mqtt.topics import topic_matches

__all__ = ["ReplayClient", "ReplayMessage", "ReplayPlan", "format_replay", "load_plan", "replay"]

NS = 1_000_000_000
_STRIP = (int(PropertyId.TOPIC_ALIAS), int(PropertyId.SUBSCRIPTION_IDENTIFIER))


@dataclass(frozen=True, slots=True)
class ReplayMessage:
    ts_ns: int
    client: str
    publish: Publish
    version: int


@dataclass
class ReplayClient:
    """An original client as its CONNECT showed it (defaults when the capture missed it)."""

    client_id: str
    version: int = 4
    clean_start: bool = True
    keep_alive: int = 60
    session_expiry: int | None = None
    seen_connect: bool = False


@dataclass
class ReplayPlan:
    messages: list[ReplayMessage] = field(default_factory=list)
    clients: dict[str, ReplayClient] = field(default_factory=dict)
    resends_skipped: int = 0
    filtered_out: int = 0


def load_plan(capture: str | Path, *, clients: tuple[str, ...] = (),
              topics: tuple[str, ...] = (), ports: tuple[int, ...] = (1883,),
              version: int | None = None) -> ReplayPlan:
    """The messages to replay from ``capture``, filtered by client ids and topic filters."""
    plan = ReplayPlan()
    by_conn: dict[int, ReplayClient] = {}
    in_flight: dict[tuple[str, int], Publish] = {}
    for event in iter_events(str(capture), ports=ports):
        if type(event) is not MqttPacketEvent or event.direction is not Direction.C2B:
            if type(event) is MqttPacketEvent and event.direction is Direction.B2C:
                _settle(event, by_conn, in_flight)
            continue
        packet = event.packet
        conn = event.conn.conn_id
        if isinstance(packet, Connect):
            info = ReplayClient(packet.client_id or f"conn{conn}",
                                version or packet.protocol_version, packet.clean_start,
                                packet.keep_alive,
                                packet.properties.session_expiry_interval
                                if packet.protocol_version == 5 else None, True)
            by_conn[conn] = info
            plan.clients.setdefault(info.client_id, info)
            continue
        if not isinstance(packet, Publish):
            _settle(event, by_conn, in_flight)
            continue
        known = by_conn.get(conn)
        if known is None:
            known = by_conn[conn] = ReplayClient(f"conn{conn}", version or event.version or 4)
            plan.clients.setdefault(known.client_id, known)
        info = known
        if packet.qos and packet.packet_id is not None:
            key = (info.client_id, packet.packet_id)
            if key in in_flight:          # resent while in flight: the same message
                plan.resends_skipped += 1
                continue
            in_flight[key] = packet
        if (clients and info.client_id not in clients) or (
                topics and not any(topic_matches(f, packet.topic) for f in topics)):
            plan.filtered_out += 1
            continue
        props = packet.properties
        for pid in _STRIP:
            props = props.without(pid) if props else props
        plan.messages.append(ReplayMessage(event.ts_ns, info.client_id,
                                           packet._replace(dup=False, packet_id=None,
                                                           properties=props), info.version))
    used = {m.client for m in plan.messages}
    plan.clients = {cid: c for cid, c in plan.clients.items() if cid in used}
    return plan


def _settle(event: MqttPacketEvent, by_conn: dict[int, ReplayClient],
            in_flight: dict[tuple[str, int], Publish]) -> None:
    """A final acknowledgement frees the packet id: a later PUBLISH with it is a new message."""
    packet = event.packet
    if event.direction is not Direction.B2C or not isinstance(packet, PubAck | PubRec | PubComp):
        return
    info = by_conn.get(event.conn.conn_id)
    if info is not None:
        in_flight.pop((info.client_id, packet.packet_id), None)


@dataclass
class _Tally:
    sent: Counter[int] = field(default_factory=Counter)
    completed: Counter[int] = field(default_factory=Counter)
    refused: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[int] = field(default_factory=Counter)
    not_sent: Counter[int] = field(default_factory=Counter)


async def replay(plan: ReplayPlan, host: str, port: int, *, speed: float = 1.0,
                 same_ids: bool = False, timeout: float = 10.0,
                 stop: asyncio.Event | None = None) -> dict[str, Any]:
    """Send ``plan`` to ``host:port``; returns what the broker acknowledged (JSON-ready)."""
    tallies = {cid: _Tally() for cid in plan.clients}
    clients: dict[str, Client] = {}
    pending: set[asyncio.Future[PublishResult]] = set()
    stop = stop or asyncio.Event()
    started = time.monotonic()
    try:
        for cid, info in plan.clients.items():
            client = Client(host, port, client_id=cid if same_ids else f"replay-{cid}",
                            version=info.version,
                            clean_start=info.clean_start if same_ids else True,
                            keep_alive=info.keep_alive if same_ids else 60,
                            session_expiry=(info.session_expiry if same_ids else None)
                            if info.version == 5 else None,
                            reconnect=Backoff(0.1, 1.0), max_queued=1_000_000)
            try:
                await client.connect()
            except (QosinspectError, OSError, TimeoutError) as exc:
                raise QosinspectError(f"replay client for {cid!r} could not connect to "
                                      f"{host}:{port}: {exc}") from None
            clients[cid] = client
        t0 = plan.messages[0].ts_ns if plan.messages else 0
        start = time.monotonic()
        for msg in plan.messages:
            if stop.is_set():
                break
            if speed > 0:
                delay = start + (msg.ts_ns - t0) / NS / speed - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    if stop.is_set():
                        break
            p = msg.publish
            tally = tallies[msg.client]
            props = p.properties if msg.version == 5 else NO_PROPERTIES
            try:
                handle = clients[msg.client].publish_nowait(p.topic, p.payload, p.qos, p.retain,
                                                            properties=props)
            except ClientError:
                tally.not_sent[p.qos] += 1
                continue
            tally.sent[p.qos] += 1
            if p.qos:
                pending.add(handle.future)
                handle.future.add_done_callback(_done_callback(tally, p.qos, pending))
            else:
                tally.completed[0] += 1
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(0.02)
    finally:
        await asyncio.gather(*(c.disconnect(timeout=2.0) for c in clients.values()),
                             return_exceptions=True)
    for fut in list(pending):
        if not fut.done():
            fut.cancel()
    # Anything still without a final acknowledgement was not answered in time.
    for tally in tallies.values():
        for q in (1, 2):
            tally.unanswered[q] = tally.sent[q] - tally.completed[q] - tally.refused[q]
    return _summary(plan, tallies, host, port, speed, same_ids, time.monotonic() - started,
                    stop.is_set())


def _done_callback(tally: _Tally, qos: int, pending: set[asyncio.Future[PublishResult]]
                   ) -> Callable[[asyncio.Future[PublishResult]], None]:
    return lambda fut: _done(fut, tally, qos, pending)


def _done(fut: asyncio.Future[PublishResult], tally: _Tally, qos: int,
          pending: set[asyncio.Future[PublishResult]]) -> None:
    pending.discard(fut)
    if fut.cancelled() or fut.exception() is not None:
        return
    res = fut.result()
    if res.reason_code >= 0x80:
        tally.refused[qos] += 1
        tally.codes[f"0x{res.reason_code:02X}"] += 1
    else:
        tally.completed[qos] += 1


def _summary(plan: ReplayPlan, tallies: dict[str, _Tally], host: str, port: int, speed: float,
             same_ids: bool, elapsed: float, interrupted: bool) -> dict[str, Any]:
    clients: dict[str, Any] = {}
    totals: dict[int, Counter[str]] = {}
    for cid, t in tallies.items():
        rows = {}
        for q in sorted(set(t.sent) | set(t.not_sent)):
            row = {"sent": t.sent[q], "completed": t.completed[q], "refused": t.refused[q],
                   "unanswered": t.unanswered[q] if q else 0, "not_sent": t.not_sent[q]}
            rows[str(q)] = row
            agg = totals.setdefault(q, Counter())
            agg.update(row)
        clients[cid] = {"replayed_as": cid if same_ids else f"replay-{cid}",
                        "version": plan.clients[cid].version, "per_qos": rows,
                        "reason_codes": dict(t.codes)}
    return {"broker": f"{host}:{port}", "speed": speed, "same_ids": same_ids,
            "messages": len(plan.messages), "resends_skipped": plan.resends_skipped,
            "filtered_out": plan.filtered_out, "elapsed_s": round(elapsed, 3),
            "interrupted": interrupted,
            "per_qos": [{"qos": q, **dict(totals[q])} for q in sorted(totals)],
            "clients": clients}


def format_replay(summary: dict[str, Any]) -> str:
    lines = [f"replayed {summary['messages']} messages to {summary['broker']} in "
             f"{summary['elapsed_s']:.1f} s (speed {summary['speed']:g}"
             f"{', interrupted' if summary['interrupted'] else ''}); "
             f"{summary['resends_skipped']} resends of the same message skipped, "
             f"{summary['filtered_out']} filtered out"]
    lines.append(f"{'client':<24} {'QoS':>3} {'sent':>7} {'completed':>9} {'refused':>7} "
                 f"{'unanswered':>10} {'not sent':>8}")
    for c in summary["clients"].values():
        for q, row in c["per_qos"].items():
            lines.append(f"{c['replayed_as']:<24} {q:>3} {row['sent']:>7} {row['completed']:>9}"
                         f" {row['refused']:>7} {row['unanswered']:>10} {row['not_sent']:>8}")
        if c["reason_codes"]:
            lines.append(f"{'':<24} refused with: " + ", ".join(
                f"{k} x{v}" for k, v in sorted(c["reason_codes"].items())))
    return "\n".join(lines)
