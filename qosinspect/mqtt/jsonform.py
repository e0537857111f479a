"""Packets as plain JSON-ready dicts and back: for test vectors, ``decode --format jsonl`` and
logs.

The form is ``{"type": "PUBLISH", <field>: <value>, ...}`` with the packet's own field names.
Bytes become ``{"hex": "..."}`` so they survive JSON exactly (``{"text": "..."}``, UTF-8, is
accepted too, for hand-written vectors); reason codes become plain ints;
properties become a list of ``[name, value]`` pairs in wire order (names as in
:class:`~qosinspect.mqtt.properties.PropertyId`, lower case).
"""

from __future__ import annotations

from typing import Any

from .enums import PacketType
from .packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
    packet_type_of,
)
from .properties import NO_PROPERTIES, PROPERTY_SPECS, Properties, PropertyType

__all__ = ["packet_from_dict", "packet_to_dict", "properties_from_list", "properties_to_list"]

_CLASSES: dict[str, type] = {
    "CONNECT": Connect, "CONNACK": ConnAck, "PUBLISH": Publish, "PUBACK": PubAck,
    "PUBREC": PubRec, "PUBREL": PubRel, "PUBCOMP": PubComp, "SUBSCRIBE": Subscribe,
    "SUBACK": SubAck, "UNSUBSCRIBE": Unsubscribe, "UNSUBACK": UnsubAck, "PINGREQ": PingReq,
    "PINGRESP": PingResp, "DISCONNECT": Disconnect, "AUTH": Auth,
}
_BY_NAME = {spec.name: spec for spec in PROPERTY_SPECS.values()}


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, Properties):
        return properties_to_list(value)
    if isinstance(value, Will | Subscription):
        return {k: _value(v) for k, v in value._asdict().items()}
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    return value


def properties_to_list(props: Properties) -> list[list[Any]]:
    return [[PROPERTY_SPECS[pid].name, _value(value)] for pid, value in props.items]


def properties_from_list(items: list[list[Any]] | None) -> Properties:
    if not items:
        return NO_PROPERTIES
    out: list[tuple[int, Any]] = []
    for name, value in items:
        spec = _BY_NAME[name]
        if spec.type is PropertyType.BINARY:
            value = _bytes(value)
        elif spec.type is PropertyType.UTF8_PAIR:
            value = (value[0], value[1])
        out.append((int(spec.pid), value))
    return Properties(tuple(out))


def packet_to_dict(packet: Packet) -> dict[str, Any]:
    out: dict[str, Any] = {"type": packet_type_of(packet).name}
    for key, value in packet._asdict().items():
        out[key] = _value(value)
    return out


def _bytes(value: Any) -> bytes | None:
    """``{"hex": "..."}`` or ``{"text": "..."}`` (UTF-8) to bytes; None stays None."""
    if value is None:
        return None
    if "text" in value:
        return str(value["text"]).encode("utf-8")
    return bytes.fromhex(value["hex"])


def packet_from_dict(data: dict[str, Any]) -> Packet:
    """The inverse of :func:`packet_to_dict`; missing fields take their defaults."""
    name = data["type"]
    cls = _CLASSES.get(name)
    if cls is None:
        raise ValueError(f"unknown packet type {name!r} (known: {', '.join(_CLASSES)})")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "type":
            continue
        if key not in cls._fields:  # type: ignore[attr-defined]
            raise ValueError(f"{name} has no field {key!r}")
        if key == "properties":
            value = properties_from_list(value)
        elif key in ("payload", "password"):
            value = _bytes(value)
        elif key == "will" and value is not None:
            value = Will(value["topic"], _bytes(value["payload"]) or b"",
                         value.get("qos", 0), value.get("retain", False),
                         properties_from_list(value.get("properties")))
        elif key == "subscriptions":
            value = tuple(Subscription(**s) for s in value)
        elif key in ("reason_codes", "topic_filters"):
            value = tuple(value)
        kwargs[key] = value
    packet: Packet = cls(**kwargs)
    return packet


# Every packet type has a class here; checked once so a new type cannot be forgotten.
assert set(_CLASSES) == {t.name for t in PacketType if t is not PacketType.RESERVED}
