"""The boundary between traffic sources and the analysis: packet events and anomalies.

The pcap decoder, the tshark engine and the live taps in the broker and client all produce these,
so the analysis never knows how the traffic was captured. Timestamps are integer nanoseconds since
the epoch, end to end.

``MqttPacketEvent`` is a NamedTuple because one is made for every MQTT packet of a capture (the
hot path); the rarer events are frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .anomalies import AnomalyKind
from .mqtt.enums import Direction
from .mqtt.packets import Packet

__all__ = [
    "Anomaly",
    "CaptureStarted",
    "ConnectionClosed",
    "ConnectionInfo",
    "ConnectionOpened",
    "Endpoint",
    "Event",
    "MqttPacketEvent",
    "StreamGap",
    "TcpDirectionStats",
    "TcpEvidence",
    "TcpRetransmission",
    "TcpStats",
    "UndecodedStream",
]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An IP address and TCP port; printed as ``ip:port``, IPv6 as ``[addr]:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One transport connection carrying MQTT.

    ``conn_id`` numbers connections in order of first appearance (0-based, like Wireshark's
    ``tcp.stream``). ``client``/``broker`` are known from the SYN, the port or the first CONNECT;
    when ``sides_known`` is False they are the first sender and its peer. ``transport`` is
    ``tcp``, ``websocket`` or ``tls``.
    """

    conn_id: int
    client: Endpoint
    broker: Endpoint
    transport: str = "tcp"
    sides_known: bool = True


class MqttPacketEvent(NamedTuple):
    """One MQTT packet seen on a connection.

    ``frame`` is the 1-based number of the frame that completed the packet (Wireshark's numbering;
    0 for live taps), ``first_frame`` the one where it began. ``wire_len`` counts the fixed header.
    ``version`` is the protocol level in force (3, 4, 5), or None if unknown.

    ``first_ts_ns`` is when the packet's first byte reached the wire (``first_frame``'s time; 0
    when the source does not know it: read it as ``ts_ns``). Why: a PUBLISH its sender wrote in
    two pieces without TCP_NODELAY waits for the peer's ACK between them (Nagle's algorithm with
    a delayed ACK); timing from completion alone hides that wait. ``ack_ts_ns``, for a packet
    whose bytes spanned several frames only (0 otherwise), is when the receiving side last sent
    a segment with an ACK before the frame that completed it: the ACK such a sender waited for.
    """

    ts_ns: int
    conn: ConnectionInfo
    direction: Direction | None
    packet: Packet
    wire_len: int
    frame: int = 0
    first_frame: int = 0
    version: int | None = None
    #: True when no CONNECT was seen and ``version`` is a default (``--mqtt-version``), not a
    #: fact read from the bytes.
    version_assumed: bool = False
    first_ts_ns: int = 0
    ack_ts_ns: int = 0


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something wrong in the traffic: malformed bytes, a protocol breach, a gap.

    ``kind`` is a short stable name (``malformed``, ``stream_gap``, ``unknown_version``,
    ``missing_connect``, ``invalid_qos``, ``unassigned_msgtype``, ``unintroduced_message``, ...).
    ``packet_type`` is set when the bytes were framed well enough to know it.
    """

    ts_ns: int
    conn: ConnectionInfo | None
    direction: Direction | None
    kind: AnomalyKind
    detail: str
    frame: int = 0
    packet_type: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    ts_ns: int
    conn: ConnectionInfo
    frame: int = 0
    #: True when the SYN was seen; False when the capture started mid-stream.
    handshake_seen: bool = True


@dataclass(frozen=True, slots=True)
class TcpDirectionStats:
    """What one side of a TCP connection sent, as the capture decoder counted it.

    ``segments`` counts every segment seen (pure ACKs included); ``data_bytes`` the new stream
    bytes; ``retransmissions``/``retrans_bytes`` segments carrying bytes already seen (first copy
    wins); ``gaps``/``gap_bytes`` holes never filled; ``mqtt_packets`` the MQTT packets decoded
    from this direction.
    """

    segments: int = 0
    data_bytes: int = 0
    retransmissions: int = 0
    retrans_bytes: int = 0
    keepalives: int = 0
    zero_window_probes: int = 0
    out_of_order: int = 0
    gaps: int = 0
    gap_bytes: int = 0
    mqtt_packets: int = 0


@dataclass(frozen=True, slots=True)
class TcpStats:
    """Per-direction TCP statistics of one connection (``c2b``: what the client sent)."""

    c2b: TcpDirectionStats
    b2c: TcpDirectionStats


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The end of a connection: ``how`` is ``fin``, ``rst``, ``idle`` or ``end_of_capture``.

    ``closed_by`` says which side sent the FIN/RST first, when known. ``tcp`` holds the
    connection's TCP statistics when the source knows them (the capture decoder does).
    """

    ts_ns: int
    conn: ConnectionInfo
    how: str
    closed_by: Direction | None = None
    frame: int = 0
    tcp: TcpStats | None = None


