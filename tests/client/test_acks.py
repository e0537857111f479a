"""Manual acknowledgement control (qosinspect.client.acks): pure rules, no I/O."""

from __future__ import annotations

import pytest

from qosinspect.client.acks import AckAction, AckControl, ack_kind
from qosinspect.mqtt.enums import PacketType
from qosinspect.mqtt.packets import PingReq, PubAck, PubComp, Publish, PubRec, PubRel


def test_without_rules_every_ack_passes() -> None:
    acks = AckControl()
    for packet in (PubAck(1), PubRec(2), PubRel(3), PubComp(4), PingReq(), Publish("t")):
        assert acks.apply(packet, 0) == [packet]


def test_hold_keeps_acks_in_order_until_taken() -> None:
    acks = AckControl()
    acks.hold("puback")
    assert acks.apply(PubAck(1), 10) == []
    assert acks.apply(PubAck(2), 11) == []
    assert acks.apply(PubRec(3), 12) == [PubRec(3)]          # other kinds untouched
    assert [h.packet for h in acks.held] == [PubAck(1), PubAck(2)]
    assert [h.ts_ns for h in acks.held] == [10, 11]
    assert acks.take("puback", packet_id=2) == [PubAck(2)]
    assert acks.take() == [PubAck(1)]
    assert not acks.held


def test_drop_and_twice() -> None:
    acks = AckControl()
    acks.drop("pubrec")
    acks.twice(PacketType.PUBCOMP)
    assert acks.apply(PubRec(5), 1) == []
    assert [d.packet for d in acks.dropped] == [PubRec(5)]
    assert acks.apply(PubComp(6), 2) == [PubComp(6), PubComp(6)]
    assert acks.duplicated == 1


def test_count_and_packet_id_limit_a_rule() -> None:
    acks = AckControl()
    acks.hold("pubrel", packet_id=7, count=1)
    assert acks.apply(PubRel(8), 0) == [PubRel(8)]           # another id: sent
    assert acks.apply(PubRel(7), 0) == []                    # held once...
    assert acks.apply(PubRel(7), 0) == [PubRel(7)]           # ...then the rule is gone
    assert acks.rules == []


def test_newest_rule_wins_and_auto_removes_rules() -> None:
    acks = AckControl()
    acks.drop("puback")
    acks.set("puback", AckAction.SEND, packet_id=3)
    assert acks.apply(PubAck(3), 0) == [PubAck(3)]
    assert acks.apply(PubAck(4), 0) == []
    acks.auto("puback")
    assert acks.apply(PubAck(4), 0) == [PubAck(4)]
    acks.hold("pubrec")
    acks.auto()
    assert acks.rules == []


def test_connection_lost_discards_held_acks() -> None:
    """A held ack belongs to its connection; the session resends on the next one."""
    acks = AckControl()
    acks.hold("pubcomp")
    acks.apply(PubComp(1), 0)
    acks.apply(PubComp(2), 0)
    assert acks.connection_lost() == 2
    assert acks.discarded == 2 and not acks.held


@pytest.mark.parametrize("bad", ["publish", "suback", PacketType.PUBLISH, ""])
def test_only_the_four_acks_can_be_controlled(bad: object) -> None:
    with pytest.raises(ValueError, match="not an acknowledgement"):
        ack_kind(bad)  # type: ignore[arg-type]


def test_count_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AckControl().hold("puback", count=0)
