"""Encoding what the broker sends, fast: PUBLISH and the plain acknowledgements of every QoS
flow are most of its output, so they skip the general encoder (:func:`~..mqtt.codec.encode`,
which every other packet and every unusual case still goes through)."""

from __future__ import annotations

from ..mqtt.codec import encode
from ..mqtt.packets import ConnAck, Packet, PubAck, PubComp, Publish, PubRec, PubRel
from ..mqtt.properties import NO_PROPERTIES, PropertyId

__all__ = ["encode_out"]

_ACK_FIRST: dict[type, int] = {PubAck: 0x40, PubRec: 0x50, PubRel: 0x62, PubComp: 0x70}
_ALIAS = int(PropertyId.TOPIC_ALIAS)


def encode_out(packet: Packet, version: int, topics: dict[str, bytes] | None = None) -> bytes:
    """``encode`` with fast paths for PUBLISH and plain acknowledgements.

    ``topics`` caches encoded topic names (the server keeps one; most traffic reuses a few).
    """
    kind = type(packet)
    if kind is Publish:
        p: Publish = packet  # type: ignore[assignment]
        props = p.properties
        extra = b""
        if props.items and version >= 5:       # (.items: bool(props) is a Python call)
            items = props.items
            if len(items) != 1 or items[0][0] != _ALIAS:
                return encode(p, version)
            alias = items[0][1]  # the topic alias this broker sets: 3 bytes of properties
            assert isinstance(alias, int)
            extra = bytes((_ALIAS, alias >> 8, alias & 0xFF))
        topic = topics.get(p.topic) if topics is not None else None
        if topic is None:
            topic = p.topic.encode()
            if topics is not None:
                if len(topics) > 4096:
                    topics.clear()
                topics[p.topic] = topic
        qos = p.qos
        tlen = len(topic)
        payload = p.payload
        n = 2 + tlen + len(payload) + (2 if qos else 0) + (1 + len(extra) if version >= 5 else 0)
        first = 0x30 | (qos << 1) | (8 if p.dup else 0) | (1 if p.retain else 0)
        if n < 128:
            head = bytes((first, n, tlen >> 8, tlen & 0xFF))
        elif n < 16384:
            head = bytes((first, 0x80 | (n & 0x7F), n >> 7, tlen >> 8, tlen & 0xFF))
        else:
            return encode(p._replace(properties=NO_PROPERTIES), version)
        if qos:
            pid = p.packet_id or 0
            tail = bytes((pid >> 8, pid & 0xFF)) if version < 5 else \
                bytes((pid >> 8, pid & 0xFF, len(extra))) + extra
        else:
            tail = b"" if version < 5 else bytes((len(extra),)) + extra
        return b"".join((head, topic, tail, payload))
    ack_first = _ACK_FIRST.get(kind)
    if ack_first is not None:
        ack: PubAck = packet  # type: ignore[assignment]
        if not ack.reason_code and not ack.properties.items:
            pid = ack.packet_id
            return bytes((ack_first, 2, pid >> 8, pid & 0xFF))
    if version < 5 and isinstance(packet, ConnAck) and packet.properties:
        packet = packet._replace(properties=NO_PROPERTIES)
    return encode(packet, version)
