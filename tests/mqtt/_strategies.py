"""Hypothesis strategies for MQTT packets: valid ones of every type and version, and wild ones.

``packets(version)`` draws packets the protocol allows in that version (the roundtrip property:
``decode(encode(p)) == p``). ``wild_packets(version)`` draws packets of the right Python types
but with any values (wildcards in topic names, packet id 0, QoS 3, reason codes of other packets,
properties that do not belong, U+0000, lone surrogates ...): ``encode`` must either refuse them
with LocalProtocolError or produce bytes that decode to the same packet.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from qosinspect.mqtt import (
    Auth,
    AuthReason,
    ConnAck,
    ConnAckReturnCode,
    Connect,
    ConnectReason,
    Disconnect,
    DisconnectReason,
    PacketType,
    PingReq,
    PingResp,
    PubAck,
    PubAckReason,
    PubComp,
    PubCompReason,
    Publish,
    PubRec,
    PubRecReason,
    PubRel,
    PubRelReason,
    SubAck,
    SubAckReason,
    SubAckReturnCode,
    Subscribe,
    Subscription,
    UnsubAck,
    UnsubAckReason,
    Unsubscribe,
    Will,
)
from qosinspect.mqtt.properties import (
    NO_PROPERTIES,
    PROPERTY_SPECS,
    WILL_CONTEXT,
    Properties,
    PropertyType,
)
from qosinspect.mqtt.wire import MAX_VARINT

# Any character MQTT strings may hold: no U+0000 [MQTT-1.5.4-2], no surrogates [MQTT-1.5.4-1].
_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
texts = st.text(_CHARS, max_size=12)
_LEVEL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#/"),
                 max_size=6)
topic_names = st.lists(_LEVEL, min_size=1, max_size=4).map("/".join).filter(bool)
_plain_filters = st.builds(
    lambda levels, hash_: "/".join([*levels, "#"] if hash_ else levels),
    st.lists(st.one_of(_LEVEL, st.just("+")), max_size=4), st.booleans(),
).filter(lambda f: bool(f) and not f.startswith("$share/"))
share_names = st.text(st.characters(blacklist_categories=("Cs",),
                                    blacklist_characters="\x00+#/"), min_size=1, max_size=5)
shared_filters = st.builds(lambda g, f: f"$share/{g}/{f}", share_names, _plain_filters)
topic_filters = st.one_of(_plain_filters, shared_filters)
payloads = st.binary(max_size=48)
packet_ids = st.integers(1, 0xFFFF)


def _codes(enum: Any) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(int(m) for m in enum))


def property_value(pid: int) -> st.SearchStrategy[Any]:
    """A valid value for property ``pid``."""
    spec = PROPERTY_SPECS[pid]
    low = 1 if spec.nonzero else 0
    ptype = spec.type
    if ptype is PropertyType.BYTE:
        return st.integers(0, 1) if spec.flag else st.integers(0, 0xFF)
    if ptype is PropertyType.TWO_BYTE:
        return st.integers(low, 0xFFFF)
    if ptype is PropertyType.FOUR_BYTE:
        return st.integers(low, 0xFFFF_FFFF)
    if ptype is PropertyType.VARINT:
        return st.integers(low, MAX_VARINT)
    if ptype is PropertyType.UTF8:
        return texts
    if ptype is PropertyType.BINARY:
        return st.binary(max_size=12)
    return st.tuples(texts, texts)


@st.composite
def properties(draw: st.DrawFn, context: int, *, exclude: tuple[int, ...] = ()) -> Properties:
    """A valid property list for packet type ``context`` (or WILL_CONTEXT), in any order."""
    allowed = sorted(pid for pid, spec in PROPERTY_SPECS.items()
                     if context in spec.allowed_in and pid not in exclude)
    chosen = draw(st.lists(st.sampled_from(allowed), unique=True, max_size=4))
    items = [(pid, draw(property_value(pid))) for pid in chosen]
    for pid in allowed:
        if context in PROPERTY_SPECS[pid].repeatable_in:
            items += [(pid, v) for v in draw(st.lists(property_value(pid), max_size=2))]
    items = draw(st.permutations(items))
    return Properties(tuple(items)) if items else NO_PROPERTIES


def _props(version: int, context: int, **kw: Any) -> st.SearchStrategy[Properties]:
    return properties(context, **kw) if version >= 5 else st.just(NO_PROPERTIES)


@st.composite
def connects(draw: st.DrawFn, version: int) -> Connect:
    username = draw(st.none() | texts)
    password = draw(st.none() | st.binary(max_size=12))
    if version < 5 and username is None:
        password = None  # [MQTT-3.1.2-22]
    will = draw(st.none() | st.builds(Will, topic_names, payloads, st.integers(0, 2),
                                      st.booleans(), _props(version, WILL_CONTEXT)))
    return Connect(draw(texts), version, draw(st.booleans()), draw(st.integers(0, 0xFFFF)),
                   username, password, will, draw(_props(version, PacketType.CONNECT)))


@st.composite
def connacks(draw: st.DrawFn, version: int) -> ConnAck:
    code = draw(_codes(ConnectReason if version >= 5 else ConnAckReturnCode))
    # No session present in 3.1; never with a refusal [MQTT-3.2.2-4].
    session_present = version > 3 and code == 0 and draw(st.booleans())
    return ConnAck(session_present, code, draw(_props(version, PacketType.CONNACK)))


@st.composite
def publishes(draw: st.DrawFn, version: int) -> Publish:
    qos = draw(st.integers(0, 2))
    props = draw(_props(version, PacketType.PUBLISH))
    topic = draw(topic_names)
    if props.topic_alias is not None and draw(st.booleans()):
        topic = ""  # MQTT 5: the alias stands for the topic
    return Publish(topic, draw(payloads), qos, qos > 0 and draw(st.booleans()), draw(st.booleans()),
                   draw(packet_ids) if qos else None, props)


def _acks(cls: Any, enum: Any, ptype: int, version: int) -> st.SearchStrategy[Any]:
    if version < 5:  # (st.builds would fill in the defaulted fields too)
        return packet_ids.map(cls)
    return st.builds(cls, packet_ids, _codes(enum), properties(ptype))


@st.composite
def subscriptions(draw: st.DrawFn, version: int) -> Subscription:
    topic_filter = draw(topic_filters)
    qos = draw(st.integers(0, 2))
    if version < 5:
        return Subscription(topic_filter, qos)
    shared = topic_filter.startswith("$share/")
    return Subscription(topic_filter, qos, not shared and draw(st.booleans()),
                        draw(st.booleans()), draw(st.integers(0, 2)))


def packets(version: int) -> st.SearchStrategy[Any]:
    """Any packet the protocol allows in ``version`` (3, 4 or 5)."""
    suback_enum = SubAckReason if version >= 5 else SubAckReturnCode
    choices = [
        connects(version),
        connacks(version),
        publishes(version),
        _acks(PubAck, PubAckReason, PacketType.PUBACK, version),
        _acks(PubRec, PubRecReason, PacketType.PUBREC, version),
        _acks(PubRel, PubRelReason, PacketType.PUBREL, version),
        _acks(PubComp, PubCompReason, PacketType.PUBCOMP, version),
        st.builds(Subscribe, packet_ids,
                  st.lists(subscriptions(version), min_size=1, max_size=3).map(tuple),
                  _props(version, PacketType.SUBSCRIBE)),
        st.builds(SubAck, packet_ids,
                  st.lists(_codes(suback_enum), min_size=1, max_size=4).map(tuple),
                  _props(version, PacketType.SUBACK)),
        st.builds(Unsubscribe, packet_ids, st.lists(topic_filters, min_size=1, max_size=3)
                  .map(tuple), _props(version, PacketType.UNSUBSCRIBE)),
        (st.builds(UnsubAck, packet_ids, st.lists(_codes(UnsubAckReason), min_size=1,
                                                    max_size=4).map(tuple),
                   properties(PacketType.UNSUBACK))
         if version >= 5 else packet_ids.map(UnsubAck)),
        st.just(PingReq()),
        st.just(PingResp()),
        (st.builds(Disconnect, _codes(DisconnectReason), properties(PacketType.DISCONNECT))
         if version >= 5 else st.just(Disconnect())),
    ]
    if version >= 5:
        choices.append(st.builds(Auth, _codes(AuthReason), properties(PacketType.AUTH)))
    return st.one_of(choices)


# --- wild packets: right types, any values ---------------------------------------------------

_WILD_TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["", "+", "#", "a/+", "a/#/b",
                                                            "$share/g/x", "$share//x", "a\x00",
                                                            "\ud800", "$SYS/x", "x" * 70000]))
_WILD_INT = st.one_of(st.integers(-2, 5), st.integers(0, 0x1_0000_0001),
                      st.sampled_from([0, 0xFFFF, 0x10000, MAX_VARINT, MAX_VARINT + 1]))


@st.composite
def wild_properties(draw: st.DrawFn) -> Properties:
    """Property lists with any ids and values of the right Python type, in any packet."""
    items = []
    for _ in range(draw(st.integers(0, 3))):
        pid = draw(st.sampled_from(sorted(PROPERTY_SPECS)))
        ptype = PROPERTY_SPECS[pid].type
        value: Any
        if ptype is PropertyType.UTF8:
            value = draw(_WILD_TEXT)
        elif ptype is PropertyType.BINARY:
            value = draw(st.binary(max_size=4))
        elif ptype is PropertyType.UTF8_PAIR:
            value = (draw(_WILD_TEXT), draw(_WILD_TEXT))
        else:
            value = draw(_WILD_INT)
        items.append((pid, value))
    return Properties(tuple(items)) if items else NO_PROPERTIES


def wild_packets() -> st.SearchStrategy[Any]:
    props = wild_properties()
    pid = st.one_of(st.none(), _WILD_INT)
    subs = st.builds(Subscription, _WILD_TEXT, _WILD_INT, st.booleans(), st.booleans(), _WILD_INT)
    codes = st.lists(_WILD_INT, max_size=3).map(tuple)
    return st.one_of(
        st.builds(Connect, _WILD_TEXT, _WILD_INT, st.booleans(), _WILD_INT,
                  st.none() | _WILD_TEXT, st.none() | st.binary(max_size=4),
                  st.none() | st.builds(Will, _WILD_TEXT, st.binary(max_size=4), _WILD_INT,
                                        st.booleans(), props), props),
        st.builds(ConnAck, st.booleans(), _WILD_INT, props),
        st.builds(Publish, _WILD_TEXT, st.binary(max_size=4), _WILD_INT, st.booleans(),
                  st.booleans(), pid, props),
        *(st.builds(cls, _WILD_INT, _WILD_INT, props) for cls in (PubAck, PubRec, PubRel, PubComp)),
        st.builds(Subscribe, _WILD_INT, st.lists(subs, max_size=2).map(tuple), props),
        st.builds(SubAck, _WILD_INT, codes, props),
        st.builds(Unsubscribe, _WILD_INT, st.lists(_WILD_TEXT, max_size=2).map(tuple), props),
        st.builds(UnsubAck, _WILD_INT, codes, props),
        st.builds(Disconnect, _WILD_INT, props),
        st.builds(Auth, _WILD_INT, props),
    )
