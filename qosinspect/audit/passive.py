"""``qosinspect audit CAPTURE``: what an eavesdropper on the capture's links could read or do.

The audit walks the capture decoder's events once (CONNECT, CONNACK, SUBSCRIBE, SUBACK, PUBLISH,
anomalies, connection open and close), hands the same events to the QoS analysis for the clear
text figures (:func:`qosinspect.analysis.exposure.exposure`, through ``Analysis.report()``: the
report's "Clear text" section and this audit say the same thing), and reads the TLS handshakes
of the capture's encrypted connections (:mod:`.tls`). Every finding names the frames that prove
it (Wireshark's numbering). Nothing here reads the wall clock: times and rates come from the
capture's timestamps, a certificate's validity is judged at the time of the handshake.

Bounded memory: counters and sets per connection, client id and address; the frames kept as
evidence are the first :data:`MAX_FRAMES` of each finding.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ..anomalies import AnomalyKind
from ..errors import CaptureError
from ..events import (
    Anomaly,
    ConnectionClosed,
    ConnectionInfo,
    ConnectionOpened,
    Event,
    MqttPacketEvent,
)
from ..mqtt.enums import Direction
from ..mqtt.packets import ConnAck, Connect, Publish, SubAck, Subscribe
from .findings import AuditReport, Finding, Severity
from .rules import Rules, load_rules, version_findings
from .tls import TlsFacts, tls_findings, tls_handshakes

__all__ = ["MAX_FRAMES", "Thresholds", "audit_capture", "audit_events"]

#: Frames kept per finding as evidence.
MAX_FRAMES = 20
_C2B = Direction.C2B
_B2C = Direction.B2C
#: CONNACK codes of a refused log-in: 3.1.1 "bad user name or password" (4), "not authorized"
#: (5); 5.0 "bad user name or password" (0x86), "not authorized" (0x87).
AUTH_REFUSED = frozenset({4, 5, 0x86, 0x87})
#: Anomaly kinds that are malformed traffic (a gap's ``truncated``/``resync`` is the capture's
#: fault, not the sender's).
MALFORMED_KINDS = frozenset({
    AnomalyKind.MALFORMED, AnomalyKind.INVALID_QOS, AnomalyKind.UNASSIGNED_MSGTYPE,
    AnomalyKind.PROTOCOL_ERROR, AnomalyKind.INVALID_TOPIC, AnomalyKind.INVALID_TOPIC_FILTER,
    AnomalyKind.UNSUPPORTED_VERSION})
_WILDCARD = re.compile(r"^(?:\+/)*#$|^\$SYS/(?:\+/)*#$")


@dataclass(frozen=True)
class Thresholds:
    """The numbers behind the counting checks (a pass over one capture reads them here)."""

    brute_force: int = 5            # refused CONNECTs from one address
    success_after: int = 3          # refused ones before an accepted CONNECT
    flood_window_ns: int = 10 * 10**9
    connect_flood: int = 50         # CONNECTs from one address within the window
    subscribe_flood: int = 100      # SUBSCRIBEs on one connection within the window
    wide_reader: int = 3            # other publishers a client receives the messages of
    oversized: int = 1 << 20        # bytes of one packet (the built-in broker's default limit)


@dataclass
class _Conn:
    info: ConnectionInfo
    connect: Connect | None = None
    connect_frame: int = 0
    code: int | None = None
    open: bool = True
    subs: dict[int, tuple[tuple[str, ...], int]] = field(default_factory=dict)


def _frames(frames: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted({f for f in frames if f}))[:MAX_FRAMES]


class _Auditor:
    """The state of one pass over the events; :meth:`findings` turns it into findings."""

    def __init__(self, rules: Rules, limits: Thresholds) -> None:
        self.rules = rules
        self.lim = limits
        self.conns: dict[int, _Conn] = {}
        #: Connections by (broker, client id): a session belongs to one broker, and the same id
        #: on two brokers is two sessions, not a takeover.
        self.by_client_id: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.refused: dict[str, list[tuple[int, int]]] = defaultdict(list)  # host -> (ts, frame)
        self.after_fail: list[tuple[str, str | None, int, int]] = []
        self.connect_times: dict[str, deque[int]] = defaultdict(deque)
        self.connect_flood: dict[str, tuple[int, int]] = {}
        self.sub_times: dict[int, deque[int]] = defaultdict(deque)
        self.sub_flood: dict[int, tuple[int, int]] = {}
        self.digests: dict[bytes, set[str]] = defaultdict(set)
        self.digest_frames: dict[bytes, list[int]] = defaultdict(list)
        self.anonymous: list[tuple[str, int]] = []
        self.empty_ids: list[int] = []
        self.default_ids: dict[str, int] = {}
        self.takeovers: list[dict[str, Any]] = []
        self.takeover_frames: list[int] = []
        self.wildcards: list[dict[str, Any]] = []
        self.wildcard_frames: list[int] = []
        self.sys_topics: set[str] = set()
        self.sys_frames: list[int] = []
        self.versions: dict[tuple[str, str], Any] = {}
        self.version_frames: list[int] = []
        #: Per broker: the client ids publishing on each topic, and what each client received
        #: (topic -> first frame).
        self.publishers: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.received: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self.secrets: dict[str, dict[str, Any]] = {}
        self.retained: dict[str, int] = {}
        self.retained_frames: list[int] = []
        self.retained_sensitive: set[str] = set()
        self.wills: list[dict[str, Any]] = []
        self.will_frames: list[int] = []
        self.malformed: dict[str, int] = defaultdict(int)
        self.malformed_frames: list[int] = []
        self.oversized: list[tuple[int, int]] = []

    # -- the walk ---------------------------------------------------------------------------

    def feed(self, ev: Event) -> None:
        if type(ev) is MqttPacketEvent:             # the hot path: most events are packets
            self._packet(ev)
        elif isinstance(ev, Anomaly):
            self._anomaly(ev)
        elif isinstance(ev, ConnectionOpened):
            self.conns.setdefault(ev.conn.conn_id, _Conn(ev.conn))
        elif isinstance(ev, ConnectionClosed):
            c = self.conns.get(ev.conn.conn_id)
            if c is not None:
                c.open = False

    def _conn(self, info: ConnectionInfo) -> _Conn:
        c = self.conns.get(info.conn_id)
        if c is None:
            c = self.conns[info.conn_id] = _Conn(info)
        c.info = info              # sides and transport may have been settled since
        return c

    def _packet(self, ev: MqttPacketEvent) -> None:
        p = ev.packet
        if ev.wire_len >= self.lim.oversized and len(self.oversized) < MAX_FRAMES:
            self.oversized.append((ev.frame, ev.wire_len))
        if isinstance(p, Publish):
            self._publish(ev, p)
        elif isinstance(p, Connect):
            self._connect(ev, p)
        elif isinstance(p, ConnAck):
            self._connack(ev, p)
        elif isinstance(p, Subscribe):
            c = self._conn(ev.conn)
            c.subs[p.packet_id] = (tuple(s.topic_filter for s in p.subscriptions), ev.frame)
            self._count(self.sub_times[ev.conn.conn_id], ev.ts_ns, self.lim.subscribe_flood,
                        self.sub_flood, ev.conn.conn_id, ev.frame)
        elif isinstance(p, SubAck):
            self._suback(ev, p)

    def _count(self, times: deque[int], ts: int, limit: int, hits: dict[Any, Any], key: Any,
               frame: int) -> None:
        """Sliding-window counter: records ``(rate, frame)`` the first time ``limit`` events
        fall within the flood window."""
        times.append(ts)
        while times and times[0] < ts - self.lim.flood_window_ns:
            times.popleft()
        if len(times) >= limit and key not in hits:
            hits[key] = (len(times), frame)

    def _connect(self, ev: MqttPacketEvent, p: Connect) -> None:
        c = self._conn(ev.conn)
        c.connect, c.connect_frame = p, ev.frame
        host = ev.conn.client.host
        self._count(self.connect_times[host], ev.ts_ns, self.lim.connect_flood,
                    self.connect_flood, host, ev.frame)
        if p.password:
            digest = hashlib.sha256(p.password).digest()
            self.digests[digest].add(p.client_id)
            self.digest_frames[digest].append(ev.frame)
        if p.will is not None:
            hits = self.rules.scan(p.will.payload.decode("utf-8", "replace"))
            if hits or self.rules.sensitive_topic.search(p.will.topic):
                self.wills.append({"client_id": p.client_id, "topic": p.will.topic,
                                   "secrets": sorted({h.kind for h in hits})})
                self.will_frames.append(ev.frame)
        if p.client_id and self.rules.is_default_client_id(p.client_id):
            self.default_ids.setdefault(p.client_id, ev.frame)
        if p.client_id:
            key = (str(ev.conn.broker), p.client_id)
            for other_id in self.by_client_id[key]:
                o = self.conns[other_id]
                if o.open and o.code == 0 and o.info.client != ev.conn.client:
                    self.takeovers.append({"client_id": p.client_id,
                                           "first": str(o.info.client),
                                           "second": str(ev.conn.client),
                                           "conns": [o.info.conn_id, ev.conn.conn_id]})
                    self.takeover_frames += [o.connect_frame, ev.frame]
            self.by_client_id[key].append(ev.conn.conn_id)

    def _connack(self, ev: MqttPacketEvent, p: ConnAck) -> None:
        c = self._conn(ev.conn)
        c.code = int(p.reason_code)
        host = ev.conn.client.host
        fails = self.refused[host]
        if c.code in AUTH_REFUSED:
            fails.append((ev.ts_ns, ev.frame))
        elif c.code == 0:
            if len(fails) >= self.lim.success_after:
                user = c.connect.username if c.connect else None
                self.after_fail.append((host, user, len(fails), ev.frame))
            if c.connect is not None:
                if c.connect.username is None:
                    self.anonymous.append((c.connect.client_id, ev.frame))
                if not c.connect.client_id:
                    self.empty_ids.append(ev.frame)

    def _suback(self, ev: MqttPacketEvent, p: SubAck) -> None:
        c = self._conn(ev.conn)
        sub = c.subs.pop(p.packet_id, None)
        if sub is None:
            return
        filters, frame = sub
        for f, code in zip(filters, p.reason_codes, strict=False):
            if _WILDCARD.match(f):
                self.wildcards.append({"client_id": c.connect.client_id if c.connect else None,
                                       "conn_id": ev.conn.conn_id, "filter": f,
                                       "granted": int(code) < 0x80})
                self.wildcard_frames += [frame, ev.frame]

    def _publish(self, ev: MqttPacketEvent, p: Publish) -> None:
        c = self._conn(ev.conn)
        client_id = c.connect.client_id if c.connect else f"conn {ev.conn.conn_id}"
        topic = p.topic
        if ev.direction is _C2B:
            self.publishers[(str(ev.conn.broker), topic)].add(client_id)
            if p.retain and p.payload:
                self.retained[topic] = self.retained.get(topic, 0) + 1
                self.retained_frames.append(ev.frame)
                if self.rules.sensitive_topic.search(topic):
                    self.retained_sensitive.add(topic)
        elif ev.direction is _B2C:
            got = self.received[(str(ev.conn.broker), client_id)]
            if topic not in got and len(got) < 10_000:
                got[topic] = ev.frame
            if topic.startswith("$SYS/"):
                self.sys_topics.add(topic)
                self.sys_frames.append(ev.frame)
                v = self.rules.broker_version(topic, p.payload)
                if v is not None:
                    self.versions[(v.product, v.version)] = v
                    self.version_frames.append(ev.frame)
        for hit in self.rules.scan_message(topic, p.payload):
            s = self.secrets.setdefault(hit.kind, {"packets": 0, "topics": set(), "masked": [],
                                                   "frames": []})
            s["packets"] += 1
            s["topics"].add(topic)
            if hit.masked not in s["masked"] and len(s["masked"]) < 5:
                s["masked"].append(hit.masked)
            s["frames"].append(ev.frame)
            if p.retain and ev.direction is _C2B:
                self.retained_sensitive.add(topic)

    def _anomaly(self, ev: Anomaly) -> None:
        if ev.kind in MALFORMED_KINDS:
            self.malformed[ev.kind] += 1
            self.malformed_frames.append(ev.frame)
        elif ev.kind == AnomalyKind.PACKET_TOO_LARGE and len(self.oversized) < MAX_FRAMES:
            self.oversized.append((ev.frame, 0))

    # -- findings ---------------------------------------------------------------------------

    def findings(self) -> Iterator[Finding]:
        yield from self._auth_findings()
        yield from self._read_findings()
        yield from self._data_findings()
        yield from self._abuse_findings()

    def _auth_findings(self) -> Iterator[Finding]:
        shared = [(d, ids) for d, ids in self.digests.items() if len(ids) > 1]
        if shared:
            yield Finding("shared-secret",
                          f"{len(shared)} password(s) used by several client ids",
                          {"groups": [sorted(ids) for _, ids in shared]},
                          _frames(f for d, _ in shared for f in self.digest_frames[d]))
        if self.anonymous:
            ids = sorted({i for i, _ in self.anonymous})
            yield Finding("anonymous", f"{len(self.anonymous)} CONNECTs without a user name "
                          "accepted", {"connections": len(self.anonymous), "client_ids": ids[:20]},
                          _frames(f for _, f in self.anonymous))
        if self.empty_ids:
            yield Finding("empty-client-id", f"{len(self.empty_ids)} CONNECTs with an empty "
                          "client id accepted", {"connections": len(self.empty_ids)},
                          _frames(self.empty_ids))
        if self.default_ids:
            yield Finding("default-client-id", f"{len(self.default_ids)} default-looking client "
                          "ids", {"client_ids": sorted(self.default_ids)[:20]},
                          _frames(self.default_ids.values()))
        for host, fails in sorted(self.refused.items()):
            if len(fails) >= self.lim.brute_force:
                span = (fails[-1][0] - fails[0][0]) / 1e9
                rate = round(len(fails) / span, 2) if span > 0 else None
                yield Finding("brute-force", f"{len(fails)} refused CONNECTs from {host}",
                              {"address": host, "refused": len(fails),
                               "seconds": round(span, 3), "per_second": rate},
                              _frames(f for _, f in fails))
        for host, user, n, frame in self.after_fail:
            yield Finding("brute-force-success", f"{host} logged in after {n} refused CONNECTs",
                          {"address": host, "username": user, "refused_before": n},
                          (frame,))

    def _read_findings(self) -> Iterator[Finding]:
        if self.wildcards:
            granted = [w for w in self.wildcards if w["granted"]]
            sev = Severity.MEDIUM if granted else Severity.LOW
            yield Finding("wildcard-subscribe",
                          f"{len(self.wildcards)} subscriptions to every topic, "
                          f"{len(granted)} granted", {"subscriptions": self.wildcards[:20]},
                          _frames(self.wildcard_frames), sev)
        for (broker, client_id), topics in sorted(self.received.items()):
            pubs = {t: self.publishers.get((broker, t), set()) - {client_id} for t in topics}
            others = set().union(*pubs.values())
            if len(others) >= self.lim.wide_reader:
                yield Finding("wide-reader", f"{client_id} received the messages of "
                              f"{len(others)} other clients",
                              {"client_id": client_id, "broker": broker,
                               "publishers": sorted(others)[:20], "topics": len(topics)},
                              _frames(f for t, f in topics.items() if pubs[t]))
        if self.sys_topics:
            yield Finding("sys-readable", f"{len(self.sys_topics)} $SYS topics delivered",
                          {"topics": sorted(self.sys_topics)[:20]}, _frames(self.sys_frames))
        for v in self.versions.values():
            yield from version_findings(v, {}, _frames(self.version_frames))

    def _data_findings(self) -> Iterator[Finding]:
        for kind, s in sorted(self.secrets.items()):
            pat = self.rules.pattern(kind)
            yield Finding("secret-in-payload", f"{pat.title} in {s['packets']} PUBLISH packets",
                          {"kind": kind, "packets": s["packets"],
                           "topics": sorted(s["topics"])[:20], "masked": s["masked"]},
                          _frames(s["frames"]), pat.severity)
        if self.retained:
            sev = Severity.MEDIUM if self.retained_sensitive else Severity.LOW
            yield Finding("retained-exposure", f"{len(self.retained)} topics hold retained "
                          "messages", {"topics": sorted(self.retained)[:20],
                                       "sensitive": sorted(self.retained_sensitive)[:20]},
                          _frames(self.retained_frames), sev)
        if self.wills:
            yield Finding("sensitive-will", f"{len(self.wills)} wills on sensitive topics or "
                          "with secrets", {"wills": self.wills[:20]}, _frames(self.will_frames))

    def _abuse_findings(self) -> Iterator[Finding]:
        if self.malformed:
            yield Finding("malformed", f"{sum(self.malformed.values())} malformed packets",
                          {"kinds": dict(sorted(self.malformed.items()))},
                          _frames(self.malformed_frames))
        if self.oversized:
            yield Finding("oversized", f"{len(self.oversized)} packets of "
                          f"{self.lim.oversized:,} bytes or more",
                          {"sizes": [s for _, s in self.oversized if s]},
                          _frames(f for f, _ in self.oversized))
        if self.takeovers:
            ids = sorted({t["client_id"] for t in self.takeovers})
            yield Finding("client-id-takeover", f"{len(self.takeovers)} CONNECTs reused a "
                          f"client id connected elsewhere ({', '.join(ids[:5])})",
                          {"takeovers": self.takeovers[:20]}, _frames(self.takeover_frames))
        for host, (n, frame) in sorted(self.connect_flood.items()):
            yield Finding("connect-flood", f"{n} CONNECTs from {host} within "
                          f"{self.lim.flood_window_ns // 10**9} s",
                          {"address": host, "connects": n}, (frame,))
        for conn_id, (n, frame) in sorted(self.sub_flood.items()):
            yield Finding("subscribe-flood", f"{n} SUBSCRIBEs on connection {conn_id} within "
                          f"{self.lim.flood_window_ns // 10**9} s",
                          {"conn_id": conn_id, "subscribes": n}, (frame,))


def _clear_text_findings(ct: dict[str, Any], conns: Iterable[_Conn],
                         tls: list[TlsFacts]) -> Iterator[Finding]:
    """The report's clear-text figures (``exposure``) as findings, and clients that use TLS
    and plain text both."""
    conns = list(conns)
    clear = [c for c in conns if c.info.transport != "tls" and c.connect is not None]
    if ct["connections"]:
        yield Finding("clear-text", f"{ct['connections']} connections carried MQTT in clear "
                      f"text ({ct['mqtt_bytes']:,} bytes, {ct['publish_packets']:,} PUBLISH)",
                      {k: ct[k] for k in ("connections", "encrypted", "mqtt_bytes",
                                          "publish_packets")},
                      _frames(c.connect_frame for c in clear))
    if ct["with_username"] or ct["with_password"]:
        sev = Severity.HIGH if ct["password_accepted"] else Severity.MEDIUM
        yield Finding("clear-credentials",
                      f"credentials in clear on {max(ct['with_username'], ct['with_password'])}"
                      f" connections, a password accepted on {ct['password_accepted']}",
                      {k: ct[k] for k in ("with_username", "with_password", "password_accepted",
                                          "usernames")},
                      _frames(c.connect_frame for c in clear
                              if c.connect is not None and (c.connect.username is not None
                                                            or c.connect.password is not None)),
                      sev)
    tls_pairs = {(t.client.host, t.broker.host) for t in tls}
    plain = [c for c in clear if (c.info.client.host, c.info.broker.host) in tls_pairs]
    if tls_pairs and plain:
        yield Finding("plaintext-fallback", f"{len(plain)} clear-text connections from hosts "
                      "that also use TLS to the same broker",
                      {"connections": [c.info.conn_id for c in plain][:20],
                       "client_ids": sorted({c.connect.client_id for c in plain
                                             if c.connect})[:20]},
                      _frames(c.connect_frame for c in plain))


def audit_events(events: Iterable[Event], target: str = "events", *,
                 tls: list[TlsFacts] | None = None, rules: Rules | None = None,
                 limits: Thresholds = Thresholds(),
                 same_broker: tuple[tuple[str, ...], ...] = ()) -> AuditReport:
    """Audit boundary events (a capture's, or a live tap's); ``tls`` are the capture's TLS
    handshakes when known. A :class:`~qosinspect.errors.CaptureError` raised by ``events``
    after some events ends the audit there, with a note; before any, it propagates."""
    from ..analysis.api import analyze
    from ..analysis.options import REPORT_OPTIONS

    auditor = _Auditor(rules or load_rules(), limits)
    notes: list[str] = []

    def tee() -> Iterator[Event]:
        n = 0
        try:
            for ev in events:
                auditor.feed(ev)
                n += 1
                yield ev
        except CaptureError as exc:
            if n == 0:
                raise
            notes.append(f"capture read up to an error: {exc}")

    # what the report needs, no more
    analysis = analyze(tee(), replace(REPORT_OPTIONS, same_broker=same_broker))
    findings = list(_clear_text_findings(analysis.report()["clear_text"],
                                         auditor.conns.values(), tls or []))
    findings += auditor.findings()
    findings += tls_findings(tls or [])
    return AuditReport(target, "capture", findings, notes)


def audit_capture(source: str | os.PathLike[str], *, ports: Iterable[int] = (1883,),
                  tls_ports: Iterable[int] = (8883,), detect_any_port: bool = True,
                  mqtt_version: int = 4, engine: str = "native", tls_keylog: str | None = None,
                  rules: Rules | None = None, limits: Thresholds = Thresholds(),
                  broker: str | None = None, same_broker: tuple[tuple[str, ...], ...] = ()
                  ) -> AuditReport:
    """Audit a pcap/pcapng file: its MQTT events (:func:`audit_events`) and its TLS
    handshakes (:func:`~.tls.tls_handshakes`). ``broker`` (``ADDR[:PORT]``) keeps one broker's
    connections, ``same_broker`` says which server endpoints are one broker, as for every
    capture command. A file that cannot be read at all raises
    :class:`~qosinspect.errors.CaptureError`; a bad ``broker``, ``ValueError``."""
    from ..drivers import iter_capture_events

    ports = tuple(ports)
    tls_ports = tuple(tls_ports)
    events: Iterable[Event] = iter_capture_events(source, ports=ports, tls_ports=tls_ports,
                                                  detect_any_port=detect_any_port,
                                                  mqtt_version=mqtt_version, engine=engine,
                                                  tls_keylog=tls_keylog)
    spec = None
    if broker is not None:
        from ..capture.brokers import only_broker, parse_broker

        spec = parse_broker(broker)
        events = only_broker(events, spec)
    note = None
    if os.fspath(source) == "-":
        tls: list[TlsFacts] = []                # standard input can be read only once
        note = "TLS handshakes are not read from standard input: give a file to see them"
    else:
        try:
            tls = tls_handshakes(source, broker_ports=(*ports, *tls_ports))
        except CaptureError:
            tls = []        # the event pass below says what is wrong with the file
    if spec is not None:
        tls = [t for t in tls if spec.matches(t.broker)]
    report = audit_events(events, os.fspath(source), tls=tls, rules=rules, limits=limits,
                          same_broker=same_broker)
    if note:
        report.notes.append(note)
    return report
