"""Capture files to MQTT events: the library call the analysis and ``qosinspect decode`` stand on.

``iter_events(source)`` yields the boundary events of :mod:`qosinspect.events` in capture order:
:class:`~qosinspect.events.ConnectionOpened`, :class:`~qosinspect.events.MqttPacketEvent`,
:class:`~qosinspect.events.Anomaly`, :class:`~qosinspect.events.StreamGap`,
:class:`~qosinspect.events.TcpRetransmission`, :class:`~qosinspect.events.TcpEvidence` (Wireshark's
``tcp.analysis`` flags, :mod:`.tcp_analysis`) and :class:`~qosinspect.events.ConnectionClosed`
(which carries the connection's :class:`~qosinspect.events.TcpStats`); first of all, a
:class:`~qosinspect.events.CaptureStarted` with the file's first frame (time 0, see
:mod:`.clock`, whose ``clock_jump`` and ``timestamp_out_of_range`` notes are anomalies).

Hard rules, and why:

* **One codec.** Each direction of each connection has a lenient
  :class:`~qosinspect.mqtt.framing.StreamDecoder`, the same framing the broker uses on live
  sockets; the two directions share the version learned from CONNECT. Malformed bytes become
  :class:`~qosinspect.events.Anomaly` events (``malformed``, ``invalid_qos``,
  ``unassigned_msgtype``, ``truncated``, ``resync`` ...), never exceptions.
* **Frame numbers are Wireshark's.** A packet's ``frame`` is the frame whose bytes completed it
  (where Wireshark shows it), ``first_frame`` the one where it began; ``first_ts_ns`` is that
  frame's time (the packet's first byte on the wire), and a packet spanning frames carries
  ``ack_ts_ns``, the time of the receiver's last segment with an ACK before it completed (the
  evidence of Nagle's algorithm meeting a delayed ACK).
* **Gaps are said, not filled.** A hole in a stream is a :class:`~qosinspect.events.StreamGap`
  and a ``stream_gap`` anomaly; a packet the hole cut short is a ``truncated`` anomaly and the
  framing resynchronises on the bytes after it (``resync`` anomalies say how much it skipped).
* **A missing CONNECT is said, and so is the version used.** The first packet of a connection
  that is not a CONNECT gives a ``missing_connect`` anomaly; the version is then inferred from
  packets only one version allows (:mod:`.version`: ``version_inferred``) or taken from
  ``mqtt_version`` (``version_assumed``, and every packet event has ``version_assumed=True``).
  A later packet that fails to decode in that version but decodes in the other one (a cue
  found past the packets scanned at the start, from either side) switches the connection to
  the other version and is decoded (``version_inferred`` names the cue, sender and frame).
* **Sides.** Client and broker come from the SYN or the port (reassembly); when neither decides,
  packets only a client sends (CONNECT, SUBSCRIBE, UNSUBSCRIBE, PINGREQ) or only a broker sends
  (CONNACK, SUBACK, UNSUBACK, PINGRESP) settle it. Until then ``direction`` is ``None``.
* **Python and C.** The loop below is the reference. With the optional C accelerator
  (:mod:`qosinspect._accel`), the pipeline's engine also does this loop's work for bytes of a
  connection in its steady state (first packet seen, sides known, version not being scanned
  for, decoder neither failed nor resynchronising): it feeds the direction's StreamDecoder
  state with the C framing loop and builds the MqttPacketEvents, with the same frames, sizes
  and counters, and hands them up in lists. At the first packet the C loop does not take, the
  rest of the bytes come here as a StreamData record, with the decoder state committed up to
  it; anything else about the connection is decided here.
* **Errors late.** A :class:`~qosinspect.errors.CaptureError` (bad or truncated file) is raised
  after every event before it, and after the open connections were closed
  (``end_of_capture``), so statistics and the packets decoded so far are never lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import _accel
from ..anomalies import AnomalyKind
from ..events import (
    Anomaly,
    ConnectionClosed,
    Event,
    MqttPacketEvent,
    StreamGap,
    TcpDirectionStats,
    TcpStats,
)
from ..mqtt.enums import Direction
from ..mqtt.framing import FramingAnomaly, StreamDecoder
from ..mqtt.packets import Connect
from .pcapfile import CaptureFile
from .pipeline import CapturePipeline
from .reassembly import Flow, HalfStream
from .records import (
    FirstFrame,
    Flagged,
    FlowClosed,
    FlowOpened,
    Gap,
    Notice,
    Retransmitted,
    StreamData,
    Undecoded,
)
from .version import connect_level, find_version_evidence

__all__ = ["CaptureDecoder", "CaptureSummary", "EventStream", "iter_events"]

_C2B = Direction.C2B
_B2C = Direction.B2C
_new_tuple = tuple.__new__
_VERSION_LABEL = {3: "3.1", 4: "3.1.1", 5: "5.0"}
#: Packet types only a client sends, and only a broker sends.
_FROM_CLIENT = frozenset({1, 8, 10, 12})
_FROM_BROKER = frozenset({2, 9, 11, 13})
#: Notices that describe rather than warn: the connection's ``transport`` already says them.
_QUIET_NOTICES = frozenset({"websocket", "websocket_close"})
#: Framing anomalies of a whole packet that did not decode (a version cue may explain them).
_DECODE_ERRORS = frozenset({AnomalyKind.MALFORMED, AnomalyKind.INVALID_QOS,
                            AnomalyKind.PROTOCOL_ERROR, AnomalyKind.INVALID_TOPIC,
                            AnomalyKind.INVALID_TOPIC_FILTER})
#: What a stream decoder's ``sizes`` holds once read (``StreamDecoder.feed`` makes a new list
#: each time, never appends to this one).
_NO_SIZES: list[int] = []
#: How many packets of a connection with an assumed version are scanned for version evidence.
_SCAN_PACKETS = 256
_GAP_REASONS = {
    "ack": "the peer acknowledged bytes the capture does not have",
    "snaplen": "cut by the capture's snap length",
    "ooo_limit": "the out-of-order buffer limit was reached",
    "close": "still missing when the connection closed",
    "idle": "still missing when the connection went idle",
    "end_of_capture": "still missing at the end of the capture",
    "reused": "still missing when the connection was reused",
}


class _Side:
    """One direction's decoder and bookkeeping (moves with the direction if sides swap)."""

    __slots__ = ("dec", "packets", "pending_frame", "pending_ts")

    def __init__(self, version: int) -> None:
        self.dec = StreamDecoder(version, lenient=True)
        self.packets = 0
        #: Frame where the bytes held by ``dec`` (a packet not yet complete) began, and its time.
        self.pending_frame = 0
        self.pending_ts = 0