@dataclass(frozen=True, slots=True)
class StreamGap:
    """Bytes missing from one direction of a stream (never zero-filled)."""

    ts_ns: int
    conn: ConnectionInfo
    direction: Direction | None
    missing_bytes: int
    frame: int = 0


@dataclass(frozen=True, slots=True)
class TcpRetransmission:
    """A TCP segment carrying bytes the reassembler already had (counted apart from MQTT)."""

    ts_ns: int
    conn: ConnectionInfo
    direction: Direction | None
    length: int
    frame: int = 0


@dataclass(frozen=True, slots=True)
class CaptureStarted:
    """The first frame of the file, whatever it carries: time 0, as in Wireshark.

    Why an event: the first MQTT packet can come seconds after the first frame (a capture
    started before the clients), and every consumer (ladder, plots, ``--since``) must count
    from the same origin Wireshark shows. The capture decoder emits it once, before any other
    event; live taps do not.
    """

    ts_ns: int
    frame: int = 1


class TcpEvidence(NamedTuple):
    """One ``tcp.analysis`` flag Wireshark would show on a frame (``kind``: ``lost_segment``,
    ``duplicate_ack``, ``fast_retransmission``, ``retransmission``,
    ``spurious_retransmission``, ``out_of_order``, ``ack_lost_segment`` ...), on any TCP
    connection, encrypted ones too. ``src`` sent the segment; ``conn_id`` is Wireshark's
    ``tcp.stream``. See :mod:`qosinspect.capture.tcp_analysis`."""

    ts_ns: int
    frame: int
    conn_id: int
    src: Endpoint
    dst: Endpoint
    kind: str


@dataclass(frozen=True, slots=True)
class UndecodedStream:
    """A TCP stream that carried data and was not decoded (nothing is dropped in silence).

    ``conn_id`` is its number among all TCP streams (Wireshark's ``tcp.stream``); ``client`` /
    ``server`` are known from the SYN when ``sides_known``, else the first sender and its peer.
    ``reason``: ``not_mqtt`` (probed: no CONNECT at its start, or no run of MQTT packets in a
    mid-stream capture), ``undecided`` (it ended before its bytes decided), ``detection_off``
    (not probed). ``port`` is the ``--port`` that would
    make the decoder take it. ``complete`` is False when it was reported before its end (too
    many undecoded streams counted at once).
    """

    ts_ns: int
    conn_id: int
    client: Endpoint
    server: Endpoint
    sides_known: bool
    data_bytes: int
    segments: int
    first_frame: int
    frame: int
    reason: str
    port: int
    complete: bool = True


Event = (MqttPacketEvent | Anomaly | ConnectionOpened | ConnectionClosed | StreamGap
         | TcpRetransmission | CaptureStarted | UndecodedStream | TcpEvidence)
