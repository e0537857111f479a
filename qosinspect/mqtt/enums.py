"""Numbers the MQTT specifications name: packet types, versions, QoS, reason codes per packet.

Reason codes are one IntEnum per packet type (MQTT 5.0 section 2.4 lists which codes each packet may
carry), so a PUBACK cannot silently carry a SUBACK-only code; MQTT 3.1/3.1.1 CONNACK return codes
and SUBACK return codes have their own enums because their numbers mean different things.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = [
    "AuthReason",
    "ConnAckReturnCode",
    "ConnectReason",
    "Direction",
    "DisconnectReason",
    "PacketType",
    "ProtocolVersion",
    "PubAckReason",
    "PubCompReason",
    "PubRecReason",
    "PubRelReason",
    "QoS",
    "SubAckReason",
    "SubAckReturnCode",
    "UnsubAckReason",
]


class Direction(StrEnum):
    """Which way a packet travels: client to broker or broker to client."""

    C2B = "c2b"
    B2C = "b2c"

    @property
    def reverse(self) -> Direction:
        return Direction.B2C if self is Direction.C2B else Direction.C2B


class ProtocolVersion(IntEnum):
    """The protocol level byte of CONNECT."""

    MQTT31 = 3   # protocol name "MQIsdp"
    MQTT311 = 4  # "MQTT"
    MQTT5 = 5    # "MQTT"

    @property
    def label(self) -> str:
        return {3: "3.1", 4: "3.1.1", 5: "5.0"}[self.value]


class PacketType(IntEnum):
    """Control packet type: the high nibble of the first byte."""

    RESERVED = 0
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class QoS(IntEnum):
    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1
    EXACTLY_ONCE = 2


class ConnAckReturnCode(IntEnum):
    """MQTT 3.1 / 3.1.1 CONNACK return codes (3.1.1 table 3.1)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


class SubAckReturnCode(IntEnum):
    """MQTT 3.1 / 3.1.1 SUBACK return codes."""

    GRANTED_QOS_0 = 0
    GRANTED_QOS_1 = 1
    GRANTED_QOS_2 = 2
    FAILURE = 0x80


class ConnectReason(IntEnum):
    """MQTT 5.0 CONNACK reason codes (3.2.2.2)."""

    SUCCESS = 0x00
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    BAD_AUTHENTICATION_METHOD = 0x8C
    TOPIC_NAME_INVALID = 0x90
    PACKET_TOO_LARGE = 0x95
    QUOTA_EXCEEDED = 0x97
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    CONNECTION_RATE_EXCEEDED = 0x9F


class PubAckReason(IntEnum):
    """MQTT 5.0 PUBACK reason codes (3.4.2.1)."""

    SUCCESS = 0x00
    NO_MATCHING_SUBSCRIBERS = 0x10
    UNSPECIFIED_ERROR = 0x80
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    NOT_AUTHORIZED = 0x87
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    QUOTA_EXCEEDED = 0x97
    PAYLOAD_FORMAT_INVALID = 0x99


class PubRecReason(IntEnum):
    """MQTT 5.0 PUBREC reason codes (3.5.2.1): the same set as PUBACK."""

    SUCCESS = 0x00
    NO_MATCHING_SUBSCRIBERS = 0x10
    UNSPECIFIED_ERROR = 0x80
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    NOT_AUTHORIZED = 0x87
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    QUOTA_EXCEEDED = 0x97
    PAYLOAD_FORMAT_INVALID = 0x99


class PubRelReason(IntEnum):
    """MQTT 5.0 PUBREL reason codes (3.6.2.1)."""

    SUCCESS = 0x00
    PACKET_IDENTIFIER_NOT_FOUND = 0x92


class PubCompReason(IntEnum):
    """MQTT 5.0 PUBCOMP reason codes (3.7.2.1)."""

    SUCCESS = 0x00
    PACKET_IDENTIFIER_NOT_FOUND = 0x92


class SubAckReason(IntEnum):
    """MQTT 5.0 SUBACK reason codes (3.9.3)."""

    GRANTED_QOS_0 = 0x00
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    UNSPECIFIED_ERROR = 0x80
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    NOT_AUTHORIZED = 0x87
    TOPIC_FILTER_INVALID = 0x8F
    PACKET_IDENTIFIER_IN_USE = 0x91
    QUOTA_EXCEEDED = 0x97
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class UnsubAckReason(IntEnum):
    """MQTT 5.0 UNSUBACK reason codes (3.11.3)."""

    SUCCESS = 0x00
    NO_SUBSCRIPTION_EXISTED = 0x11
    UNSPECIFIED_ERROR = 0x80
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    NOT_AUTHORIZED = 0x87
    TOPIC_FILTER_INVALID = 0x8F
    PACKET_IDENTIFIER_IN_USE = 0x91


class DisconnectReason(IntEnum):
    """MQTT 5.0 DISCONNECT reason codes (3.14.2.1, and 0x8C from table 2-6).

    Table 2-6 lists 0x8C Bad authentication method for CONNACK and DISCONNECT, table 3-10 of
    DISCONNECT leaves it out; a server ending a re-authentication has no better code, so it is
    accepted.
    """

    NORMAL_DISCONNECTION = 0x00
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    NOT_AUTHORIZED = 0x87
    SERVER_BUSY = 0x89
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


class AuthReason(IntEnum):
    """MQTT 5.0 AUTH reason codes (3.15.2.1)."""

    SUCCESS = 0x00
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