class _Conn:
    """The MQTT layer's state for one flow (kept in ``Flow.app``)."""

    __slots__ = ("assumed", "b2c", "c2b", "first_done", "gap_before", "scan_left")

    def __init__(self, version: int) -> None:
        self.c2b = _Side(version)
        self.b2c = _Side(version)
        self.first_done = False
        #: (bytes, frame) of a stream gap before the first MQTT packet: the CONNECT may be in it.
        self.gap_before: tuple[int, int] | None = None
        #: True while the version in force is the default, not read from the bytes.
        self.assumed = False
        self.scan_left = 0

    def side(self, d: Direction) -> _Side:
        return self.c2b if d is _C2B else self.b2c

    def set_version(self, version: int, known: bool) -> None:
        for s in (self.c2b, self.b2c):
            s.dec.version = version
            s.dec.version_known = known


@dataclass
class CaptureSummary:
    """Counters of a whole run, complete once the iteration has ended."""

    frames: int = 0
    #: The first frame's timestamp: time 0 for every consumer (also a CaptureStarted event).
    t_first_ns: int | None = None
    tcp_frames: int = 0
    connections: int = 0
    connections_ignored: int = 0
    mqtt_packets: int = 0
    anomalies: int = 0
    #: TCP statistics of every MQTT (or encrypted) connection, by ``conn_id``.
    tcp: dict[int, TcpStats] = field(default_factory=dict)


def _dir_stats(h: HalfStream, side: _Side | None) -> TcpDirectionStats:
    return TcpDirectionStats(h.segments, h.data_bytes, h.retransmissions, h.retrans_bytes,
                             h.keepalives, h.zero_window_probes, h.out_of_order, h.gaps,
                             h.gap_bytes, side.packets if side is not None else 0)


