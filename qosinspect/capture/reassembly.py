"""Per-connection, per-direction TCP reassembly: segments in, in-order byte chunks and gaps out.

Hard rules, and why:

* **Sequence numbers are compared modulo 2**32.** A segment's place is
  ``rel = ((seq - nxt_seq + 2**31) mod 2**32) - 2**31`` relative to the next expected byte, and
  each direction keeps an unwrapped 64-bit stream offset (``nxt_off``) beside ``nxt_seq``, so
  buffered segments are ordered by plain integers and an ISN near 2**32 needs no special case.
* **First copy wins** (as in Wireshark): bytes already delivered or already buffered are never
  replaced. A segment carrying any of them is a *TCP retransmission* of that many bytes, reported
  with its frame number and counted per direction; its new bytes, if any, are still used.
* **Keep-alives and zero-window probes are not retransmissions.** A keep-alive is a segment of 0
  or 1 byte at ``nxt_seq - 1`` (counted in ``keepalives``, its byte ignored). A zero-window probe is
  1 byte at ``nxt_seq`` while the receiver advertises window 0: the byte is held back; a later
  segment at the same sequence replaces it (so the resend is not a retransmission), while later
  data or an ACK covering it commits it.
* **A hole becomes an explicit gap, never zeros.** Out-of-order segments wait in a bounded buffer.
  The hole is declared lost (a :class:`~qosinspect.capture.records.Gap` with the number of missing
  bytes, then delivery continues) when the peer's ACK covers bytes the capture never showed, when
  the buffer would exceed ``ooo_limit`` bytes, or when the connection ends (FIN, RST, idle, end of
  capture). Bytes cut by the snap length are a gap at once: the sender will never resend them.
* **Delivery is attributed to the frame that made bytes contiguous**, so the MQTT layer can feed
  each :class:`~qosinspect.capture.records.StreamData` straight into that direction's decoder and
  stamp the packets it completes with the record's frame number (Wireshark does the same).
* **Bounded memory.** State exists only for open connections and is dropped at FIN (both sides
  done), RST or idle timeout; a closed connection leaves a small tombstone (key and time) so its
  last ACKs do not reopen it, swept after ``dead_timeout_ns`` (one closed by FIN or RST keeps
  its half-streams that long, for the TCP analysis of those ACKs). At most ``max_flows``
  connections (25,000 by default, a few kB each) are tracked at once: a new one beyond that
  first closes the least recently active tenth (``evicted``; no tombstone, so a later segment
  of one starts it again, as a capture that began mid-stream would).
* **Sides.** The sender of a SYN without ACK is the client; else the side using a broker port is
  the broker; else the first sender is taken for the client with ``sides_known=False``.
  :meth:`Flow.swap_sides` lets the MQTT layer correct that when it sees a CONNECT going the other
  way.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from ..events import ConnectionInfo, Endpoint
from ..mqtt.enums import Direction
from .layers import ACK, FIN, PSH, RST, SYN, format_ip
from .records import (
    CaptureRecord,
    Flagged,
    FlowClosed,
    FlowOpened,
    Gap,
    Retransmitted,
    StreamData,
)
from .tcp_analysis import TcpDirState, analyze_segment

__all__ = [
    "ACK",
    "FIN",
    "PSH",
    "RST",
    "SYN",
    "Flow",
    "HalfStream",
    "Sink",
    "TcpReassembler",
    "decide_sides",
    "format_ip",
]

_M = 0xFFFFFFFF
_HALF = 0x80000000
_C2B = Direction.C2B
_B2C = Direction.B2C
_new_tuple = tuple.__new__

#: A data hook on a half-stream: ``sink(half, frame, ts_ns, data_or_gap_size, out)``.
Sink = Callable[["HalfStream", int, int, "bytes | int", "list[CaptureRecord]"], None]


def decide_sides(flags: int, sport: int, dport: int,
                 broker_ports: frozenset[int] | set[int]) -> tuple[bool, bool]:
    """``(sender_is_client, sides_known)`` for the first segment seen of a connection."""
    if flags & SYN:
        return not flags & ACK, True
    if dport in broker_ports and sport not in broker_ports:
        return True, True
    if sport in broker_ports and dport not in broker_ports:
        return False, True
    return True, False


class HalfStream(TcpDirState):
    """One direction of a connection: what its sender sent, reassembled, and Wireshark's
    analysis state of it (:class:`~.tcp_analysis.TcpDirState`, whose ``win`` is the window
    the reassembler reads too).

    The counters are public statistics (per connection and direction).
    """

    __slots__ = (
        "data_bytes", "direction", "fin_done", "fin_seq", "flow", "gap_bytes", "gaps", "isn",
        "keepalives", "nxt_off", "nxt_seq", "ooo", "ooo_bytes", "out_of_order", "peer", "probe",
        "retrans_bytes", "retransmissions", "segments", "sink", "started", "syn_seen",
        "zero_window_probes",
    )

    def __init__(self, flow: Flow, direction: Direction) -> None:
        super().__init__()
        self.flow = flow
        self.peer: HalfStream = self
        self.direction = direction
        self.started = False
        self.syn_seen = False
        self.isn = 0
        #: -1 until started, so that fast paths comparing ``seq == nxt_seq`` never match.
        self.nxt_seq = -1
        self.nxt_off = 0
        #: Out-of-order segments, by stream offset (None while there are none: most halves
        #: never hold one, and 25,000 connections are followed at once, docs/memory.md).
        self.ooo: list[tuple[int, int, bytes | None]] | None = None
        self.ooo_bytes = 0
        self.probe: bytes | None = None
        self.fin_seq: int | None = None
        self.fin_done = False
        self.sink: Sink | None = None
        self.segments = 0
        self.data_bytes = 0
        self.retransmissions = 0
        self.retrans_bytes = 0
        self.keepalives = 0
        self.zero_window_probes = 0
        self.gaps = 0
        self.gap_bytes = 0
        self.out_of_order = 0

    def stats(self) -> dict[str, int]:
        """The counters of this direction, for reports."""
        return {k: getattr(self, k) for k in (
            "segments", "data_bytes", "retransmissions", "retrans_bytes", "keepalives",
            "zero_window_probes", "gaps", "gap_bytes", "out_of_order")}


class Flow:
    """One TCP connection being tracked.

    ``app`` is free for the layer above (e.g. its per-direction MQTT decoders), so it needs no
    dictionary of its own keyed by connection.
    """

    __slots__ = ("_info", "app", "b2c", "broker", "c2b", "client", "closed_by", "conn_id",
                 "first_frame", "first_ts", "handshake_seen", "keys", "last_ts", "open",
                 "sides_known", "transport", "tunnel")

    def __init__(self, conn_id: int, client: Endpoint, broker: Endpoint, *, sides_known: bool,
                 handshake_seen: bool, frame: int, ts_ns: int) -> None:
        self.conn_id = conn_id
        self.client = client
        self.broker = broker
        self.sides_known = sides_known
        self.handshake_seen = handshake_seen
        self.transport = "tcp"
        self.c2b = HalfStream(self, _C2B)
        self.b2c = HalfStream(self, _B2C)
        self.c2b.peer = self.b2c
        self.b2c.peer = self.c2b
        self.keys: tuple[bytes, bytes] = (b"", b"")
        self.first_frame = frame
        self.first_ts = ts_ns
        self.last_ts = ts_ns
        self.closed_by: Direction | None = None
        self.open = True
        self.app: Any = None
        self.tunnel: Any = None
        self._info: ConnectionInfo | None = None

    @property
    def info(self) -> ConnectionInfo:
        """The boundary description of this connection (cached; rebuilt after a change)."""
        info = self._info
        if info is None:
            info = self._info = ConnectionInfo(self.conn_id, self.client, self.broker,
                                               self.transport, self.sides_known)
        return info

    def set_transport(self, transport: str) -> None:
        self.transport = transport
        self._info = None

    def swap_sides(self) -> None:
        """Exchange client and broker (the MQTT layer saw CONNECT the other way); sides are
        known from now on. Records already emitted keep their old direction."""
        self.client, self.broker = self.broker, self.client
        self.c2b, self.b2c = self.b2c, self.c2b
        self.c2b.direction = _C2B
        self.b2c.direction = _B2C
        self.sides_known = True
        self._info = None

    def confirm_sides(self) -> None:
        """Mark the current sides as known (e.g. a CONNECT came from the presumed client)."""
        if not self.sides_known:
            self.sides_known = True
            self._info = None

    def release(self) -> None:
        """Cut the references between this closed flow and its halves (``flow`` and ``peer``
        make reference cycles), for the last consumer of a closed flow once it has read the
        statistics (the decoder). Then the flow is freed by reference counting as soon as it is
        dropped, not at the cyclic collector's next full collection, which a long capture
        (with the analysis' relaxed thresholds) reaches rarely: 100,000 evicted flows waited
        as 110 MB (issue 11 §9). Reading a half's ``flow`` or ``peer`` afterwards is an
        AttributeError."""
        for h in (self.c2b, self.b2c):
            del h.peer
            del h.flow

    def __repr__(self) -> str:
        return f"Flow({self.conn_id}, {self.client} -> {self.broker}, {self.transport})"


#: Connections tracked at once by default (see the module docstring).
MAX_FLOWS = 25_000


class TcpReassembler:
    """The table of tracked connections and the reassembly rules (see the module docstring).

    ``halves`` maps a sender's key (packed source address, destination address, source port,
    destination port, as they appear in the headers) to its :class:`HalfStream`; ``dead`` maps
    keys of closed or ignored connections to the time last seen.
    """

    def __init__(self, *, ooo_limit: int = 1 << 20, idle_timeout_ns: int = 3600 * 10**9,
                 dead_timeout_ns: int = 120 * 10**9, max_flows: int = MAX_FLOWS) -> None:
        self.ooo_limit = ooo_limit
        self.max_flows = max_flows
        #: Connections closed as ``evicted`` so far (see the module docstring).
        self.evicted = 0
        self.idle_timeout_ns = idle_timeout_ns
        self.dead_timeout_ns = dead_timeout_ns
        self.halves: dict[bytes, HalfStream] = {}
        self.dead: dict[bytes, int] = {}
        #: Half-streams of connections closed by FIN or RST, by key, while their tombstone
        #: lasts: the TCP analysis of their late segments (:meth:`late_segment`).
        self.lingering: dict[bytes, HalfStream] = {}
        self.next_conn_id = 0

    # -- the table ---------------------------------------------------------------------------

    def new_conn_id(self) -> int:
        """Reserve the next connection number (ignored streams take one too, like tcp.stream)."""
        n = self.next_conn_id
        self.next_conn_id = n + 1
        return n

    def open_flow(self, key: bytes, rkey: bytes, src: Endpoint, dst: Endpoint, *,
                  sender_is_client: bool, sides_known: bool, handshake_seen: bool,
                  frame: int, ts_ns: int, conn_id: int | None = None) -> HalfStream:
        """Start tracking a connection; returns the half-stream of the segment's sender."""
        if conn_id is None:
            conn_id = self.new_conn_id()
        client, broker = (src, dst) if sender_is_client else (dst, src)
        flow = Flow(conn_id, client, broker, sides_known=sides_known,
                    handshake_seen=handshake_seen, frame=frame, ts_ns=ts_ns)
        mine = flow.c2b if sender_is_client else flow.b2c
        flow.keys = (key, rkey)
        self.halves[key] = mine
        self.halves[rkey] = mine.peer
        for k in (key, rkey):
            self.dead.pop(k, None)
            self._unlinger(k)
        return mine

    def forget(self, flow: Flow, ts_ns: int) -> None:
        """Drop a flow's state at once, leaving tombstones (used for rejected streams)."""
        flow.open = False
        for k in flow.keys:
            self.halves.pop(k, None)
            self.dead[k] = ts_ns

    # -- segments ----------------------------------------------------------------------------

    def segment(self, h: HalfStream, ts: int, frame: int, seq: int, ack: int, flags: int,
                window: int, payload: bytes, missing: int, out: list[CaptureRecord]) -> None:
        """Process one segment sent by ``h``'s side; records are appended to ``out``.

        ``payload`` is the captured TCP payload, ``missing`` the number of payload bytes beyond
        it that were on the wire but not captured (snap length). Wireshark's flags of the
        segment (:mod:`.tcp_analysis`) come first, as a :class:`~.records.Flagged` record.
        """
        flow = h.flow
        self._analyze(h, ts, frame, seq, ack, flags, window, len(payload) + missing, out)
        flow.last_ts = ts
        h.segments += 1
        p = h.peer
        if flags & RST:
            if flow.closed_by is None:
                flow.closed_by = h.direction
            self.close(flow, "rst", frame, ts, out, closed_by=h.direction)
            return
        if flags & SYN:
            if not h.syn_seen:
                h.syn_seen = True
                h.isn = seq
                if not h.started or (h.nxt_off == 0 and not h.ooo):
                    h.started = True
                    h.nxt_seq = (seq + 1) & _M
            seq = (seq + 1) & _M  # data (TCP Fast Open) follows the SYN's sequence number
        elif not h.started:
            h.started = True
            h.nxt_seq = seq
        h.win = window
        if flags & ACK and p.started:
            d = (ack - p.nxt_seq) & _M
            if d and d < _HALF:
                self._acked(p, ack, frame, ts, out)
        n = len(payload) + missing
        if n:
            self._data(h, seq, payload, missing, n, flags, frame, ts, out)
        elif seq != h.nxt_seq and (seq + 1) & _M == h.nxt_seq and not flags & (SYN | FIN):
            h.keepalives += 1
        if flags & FIN and h.fin_seq is None:
            h.fin_seq = (seq + n) & _M
            if flow.closed_by is None:
                flow.closed_by = h.direction
        if h.fin_seq is not None and not h.fin_done:
            self._fin_check(h)
        if h.fin_done and p.fin_done and flow.open:
            self.close(flow, "fin", frame, ts, out)

    @staticmethod
    def _analyze(h: HalfStream, ts: int, frame: int, seq: int, ack: int, flags: int,
                 window: int, seglen: int, out: list[CaptureRecord]) -> None:
        """Wireshark's flags of a segment sent by ``h``'s side (:mod:`.tcp_analysis`)."""
        kinds = analyze_segment(h, h.peer, seq, ack, seglen, flags, window, ts)
        if kinds:
            flow = h.flow
            src, dst = ((flow.client, flow.broker) if h.direction is _C2B
                        else (flow.broker, flow.client))
            out.append(Flagged(flow, frame, ts, src, dst, tuple(kinds)))

    def late_segment(self, key: bytes, ts: int, frame: int, seq: int, ack: int, flags: int,
                     window: int, seglen: int, out: list[CaptureRecord]) -> None:
        """A segment of a connection closed by FIN or RST (its last ACKs, a FIN sent again):
        no reassembly any more, but Wireshark still flags it, on that connection."""
        h = self.lingering.get(key)
        if h is not None:
            self._analyze(h, ts, frame, seq, ack, flags, window, seglen, out)

    def _data(self, h: HalfStream, seq: int, payload: bytes, missing: int, n: int, flags: int,
              frame: int, ts: int, out: list[CaptureRecord]) -> None:
        rel = ((seq - h.nxt_seq + _HALF) & _M) - _HALF
        if h.probe is not None:
            if rel == 0:
                h.probe = None  # the real segment replaces the held-back probe byte
            elif rel > 0:
                self._commit_probe(h, frame, ts, out)
                rel -= 1
        dup = 0
        if rel < 0:
            if rel == -1 and n == 1 and not flags & (SYN | FIN | RST):
                h.keepalives += 1
                return
            cut = -rel
            if n <= cut:
                self._retrans(h, n, frame, ts, out)
                return
            dup = cut
            c = len(payload)
            if cut <= c:
                payload = payload[cut:]
            else:
                missing -= cut - c
                payload = b""
            n -= cut
            rel = 0
        if rel == 0 and not h.ooo:
            if (n == 1 and not missing and h.peer.win == 0 and not dup
                    and not flags & (SYN | FIN | RST)):
                h.zero_window_probes += 1
                h.probe = payload
                return
            if dup:
                self._retrans(h, dup, frame, ts, out)
            if payload:
                self._deliver(h, payload, frame, ts, out)
            if missing:
                self._skip(h, missing, frame, ts, "snaplen", out)
            return
        start = h.nxt_off + rel
        c = len(payload)
        dup += self._insert(h, start, start + c, payload)
        if missing:
            dup += self._insert(h, start + c, start + n, None)
        if dup:
            self._retrans(h, dup, frame, ts, out)
        elif rel > 0:
            h.out_of_order += 1
        self._drain(h, frame, ts, out)
        while h.ooo_bytes > self.ooo_limit:
            assert h.ooo  # (ooo_bytes counts its bytes)
            self._skip(h, h.ooo[0][0] - h.nxt_off, frame, ts, "ooo_limit", out)
            self._drain(h, frame, ts, out)

    def _insert(self, h: HalfStream, start: int, end: int, data: bytes | None) -> int:
        """Buffer ``[start, end)`` minus what is already delivered or buffered; returns the
        number of bytes that were already there (first copy wins)."""
        dup = 0
        if start < h.nxt_off:
            cut = min(h.nxt_off, end) - start
            dup += cut
            start += cut
            if data is not None:
                data = data[cut:]
        if start >= end:
            return dup
        ooo = h.ooo
        if ooo is None:
            ooo = h.ooo = []
        i = bisect.bisect_left(ooo, (start,))
        if i:
            i -= 1
        cur = start
        pieces: list[tuple[int, int]] = []
        for s, e, _ in ooo[i:]:
            if s >= end:
                break
            if e <= cur:
                continue
            if s > cur:
                pieces.append((cur, s))
            dup += min(e, end) - max(s, cur)
            cur = max(cur, e)
            if cur >= end:
                break
        if cur < end:
            pieces.append((cur, end))
        for a, b in pieces:
            piece = None if data is None else data[a - start:b - start]
            bisect.insort(ooo, (a, b, piece))
            h.ooo_bytes += b - a
        return dup

    def _drain(self, h: HalfStream, frame: int, ts: int, out: list[CaptureRecord]) -> None:
        ooo = h.ooo
        if ooo is not None and not ooo:
            h.ooo = None
            return
        while ooo and ooo[0][0] <= h.nxt_off:
            s, e, d = ooo.pop(0)
            h.ooo_bytes -= e - s
            if e <= h.nxt_off:
                continue
            if s < h.nxt_off:
                if d is not None:
                    d = d[h.nxt_off - s:]
                s = h.nxt_off
            if d is None:
                self._skip(h, e - s, frame, ts, "snaplen", out)
            else:
                self._deliver(h, d, frame, ts, out)

    def _acked(self, p: HalfStream, ack: int, frame: int, ts: int,
               out: list[CaptureRecord]) -> None:
        """The other side acknowledged ``p``'s bytes up to ``ack``: what we lack there is lost."""
        if p.probe is not None:
            self._commit_probe(p, frame, ts, out)
        d = (ack - p.nxt_seq) & _M
        if not d or d >= _HALF:
            return
        if p.fin_seq is not None and ack == (p.fin_seq + 1) & _M:
            d -= 1  # the FIN takes one sequence number but no byte
        target = p.nxt_off + d
        while p.nxt_off < target:
            stop = min(p.ooo[0][0], target) if p.ooo else target
            if stop > p.nxt_off:
                self._skip(p, stop - p.nxt_off, frame, ts, "ack", out)
            self._drain(p, frame, ts, out)
        if p.fin_seq is not None and not p.fin_done:
            self._fin_check(p)

    def _fin_check(self, h: HalfStream) -> None:
        if h.nxt_seq == h.fin_seq and not h.ooo and h.probe is None:
            h.fin_done = True
            h.nxt_seq = (h.nxt_seq + 1) & _M

    def _commit_probe(self, h: HalfStream, frame: int, ts: int,
                      out: list[CaptureRecord]) -> None:
        probe = h.probe
        h.probe = None
        if probe:
            self._deliver(h, probe, frame, ts, out)

    def _deliver(self, h: HalfStream, data: bytes, frame: int, ts: int,
                 out: list[CaptureRecord]) -> None:
        n = len(data)
        h.nxt_off += n
        h.nxt_seq = (h.nxt_seq + n) & _M
        h.data_bytes += n
        if h.sink is None:
            out.append(_new_tuple(StreamData, (h.flow, h.direction, frame, ts, data)))
        else:
            h.sink(h, frame, ts, data, out)

    def _skip(self, h: HalfStream, n: int, frame: int, ts: int, reason: str,
              out: list[CaptureRecord]) -> None:
        h.nxt_off += n
        h.nxt_seq = (h.nxt_seq + n) & _M
        h.gaps += 1
        h.gap_bytes += n
        out.append(Gap(h.flow, h.direction, frame, ts, n, reason))
        if h.sink is not None:
            h.sink(h, frame, ts, n, out)

    def _retrans(self, h: HalfStream, n: int, frame: int, ts: int,
                 out: list[CaptureRecord]) -> None:
        h.retransmissions += 1
        h.retrans_bytes += n
        out.append(Retransmitted(h.flow, h.direction, frame, ts, n))

    # -- ends --------------------------------------------------------------------------------

    def _flush(self, h: HalfStream, frame: int, ts: int, reason: str,
               out: list[CaptureRecord]) -> None:
        if h.probe is not None:
            self._commit_probe(h, frame, ts, out)
        if h.fin_seq is not None and not h.fin_done:
            # the FIN says where the data ended: bytes before it never seen are lost
            end = h.nxt_off + ((h.fin_seq - h.nxt_seq) & _M)
            if (h.fin_seq - h.nxt_seq) & _M < _HALF and not (h.ooo and h.ooo[-1][1] > end):
                self._insert(h, end, end, None)
                while h.nxt_off < end:
                    stop = min(h.ooo[0][0], end) if h.ooo else end
                    if stop > h.nxt_off:
                        self._skip(h, stop - h.nxt_off, frame, ts, reason, out)
                    self._drain(h, frame, ts, out)
        while h.ooo:
            s = h.ooo[0][0]
            if s > h.nxt_off:
                self._skip(h, s - h.nxt_off, frame, ts, reason, out)
            self._drain(h, frame, ts, out)

    def close(self, flow: Flow, how: str, frame: int, ts: int, out: list[CaptureRecord],
              closed_by: Direction | None = None) -> None:
        """End a flow: flush both directions (holes become gaps), emit :class:`FlowClosed` and
        free its state, leaving tombstones."""
        if not flow.open:
            return
        reason = "close" if how in ("fin", "rst") else how
        self._flush(flow.c2b, frame, ts, reason, out)
        self._flush(flow.b2c, frame, ts, reason, out)
        lingers = False
        if reason == "close" and len(self.lingering) < 2 * self.max_flows:
            for k in flow.keys:
                h = self.halves.get(k)
                if h is not None:
                    self.lingering[k] = h
                    lingers = True
        self.forget(flow, ts)
        out.append(FlowClosed(flow, frame, ts, how, closed_by or flow.closed_by, lingers))

    def _unlinger(self, key: bytes) -> None:
        """A closed connection's halves leave the lingering table (its tombstone expired, or
        the key starts a new connection): both keys go, and the flow is released
        (:meth:`Flow.release`), which the decoder left to us."""
        h = self.lingering.pop(key, None)
        if h is not None:
            flow = h.flow
            for k in flow.keys:
                self.lingering.pop(k, None)
            flow.release()

    def sweep(self, now_ns: int, frame: int, out: list[CaptureRecord]) -> None:
        """Close flows idle for longer than ``idle_timeout_ns`` and forget old tombstones."""
        limit = now_ns - self.idle_timeout_ns
        flows = {id(h.flow): h.flow for h in self.halves.values() if h.flow.last_ts < limit}
        for flow in flows.values():
            self.close(flow, "idle", frame, flow.last_ts, out)
        dlimit = now_ns - self.dead_timeout_ns
        stale = [k for k, t in self.dead.items() if t < dlimit]
        for k in stale:
            del self.dead[k]
            self._unlinger(k)

    def full(self) -> bool:
        """True when a new connection must first make room (:meth:`evict`)."""
        return len(self.halves) >= 2 * self.max_flows

    def evict(self, frame: int, out: list[CaptureRecord]) -> int:
        """Close the least recently active tenth of the tracked connections (``evicted``),
        without tombstones; returns how many."""
        flows = sorted({id(h.flow): h.flow for h in self.halves.values()}.values(),
                       key=lambda f: (f.last_ts, f.conn_id))
        victims = flows[:max(1, len(flows) // 10)]
        for flow in victims:
            self.close(flow, "evicted", frame, flow.last_ts, out)
            for k in flow.keys:
                self.dead.pop(k, None)
        self.evicted += len(victims)
        return len(victims)

    def finish(self, frame: int, ts: int, out: list[CaptureRecord]) -> None:
        """End of capture: close every open flow (``end_of_capture``), in order of opening."""
        flows = {id(h.flow): h.flow for h in self.halves.values()}
        for flow in sorted(flows.values(), key=lambda f: f.conn_id):
            self.close(flow, "end_of_capture", frame, ts, out)
        self.dead.clear()
        # the closed flows still lingering for their tombstones: released here, or each would
        # be a reference cycle left for the cyclic collector (25,000 of them at most)
        for flow in {id(h.flow): h.flow for h in self.lingering.values()}.values():
            flow.release()
        self.lingering.clear()

    def opened(self, flow: Flow) -> FlowOpened:
        """The :class:`FlowOpened` record for ``flow`` (stamped with its first frame)."""
        return FlowOpened(flow, flow.first_frame, flow.first_ts, flow.handshake_seen)
