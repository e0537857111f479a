"""Retained messages, stored compactly, and the cursor that sends a large set in slices.

A broker may hold a retained message on each of hundreds of thousands of topics, so each one is
kept as a single ``bytes`` object keyed by its topic: a 9-byte header (QoS and flags, the
sequence number), the expiry time and the encoded properties only when there are any, then the
payload. That is one object per topic instead of a PUBLISH, its payload, a tuple and a number
(about 90 bytes less per topic, no work for the garbage collector); the PUBLISH is rebuilt only
when one is sent. :class:`RetainedStore` is the mapping the engine uses.

A subscription with a wildcard may match all of them. Sending them in one go would hold the
event loop (and every other client) for as long as it takes to queue and encode them, so the
engine sends ``BrokerConfig.retained_batch`` of them at once and leaves a
:class:`RetainedCursor` on the connection; the server asks for the next slice on the next turn
of its loop, and waits while the subscriber's socket buffer or queue is full. A topic whose
retained message changed after the subscription is skipped by the cursor: the subscriber got
that newer message live already.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from ..mqtt.enums import PacketType
from ..mqtt.properties import NO_PROPERTIES, Properties
from ..mqtt.wire import encode_properties, read_properties
from .state import SubOptions

__all__ = ["RetainedCursor", "RetainedMessage", "RetainedStore", "props_blob", "props_of"]

_HEAD = struct.Struct("<BQ")        # QoS | flags, sequence number
_EXPIRES = struct.Struct("<q")
_PROPS_LEN = struct.Struct("<I")
_HAS_EXPIRY = 0x04
_HAS_PROPS = 0x08


def props_blob(props: Properties) -> bytes:
    """PUBLISH properties as stored (empty when there are none)."""
    return encode_properties(props) if props else b""


def props_of(blob: bytes) -> Properties:
    """The inverse of :func:`props_blob`."""
    if not blob:
        return NO_PROPERTIES
    props, _ = read_properties(blob, 0, len(blob), PacketType.PUBLISH)
    return props


class RetainedMessage(NamedTuple):
    """One topic's retained message, unpacked."""

    payload: bytes
    qos: int
    properties: Properties
    expires_ns: int | None
    #: Order of acceptance: a cursor skips messages newer than its subscription.
    seq: int


def _pack(payload: bytes, qos: int, props: Properties, expires_ns: int | None,
          seq: int) -> bytes:
    flags = qos
    parts = [b""]
    if expires_ns is not None:
        flags |= _HAS_EXPIRY
        parts.append(_EXPIRES.pack(expires_ns))
    if props:
        flags |= _HAS_PROPS
        blob = props_blob(props)
        parts.append(_PROPS_LEN.pack(len(blob)))
        parts.append(blob)
    parts[0] = _HEAD.pack(flags, seq)
    parts.append(payload)
    return b"".join(parts)


def _unpack(blob: bytes) -> RetainedMessage:
    flags, seq = _HEAD.unpack_from(blob)
    at = _HEAD.size
    expires_ns = None
    if flags & _HAS_EXPIRY:
        (expires_ns,) = _EXPIRES.unpack_from(blob, at)
        at += _EXPIRES.size
    props = NO_PROPERTIES
    if flags & _HAS_PROPS:
        (n,) = _PROPS_LEN.unpack_from(blob, at)
        at += _PROPS_LEN.size
        props = props_of(blob[at:at + n])
        at += n
    return RetainedMessage(blob[at:], flags & 0x03, props, expires_ns, seq)


class RetainedStore:
    """Topic -> retained message, each packed in one ``bytes`` (see the module docstring)."""

    __slots__ = ("_by_topic",)

    def __init__(self) -> None:
        self._by_topic: dict[str, bytes] = {}

    def set(self, topic: str, payload: bytes, qos: int, props: Properties,
            expires_ns: int | None, seq: int) -> None:
        self._by_topic[topic] = _pack(payload, qos, props, expires_ns, seq)

    def get(self, topic: str) -> RetainedMessage | None:
        blob = self._by_topic.get(topic)
        return None if blob is None else _unpack(blob)

    def __getitem__(self, topic: str) -> RetainedMessage:
        return _unpack(self._by_topic[topic])

    def __delitem__(self, topic: str) -> None:
        del self._by_topic[topic]

    def __contains__(self, topic: object) -> bool:
        return topic in self._by_topic

    def __len__(self) -> int:
        return len(self._by_topic)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_topic)

    def topics(self) -> list[str]:
        """A snapshot of the topics (for a cursor)."""
        return list(self._by_topic)


@dataclass(slots=True, eq=False)
class RetainedCursor:
    """Where a wildcard subscription is in sending the retained messages it matches."""

    topic_filter: str
    options: SubOptions
    topics: Iterator[str]      # a snapshot of the retained topics at subscription time
    since_seq: int             # messages accepted after the subscription are skipped
