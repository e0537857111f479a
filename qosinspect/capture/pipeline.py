"""From a capture file to per-connection, per-direction stream records for the MQTT layer.

frame -> link -> IP -> TCP -> reassembly -> (WebSocket unwrapping) -> :mod:`.records`.

Hard rules, and why:

* **Which streams are MQTT.** A connection with an end on one of ``ports`` (1883 by default) is
  MQTT. One on a ``tls_ports`` port (8883) is marked encrypted: its TCP statistics are kept, no
  bytes go up. Any other stream, when ``detect_any_port`` is on, is *probed*: it is accepted only if
  its client's first bytes are an MQTT CONNECT (0x10, a valid remaining length, then protocol name
  ``\\x00\\x04MQTT`` or ``\\x00\\x06MQIsdp``) or an HTTP GET upgrading to WebSocket with an MQTT
  subprotocol; otherwise its state is dropped at once and its later frames cost one dict lookup.
* **The first bytes of an MQTT-port stream are checked once**: a TLS record header (0x14-0x17,
  0x03) marks it encrypted, a ``GET`` starts WebSocket unwrapping; then the stream takes the fast
  path with no further checks.
* **The hot path is inline.** For untagged Ethernet, SLL, SLL2 and NULL/LOOP frames holding IPv4
  without options and an unfragmented TCP segment, one precompiled ``struct`` call reads every
  header field out of the memory-mapped file; a pure ACK that moves the ACK number or an
  in-order data segment of a known flow, in the plain case of Wireshark's TCP analysis
  (:mod:`.tcp_analysis`: nothing to flag), is handled without creating any object but the
  :class:`~.records.StreamData` itself. Everything else takes the general path
  (:func:`~.layers.decode_tcp`, :class:`TcpReassembler`, which runs the analysis first), which
  implements the same rules.
* **The C engine.** With the optional accelerator built (:mod:`qosinspect._accel`),
  ``_speedups.CaptureEngine`` walks the records and takes exactly the frames of the inline fast
  path above (same checks, same counters, the same StreamData); every other frame it returns to
  :meth:`CapturePipeline._loop`, the reference, one at a time. A StreamData record ends its
  batch, so whatever consumes it may change the flow before the next frame is looked at, as
  when the Python loop runs frame by frame. For :class:`~.decoder.CaptureDecoder` it also runs
  the MQTT step of steady connections (see there). A stream (:mod:`.stream`, ``watch -``) gets
  one engine per piece read, resumed where the last one stopped; a record the piece cuts short
  waits for the next. ``tests/speedups`` and ``tests/capture/test_stream.py`` compare both
  paths.
* **Pure library**: no sockets, no printing, no global state; configuration is per instance.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Generator, Iterable, Iterator
from typing import Any, cast

from .. import _accel
from ..anomalies import AnomalyKind
from ..errors import CaptureError
from ..events import Endpoint, MqttPacketEvent
from ..mqtt.enums import Direction
from .detect import PROBE_LIMIT, mqtt_run
from .layers import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    Buffer,
    Defragmenter,
    IpFragment,
    decode_tcp,
)
from .pcapfile import CaptureFile, Interface, Record
from .reassembly import (
    ACK,
    MAX_FLOWS,
    SYN,
    Flow,
    HalfStream,
    TcpReassembler,
    decide_sides,
    format_ip,
)
from .records import CaptureRecord, FirstFrame, Flagged, FlowClosed, Notice, StreamData
from .stream import StreamCapture, open_stream
from .undecoded import UndecodedCount, UndecodedTable
from .websocket import WebSocketTunnel, WsControl, WsHandshake, WsProblem, looks_like_ws_upgrade

__all__ = [
    "CapturePipeline",
    "iter_capture",
    "looks_like_connect",
]

_M = 0xFFFFFFFF
_HALF = 0x80000000
_C2B = Direction.C2B
_B2C = Direction.B2C
_new_tuple = tuple.__new__
_SWEEP_NS = 10 * 10**9

# Link types with a fixed-size header and one tag field that says "IPv4":
# (struct of link tag + IPv4 fields + TCP fields, link header length, tag values meaning IPv4).
_V4TCP = "BxH2xHxB2x8x4xIIBBH"
_FAST: dict[int, tuple[Any, int, frozenset[int]]] = {
    LINKTYPE_ETHERNET: (struct.Struct("!12xH" + _V4TCP).unpack_from, 14, frozenset({0x0800})),
    LINKTYPE_LINUX_SLL: (struct.Struct("!14xH" + _V4TCP).unpack_from, 16, frozenset({0x0800})),
    LINKTYPE_LINUX_SLL2: (struct.Struct("!H18x" + _V4TCP).unpack_from, 20, frozenset({0x0800})),
    LINKTYPE_NULL: (struct.Struct("!I" + _V4TCP).unpack_from, 4, frozenset({2, 0x02000000})),
    LINKTYPE_LOOP: (struct.Struct("!I" + _V4TCP).unpack_from, 4, frozenset({2, 0x02000000})),
}
_MQTT_NAMES = (b"\x00\x04MQTT", b"\x00\x06MQIsdp")


def looks_like_connect(buf: bytes) -> bool | None:
    """Do these first bytes of a stream start an MQTT CONNECT? ``None``: too few bytes to say."""
    if not buf:
        return None
    if buf[0] != 0x10:
        return False
    i = 1
    length = 0
    shift = 0
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        length |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
        if i > 4:
            return False
    if length < 10:
        return False
    rest = buf[i:i + 8]
    for name in _MQTT_NAMES:
        k = min(len(rest), len(name))
        if rest[:k] == name[:k]:
            return True if len(rest) >= len(name) else None
    return False


class _Probe:
    """State of a stream on an unknown port until its first client bytes decide."""

    __slots__ = ("buf", "half", "held", "pending")

    def __init__(self) -> None:
        self.buf = b""
        self.half: HalfStream | None = None
        self.pending: list[tuple[int, int, bytes]] = []
        #: TCP evidence of the stream so far, said if it is accepted.
        self.held: list[Flagged] = []


class _RunProbe:
    """State of a stream on an unknown port whose handshake was not captured, until a run of
    MQTT packets in either direction decides (:mod:`.detect`)."""

    __slots__ = ("failed", "held", "pending", "runs", "size")

    def __init__(self) -> None:
        #: Per direction: the bytes so far and where each captured segment began in them.
        self.runs: dict[Direction, tuple[bytearray, list[int]]] = {}
        self.failed: set[Direction] = set()
        self.pending: list[tuple[Direction, int, int, bytes]] = []
        self.size = 0
        #: TCP evidence of the stream so far, said if it is accepted.
        self.held: list[Flagged] = []


class CapturePipeline:
    """Iterate over the records of a capture (see the module docstring).

    ``source`` is a path (``"-"`` for stdin) or an open :class:`CaptureFile`. Iterating yields
    :data:`~.records.CaptureRecord` values in frame order and raises
    :class:`~qosinspect.errors.CaptureError` on a bad file, after everything before it and after
    the connections still open were closed (``end_of_capture``: their holes become gaps), so
    nothing decoded so far is lost. ``position`` and ``size`` (bytes) allow a progress display.
    """

    def __init__(self, source: str | os.PathLike[str] | CaptureFile, *,
                 ports: Iterable[int] = (1883,), tls_ports: Iterable[int] = (8883,),
                 detect_any_port: bool = True, ooo_limit: int = 1 << 20,
                 idle_timeout_ns: int = 3600 * 10**9, defragment: bool = True,
                 max_flows: int = MAX_FLOWS) -> None:
        self.source = source
        self.ports = frozenset(ports)
        self.tls_ports = frozenset(tls_ports)
        self.detect_any_port = detect_any_port
        self.reassembler = TcpReassembler(ooo_limit=ooo_limit, idle_timeout_ns=idle_timeout_ns,
                                          max_flows=max_flows)
        self.defrag = Defragmenter() if defragment else None
        self.frames = 0
        self.tcp_frames = 0
        self.flows_tracked = 0
        self.flows_ignored = 0
        #: Offset of the last record read and size of the (decompressed) capture, in bytes.
        self.position = 0
        self.size = 0
        #: The first frame's timestamp (time 0), once it was read.
        self.t_first_ns: int | None = None
        self._last_ts = 0
        self._notes: list[Notice] = []
        #: Streams with data that are not decoded, counted until reported (:mod:`.undecoded`).
        self._undecoded = UndecodedTable()
        self._next_sweep = 0
        #: Use the C engine (qosinspect._speedups) for the common frames.
        self._accel = _accel.enabled()
        #: Set by CaptureDecoder: the engine also decodes the MQTT packets of steady
        #: connections; lists of the MqttPacketEvents it made are then among the records
        #: (``fused_packets`` counts them).
        self._mqtt_stage = False
        self.fused_packets = 0

    def __iter__(self) -> Iterator[CaptureRecord]:
        # Lists of events come only with the MQTT stage, which only CaptureDecoder turns on
        # (and it iterates _records()).
        return cast(Iterator[CaptureRecord], self._records())

    def _records(self) -> Iterator[CaptureRecord | list[MqttPacketEvent]]:
        """The records; with the MQTT stage on, also lists of ready MqttPacketEvents."""
        if isinstance(self.source, CaptureFile):
            yield from self._run(self.source)
        elif os.fspath(self.source) == "-":   # a pipe: records as they arrive (.stream)
            with open_stream("-") as cap:
                yield from self._run(cap)
        else:
            with CaptureFile(self.source) as cap:
                yield from self._run(cap)

    # -- the loop ----------------------------------------------------------------------------

    def _run(self, cap: CaptureFile) -> Iterator[CaptureRecord | list[MqttPacketEvent]]:
        buf = cap.buf
        self._notes = cap.clock_notes
        reasm = self.reassembler
        out: list[CaptureRecord] = []
        self.size = len(buf)
        try:
            if isinstance(cap, StreamCapture):     # size 0: a stream's end is unknown
                if self._accel:
                    yield from self._stream_engine_loop(cap, out)
                else:
                    for piece, recs in cap.chunks():
                        yield from self._loop(recs, piece, out)
            elif self._accel:
                yield from self._engine_loop(cap, buf, out)
            else:
                yield from self._loop(cap.records(), buf, out)
            self.position = self.size
        except CaptureError:
            # The file is bad from here on: end what was open, as at the end of a capture.
            reasm.finish(self.frames, self._last_ts, out)
            out += self._undecoded.finish()
            if out:
                yield from self._filtered(out)
            raise
        reasm.finish(self.frames, self._last_ts, out)
        out += self._undecoded.finish()
        if out:
            yield from self._filtered(out)

    def _stream_engine_loop(self, cap: StreamCapture, out: list[CaptureRecord]
                            ) -> Iterator[Any]:
        """:meth:`_engine_loop` over each piece of a stream, resumed where the last one
        stopped; a record a piece cuts short waits for the next (:mod:`.stream`)."""
        for buf, start, final in cap.pieces():
            try:
                stop = yield from self._engine_loop(
                    cap, buf, out, resume=cap.resume_state(start), stream=not final,
                    on_frame=cap.frame_hook())
            except CaptureError as exc:
                stop = cap.stopped_at(exc, start, final)
            cap.walked(stop, self.frames, self._last_ts)

    def _engine_loop(self, cap: CaptureFile, buf: Buffer, out: list[CaptureRecord],
                     **stream: Any) -> Generator[Any, None, int]:
        """The per-frame loop with the C engine: it walks the records and takes the frames
        :meth:`_loop` would take on its fast path (with the MQTT stage on, it also decodes the
        packets of steady connections, see :mod:`qosinspect.capture.decoder`), and returns
        every other frame, which :meth:`_loop` then handles as the reference. ``stream``: the
        engine's options for a piece of a stream; returns where the walk stopped."""
        assert _speedups is not None
        mqtt = self._mqtt_stage
        engine = _speedups.CaptureEngine(cap, self.reassembler.halves, mqtt, **stream)
        run = engine.run
        fused = self.fused_packets     # (a stream's earlier pieces)
        try:
            while True:
                batch: list[Any] = []
                error: CaptureError | None = None
                try:
                    rec = run(batch, 1024, self._next_sweep)
                except CaptureError as exc:
                    error = exc
                    rec = None
                self.frames = engine.frames
                self._last_ts = engine.last_ts
                self.position = engine.position
                self.fused_packets = fused + engine.packets
                if batch:
                    # Only the last item of a batch can be a StreamData record (one ends the
                    # batch); with the MQTT stage, the events before it go up as one list.
                    last = batch[-1]
                    if type(last) is StreamData:
                        if mqtt and len(batch) > 1:
                            batch.pop()
                            yield batch
                        elif not mqtt:
                            batch.pop()
                            yield from batch
                        yield last
                    elif mqtt:
                        yield batch
                    else:
                        yield from batch
                if error is not None:
                    raise error
                if rec is None:
                    return int(engine.offset)
                if rec is not True:
                    yield from self._loop((rec,), buf, out)
        finally:
            engine.close()

    def _loop(self, records: Iterable[Record], buf: Buffer, out: list[CaptureRecord]
              ) -> Iterator[CaptureRecord]:
        """The per-frame loop (the hot path, and the reference for the C engine); leaves
        ``frames``, ``_last_ts`` and ``_next_sweep`` behind."""
        reasm = self.reassembler
        halves = reasm.halves
        segment = reasm.segment
        new = _new_tuple
        sd = StreamData
        fast_lt = -1
        fast: Any = None
        lhl = 0
        tags: frozenset[int] = frozenset()
        minlen = 1 << 30
        next_sweep = self._next_sweep
        notes = self._notes
        n = self.frames
        ts = self._last_ts
        try:
            for n, ts, lt, off, cl, ol in records:
                self.position = off
                if notes or not next_sweep:
                    if not next_sweep:
                        self.t_first_ns = ts
                        yield FirstFrame(None, n, ts)
                    yield from notes
                    notes.clear()
                if lt != fast_lt:
                    fast_lt = lt
                    entry = _FAST.get(lt)
                    if entry is None:
                        minlen = 1 << 30
                    else:
                        fast, lhl, tags = entry
                        minlen = lhl + 40
                if ts >= next_sweep:
                    if next_sweep:
                        reasm.sweep(ts, n, out)
                        out += self._undecoded.sweep(reasm.dead)
                    next_sweep = ts + _SWEEP_NS
                if cl >= minlen:
                    tag, vihl, total, ff, proto, seq, ack, doff, flags, win = fast(buf, off)
                    if tag in tags and vihl == 0x45 and proto == 6 and not ff & 0x3FFF:
                        ip = off + lhl
                        hl = (doff >> 4) << 2
                        pstart = ip + 20 + hl
                        wend = ip + total
                        if hl >= 20 and pstart <= wend <= off + cl:
                            h = halves.get(buf[ip + 12:ip + 24])
                            if h is not None:
                                flow = h.flow
                                flow.last_ts = ts
                                p = h.peer
                                # the reassembler's and the TCP analysis' plain case
                                if ((flags == 0x10 or flags == 0x18) and seq == h.nxt_seq
                                        and seq == h.nextseq and win and h.plain and p.plain
                                        and (not (d := (ack - p.nxt_seq) & _M) or d >= _HALF)
                                        and (not (d := (ack - p.nextseq) & _M)
                                             or d >= _HALF)):
                                    plen = wend - pstart
                                    if not plen:
                                        if ack != h.lastack:
                                            h.segments += 1
                                            h.win = win
                                            h.lastack = ack
                                            h.lastacktime = ts
                                            continue
                                    elif (h.sink is None and h.probe is None and not h.ooo
                                            and (plen != 1 or p.win)):
                                        h.segments += 1
                                        h.win = win
                                        h.nxt_seq = h.nextseq = h.maxseqtobeacked = (
                                            (seq + plen) & _M)
                                        h.nextseqtime = ts
                                        h.lastack = ack
                                        h.lastacktime = ts
                                        h.nxt_off += plen
                                        h.data_bytes += plen
                                        yield new(sd, (flow, h.direction, n, ts,
                                                       buf[pstart:wend]))
                                        continue
                                segment(h, ts, n, seq, ack, flags, win, buf[pstart:wend], 0, out)
                                if out:
                                    yield from self._filtered(out)
                                continue
                # the general path: new or dead flows, other link types, IPv6, options, fragments
                self._slow(buf, n, ts, lt, off, cl, ol, out)
                if out:
                    yield from self._filtered(out)
        finally:
            self.frames = n
            self._last_ts = ts
            self._next_sweep = next_sweep

    def _filtered(self, out: list[CaptureRecord]) -> Iterator[CaptureRecord]:
        """Yield and clear ``out``, hiding records of streams still being probed or rejected
        (their TCP evidence is held until the stream is accepted); a stream that ends while
        still probed is reported as undecoded (``undecided``)."""
        for r in out:
            f = r.flow
            if f is None or (type(f.tunnel) is not _Probe and type(f.tunnel) is not _RunProbe):
                yield r
            elif type(r) is Flagged:
                f.tunnel.held.append(r)
            elif type(r) is FlowClosed:
                # a direction whose bytes showed no run is not MQTT; else nothing decided
                failed = type(f.tunnel) is _RunProbe and f.tunnel.failed
                u = self._undecoded_count(f, "not_mqtt" if failed else "undecided", r.frame,
                                          r.ts_ns)
                if u.data_bytes:
                    yield u.record()
        out.clear()

    def _slow(self, buf: Buffer, n: int, ts: int, lt: int, off: int, cl: int, ol: int,
              out: list[CaptureRecord]) -> None:
        seg = decode_tcp(lt, buf, off, cl, ol, self.defrag)
        if seg is None:
            return
        if type(seg) is IpFragment:
            if seg.first_of_datagram:
                out.append(Notice(None, None, n, ts, AnomalyKind.IP_FRAGMENT,
                                  f"fragmented IP datagram {format_ip(seg.src)} -> "
                                  f"{format_ip(seg.dst)} id {seg.ident}"))
            if seg.segment is None:
                return
            seg = seg.segment
        assert not isinstance(seg, IpFragment)
        self.tcp_frames += 1
        reasm = self.reassembler
        key = seg.key
        flags = seg.flags
        h = reasm.halves.get(key)
        fresh_syn = bool(flags & SYN) and not flags & ACK
        if h is None:
            if key in reasm.dead and not fresh_syn:
                reasm.dead[key] = ts
                reasm.late_segment(key, ts, n, seg.seq, seg.ack, flags, seg.window,
                                   len(seg.payload) + seg.missing, out)
                u = self._undecoded.get(key)
                if u is not None:
                    u.add(n, ts, len(seg.payload) + seg.missing)
                return
            h = self._new_flow(seg.key, seg.rkey, seg.src, seg.dst, seg.sport, seg.dport,
                               flags, n, ts, out)
            if h is None:
                u = self._undecoded.get(key)
                if u is not None:
                    u.add(n, ts, len(seg.payload) + seg.missing)
                return
        elif fresh_syn and h.syn_seen and seg.seq != h.isn:
            reasm.close(h.flow, "reused", n, ts, out)
            h = self._new_flow(seg.key, seg.rkey, seg.src, seg.dst, seg.sport, seg.dport,
                               flags, n, ts, out)
            if h is None:
                return
        reasm.segment(h, ts, n, seg.seq, seg.ack, flags, seg.window, seg.payload, seg.missing,
                      out)

    def _new_flow(self, key: bytes, rkey: bytes, src: bytes, dst: bytes, sport: int,
                  dport: int, flags: int, n: int, ts: int,
                  out: list[CaptureRecord]) -> HalfStream | None:
        reasm = self.reassembler
        is_tls = sport in self.tls_ports or dport in self.tls_ports
        is_mqtt = sport in self.ports or dport in self.ports
        if reasm.full():
            evicted = reasm.evict(n, out)
            out.append(Notice(None, None, n, ts, AnomalyKind.CONNECTIONS_EVICTED,
                              f"more than {reasm.max_flows} connections open at once: the "
                              f"{evicted} least recently active were closed (evicted) at "
                              f"frame {n}; a later segment of one starts it again"))
        if not (is_tls or is_mqtt or self.detect_any_port) or flags & 0x04:
            conn_id = reasm.new_conn_id()
            reasm.dead[key] = reasm.dead[rkey] = ts
            self.flows_ignored += 1
            if not flags & 0x04:
                sender_is_client, known = decide_sides(flags, sport, dport, frozenset())
                a, b = Endpoint(format_ip(src), sport), Endpoint(format_ip(dst), dport)
                self._undecoded.track((key, rkey), UndecodedCount(
                    conn_id, *((a, b) if sender_is_client else (b, a)), known, n, ts,
                    "detection_off"))
            return None
        sender_is_client, known = decide_sides(flags, sport, dport, self.ports | self.tls_ports)
        h = reasm.open_flow(key, rkey, Endpoint(format_ip(src), sport),
                            Endpoint(format_ip(dst), dport), sender_is_client=sender_is_client,
                            sides_known=known, handshake_seen=bool(flags & SYN), frame=n,
                            ts_ns=ts)
        flow = h.flow
        self.flows_tracked += 1
        if is_tls:
            flow.set_transport("tls")
            self._set_sinks(flow, self._drop_sink)
            out.append(reasm.opened(flow))
            out.append(Notice(flow, None, n, ts, AnomalyKind.ENCRYPTED,
                              f"TLS port {dport if dport in self.tls_ports else sport}: "
                              "no MQTT decoding"))
        elif is_mqtt:
            self._set_sinks(flow, self._first_sink)
            out.append(reasm.opened(flow))
        else:
            if flags & SYN:
                flow.tunnel = _Probe()
                self._set_sinks(flow, self._probe_sink)
            else:
                flow.tunnel = _RunProbe()
                self._set_sinks(flow, self._run_sink)
        return h

    @staticmethod
    def _set_sinks(flow: Flow, sink: Any) -> None:
        flow.c2b.sink = sink
        flow.b2c.sink = sink

    # -- sinks: what happens to delivered bytes of streams that are not plain MQTT ------------

    def _drop_sink(self, h: HalfStream, frame: int, ts: int, data: bytes | int,
                   out: list[CaptureRecord]) -> None:
        """Encrypted streams: bytes are counted by reassembly, never passed up."""

    def _first_sink(self, h: HalfStream, frame: int, ts: int, data: bytes | int,
                    out: list[CaptureRecord]) -> None:
        """First bytes of an MQTT-port stream: TLS, WebSocket, or plain MQTT from now on."""
        flow = h.flow
        if isinstance(data, int):
            self._set_sinks(flow, None)
            return
        if len(data) >= 2 and 0x14 <= data[0] <= 0x17 and data[1] == 3:
            flow.set_transport("tls")
            self._set_sinks(flow, self._drop_sink)
            out.append(Notice(flow, h.direction, frame, ts, AnomalyKind.ENCRYPTED,
                              "TLS record at the start of the stream: no MQTT decoding"))
            return
        # A WebSocket upgrade request arrives whole in its first segment in practice; a stream
        # whose first segment is shorter than "GET " is taken for plain MQTT rather than held.
        if data[:4] == b"GET ":
            if h.direction is _B2C and not flow.sides_known:
                flow.swap_sides()
            if h.direction is _C2B:
                self._start_ws(flow)
                self._ws_sink(h, frame, ts, data, out)
                return
        self._set_sinks(flow, None)
        out.append(_new_tuple(StreamData, (flow, h.direction, frame, ts, data)))

    def _start_ws(self, flow: Flow) -> None:
        flow.tunnel = WebSocketTunnel()
        flow.set_transport("websocket")
        self._set_sinks(flow, self._ws_sink)

    def _probe_sink(self, h: HalfStream, frame: int, ts: int, data: bytes | int,
                    out: list[CaptureRecord]) -> None:
        """Streams on other ports: accept on a CONNECT or an MQTT WebSocket upgrade."""
        flow = h.flow
        probe = flow.tunnel
        assert isinstance(probe, _Probe)
        if isinstance(data, int) or (probe.half is not None and probe.half is not h) or (
                probe.half is None and h.direction is _B2C and flow.sides_known):
            self._reject(flow, ts, frame)
            return
        probe.half = h
        probe.buf += data
        probe.pending.append((frame, ts, data))
        verdict = looks_like_connect(probe.buf)
        ws = False
        if verdict is False and probe.buf[:4] == b"GET "[:len(probe.buf)]:
            verdict = looks_like_ws_upgrade(probe.buf)
            ws = True
        if verdict is None:
            if len(probe.buf) > 16384:
                self._reject(flow, ts, frame)
            return
        if not verdict:
            self._reject(flow, ts, frame)
            return
        if h.direction is _B2C:
            flow.swap_sides()
        else:
            flow.confirm_sides()
        flow.tunnel = None
        out.append(self.reassembler.opened(flow))
        out += probe.held
        if ws:
            self._start_ws(flow)
            for f, t, d in probe.pending:
                self._ws_sink(h, f, t, d, out)
        else:
            self._set_sinks(flow, None)
            for f, t, d in probe.pending:
                out.append(_new_tuple(StreamData, (flow, h.direction, f, t, d)))

    def _run_sink(self, h: HalfStream, frame: int, ts: int, data: bytes | int,
                  out: list[CaptureRecord]) -> None:
        """Mid-stream streams on other ports: accept on a run of MQTT packets (:mod:`.detect`)."""
        flow = h.flow
        probe = flow.tunnel
        assert isinstance(probe, _RunProbe)
        if isinstance(data, int):
            self._reject(flow, ts, frame)  # a hole before anything was recognised
            return
        d = h.direction
        probe.pending.append((d, frame, ts, data))
        probe.size += len(data)
        if d in probe.failed:
            return
        buf, starts = probe.runs.setdefault(d, (bytearray(), []))
        starts.append(len(buf))
        buf += data
        verdict = mqtt_run(bytes(buf), starts)
        if verdict is False:
            probe.failed.add(d)
            if len(probe.failed) == 2:
                self._reject(flow, ts, frame)
            return
        if verdict is None:
            if probe.size > 2 * PROBE_LIMIT:
                self._reject(flow, ts, frame)
            return
        flow.tunnel = None
        out.append(self.reassembler.opened(flow))
        out += probe.held
        self._set_sinks(flow, None)
        for pd, f, t, chunk in probe.pending:
            out.append(_new_tuple(StreamData, (flow, pd, f, t, chunk)))

    @staticmethod
    def _undecoded_count(flow: Flow, reason: str, frame: int, ts: int) -> UndecodedCount:
        """What a flow that is not decoded carried so far (the frame being handled included)."""
        c, b = flow.c2b, flow.b2c
        u = UndecodedCount(flow.conn_id, flow.client, flow.broker, flow.sides_known,
                           flow.first_frame, flow.first_ts, reason)
        u.segments = c.segments + b.segments
        u.data_bytes = c.data_bytes + b.data_bytes
        u.last_frame, u.last_ts = frame, ts
        return u

    def _reject(self, flow: Flow, ts: int, frame: int) -> None:
        self._undecoded.track(flow.keys, self._undecoded_count(flow, "not_mqtt", frame, ts))
        self.flows_tracked -= 1
        self.flows_ignored += 1
        self._set_sinks(flow, self._drop_sink)
        self.reassembler.forget(flow, ts)

    def _ws_sink(self, h: HalfStream, frame: int, ts: int, data: bytes | int,
                 out: list[CaptureRecord]) -> None:
        """WebSocket streams: unwrap frames; payload bytes go up as the MQTT byte stream."""
        flow = h.flow
        tunnel = flow.tunnel
        assert isinstance(tunnel, WebSocketTunnel)
        d = h.direction
        from_client = d is _C2B
        items = tunnel.gap(from_client) if isinstance(data, int) else tunnel.feed(from_client,
                                                                                     data)
        for it in items:
            if type(it) is bytes:
                out.append(_new_tuple(StreamData, (flow, d, frame, ts, it)))
            elif isinstance(it, WsProblem):
                out.append(Notice(flow, d, frame, ts, AnomalyKind.WEBSOCKET_MALFORMED, it.detail))
            elif isinstance(it, WsHandshake):
                if it.from_client:
                    out.append(Notice(flow, d, frame, ts, AnomalyKind.WEBSOCKET,
                                      f"WebSocket upgrade, subprotocol {it.subprotocol!r}"))
            elif isinstance(it, WsControl) and it.opcode == 8:
                out.append(Notice(flow, d, frame, ts, AnomalyKind.WEBSOCKET_CLOSE,
                                  f"WebSocket close, code {it.close_code}"))


def iter_capture(source: str | os.PathLike[str] | CaptureFile,
                 **options: Any) -> Iterator[CaptureRecord]:
    """Shorthand for ``iter(CapturePipeline(source, **options))``."""
    return iter(CapturePipeline(source, **options))



_speedups = _accel.speedups
if _speedups is not None:
    _speedups.configure_capture(HalfStream, Flow, StreamData, Interface)