def tcp_stats(flow: Flow) -> TcpStats:
    """The statistics of a flow as they stand."""
    app = flow.app if isinstance(flow.app, _Conn) else None
    return TcpStats(_dir_stats(flow.c2b, app.c2b if app else None),
                    _dir_stats(flow.b2c, app.b2c if app else None))


class CaptureDecoder:
    """Decodes one capture into events; iterate it once. See the module docstring.

    ``ports`` are the ports MQTT is expected on, ``tls_ports`` those of MQTT over TLS
    (reported as encrypted, not decoded). With ``detect_any_port``, streams on other ports are
    decoded when their first client bytes are an MQTT CONNECT or an MQTT WebSocket upgrade.
    ``mqtt_version`` (3, 4 or 5) is used for connections whose CONNECT was not captured and
    whose bytes do not tell. With ``keep_tcp_stats`` (the default) every connection's
    :class:`~qosinspect.events.TcpStats` stays in ``summary.tcp`` (a few hundred bytes per
    connection); without, they travel only on the ``ConnectionClosed`` events, and memory does
    not grow with the number of connections.
    """

    def __init__(self, source: str | os.PathLike[str] | CaptureFile, *,
                 ports: Iterable[int] = (1883,), tls_ports: Iterable[int] = (8883,),
                 detect_any_port: bool = True, mqtt_version: int = 4,
                 keep_tcp_stats: bool = True, **pipeline_options: Any) -> None:
        if mqtt_version not in (3, 4, 5):
            raise ValueError(f"mqtt_version must be 3, 4 or 5, not {mqtt_version!r}")
        self.mqtt_version = mqtt_version
        self.keep_tcp_stats = keep_tcp_stats
        self.pipeline = CapturePipeline(source, ports=ports, tls_ports=tls_ports,
                                        detect_any_port=detect_any_port, **pipeline_options)
        self.summary = CaptureSummary()

    @property
    def position(self) -> tuple[int, int]:
        """``(bytes read, total bytes)`` of the capture, for progress displays."""
        return self.pipeline.position, self.pipeline.size

    def __iter__(self) -> Iterator[Event]:
        summary = self.summary
        pipe = self.pipeline
        version = self.mqtt_version
        new = _new_tuple
        mpe = MqttPacketEvent
        fa_type = FramingAnomaly
        connect = Connect
        c2b = _C2B
        packets = 0
        anomalies = 0
        # With the C engine, packets of steady connections arrive already decoded (as the
        # code below would have made them), in lists; see the module docstring.
        pipe._mqtt_stage = pipe._accel
        try:
            for rec in pipe._records():
                if type(rec) is list:
                    yield from rec
                    continue
                if type(rec) is StreamData:
                    flow, d, frame, ts, data = rec
                    app = flow.app
                    if app is None:
                        app = flow.app = _Conn(version)
                    if not app.first_done or app.scan_left:
                        for ev in self._before_data(flow, app, d, frame, ts, data):
                            anomalies += 1
                            yield ev
                    side = app.c2b if d is c2b else app.b2c
                    dec = side.dec
                    had = dec.version_known
                    pend = dec.pending
                    res = dec.feed(data)
                    if res:
                        if dec.version_known and not had:
                            other = app.b2c if side is app.c2b else app.c2b
                            other.dec.version = dec.version
                            other.dec.version_known = True
                            app.assumed = False
                            app.scan_left = 0
                        first = side.pending_frame if pend else frame
                        first_ts = side.pending_ts if pend else ts
                        # a packet begun in an earlier frame: when its receiver last sent an
                        # ACK (what a sender held back by Nagle's algorithm waited for)
                        ack_ts = 0
                        if pend and first != frame:
                            peer = flow.b2c if d is c2b else flow.c2b
                            ack_ts = peer.lastacktime
                        sizes = dec.sizes
                        dec.sizes = _NO_SIZES  # (read once: an idle stream keeps no list)
                        i = 0
                        info = flow.info
                        sd = d if flow.sides_known else None
                        ver = dec.version
                        assumed = app.assumed
                        for r in res:
                            if type(r) is fa_type:
                                if not app.first_done and r.packet_type == 1:
                                    app.first_done = True  # a CONNECT, if a malformed one
                                if (r.kind in _DECODE_ERRORS and not dec.version_known
                                        and app.first_done):
                                    late = self._late_cue(flow, app, d, frame, ts, r, data, ver)
                                    if late is not None:
                                        anomalies += 1
                                        yield late[0]
                                        yield late[1]
                                        side.packets += 1
                                        packets += 1
                                        ver = dec.version
                                        assumed = False
                                        continue
                                anomalies += 1
                                yield self._framing_anomaly(flow, sd, frame, ts, r)
                                continue
                            if not app.first_done or sd is None:
                                evs = self._first_packet_checks(flow, app, d, r, frame)
                                if evs is not None:
                                    for ev in evs:
                                        anomalies += 1
                                        yield ev
                                    # the sides may have been swapped: ``side`` moved with them
                                    d = c2b if side is app.c2b else _B2C
                                    info = flow.info
                                    sd = d if flow.sides_known else None
                                    ver = dec.version
                                    assumed = app.assumed
                            pv = r.protocol_version if type(r) is connect else ver
                            yield new(mpe, (ts, info, sd, r, sizes[i], frame, first, pv,
                                            assumed, first_ts, ack_ts))
                            i += 1
                            first = frame
                            first_ts = ts
                            ack_ts = 0
                        side.packets += i
                        packets += i
                    left = dec.pending
                    if left and (not pend or left <= len(data)):
                        side.pending_frame = frame
                        side.pending_ts = ts
                    continue
                if isinstance(rec, FlowOpened | Retransmitted | FirstFrame | Undecoded):
                    yield rec.to_event()
                elif type(rec) is Flagged:
                    yield from rec.to_events()
                elif isinstance(rec, Gap | FlowClosed):
                    evs = self._gap(rec) if isinstance(rec, Gap) else self._closed(rec)
                    for ev in evs:
                        if type(ev) is Anomaly:
                            anomalies += 1
                        yield ev
                elif isinstance(rec, Notice) and rec.kind not in _QUIET_NOTICES:
                    anomalies += 1
                    yield rec.to_event()
        finally:
            summary.frames = pipe.frames
            summary.t_first_ns = pipe.t_first_ns
            summary.tcp_frames = pipe.tcp_frames
            summary.connections = pipe.flows_tracked
            summary.connections_ignored = pipe.flows_ignored
            summary.mqtt_packets = packets + pipe.fused_packets
            summary.anomalies = anomalies

    # -- the rarer paths ------------------------------------------------------------------------

    def _framing_anomaly(self, flow: Flow, d: Direction | None, frame: int, ts: int,
                         fa: FramingAnomaly) -> Anomaly:
        where = f" (stream offset {fa.offset})"
        return Anomaly(ts, flow.info, d, fa.kind, fa.detail + where, frame, fa.packet_type)

    def _before_data(self, flow: Flow, app: _Conn, d: Direction, frame: int, ts: int,
                     data: bytes) -> list[Event]:
        """The first bytes of a connection (or, while its version is assumed, the next ones):
        decide the version before they are decoded."""
        dec = app.side(d).dec
        out: list[Event] = []
        if dec.version_known:
            app.scan_left = 0
            return out
        if dec.pending or dec._resync:
            return out  # not on a packet boundary: scan a later chunk
        if not app.first_done and data[0] == 0x10:
            # A CONNECT says its version; read it from the header, as Wireshark does, so that
            # the rest of the connection is decoded right even if the CONNECT is malformed.
            level = connect_level(data)
            if level is not None:
                app.set_version(level, known=True)
            return out
        ev = find_version_evidence(data, max_packets=64)
        if ev is None:
            if not app.first_done and not app.assumed:
                app.assumed = True
                app.scan_left = _SCAN_PACKETS
            elif app.scan_left:
                app.scan_left = max(0, app.scan_left - 8)
            return out
        old = dec.version
        app.scan_left = 0
        was_assumed = app.assumed or not app.first_done
        app.assumed = False
        if ev.version == 5 or (old == 5 and ev.version == 4):
            app.set_version(ev.version, known=False)
        label = _VERSION_LABEL[app.c2b.dec.version]
        before = "" if not app.first_done else (
            f"; packets before frame {frame} were decoded as MQTT {_VERSION_LABEL[old]}")
        if was_assumed:
            info = flow.info
            out.append(Anomaly(ts, info, d if flow.sides_known else None,
                               AnomalyKind.VERSION_INFERRED,
                               f"no CONNECT seen: MQTT {label} inferred from a {ev.reason}"
                               f"{before}", frame))
        return out

    def _late_cue(self, flow: Flow, app: _Conn, d: Direction, frame: int, ts: int,
                  fa: FramingAnomaly, data: bytes, used: int
                  ) -> tuple[Anomaly, MqttPacketEvent] | None:
        """A packet that failed to decode in the version in force (malformed, QoS 3 ...), on a
        connection whose CONNECT was not seen: if it decodes cleanly in the other version
        (:mod:`.version`'s cues: an ack or CONNACK longer than 3.1.x allows, properties that
        parse only as MQTT 5 ...), that version is in force from now on, in both directions,
        and the packet is decoded, with a ``version_inferred`` note naming the cue, its sender
        and the frame. Cues come at any point of the connection, not only in the packets
        scanned at its start. ``None`` when it does not."""
        dec = app.side(d).dec
        base = dec.offset + dec.pending - len(data)  # stream offset of data[0]
        rel = fa.offset - base
        if rel < 0 or fa.size <= 0 or rel + fa.size > len(data):
            return None  # the packet began in bytes fed before: not at hand
        raw = data[rel:rel + fa.size]
        ev = find_version_evidence(raw, max_packets=1)
        if ev is None or ev.version == (5 if used == 5 else 4):
            return None
        probe = StreamDecoder(ev.version, lenient=True)
        res = probe.feed(raw)
        if len(res) != 1 or isinstance(res[0], FramingAnomaly):
            return None
        old = _VERSION_LABEL[used]
        app.set_version(ev.version, known=False)
        app.assumed = False
        app.scan_left = 0
        who = "client" if d is _C2B else "broker"
        sd = d if flow.sides_known else None
        note = Anomaly(ts, flow.info, sd, AnomalyKind.VERSION_INFERRED,
                       f"no CONNECT seen: MQTT {_VERSION_LABEL[ev.version]} inferred at frame "
                       f"{frame} from a {ev.reason}, sent by the {who} (malformed as MQTT "
                       f"{old}); packets before it were decoded as MQTT {old}", frame)
        packet = MqttPacketEvent(ts, flow.info, sd, res[0], probe.sizes[0], frame, frame,
                                 ev.version, False, ts)
        return note, packet

    def _first_packet_checks(self, flow: Flow, app: _Conn, d: Direction,
                             packet: Any, frame: int) -> list[Event] | None:
        """Side and CONNECT checks on the first packet(s) of a connection. Returns events to
        yield before the packet (possibly none), or ``None`` when nothing changed. Anomalies
        carry ``frame``, the one that completed the packet (where Wireshark shows it)."""
        ptype = packet.packet_type
        out: list[Event] = []
        changed = False
        if not flow.sides_known and (ptype in _FROM_CLIENT or ptype in _FROM_BROKER):
            if (ptype in _FROM_CLIENT) == (d is _C2B):
                flow.confirm_sides()
            else:
                flow.swap_sides()
                app.c2b, app.b2c = app.b2c, app.c2b
            changed = True
        if not app.first_done:
            app.first_done = True
            changed = True
            info = flow.info
            ts = flow.last_ts
            if ptype != 1:
                if app.gap_before is not None:
                    how = (f"the CONNECT may be in the {app.gap_before[0]} bytes missing before "
                           f"it (stream gap at frame {app.gap_before[1]})")
                elif not flow.handshake_seen:
                    how = "the capture started after the connection was set up"
                else:
                    how = "the client did not start with CONNECT [MQTT-3.1.0-1]"
                sd = (d if flow.sides_known else None)
                out.append(Anomaly(ts, info, sd, AnomalyKind.MISSING_CONNECT,
                                   f"first MQTT packet is {ptype.name}, not CONNECT: {how}",
                                   frame))
                if app.assumed:
                    label = _VERSION_LABEL[self.mqtt_version]
                    out.append(Anomaly(ts, info, sd, AnomalyKind.VERSION_ASSUMED,
                                       f"no CONNECT seen and no packet that tells the version: "
                                       f"decoding as MQTT {label} (--mqtt-version)", frame))
        return out if changed else None

    def _gap(self, rec: Gap) -> list[Event]:
        flow = rec.flow
        app = flow.app
        if app is None:
            app = flow.app = _Conn(self.mqtt_version)
        d = rec.direction if flow.sides_known else None
        info = flow.info
        if not app.first_done and app.gap_before is None:
            app.gap_before = (rec.missing_bytes, rec.frame)
        why = _GAP_REASONS.get(rec.reason, rec.reason)
        out: list[Event] = [StreamGap(rec.ts_ns, info, d, rec.missing_bytes, rec.frame),
                            Anomaly(rec.ts_ns, info, d, AnomalyKind.STREAM_GAP,
                                    f"{rec.missing_bytes} bytes missing ({why}); MQTT framing "
                                    "resynchronises after the gap", rec.frame)]
        if flow.transport == "tls":
            return out[:1]  # nothing is decoded there: no framing to resynchronise
        for fa in app.side(rec.direction).dec.gap(rec.missing_bytes):
            out.append(self._framing_anomaly(flow, d, rec.frame, rec.ts_ns, fa))
        return out

    def _closed(self, rec: FlowClosed) -> list[Event]:
        flow = rec.flow
        app = flow.app
        out: list[Event] = []
        if isinstance(app, _Conn):
            d_known = flow.sides_known
            for d in (_C2B, _B2C):
                for fa in app.side(d).dec.finish():
                    out.append(self._framing_anomaly(flow, d if d_known else None, rec.frame,
                                                     rec.ts_ns, fa))
        stats = tcp_stats(flow)
        if self.keep_tcp_stats:
            self.summary.tcp[flow.conn_id] = stats
        out.append(ConnectionClosed(rec.ts_ns, flow.info, rec.how, rec.closed_by, rec.frame,
                                    stats))
        flow.app = None
        if not rec.lingers:  # nothing reads it after this: freed now, not by the cyclic
            flow.release()   # collector (a lingering one: by the reassembler, later)
        return out


