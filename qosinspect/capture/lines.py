"""One line per MQTT packet or anomaly, as ``qosinspect decode`` prints them: table, JSONL, CSV.

Why here and not in the CLI: the line formats are a documented interface (scripts and pandas read
them), so they are library functions with tests; the command only wires options to them.

The fields (``FIELDS``) are the same in every format: ``frame`` (the frame that completed the
packet, Wireshark's numbering), ``ts`` (epoch seconds, float), ``ts_ns``, ``src`` and ``dst``
(``ip:port``, IPv6 as ``[addr]:port``), ``direction`` (``c2b``/``b2c`` or null), ``version``
(3, 4, 5 or null), ``type`` (``CONNECT`` ... or ``ANOMALY``), ``qos``/``dup``/``retain``
(PUBLISH only, else null), ``packet_id``, ``topic`` (PUBLISH), ``payload_len`` (PUBLISH),
``client_id`` (CONNECT), ``reason_code`` (CONNACK, the four acknowledgements, DISCONNECT, AUTH),
``reason_codes`` (SUBACK, UNSUBACK), then ``conn_id``, ``version_assumed``, ``wire_len``, and for
anomalies ``kind`` and ``detail``.

The JSONL writer is on the hot path of a million-packet capture, so it formats by hand (with
``json.dumps`` only for strings, cached per topic) instead of building a dict per packet. With
the optional C accelerator (:mod:`qosinspect._accel`), :meth:`LineFormatter.write_all` lets
``_speedups.jsonl_batch`` write the lines of PUBLISH and acknowledgement events from the same
cached parts (:meth:`LineFormatter._conn_entry`, :meth:`LineFormatter._pub_entry`); every other
line is still made here. ``tests/speedups`` checks that the output is the same byte for byte.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import _accel
from ..events import Anomaly, ConnectionInfo, Event, MqttPacketEvent
from ..mqtt.enums import Direction, PacketType
from ..mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
)

__all__ = ["FIELDS", "LineFormatter", "event_row", "formatter"]

_JsonlBatch = Callable[[Callable[[Any], "str | None"], Iterator[Any], int],
                       tuple[str, int, bool, BaseException | None]]

FIELDS = ("frame", "ts", "ts_ns", "src", "dst", "direction", "version", "type", "qos", "dup",
          "retain", "packet_id", "topic", "payload_len", "client_id", "reason_code",
          "reason_codes", "conn_id", "version_assumed", "wire_len", "kind", "detail")

_REASON_ONE = (ConnAck, PubAck, PubRec, PubRel, PubComp, Disconnect, Auth)
_REASON_MANY = (SubAck, UnsubAck)
_TYPE_NAMES = {int(t): t.name for t in PacketType}


#: Cached line parts per connection and direction: cleared beyond this many (memory stays flat
#: with 100,000 concurrent connections; the decoder tracks at most 25,000 at once).
_MAX_ENDS = 20_000


def _ends(conn: ConnectionInfo | None, d: Direction | None) -> tuple[str | None, str | None]:
    if conn is None:
        return None, None
    if d is Direction.B2C:
        return str(conn.broker), str(conn.client)
    return str(conn.client), str(conn.broker)


def event_row(ev: MqttPacketEvent | Anomaly) -> dict[str, Any]:
    """The fields of one packet or anomaly as a dict (JSON-ready)."""
    src, dst = _ends(ev.conn, ev.direction)
    row: dict[str, Any] = dict.fromkeys(FIELDS)
    row.update(frame=ev.frame, ts=ev.ts_ns / 1e9, ts_ns=ev.ts_ns, src=src, dst=dst,
               direction=ev.direction.value if ev.direction is not None else None,
               conn_id=ev.conn.conn_id if ev.conn is not None else None)
    if type(ev) is Anomaly:
        row.update(type="ANOMALY", kind=ev.kind, detail=ev.detail)
        return row
    assert type(ev) is MqttPacketEvent
    p = ev.packet
    row.update(version=ev.version, type=p.packet_type.name, wire_len=ev.wire_len,
               version_assumed=ev.version_assumed)
    if type(p) is Publish:
        row.update(qos=p.qos, dup=p.dup, retain=p.retain, packet_id=p.packet_id, topic=p.topic,
                   payload_len=len(p.payload))
    elif type(p) is Connect:
        row["client_id"] = p.client_id
    else:
        row["packet_id"] = getattr(p, "packet_id", None)
    if isinstance(p, _REASON_ONE):
        row["reason_code"] = int(p.reason_code)
    elif isinstance(p, _REASON_MANY):
        row["reason_codes"] = [int(c) for c in p.reason_codes]
    return row


def _describe(p: Any) -> str:
    """The info column of the table: what Wireshark's summary line would say, shorter."""
    t = type(p)
    if t is Publish:
        flags = "".join((" dup" if p.dup else "", " retain" if p.retain else ""))
        pid = f" id={p.packet_id}" if p.packet_id is not None else ""
        return f"PUBLISH q{p.qos}{pid}{flags} [{p.topic}] len={len(p.payload)}"
    if t is Connect:
        return f"CONNECT client_id={p.client_id!r} keep_alive={p.keep_alive}" + (
            " clean" if p.clean_start else "")
    if t is ConnAck:
        return f"CONNACK rc={int(p.reason_code)}" + (" session_present" if p.session_present
                                                      else "")
    if t in (PubAck, PubRec, PubRel, PubComp):
        rc = f" rc={int(p.reason_code)}" if p.reason_code else ""
        return f"{p.packet_type.name} id={p.packet_id}{rc}"
    if t is Subscribe:
        subs = ", ".join(f"{s.topic_filter} q{s.qos}" for s in p.subscriptions)
        return f"SUBSCRIBE id={p.packet_id} [{subs}]"
    if t is Unsubscribe:
        return f"UNSUBSCRIBE id={p.packet_id} [{', '.join(p.topic_filters)}]"
    if t in (SubAck, UnsubAck):
        codes = ",".join(str(int(c)) for c in p.reason_codes)
        return f"{p.packet_type.name} id={p.packet_id} [{codes}]"
    if t in (Disconnect, Auth):
        rc = f" rc={int(p.reason_code)}" if p.reason_code else ""
        return f"{p.packet_type.name}{rc}"
    return str(p.packet_type.name)


