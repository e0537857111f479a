"""The records the capture layers hand to the MQTT layer, one per thing that happened on a stream.

Why tuples: a :class:`StreamData` is made for every TCP segment that carries new bytes (the hot
path of a million-frame capture), and a ``NamedTuple`` built with ``tuple.__new__`` costs a fraction
of a dataclass. Consumers dispatch on ``type(record) is StreamData`` first.

Every record carries the :class:`~qosinspect.capture.reassembly.Flow` it belongs to (or ``None``
for frame-level notices such as IP fragments), the 1-based frame number that caused it and that
frame's integer-nanosecond timestamp. The rarer records convert to the boundary types of
:mod:`qosinspect.events` with ``to_event()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..anomalies import AnomalyKind
from ..events import (
    Anomaly,
    CaptureStarted,
    ConnectionClosed,
    ConnectionOpened,
    Endpoint,
    StreamGap,
    TcpEvidence,
    TcpRetransmission,
    UndecodedStream,
)
from ..mqtt.enums import Direction

if TYPE_CHECKING:
    from .reassembly import Flow

__all__ = [
    "CaptureRecord",
    "FirstFrame",
    "Flagged",
    "FlowClosed",
    "FlowOpened",
    "Gap",
    "Notice",
    "Retransmitted",
    "StreamData",
    "Undecoded",
]


class StreamData(NamedTuple):
    """New in-order bytes of one direction, delivered by frame ``frame``.

    Feed ``data`` to the direction's stream decoder; packets it completes belong to ``frame``.
    """

    flow: Flow
    direction: Direction
    frame: int
    ts_ns: int
    data: bytes


class Gap(NamedTuple):
    """``missing_bytes`` of one direction will never be seen; delivery resumes after them.

    ``reason``: ``ack`` (the peer acknowledged bytes the capture lacks), ``snaplen`` (cut by the
    snap length), ``ooo_limit`` (out-of-order buffer full), ``close``, ``idle`` or
    ``end_of_capture`` (a hole still open when the connection ended).
    """

    flow: Flow
    direction: Direction
    frame: int
    ts_ns: int
    missing_bytes: int
    reason: str

    def to_event(self) -> StreamGap:
        return StreamGap(self.ts_ns, self.flow.info, self.direction, self.missing_bytes,
                         self.frame)


class Retransmitted(NamedTuple):
    """A TCP segment carrying ``length`` bytes the reassembler already had (first copy won)."""

    flow: Flow
    direction: Direction
    frame: int
    ts_ns: int
    length: int

    def to_event(self) -> TcpRetransmission:
        return TcpRetransmission(self.ts_ns, self.flow.info, self.direction, self.length,
                                 self.frame)


class Flagged(NamedTuple):
    """Wireshark's ``tcp.analysis`` flags of one segment (:mod:`.tcp_analysis`), sent by
    ``src`` to ``dst`` (the addresses, whatever the sides turn out to be)."""

    flow: Flow
    frame: int
    ts_ns: int
    src: Endpoint
    dst: Endpoint
    kinds: tuple[str, ...]

    def to_events(self) -> list[TcpEvidence]:
        return [TcpEvidence(self.ts_ns, self.frame, self.flow.conn_id, self.src, self.dst, k)
                for k in self.kinds]


class FlowOpened(NamedTuple):
    """A connection is tracked from now on (``frame`` is its first frame)."""

    flow: Flow
    frame: int
    ts_ns: int
    handshake_seen: bool

    def to_event(self) -> ConnectionOpened:
        return ConnectionOpened(self.ts_ns, self.flow.info, self.frame, self.handshake_seen)


class FlowClosed(NamedTuple):
    """The connection ended: ``how`` is ``fin``, ``rst``, ``idle``, ``reused`` or
    ``end_of_capture``; all its data and gaps have been emitted before this record."""

    flow: Flow
    frame: int
    ts_ns: int
    how: str
    closed_by: Direction | None
    #: The reassembler keeps its halves a while for the segments that follow a FIN or RST
    #: (Wireshark flags them): it releases the flow itself then, the decoder must not.
    lingers: bool = False

    def to_event(self) -> ConnectionClosed:
        return ConnectionClosed(self.ts_ns, self.flow.info, self.how, self.closed_by, self.frame)


class Notice(NamedTuple):
    """Something worth an anomaly below MQTT: ``kind`` is ``ip_fragment``, ``encrypted``,
    ``websocket``, ``websocket_malformed``, ``websocket_close``, ``websocket_text``,
    ``tcp_truncated``, ``clock_jump``, ``timestamp_out_of_range`` ..."""

    flow: Flow | None
    direction: Direction | None
    frame: int
    ts_ns: int
    kind: AnomalyKind
    detail: str

    def to_event(self) -> Anomaly:
        conn = self.flow.info if self.flow is not None else None
        return Anomaly(self.ts_ns, conn, self.direction, self.kind, self.detail, self.frame)


class FirstFrame(NamedTuple):
    """The file's first frame (any protocol): its time is time 0 for every consumer."""

    flow: None
    frame: int
    ts_ns: int

    def to_event(self) -> CaptureStarted:
        return CaptureStarted(self.ts_ns, self.frame)


class Undecoded(NamedTuple):
    """A stream that carried data and was not decoded (:mod:`.undecoded`)."""

    flow: None
    frame: int
    ts_ns: int
    stream: UndecodedStream

    def to_event(self) -> UndecodedStream:
        return self.stream


CaptureRecord = (StreamData | Gap | Retransmitted | FlowOpened | FlowClosed | Notice | FirstFrame
                 | Undecoded | Flagged)