class EventStream(Iterator[Event]):
    """The iterator :func:`iter_events` returns: events, then ``summary`` (with per-connection
    TCP statistics in ``summary.tcp``) once exhausted."""

    def __init__(self, events: Iterable[Event], summary: CaptureSummary,
                 position: Any = None) -> None:
        self._it = iter(events)
        self.summary = summary
        self._position = position

    def __next__(self) -> Event:
        return next(self._it)

    def __iter__(self) -> Iterator[Event]:
        # A for loop then runs on the generator itself: no Python-level call per event.
        return self._it

    @property
    def tcp_stats(self) -> dict[int, TcpStats]:
        """Per-connection TCP statistics by ``conn_id`` (complete after the iteration)."""
        return self.summary.tcp

    @property
    def position(self) -> tuple[int, int]:
        """``(bytes read, total bytes)`` for a progress display (``(0, 0)`` if unknown)."""
        if self._position is None:
            return 0, 0
        pos: tuple[int, int] = self._position()
        return pos


def iter_events(source: str | os.PathLike[str] | CaptureFile, *,
                ports: Iterable[int] = (1883,), tls_ports: Iterable[int] = (8883,),
                detect_any_port: bool = True, mqtt_version: int = 4,
                keep_tcp_stats: bool = True) -> EventStream:
    """The events of a capture, in capture order (see the module docstring).

    ``source`` is a path, ``"-"`` for standard input, or an open
    :class:`~qosinspect.capture.pcapfile.CaptureFile`. Raises
    :class:`~qosinspect.errors.CaptureError` for an unreadable file (after the events before
    the problem) and ``ValueError`` for bad arguments. ``keep_tcp_stats=False`` keeps memory
    flat on captures of very many connections (see :class:`CaptureDecoder`). Wireshark's
    dissector as a second engine is :func:`qosinspect.drivers.iter_capture_events`.
    """
    dec = CaptureDecoder(source, ports=ports, tls_ports=tls_ports,
                         detect_any_port=detect_any_port, mqtt_version=mqtt_version,
                         keep_tcp_stats=keep_tcp_stats)
    return EventStream(dec, dec.summary, lambda: dec.position)


if _accel.speedups is not None:
    _accel.speedups.configure_mqtt_stage(_Conn, _Side, MqttPacketEvent, _C2B)
