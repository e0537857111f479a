"""Every anomaly kind, once: its stable name, who finds it, whether it is a fault or a note, and
its one-line meaning.

The codec (:mod:`qosinspect.mqtt.framing`), the capture decoder and the analysis all report
anomalies by these members, never by a bare string (``mypy --strict`` holds them to it, since
:class:`~qosinspect.events.Anomaly` and the analysis' log take an :class:`AnomalyKind`), and
``docs/glossary.md`` lists exactly these (``tests/analysis/test_glossary.py``). The tables and
the JSON report carry the member's value, the short stable name.

Standard library only: the codec imports it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NamedTuple

__all__ = ["KINDS", "AnomalyKind", "KindInfo", "is_note"]


class AnomalyKind(StrEnum):
    """The stable name of an anomaly (what the ``kind`` column holds)."""

    # Found by the analysis.
    MISSING_CONNECT = "missing_connect"
    PUBLISH_BEFORE_CONNACK = "publish_before_connack"
    PUBLISH_AFTER_REFUSED_CONNACK = "publish_after_refused_connack"
    ORPHAN_ACK = "orphan_ack"
    PACKET_ID_IN_USE = "packet_id_in_use"
    RESEND_WITHOUT_DUP = "resend_without_dup"
    WRONG_ACK_TYPE = "wrong_ack_type"
    INVALID_QOS = "invalid_qos"
    DUP_ON_QOS0 = "dup_on_qos0"
    SECOND_CONNECT = "second_connect"
    TOO_MANY_EXCHANGES = "too_many_exchanges"
    STREAM_GAP = "stream_gap"
    # Found by the codec or the capture decoder.
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    RESYNC = "resync"
    UNASSIGNED_MSGTYPE = "unassigned_msgtype"
    PACKET_TOO_LARGE = "packet_too_large"
    PROTOCOL_ERROR = "protocol_error"
    INVALID_TOPIC = "invalid_topic"
    INVALID_TOPIC_FILTER = "invalid_topic_filter"
    UNSUPPORTED_VERSION = "unsupported_version"
    VERSION_INFERRED = "version_inferred"
    VERSION_ASSUMED = "version_assumed"
    WEBSOCKET_MALFORMED = "websocket_malformed"
    TIMESTAMP_OUT_OF_RANGE = "timestamp_out_of_range"
    # Notes: facts about the traffic, not faults.
    ENCRYPTED = "encrypted"
    IP_FRAGMENT = "ip_fragment"
    WEBSOCKET = "websocket"
    WEBSOCKET_CLOSE = "websocket_close"
    CLOCK_JUMP = "clock_jump"
    CONNECTIONS_EVICTED = "connections_evicted"
    SESSIONS_DROPPED = "sessions_dropped"


class KindInfo(NamedTuple):
    """What the registry says of one kind."""

    found_by: str       # "analysis", "decoder", or "both"
    note: bool          # a fact about the traffic (severity "note"), not a fault
    meaning: str        # one line, as docs/glossary.md prints it


K = AnomalyKind
#: The registry: every kind, who finds it and what it means.
KINDS: Final[dict[AnomalyKind, KindInfo]] = {
    K.MISSING_CONNECT: KindInfo(
        "both", False, "packets on a connection before any CONNECT (capture started "
        "mid-session, or a broken client); once per connection."),
    K.PUBLISH_BEFORE_CONNACK: KindInfo(
        "analysis", False, "a PUBLISH after CONNECT but before CONNACK (allowed from a client, "
        "lost if the connection is refused; never from the broker)."),
    K.PUBLISH_AFTER_REFUSED_CONNACK: KindInfo(
        "analysis", False, "the client publishes after CONNACK refused it."),
    K.ORPHAN_ACK: KindInfo(
        "analysis", False, "PUBACK/PUBREC/PUBREL/PUBCOMP (or SUBACK/UNSUBACK) for a packet id "
        "with no exchange (or request) in that direction."),
    K.PACKET_ID_IN_USE: KindInfo(
        "analysis", False, "a packet id reused for another message while its exchange is in "
        "flight."),
    K.RESEND_WITHOUT_DUP: KindInfo(
        "analysis", False, "a PUBLISH sent again with DUP=0 [MQTT-3.3.1-1]."),
    K.WRONG_ACK_TYPE: KindInfo(
        "analysis", False, "PUBACK for QoS 2, or PUBREC/PUBREL/PUBCOMP for QoS 1."),
    K.INVALID_QOS: KindInfo("both", False, "a PUBLISH with QoS 3."),
    K.DUP_ON_QOS0: KindInfo(
        "analysis", False, "a QoS 0 PUBLISH with DUP=1 [MQTT-3.3.1-2]."),
    K.SECOND_CONNECT: KindInfo(
        "analysis", False, "a second CONNECT on a connection [MQTT-3.1.0-2]."),
    K.TOO_MANY_EXCHANGES: KindInfo(
        "analysis", False, "the cap on open exchanges was reached; the oldest was evicted."),
    K.STREAM_GAP: KindInfo(
        "both", False, "bytes missing from a stream (never filled; framing resynchronises)."),
    K.MALFORMED: KindInfo("decoder", False, "bytes that do not decode as the MQTT packet "
                          "their header announces."),
    K.TRUNCATED: KindInfo("decoder", False, "a packet cut short by the end of its stream."),
    K.RESYNC: KindInfo("decoder", False, "bytes skipped to find the next packet boundary after "
                       "an error or a gap."),
    K.UNASSIGNED_MSGTYPE: KindInfo("decoder", False, "packet type 0 (reserved)."),
    K.PACKET_TOO_LARGE: KindInfo("decoder", False, "a packet over the maximum packet size."),
    K.PROTOCOL_ERROR: KindInfo("decoder", False, "a packet the protocol forbids where it "
                               "stands (flags, properties, order)."),
    K.INVALID_TOPIC: KindInfo("decoder", False, "a topic name that breaks the topic rules "
                              "(wildcards, empty, bad UTF-8)."),
    K.INVALID_TOPIC_FILTER: KindInfo("decoder", False, "a topic filter that breaks the "
                                     "wildcard rules."),
    K.UNSUPPORTED_VERSION: KindInfo("decoder", False, "a CONNECT with a protocol level other "
                                    "than 3, 4 or 5."),
    K.VERSION_INFERRED: KindInfo("decoder", False, "no CONNECT seen: the MQTT version was "
                                 "inferred from the packets (the detail says which cue)."),
    K.VERSION_ASSUMED: KindInfo("decoder", False, "no CONNECT seen and no cue: the default "
                                "MQTT version was assumed."),
    K.WEBSOCKET_MALFORMED: KindInfo("decoder", False, "a WebSocket frame that does not "
                                    "decode."),
    K.ENCRYPTED: KindInfo("decoder", True, "a TLS connection: its MQTT cannot be read without "
                          "the keys."),
    K.IP_FRAGMENT: KindInfo("decoder", True, "an IP fragment (not reassembled)."),
    K.WEBSOCKET: KindInfo("decoder", True, "MQTT carried inside WebSocket frames."),
    K.WEBSOCKET_CLOSE: KindInfo("decoder", True, "a WebSocket close frame."),
    K.TIMESTAMP_OUT_OF_RANGE: KindInfo("decoder", False, "a frame stamped outside 1970..2116 "
                                       "(beyond 64-bit nanoseconds with headroom): kept with "
                                       "the previous frame's time."),
    K.CLOCK_JUMP: KindInfo("decoder", True, "the capture's clock goes back more than a second "
                           "or jumps more than a day forward at this frame."),
    K.CONNECTIONS_EVICTED: KindInfo("decoder", True, "too many connections open at once: the "
                                    "least recently active were closed (evicted)."),
    K.SESSIONS_DROPPED: KindInfo("analysis", True, "sessions with no connection for longer "
                                 "than the idle timeout (packet time) were dropped: their open "
                                 "exchanges are no longer followed, a later CONNECT starts a "
                                 "new session."),
}
del K


def is_note(kind: AnomalyKind) -> bool:
    """True for kinds that describe the traffic rather than a fault (severity ``note``)."""
    return KINDS[kind].note
