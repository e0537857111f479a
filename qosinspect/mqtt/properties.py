"""MQTT 5.0 properties: the table of every property id (2.2.2.2), and the Properties value.

A property list keeps its items in wire order, because real peers order them freely and a codec
that re-sorts cannot reproduce their bytes. Typed accessors (``props.topic_alias``) read it.

Rules enforced when decoding, each a reason code the peer would get:
- an id that does not exist -> malformed (0x81)
- a property not allowed in that packet (or in a will) -> malformed (0x81): "A Control Packet
  which contains an Identifier which is not valid for its packet type ... is a Malformed Packet"
  (2.2.2.2)
- a single-valued property given twice -> protocol error (0x82) ("It is a Protocol Error to
  include ... more than once", in the text of each property); only User Property (any packet)
  and Subscription Identifier (PUBLISH only) may repeat
- values outside their range (a flag byte other than 0/1, a zero Receive Maximum, Topic Alias,
  Maximum Packet Size or Subscription Identifier) -> protocol error (0x82). The Payload Format
  Indicator is not such a flag: the specification gives 0 and 1 a meaning but no rule against
  other values, so they are kept as sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, TypeVar, overload

from .enums import PacketType

__all__ = [
    "NO_PROPERTIES",
    "PROPERTY_SPECS",
    "WILL_CONTEXT",
    "Properties",
    "PropertyId",
    "PropertySpec",
    "PropertyType",
]

#: Pseudo packet-type number for the property list of a will message in CONNECT.
WILL_CONTEXT = 16


class PropertyType(IntEnum):
    BYTE = 1
    TWO_BYTE = 2
    FOUR_BYTE = 4
    VARINT = 5
    UTF8 = 6
    BINARY = 7
    UTF8_PAIR = 8


class PropertyId(IntEnum):
    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


@dataclass(frozen=True, slots=True)
class PropertySpec:
    """One row of MQTT 5.0 table 2-4."""

    pid: PropertyId
    name: str
    type: PropertyType
    allowed_in: frozenset[int]
    repeatable_in: frozenset[int] = frozenset()
    flag: bool = False          # a Byte that must be 0 or 1
    nonzero: bool = False       # zero is a protocol error


_P = PacketType
_ALL_WITH_PROPS = frozenset({
    _P.CONNECT, _P.CONNACK, _P.PUBLISH, WILL_CONTEXT, _P.PUBACK, _P.PUBREC, _P.PUBREL,
    _P.PUBCOMP, _P.SUBSCRIBE, _P.SUBACK, _P.UNSUBSCRIBE, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH,
})


def _spec(pid: PropertyId, ptype: PropertyType, allowed: set[int], **kw: Any) -> PropertySpec:
    return PropertySpec(pid, pid.name.lower(), ptype, frozenset(allowed), **kw)


_T = PropertyType
_W = WILL_CONTEXT
PROPERTY_SPECS: dict[int, PropertySpec] = {s.pid: s for s in (
    # Only 0 and 1 have a meaning, but unlike the flags below the specification does not make
    # another value an error (3.3.2.3.2), and mosquitto clients send others: kept as sent.
    _spec(PropertyId.PAYLOAD_FORMAT_INDICATOR, _T.BYTE, {_P.PUBLISH, _W}),
    _spec(PropertyId.MESSAGE_EXPIRY_INTERVAL, _T.FOUR_BYTE, {_P.PUBLISH, _W}),
    _spec(PropertyId.CONTENT_TYPE, _T.UTF8, {_P.PUBLISH, _W}),
    _spec(PropertyId.RESPONSE_TOPIC, _T.UTF8, {_P.PUBLISH, _W}),
    _spec(PropertyId.CORRELATION_DATA, _T.BINARY, {_P.PUBLISH, _W}),
    _spec(PropertyId.SUBSCRIPTION_IDENTIFIER, _T.VARINT, {_P.PUBLISH, _P.SUBSCRIBE},
          repeatable_in=frozenset({_P.PUBLISH}), nonzero=True),
    _spec(PropertyId.SESSION_EXPIRY_INTERVAL, _T.FOUR_BYTE,
          {_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
    _spec(PropertyId.ASSIGNED_CLIENT_IDENTIFIER, _T.UTF8, {_P.CONNACK}),
    _spec(PropertyId.SERVER_KEEP_ALIVE, _T.TWO_BYTE, {_P.CONNACK}),
    _spec(PropertyId.AUTHENTICATION_METHOD, _T.UTF8, {_P.CONNECT, _P.CONNACK, _P.AUTH}),
    _spec(PropertyId.AUTHENTICATION_DATA, _T.BINARY, {_P.CONNECT, _P.CONNACK, _P.AUTH}),
    _spec(PropertyId.REQUEST_PROBLEM_INFORMATION, _T.BYTE, {_P.CONNECT}, flag=True),
    _spec(PropertyId.WILL_DELAY_INTERVAL, _T.FOUR_BYTE, {_W}),
    _spec(PropertyId.REQUEST_RESPONSE_INFORMATION, _T.BYTE, {_P.CONNECT}, flag=True),
    _spec(PropertyId.RESPONSE_INFORMATION, _T.UTF8, {_P.CONNACK}),
    _spec(PropertyId.SERVER_REFERENCE, _T.UTF8, {_P.CONNACK, _P.DISCONNECT}),
    _spec(PropertyId.REASON_STRING, _T.UTF8, {
        _P.CONNACK, _P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP, _P.SUBACK, _P.UNSUBACK,
        _P.DISCONNECT, _P.AUTH}),
    _spec(PropertyId.RECEIVE_MAXIMUM, _T.TWO_BYTE, {_P.CONNECT, _P.CONNACK}, nonzero=True),
    _spec(PropertyId.TOPIC_ALIAS_MAXIMUM, _T.TWO_BYTE, {_P.CONNECT, _P.CONNACK}),
    _spec(PropertyId.TOPIC_ALIAS, _T.TWO_BYTE, {_P.PUBLISH}, nonzero=True),
    _spec(PropertyId.MAXIMUM_QOS, _T.BYTE, {_P.CONNACK}, flag=True),
    _spec(PropertyId.RETAIN_AVAILABLE, _T.BYTE, {_P.CONNACK}, flag=True),
    _spec(PropertyId.USER_PROPERTY, _T.UTF8_PAIR, set(_ALL_WITH_PROPS),
          repeatable_in=_ALL_WITH_PROPS),
    _spec(PropertyId.MAXIMUM_PACKET_SIZE, _T.FOUR_BYTE, {_P.CONNECT, _P.CONNACK}, nonzero=True),
    _spec(PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE, _T.BYTE, {_P.CONNACK}, flag=True),
    _spec(PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE, _T.BYTE, {_P.CONNACK}, flag=True),
    _spec(PropertyId.SHARED_SUBSCRIPTION_AVAILABLE, _T.BYTE, {_P.CONNACK}, flag=True),
)}

_BY_NAME: dict[str, PropertySpec] = {s.name: s for s in PROPERTY_SPECS.values()}

PropertyValue = int | str | bytes | tuple[str, str]
T = TypeVar("T")


class _Single(Generic[T]):
    """Typed read access to a single-valued property: ``None`` when absent."""

    def __init__(self, pid: PropertyId) -> None:
        self.pid = int(pid)

    @overload
    def __get__(self, obj: None, owner: type) -> _Single[T]: ...
    @overload
    def __get__(self, obj: Properties, owner: type) -> T | None: ...
    def __get__(self, obj: Properties | None, owner: type) -> T | _Single[T] | None:
        if obj is None:
            return self
        for pid, value in obj.items:
            if pid == self.pid:
                return value  # type: ignore[return-value]
        return None


@dataclass(frozen=True, slots=True)
class Properties:
    """An MQTT 5.0 property list, in wire order. Build one with :meth:`of`."""

    items: tuple[tuple[int, PropertyValue], ...] = ()

    @classmethod
    def of(cls, **values: Any) -> Properties:
        """``Properties.of(topic_alias=1, user_property=[("k", "v")], ...)``.

        Names are the lower-case property names; ``user_property`` and ``subscription_identifier``
        take a list for several values.
        """
        items: list[tuple[int, PropertyValue]] = []
        for name, value in values.items():
            spec = _BY_NAME.get(name)
            if spec is None:
                raise TypeError(f"unknown MQTT 5 property {name!r}")
            if value is None:
                continue
            if spec.pid in (PropertyId.USER_PROPERTY, PropertyId.SUBSCRIPTION_IDENTIFIER) and \
                    isinstance(value, list):
                items.extend((int(spec.pid), _coerce(spec, v)) for v in value)
            else:
                items.append((int(spec.pid), _coerce(spec, value)))
        return cls(tuple(items)) if items else NO_PROPERTIES

    def __bool__(self) -> bool:
        return bool(self.items)

    def get_all(self, pid: int) -> list[PropertyValue]:
        return [v for p, v in self.items if p == pid]

    def without(self, pid: int) -> Properties:
        kept = tuple(item for item in self.items if item[0] != pid)
        return Properties(kept) if kept else NO_PROPERTIES

    def to_dict(self) -> dict[str, Any]:
        """Names to values; repeatable properties become lists (JSON-friendly apart from bytes)."""
        out: dict[str, Any] = {}
        for pid, value in self.items:
            spec = PROPERTY_SPECS[pid]
            if spec.repeatable_in:
                out.setdefault(spec.name, []).append(
                    list(value) if isinstance(value, tuple) else value)
            else:
                out[spec.name] = value
        return out

    @property
    def user_properties(self) -> list[tuple[str, str]]:
        return [v for p, v in self.items if p == PropertyId.USER_PROPERTY]  # type: ignore[misc]

    @property
    def subscription_identifiers(self) -> list[int]:
        return [v for p, v in self.items  # type: ignore[misc]
                if p == PropertyId.SUBSCRIPTION_IDENTIFIER]

    payload_format_indicator = _Single[int](PropertyId.PAYLOAD_FORMAT_INDICATOR)
    message_expiry_interval = _Single[int](PropertyId.MESSAGE_EXPIRY_INTERVAL)
    content_type = _Single[str](PropertyId.CONTENT_TYPE)
    response_topic = _Single[str](PropertyId.RESPONSE_TOPIC)
    correlation_data = _Single[bytes](PropertyId.CORRELATION_DATA)
    session_expiry_interval = _Single[int](PropertyId.SESSION_EXPIRY_INTERVAL)
    assigned_client_identifier = _Single[str](PropertyId.ASSIGNED_CLIENT_IDENTIFIER)
    server_keep_alive = _Single[int](PropertyId.SERVER_KEEP_ALIVE)
    authentication_method = _Single[str](PropertyId.AUTHENTICATION_METHOD)
    authentication_data = _Single[bytes](PropertyId.AUTHENTICATION_DATA)
    request_problem_information = _Single[int](PropertyId.REQUEST_PROBLEM_INFORMATION)
    will_delay_interval = _Single[int](PropertyId.WILL_DELAY_INTERVAL)
    request_response_information = _Single[int](
        PropertyId.REQUEST_RESPONSE_INFORMATION)
    response_information = _Single[str](PropertyId.RESPONSE_INFORMATION)
    server_reference = _Single[str](PropertyId.SERVER_REFERENCE)
    reason_string = _Single[str](PropertyId.REASON_STRING)
    receive_maximum = _Single[int](PropertyId.RECEIVE_MAXIMUM)
    topic_alias_maximum = _Single[int](PropertyId.TOPIC_ALIAS_MAXIMUM)
    topic_alias = _Single[int](PropertyId.TOPIC_ALIAS)
    maximum_qos = _Single[int](PropertyId.MAXIMUM_QOS)
    retain_available = _Single[int](PropertyId.RETAIN_AVAILABLE)
    maximum_packet_size = _Single[int](PropertyId.MAXIMUM_PACKET_SIZE)
    wildcard_subscription_available = _Single[int](
        PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE)
    subscription_identifier_available = _Single[int](
        PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE)
    shared_subscription_available = _Single[int](
        PropertyId.SHARED_SUBSCRIPTION_AVAILABLE)


def _coerce(spec: PropertySpec, value: Any) -> PropertyValue:
    if spec.type is PropertyType.UTF8_PAIR:
        key, val = value
        return (str(key), str(val))
    if spec.type is PropertyType.BINARY:
        return bytes(value)
    if spec.type is PropertyType.UTF8:
        return str(value)
    return int(value)


NO_PROPERTIES = Properties()
