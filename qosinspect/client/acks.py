"""Manual control of the acknowledgements a client sends, for fault scenarios. Pure, no I/O.

The QoS machines (:mod:`qosinspect.mqtt.qos`) decide *which* acknowledgement is due; this module
only decides what happens to it on its way to the socket, so a test or a demo can make the
client misbehave on purpose and watch what the broker does about it:

=======  ==========================================================================
action   effect on a PUBACK, PUBREC, PUBREL or PUBCOMP the client is about to send
=======  ==========================================================================
send     sent at once (the default)
hold     kept until :meth:`AckControl.take` releases it (or the connection ends)
drop     never sent (recorded in :attr:`AckControl.dropped`)
twice    sent two times in a row
=======  ==========================================================================

Rules are matched newest first; one may be limited to one packet id and to a number of uses,
after which it disappears. A held acknowledgement belongs to the connection it was due on: when
that connection ends it is discarded, and the session rules take over on the next connection
(the broker resends its PUBLISH with DUP=1, or we resend our PUBREL [MQTT-4.4.0-1]).

Holding an acknowledgement breaks the order rules [MQTT-4.6.0-2] [MQTT-4.6.0-3] on purpose;
that is what it is for.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from ..mqtt.enums import PacketType
from ..mqtt.packets import Packet, PubAck, PubComp, PubRec, PubRel

__all__ = ["ACK_KINDS", "AckAction", "AckControl", "AckRule", "HeldAck", "ack_kind"]

AckPacket = PubAck | PubRec | PubRel | PubComp

#: The acknowledgement packet types that can be controlled, by name.
ACK_KINDS: dict[str, PacketType] = {
    "puback": PacketType.PUBACK, "pubrec": PacketType.PUBREC,
    "pubrel": PacketType.PUBREL, "pubcomp": PacketType.PUBCOMP,
}
_TYPE_OF: dict[type, PacketType] = {
    PubAck: PacketType.PUBACK, PubRec: PacketType.PUBREC,
    PubRel: PacketType.PUBREL, PubComp: PacketType.PUBCOMP,
}
#: At most this many acknowledgements are held or remembered as dropped.
MAX_HELD = 65535


class AckAction(StrEnum):
    SEND = "send"
    HOLD = "hold"
    DROP = "drop"
    TWICE = "twice"


def ack_kind(kind: str | PacketType) -> PacketType:
    """``"puback"`` (any case) or ``PacketType.PUBACK`` -> PacketType; ValueError otherwise."""
    if isinstance(kind, PacketType):
        if kind in _TYPE_OF.values():
            return kind
    else:
        found = ACK_KINDS.get(str(kind).lower())
        if found is not None:
            return found
    raise ValueError(f"{kind!r} is not an acknowledgement the client sends "
                     "(puback, pubrec, pubrel, pubcomp)")


@dataclass(slots=True)
class AckRule:
    kind: PacketType
    action: AckAction
    packet_id: int | None = None
    #: Uses left; None for unlimited.
    remaining: int | None = None

    def matches(self, kind: PacketType, packet_id: int) -> bool:
        return kind is self.kind and (self.packet_id is None or self.packet_id == packet_id)


@dataclass(frozen=True, slots=True)
class HeldAck:
    packet: AckPacket
    ts_ns: int


class AckControl:
    """The rules and the held/dropped acknowledgements of one client (see the module doc)."""

    def __init__(self) -> None:
        self.rules: list[AckRule] = []
        self.held: deque[HeldAck] = deque()
        self.dropped: deque[HeldAck] = deque(maxlen=MAX_HELD)
        #: Acknowledgements sent a second time by a ``twice`` rule.
        self.duplicated = 0
        #: Held acknowledgements thrown away because their connection ended.
        self.discarded = 0

    # -- rules --------------------------------------------------------------------------------

    def set(self, kind: str | PacketType, action: AckAction | str, *,
            packet_id: int | None = None, count: int | None = None) -> None:
        """Apply ``action`` to the next ``count`` (default: all) ``kind`` acks, of ``packet_id``
        only when it is given."""
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        rule = AckRule(ack_kind(kind), AckAction(action), packet_id, count)
        self.rules.insert(0, rule)

    def hold(self, kind: str | PacketType, *, packet_id: int | None = None,
             count: int | None = None) -> None:
        self.set(kind, AckAction.HOLD, packet_id=packet_id, count=count)

    def drop(self, kind: str | PacketType, *, packet_id: int | None = None,
             count: int | None = None) -> None:
        self.set(kind, AckAction.DROP, packet_id=packet_id, count=count)

    def twice(self, kind: str | PacketType, *, packet_id: int | None = None,
              count: int | None = None) -> None:
        self.set(kind, AckAction.TWICE, packet_id=packet_id, count=count)

    def auto(self, kind: str | PacketType | None = None) -> None:
        """Remove the rules for ``kind`` (all rules when None): those acks are sent normally."""
        if kind is None:
            self.rules.clear()
        else:
            want = ack_kind(kind)
            self.rules = [r for r in self.rules if r.kind is not want]

    # -- the filter ---------------------------------------------------------------------------

    def apply(self, packet: Packet, now: int) -> list[Packet]:
        """What to send in place of ``packet``: [], [packet] or [packet, packet]."""
        kind = _TYPE_OF.get(type(packet))
        if kind is None or not self.rules:
            return [packet]
        assert isinstance(packet, PubAck | PubRec | PubRel | PubComp)
        for i, rule in enumerate(self.rules):
            if rule.matches(kind, packet.packet_id):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        del self.rules[i]
                return self._act(rule.action, packet, now)
        return [packet]

    def _act(self, action: AckAction, packet: AckPacket, now: int) -> list[Packet]:
        if action is AckAction.HOLD:
            if len(self.held) >= MAX_HELD:
                self.dropped.append(self.held.popleft())
            self.held.append(HeldAck(packet, now))
            return []
        if action is AckAction.DROP:
            self.dropped.append(HeldAck(packet, now))
            return []
        if action is AckAction.TWICE:
            self.duplicated += 1
            return [packet, packet]
        return [packet]

    def take(self, kind: str | PacketType | None = None,
             packet_id: int | None = None) -> list[AckPacket]:
        """Remove and return the held acks of ``kind`` / ``packet_id`` (all when None), in order."""
        want = ack_kind(kind) if kind is not None else None
        taken: list[AckPacket] = []
        kept: deque[HeldAck] = deque()
        for item in self.held:
            p = item.packet
            if ((want is None or _TYPE_OF[type(p)] is want)
                    and (packet_id is None or p.packet_id == packet_id)):
                taken.append(p)
            else:
                kept.append(item)
        self.held = kept
        return taken

    def connection_lost(self) -> int:
        """Discard what was held for the connection that ended; returns how many."""
        n = len(self.held)
        self.discarded += n
        self.held.clear()
        return n
