"""The exception tree of qosinspect.

Every error the library raises on purpose derives from :class:`QosinspectError`, so a caller (the
CLI above all) can catch one type and turn it into a message instead of a traceback::

    QosinspectError
    ├── MQTTError                 a violation of the MQTT protocol; carries the reason code to send
    │   │                         and the byte offset where it was found
    │   ├── MalformedPacket       0x81: bytes that cannot be a valid packet
    │   ├── ProtocolError         0x82: a well-formed packet that breaks a rule
    │   │   ├── LocalProtocolError    an endpoint was asked to send what the protocol forbids
    │   │   └── RemoteProtocolError   the peer broke the protocol (wraps the codec error)
    │   ├── PacketTooLarge        0x95: larger than the configured maximum packet size
    │   ├── UnsupportedProtocolVersion  0x84 (MQTT 5) / 0x01 (3.1.x): unknown protocol name/level
    │   ├── TopicNameInvalid      0x90: bad topic name (wildcards, empty, U+0000)
    │   └── TopicFilterInvalid    0x8F: bad topic filter
    ├── CaptureError              a capture file that cannot be read (what, file, frame, offset)
    └── ConfigError               a bad scenario/configuration value (names the field)

Endpoints distinguish who broke the rules: ``LocalProtocolError`` (we were asked to send
something invalid) versus ``RemoteProtocolError`` (the peer sent it), as h11 does, so a driver
knows whether to close with a reason code or to raise to its own caller. Both are a
``ProtocolError``, as in h11, so ``except ProtocolError`` catches every protocol breach whoever
made it; a driver that closes the connection on the peer's errors by catching ``MQTTError``
re-raises ``LocalProtocolError`` first (a bug of its own caller is not the peer's fault).
"""

from __future__ import annotations

__all__ = [
    "CaptureError",
    "ConfigError",
    "LocalProtocolError",
    "MQTTError",
    "MalformedPacket",
    "PacketTooLarge",
    "ProtocolError",
    "QosinspectError",
    "RemoteProtocolError",
    "TopicFilterInvalid",
    "TopicNameInvalid",
    "UnsupportedProtocolVersion",
]


class QosinspectError(Exception):
    """Base of every error qosinspect raises deliberately."""


class MQTTError(QosinspectError):
    """A breach of the MQTT protocol.

    ``reason_code`` is the MQTT 5 reason code a server or client should send before closing
    (CONNACK or DISCONNECT); ``offset`` is the byte offset, from the start of the packet (or of the
    buffer handed to the decoder), where the problem was found, or ``None`` when not about bytes.
    """

    reason_code: int = 0x80

    def __init__(self, message: str, *, offset: int | None = None,
                 reason_code: int | None = None, packet_type: int | None = None) -> None:
        self.message = message
        self.offset = offset
        self.packet_type = packet_type
        if reason_code is not None:
            self.reason_code = reason_code
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{message}{where}")


class MalformedPacket(MQTTError):
    """The bytes cannot be parsed as the packet they claim to be (reason 0x81)."""

    reason_code = 0x81


class ProtocolError(MQTTError):
    """A parseable packet that breaks a protocol rule (reason 0x82)."""

    reason_code = 0x82


class PacketTooLarge(MQTTError):
    """Remaining length beyond the configured maximum packet size (reason 0x95)."""

    reason_code = 0x95


class UnsupportedProtocolVersion(MQTTError):
    """CONNECT with a protocol name or level this codec does not speak (reason 0x84)."""

    reason_code = 0x84


class TopicNameInvalid(MQTTError):
    """A topic name that breaks [MQTT-4.7.3-1], [MQTT-3.3.2-2] or [MQTT-4.7.3-2] (reason 0x90)."""

    reason_code = 0x90


class TopicFilterInvalid(MQTTError):
    """A topic filter with misplaced wildcards or no characters (reason 0x8F)."""

    reason_code = 0x8F


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids (a bug in the caller, not the peer).

    Raised before anything is sent; its reason code (0x82) is only a hint, since nothing went
    out to refuse.
    """


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol; ``error`` is the codec error, whose reason code, offset and
    packet type this one carries (the reason code to close the connection with)."""

    def __init__(self, error: MQTTError) -> None:
        self.error = error
        super().__init__(error.message, offset=error.offset, reason_code=error.reason_code,
                         packet_type=error.packet_type)


class CaptureError(QosinspectError):
    """A capture file that cannot be read further.

    Says which file, at which frame number and byte offset, and what is wrong, so the CLI can print
    it as is. Frames decoded before the error have already been delivered.
    """

    def __init__(self, message: str, *, path: str | None = None, frame: int | None = None,
                 offset: int | None = None) -> None:
        self.message = message
        self.path = path
        self.frame = frame
        self.offset = offset
        parts = [p for p in (path, f"frame {frame}" if frame is not None else None,
                             f"byte offset {offset}" if offset is not None else None) if p]
        prefix = ", ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ConfigError(QosinspectError):
    """A configuration or scenario value that is wrong; ``field`` names it (dotted path)."""

    def __init__(self, message: str, *, field: str | None = None,
                 path: str | None = None) -> None:
        self.field = field
        self.path = path
        where = ": ".join(p for p in (path, field) if p)
        super().__init__(f"{where}: {message}" if where else message)