class LineFormatter:
    """Formats events as lines; call with an event, get the line (``None``: not printed).

    Only packet events and anomalies are printed; connection, gap and retransmission events
    are summed up elsewhere (every gap is also a ``stream_gap`` anomaly).
    """

    def __init__(self, fmt: str) -> None:
        if fmt not in ("table", "jsonl", "csv"):
            raise ValueError(f"unknown format {fmt!r}")
        self.fmt = fmt
        self.t0: int | None = None
        self._ends: dict[tuple[int, Direction | None, int | None, bool],
                         tuple[ConnectionInfo, str, str]] = {}
        self._pub: dict[tuple[str, int, bool, bool], tuple[str, str]] = {}
        self._csv_buf = io.StringIO()
        self._csv = csv.writer(self._csv_buf, lineterminator="\n")
        #: ``_speedups.jsonl_batch`` when the C accelerator writes the JSONL lines, else None.
        self._accel: _JsonlBatch | None = (
            _accel.speedups.jsonl_batch if _accel.speedups is not None and _accel.enabled()
            else None)

    def header(self) -> str | None:
        """The line to print first (the CSV header), if any."""
        if self.fmt == "csv":
            return ",".join(FIELDS) + "\n"
        return None

    def __call__(self, ev: Event) -> str | None:
        if type(ev) is MqttPacketEvent:
            if self.fmt == "jsonl":
                return self._jsonl_packet(ev)
            if self.fmt == "table":
                return self._table(ev)
            return self._csv_row(event_row(ev))
        if type(ev) is Anomaly:
            if self.fmt == "jsonl":
                return json.dumps(event_row(ev), ensure_ascii=False, separators=(",", ":")) + "\n"
            if self.fmt == "table":
                return self._table(ev)
            return self._csv_row(event_row(ev))
        if self.t0 is None:
            # the table's times count from the first event (a connection's first frame, its
            # SYN when captured), as the analysis' ladder and --since/--until do, and as
            # Wireshark does for a capture that starts with the connection
            self.t0 = ev.ts_ns
        return None

    def write_all(self, events: Iterable[Event], write: Callable[[str], object],
                  tick: Callable[[int], None] | None = None) -> int:
        """Format every event and ``write`` the lines in batches; returns the event count.

        ``tick(n)`` is called every 16384 events (a progress display). The loop is the CLI's
        hot path: packet events in JSONL take a method call and nothing else; with the C
        accelerator, ``_speedups.jsonl_batch`` runs the loop and writes the lines of PUBLISH
        and acknowledgement events itself (from the parts :meth:`_conn_entry` and
        :meth:`_pub_entry` cache), asking this object for every other line.
        """
        if self._accel is not None and self.fmt == "jsonl":
            return self._write_all_accel(iter(events), write, tick)
        batch: list[str] = []
        append = batch.append
        mpe = MqttPacketEvent
        fast = self._jsonl_packet if self.fmt == "jsonl" else None
        n = 0
        try:
            for ev in events:
                n += 1
                if fast is not None and type(ev) is mpe:
                    append(fast(ev))
                else:
                    line = self(ev)
                    if line is None:
                        continue
                    append(line)
                if len(batch) >= 2048:
                    write("".join(batch))
                    batch.clear()
                    if tick is not None and n >= 16384:
                        tick(n)
        finally:
            if batch:
                write("".join(batch))
        return n

    def _write_all_accel(self, it: Iterator[Event], write: Callable[[str], object],
                         tick: Callable[[int], None] | None) -> int:
        batch = self._accel
        assert batch is not None
        n = 0
        while True:
            text, count, done, error = batch(self, it, 8192)
            n += count
            if text:
                write(text)
            if error is not None:
                raise error
            if done:
                return n
            if tick is not None and n >= 16384:
                tick(n)

    def _csv_row(self, row: dict[str, Any]) -> str:
        rc = row["reason_codes"]
        if rc is not None:
            row["reason_codes"] = ";".join(str(c) for c in rc)
        buf = self._csv_buf
        buf.seek(0)
        buf.truncate()
        self._csv.writerow(["" if row[f] is None else row[f] for f in FIELDS])
        return buf.getvalue()

    def _table(self, ev: MqttPacketEvent | Anomaly) -> str:
        if self.t0 is None:
            self.t0 = ev.ts_ns
        rel = (ev.ts_ns - self.t0) / 1e9
        src, dst = _ends(ev.conn, ev.direction)
        arrow = f"{src} → {dst}" if src is not None else "-"
        d = ev.direction.value if ev.direction is not None else "?"
        if type(ev) is Anomaly:
            return f"{ev.frame:>7} {rel:12.6f} {arrow:<45} {d:<3}    ANOMALY {ev.kind}: " \
                   f"{ev.detail}\n"
        assert type(ev) is MqttPacketEvent
        v = {3: "3.1", 4: "3.1.1", 5: "5.0"}.get(ev.version or 0, "?")
        if ev.version_assumed:
            v += "?"
        return f"{ev.frame:>7} {rel:12.6f} {arrow:<45} {d:<3} {v:<6} {_describe(ev.packet)}\n"

    def _jsonl_packet(self, ev: MqttPacketEvent) -> str:
        # Constant parts are cached: per connection and direction (addresses, version), and
        # per PUBLISH shape (topic and flags), so a line is a handful of integers between them.
        # ``ts`` is written from the integer nanoseconds (exact, and twice as fast as a float).
        conn = ev.conn
        entry = self._ends.get((id(conn), ev.direction, ev.version, ev.version_assumed))
        if entry is None or entry[0] is not conn:
            entry = self._conn_entry(ev)
        _, mid, tail = entry
        p = ev.packet
        ts = ev.ts_ns
        if type(p) is Publish:
            pub = self._pub.get((p.topic, p.qos, p.dup, p.retain))
            if pub is None:
                pub = self._pub_entry(p)
            pid = "null" if p.packet_id is None else p.packet_id
            return (f'{{"frame":{ev.frame},"ts":{ts // 1_000_000_000}.{ts % 1_000_000_000:09d},'
                    f'"ts_ns":{ts}{mid}{pub[0]}{pid}{pub[1]}{len(p.payload)},"client_id":null,'
                    f'"reason_code":null,"reason_codes":null{tail}{ev.wire_len}{_END}')
        if isinstance(p, _ACKS):
            return (f'{{"frame":{ev.frame},"ts":{ts // 1_000_000_000}.{ts % 1_000_000_000:09d},'
                    f'"ts_ns":{ts}{mid}{_ACK_TYPE[type(p)]}{p.packet_id},"topic":null,'
                    f'"payload_len":null,"client_id":null,"reason_code":{int(p.reason_code)},'
                    f'"reason_codes":null{tail}{ev.wire_len}{_END}')
        return json.dumps(event_row(ev), ensure_ascii=False, separators=(",", ":")) + "\n"

    def _conn_entry(self, ev: MqttPacketEvent) -> tuple[ConnectionInfo, str, str]:
        """The constant parts of a line around the packet fields, per connection, direction
        and version: ``(conn, mid, tail)``. Cached by the connection's identity (hashing a
        dataclass is slow); the entry keeps the ConnectionInfo alive and is checked against
        it, so a recycled id can never match."""
        conn = ev.conn
        key = (id(conn), ev.direction, ev.version, ev.version_assumed)
        entry = self._ends.get(key)
        if entry is None or entry[0] is not conn:
            if len(self._ends) > _MAX_ENDS:
                self._ends.clear()
            entry = self._ends[key] = (conn, *self._conn_parts(ev))
        return entry

    def _pub_entry(self, p: Publish) -> tuple[str, str]:
        """The constant parts of a PUBLISH line per shape (topic, qos, dup, retain):
        before the packet id and before the payload length."""
        shape = (p.topic, p.qos, p.dup, p.retain)
        pub = self._pub.get(shape)
        if pub is None:
            if len(self._pub) > 10_000:
                self._pub.clear()
            pub = self._pub[shape] = (
                f',"type":"PUBLISH","qos":{p.qos},"dup":{"true" if p.dup else "false"},'
                f'"retain":{"true" if p.retain else "false"},"packet_id":',
                f',"topic":{json.dumps(p.topic, ensure_ascii=False)},"payload_len":')
        return pub

    @staticmethod
    def _conn_parts(ev: MqttPacketEvent) -> tuple[str, str]:
        s, t = _ends(ev.conn, ev.direction)
        d = ev.direction
        direction = f'"{d.value}"' if d is not None else "null"
        version = "null" if ev.version is None else str(ev.version)
        assumed = "true" if ev.version_assumed else "false"
        return (f',"src":"{s}","dst":"{t}","direction":{direction},"version":{version}',
                f',"conn_id":{ev.conn.conn_id},"version_assumed":{assumed},"wire_len":')


_END = ',"kind":null,"detail":null}\n'
_ACKS = (PubAck, PubRec, PubRel, PubComp)
_ACK_TYPE: dict[type, str] = {
    cls: f',"type":"{cls.__name__.upper()}","qos":null,"dup":null,"retain":null,"packet_id":'
    for cls in _ACKS}


def formatter(fmt: str) -> LineFormatter:
    """A :class:`LineFormatter` for ``table``, ``jsonl`` or ``csv``."""
    return LineFormatter(fmt)


if _accel.speedups is not None:
    _accel.speedups.configure_jsonl(MqttPacketEvent, Publish, _ACKS,
                                    tuple(_ACK_TYPE[cls] for cls in _ACKS))
