"""Synthetic captures: scripted MQTT conversations, segmented, reordered, duplicated and dropped,
on every link type, decode to exactly the scripted packets (plus the expected gap anomalies).

The script is a list of (direction, packet). Consecutive packets of one direction form a burst:
its bytes are cut into segments of random sizes, the segments are shuffled and some are sent
again later (TCP retransmissions), then the peer acknowledges the burst. Dropping removes whole
packets' segments (a run of packets is cut at packet boundaries), so the stream resumes on a
packet start and the expectation is exact: the packets not dropped, in script order, and one
``stream_gap`` per dropped run. Gaps that cut a packet in the middle are tested separately.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qosinspect.capture import iter_events
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.events import (
    Anomaly,
    ConnectionClosed,
    Event,
    MqttPacketEvent,
    StreamGap,
    TcpRetransmission,
)
from qosinspect.mqtt import (
    ConnAck,
    Connect,
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
    encode,
)
from qosinspect.mqtt.enums import Direction
from qosinspect.testing.synthcap import (
    PcapngInterface,
    SynthSegment,
    TcpConversation,
    pcap_bytes,
    pcapng_bytes,
    render,
    retransmit,
)

#: (link type, VLAN tags, IPv6) combinations: every link type the reader knows.
LINKS = [(1, (), False), (1, (0x8100,), False), (1, (0x88A8, 0x8100), True), (113, (), False),
         (276, (), True), (0, (), False), (0, (), True), (108, (), False), (101, (), True),
         (228, (), False), (229, (), True)]
SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pids = st.integers(1, 65535)
topics = st.text("abcdefghij/", min_size=1, max_size=12)
publish = st.builds(
    lambda topic, payload, qos, dup, retain, pid: Publish(
        topic, payload, qos, dup and qos > 0, retain, pid if qos else None),
    topics, st.binary(max_size=300), st.integers(0, 2), st.booleans(), st.booleans(), pids)
from_client: st.SearchStrategy[Packet] = st.one_of(
    publish, pids.map(PubAck), pids.map(PubRec), pids.map(PubRel),
    pids.map(PubComp), st.just(PingReq()),
    st.builds(lambda p, t, q: Subscribe(p, (Subscription(t, q),)), pids, topics,
              st.integers(0, 2)))
from_broker: st.SearchStrategy[Packet] = st.one_of(
    publish, pids.map(PubAck), pids.map(PubRec), pids.map(PubRel),
    pids.map(PubComp), st.just(PingResp()),
    st.builds(lambda p, c: SubAck(p, (c,)), pids, st.sampled_from([0, 1, 2])))
script_items = st.lists(st.one_of(st.tuples(st.just("c2b"), from_client),
                                  st.tuples(st.just("b2c"), from_broker)),
                        min_size=1, max_size=25)


def build(script: Sequence[tuple[str, Packet]], version: int, rnd: random.Random, *,
          dup_rate: float, drop_rate: float, link: tuple[int, tuple[int, ...], bool],
          ng: bool) -> tuple[bytes, list[tuple[str, Packet]], int]:
    """The capture bytes, the packets that must come out, and the number of dropped runs."""
    linktype, vlan, v6 = link
    client, broker = (("fd00::1", 50000), ("fd00::2", 1883)) if v6 else (
        ("10.0.0.1", 50000), ("10.0.0.2", 1883))
    conv = TcpConversation(client, broker, isn_client=rnd.randrange(2**32),
                           isn_broker=rnd.randrange(2**32))
    full = [("c2b", Connect("synth", protocol_version=version)), ("b2c", ConnAck())]
    full += list(script)
    expected: list[tuple[str, Packet]] = []
    gaps = 0
    i = 0
    while i < len(full):
        d = full[i][0]
        j = i
        while j < len(full) and full[j][0] == d:
            j += 1
        burst: list[SynthSegment] = []
        dropping = False
        for k in range(i, j):
            packet = full[k][1]
            data = encode(packet, version)
            sizes = [rnd.randint(1, 60) for _ in range(8)]
            segs = conv.send(d, data, segment_size=sizes, ack=False)
            drop = k >= 2 and rnd.random() < drop_rate
            if drop:
                conv.segments[len(conv.segments) - len(segs):] = []
                gaps += not dropping
            else:
                expected.append((d, packet))
                burst += segs
            dropping = drop
        # reorder within the burst, then resend some segments later
        start = len(conv.segments) - len(burst)
        rnd.shuffle(burst)
        conv.segments[start:] = burst
        for _ in range(int(len(burst) * dup_rate) + 1 if dup_rate and burst else 0):
            idx = rnd.randrange(start, len(conv.segments))
            if len(conv.segments[idx].payload) >= 2:  # one byte below nxt is a keep-alive
                retransmit(conv.segments, idx, rnd.randrange(idx + 1, len(conv.segments) + 1))
        conv.pure_ack("b2c" if d == "c2b" else "c2b")
        i = j
    conv.close()
    frames = render(conv.segments, linktype, vlan=vlan)
    if ng:
        data = pcapng_bytes(frames, [PcapngInterface(linktype, tsresol=9)])
    else:
        data = pcap_bytes(frames, linktype=linktype, nanos=True)
    return data, expected, gaps


def decode(data: bytes) -> list[Event]:
    return list(iter_events(CaptureFile.from_bytes(data)))


def packets(evs: list[Event]) -> list[tuple[str, Packet]]:
    return [(e.direction.value, e.packet) for e in evs
            if type(e) is MqttPacketEvent and e.direction is not None]


@pytest.mark.parametrize("link", LINKS, ids=lambda x: f"lt{x[0]}-vlan{len(x[1])}-v6{x[2]}")
@SETTINGS
@given(script=script_items, version=st.sampled_from([3, 4, 5]), seed=st.integers(0, 2**32),
       dup_rate=st.sampled_from([0.0, 0.2]), ng=st.booleans())
def test_segmented_reordered_duplicated_decode_exactly(
        link: tuple[int, tuple[int, ...], bool], script: list[tuple[str, Packet]],
        version: int, seed: int, dup_rate: float, ng: bool) -> None:
    data, expected, gaps = build(script, version, random.Random(seed), dup_rate=dup_rate,
                                 drop_rate=0.0, link=link, ng=ng)
    assert gaps == 0
    evs = decode(data)
    assert packets(evs) == expected
    assert not [e for e in evs if isinstance(e, Anomaly | StreamGap)]
    assert all(e.version == version for e in evs if type(e) is MqttPacketEvent)
    closed = [e for e in evs if type(e) is ConnectionClosed]
    assert len(closed) == 1 and closed[0].how == "fin" and closed[0].tcp is not None
    rt = [e for e in evs if type(e) is TcpRetransmission]
    assert closed[0].tcp.c2b.retransmissions + closed[0].tcp.b2c.retransmissions == len(rt)
    assert closed[0].tcp.c2b.mqtt_packets == sum(d == "c2b" for d, _ in expected)


@pytest.mark.parametrize("link", LINKS[::3], ids=lambda x: f"lt{x[0]}-v6{x[2]}")
@SETTINGS
@given(script=script_items, version=st.sampled_from([4, 5]), seed=st.integers(0, 2**32),
       drop_rate=st.sampled_from([0.2, 0.5]))
def test_dropped_packets_become_exact_gaps(
        link: tuple[int, tuple[int, ...], bool], script: list[tuple[str, Packet]],
        version: int, seed: int, drop_rate: float) -> None:
    data, expected, gaps = build(script, version, random.Random(seed), dup_rate=0.1,
                                 drop_rate=drop_rate, link=link, ng=False)
    evs = decode(data)
    assert packets(evs) == expected
    kinds = [e.kind for e in evs if type(e) is Anomaly]
    assert kinds == ["stream_gap"] * gaps
    assert len([e for e in evs if type(e) is StreamGap]) == gaps


def test_gap_inside_a_packet_is_truncated_then_resynchronised() -> None:
    conv = TcpConversation()
    conv.send("c2b", encode(Connect("gap")))
    conv.send("b2c", encode(ConnAck()))
    big = encode(Publish("t/x", b"A" * 200, 1, packet_id=9))
    segs = conv.send("c2b", big, segment_size=50, ack=False)
    conv.send("c2b", encode(Publish("t/y", b"after", 1, packet_id=10)), ack=False)
    conv.pure_ack("b2c")
    conv.close()
    conv.segments.remove(segs[2])  # bytes 100..149 of the PUBLISH are never seen
    evs = decode(pcap_bytes(render(conv.segments)))
    kinds = [e.kind for e in evs if type(e) is Anomaly]
    assert kinds[:2] == ["stream_gap", "truncated"]
    assert set(kinds[2:]) <= {"resync"}
    pubs = [p for d, p in packets(evs) if isinstance(p, Publish)]
    assert pubs == [Publish("t/y", b"after", 1, packet_id=10)]
    gap = next(e for e in evs if type(e) is StreamGap)
    assert gap.missing_bytes == 50 and gap.direction is Direction.C2B


def test_missing_connect_after_a_gap_says_the_connect_may_be_in_it() -> None:
    """The segment with the CONNECT is lost: the first packet seen is a PUBLISH after a stream
    gap. The anomaly must not blame the client (the handshake was seen): the CONNECT may be in
    the missing bytes."""
    conv = TcpConversation()
    connect = conv.send("c2b", encode(Connect("lost")), ack=False)
    conv.send("c2b", encode(Publish("t", b"x", 1, packet_id=1)), ack=False)
    conv.pure_ack("b2c")
    conv.close()
    for seg in connect:
        conv.segments.remove(seg)
    evs = decode(pcap_bytes(render(conv.segments)))
    anomalies = [e for e in evs if type(e) is Anomaly]
    assert [a.kind for a in anomalies][:2] == ["stream_gap", "missing_connect"]
    detail = anomalies[1].detail
    assert "the CONNECT may be in the" in detail and "bytes missing before it" in detail
    assert "did not start with CONNECT" not in detail
