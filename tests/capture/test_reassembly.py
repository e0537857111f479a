"""TCP reassembly: property tests (reorder, duplicate, drop, wrap) and the special cases."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qosinspect.capture.reassembly import ACK, SYN, TcpReassembler, decide_sides
from qosinspect.capture.records import FlowClosed, FlowOpened, Gap, Retransmitted, StreamData
from qosinspect.events import Endpoint
from qosinspect.mqtt.enums import Direction
from qosinspect.testing.synthcap import (
    SynthSegment,
    TcpConversation,
    pcap_bytes,
    render,
    retransmit,
)

from ._util import CONNACK, CONNECT, expected_with_holes, retransmissions, run_bytes, streams


#: Stream bytes for these tests: anything but the start of a WebSocket upgrade ("GET "), which the
#: pipeline rightly unwraps instead of passing through.
def _not_ws(data: bytes) -> bool:
    return not data.startswith(b"GET ")


ISNS = st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 3000, 2**32 - 1))
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def capture(segs: list[SynthSegment], linktype: int = 1) -> bytes:
    return pcap_bytes(render(segs, linktype), linktype=linktype, nanos=True)


def split_conv(data: bytes, sizes: list[int], isn: int) -> tuple[TcpConversation,
                                                                  list[SynthSegment]]:
    conv = TcpConversation(isn_client=isn, isn_broker=(isn * 7) & 0xFFFFFFFF)
    segs = conv.send("c2b", data, segment_size=sizes, ack=False)
    return conv, segs


@SETTINGS
@given(data=st.binary(min_size=1, max_size=3000).filter(_not_ws),
       sizes=st.lists(st.integers(2, 400),
       min_size=1, max_size=20), isn=ISNS, seed=st.randoms(use_true_random=False),
       ndup=st.integers(0, 5))
def test_reorder_and_duplicates_deliver_exact_stream(data: bytes, sizes: list[int], isn: int,
                                                     seed: object, ndup: int) -> None:
    conv, segs = split_conv(data, sizes, isn)
    rnd = seed  # a random.Random
    head = conv.segments[:3]
    body = list(segs)
    rnd.shuffle(body)  # type: ignore[attr-defined]
    dups = 0
    # A resent 1-byte segment just below the next expected byte is what a TCP keep-alive looks
    # like (Wireshark calls it one too), so only segments of 2 bytes or more are resent here.
    resendable = [k for k, s in enumerate(body) if len(s.payload) >= 2]
    for _ in range(ndup if resendable else 0):
        i = rnd.choice(resendable)  # type: ignore[attr-defined]
        at = rnd.randrange(i + 1, len(body) + 1)  # type: ignore[attr-defined]
        retransmit(body, i, at)
        resendable = [k + (k >= at) for k in resendable]
        dups += 1
    conv.segments = head + body
    conv.close()
    recs = run_bytes(capture(conv.segments))
    assert streams(recs)[(0, "c2b")] == [data]
    assert len(retransmissions(recs)) == dups
    assert not [r for r in recs if type(r) is Gap]
    assert [type(r) for r in recs if type(r) in (FlowOpened, FlowClosed)] == [FlowOpened,
                                                                               FlowClosed]


@SETTINGS
@given(data=st.binary(min_size=2, max_size=3000).filter(_not_ws),
       sizes=st.lists(st.integers(1, 300),
       min_size=2, max_size=20), isn=ISNS, seed=st.randoms(use_true_random=False),
       drop_frac=st.floats(0.05, 0.6), shuffle=st.booleans(), ack_each=st.booleans())
def test_dropped_segments_become_exact_gaps(data: bytes, sizes: list[int], isn: int,
                                            seed: object, drop_frac: float, shuffle: bool,
                                            ack_each: bool) -> None:
    conv, segs = split_conv(data, sizes, isn)
    rnd = seed
    dropped = [s for s in segs if rnd.random() < drop_frac]  # type: ignore[attr-defined]
    if not dropped or len(dropped) == len(segs):
        dropped = [segs[len(segs) // 2]]
    kept = [s for s in segs if s not in dropped]
    if shuffle:
        rnd.shuffle(kept)  # type: ignore[attr-defined]
    body: list[SynthSegment] = []
    # The broker received every segment (the capture missed the dropped ones), so after each
    # segment it sees it acknowledges, cumulatively, the contiguous prefix of what it has: the
    # dropped segments plus the kept ones seen so far. An ACK covering a dropped segment proves
    # the hole early; a kept segment still to come is never covered (a real receiver cannot
    # acknowledge bytes it has not got).
    have = {(s.offset or 0, len(s.payload)) for s in dropped}
    base = segs[0].seq
    for s in kept:
        body.append(s)
        have.add((s.offset or 0, len(s.payload)))
        if ack_each:
            upto = 0
            for off, n in sorted(have):
                if off > upto:
                    break
                upto = max(upto, off + n)
            body.append(SynthSegment(s.ts_ns, "b2c", conv.broker, conv.client,
                                     conv.next_seq["b2c"], (base + upto) & 0xFFFFFFFF, ACK,
                                     label="ack"))
    conv.segments = conv.segments[:3] + body
    conv.close()
    recs = run_bytes(capture(conv.segments))
    holes = [(s.offset or 0, (s.offset or 0) + len(s.payload)) for s in dropped]
    got = streams(recs)[(0, "c2b")]
    assert got == expected_with_holes(data, holes)
    assert b"".join(x for x in got if isinstance(x, bytes)) == b"".join(
        s.payload for s in sorted(kept, key=lambda s: s.offset or 0))


@SETTINGS
@given(a=st.binary(min_size=1, max_size=500).filter(_not_ws), b=st.binary(min_size=1, max_size=500),
       isn=ISNS, size=st.integers(1, 64), handshake=st.booleans())
def test_both_directions_interleaved_with_wrap(a: bytes, b: bytes, isn: int, size: int,
                                               handshake: bool) -> None:
    conv = TcpConversation(isn_client=isn, isn_broker=(2**32 - 1 - isn), handshake=handshake)
    for i in range(0, max(len(a), len(b)), size):
        if a[i:i + size]:
            conv.send("c2b", a[i:i + size])
        if b[i:i + size]:
            conv.send("b2c", b[i:i + size])
    conv.close(by="b2c")
    recs = run_bytes(capture(conv.segments, 113))
    st_ = streams(recs)
    assert st_[(0, "c2b")] == [a] and st_[(0, "b2c")] == [b]
    opened = [r for r in recs if type(r) is FlowOpened]
    assert opened[0].handshake_seen is handshake
    closed = [r for r in recs if type(r) is FlowClosed]
    assert closed[0].how == "fin" and closed[0].closed_by is Direction.B2C


def test_data_attributed_to_the_frame_that_fills_the_hole() -> None:
    conv = TcpConversation()
    s1, s2, s3 = conv.send("c2b", CONNECT, segment_size=6, ack=False)
    conv.segments[3:6] = [s3, s2, s1]  # frames 4, 5, 6
    recs = run_bytes(capture(conv.segments))
    data = [(r.frame, r.data) for r in recs if type(r) is StreamData]
    assert data == [(6, s1.payload), (6, s2.payload), (6, s3.payload)]


def test_keepalives_and_zero_window_probes_are_not_retransmissions() -> None:
    conv = TcpConversation()
    conv.send("c2b", CONNECT)
    conv.keepalive("c2b")
    conv.keepalive("c2b", with_byte=True)
    conv.keepalive("b2c")
    conv.zero_window_probe("b2c", CONNACK[:1])
    conv.send("b2c", CONNACK)
    conv.close()
    recs = run_bytes(capture(conv.segments))
    assert not retransmissions(recs)
    assert streams(recs) == {(0, "c2b"): [CONNECT], (0, "b2c"): [CONNACK]}
    flow = recs[0].flow
    assert flow.c2b.keepalives == 2 and flow.b2c.keepalives == 1
    assert flow.b2c.zero_window_probes == 1


def test_zero_window_probe_byte_committed_when_acknowledged() -> None:
    conv = TcpConversation()
    conv.pure_ack("b2c", window=0)
    probe = conv._add("c2b", ACK, CONNECT[:1], label="probe")
    conv.next_seq["c2b"] += 1  # the receiver accepted it; the sender goes on after it
    conv.pure_ack("b2c")
    conv.send("c2b", CONNECT[1:])
    recs = run_bytes(capture(conv.segments))
    assert streams(recs)[(0, "c2b")] == [CONNECT]
    assert probe.label == "probe" and not retransmissions(recs)


def test_retransmission_with_new_bytes_is_counted_and_used() -> None:
    conv = TcpConversation()
    (seg,) = conv.send("c2b", CONNECT[:8], ack=False)
    conv.send("c2b", CONNECT[8:], ack=False)
    bigger = SynthSegment(seg.ts_ns, "c2b", seg.src, seg.dst, seg.seq, seg.ack, seg.flags,
                          CONNECT + CONNACK)
    conv.segments.append(bigger)
    recs = run_bytes(capture(conv.segments))
    assert streams(recs)[(0, "c2b")] == [CONNECT + CONNACK]
    (rt,) = retransmissions(recs)
    assert rt.length == len(CONNECT) and rt.frame == 6


def test_mid_stream_capture_without_syn() -> None:
    conv = TcpConversation(handshake=False, isn_client=2**32 - 2)
    conv.send("b2c", CONNACK)  # the broker speaks first in this capture
    conv.send("c2b", b"\xc0\x00")
    recs = run_bytes(capture(conv.segments))
    opened = recs[0]
    assert type(opened) is FlowOpened and not opened.handshake_seen
    assert opened.flow.client == Endpoint("10.0.0.1", 50000)  # decided by the broker port
    assert opened.flow.sides_known
    assert streams(recs) == {(0, "b2c"): [CONNACK], (0, "c2b"): [b"\xc0\x00"]}
    assert [r.how for r in recs if type(r) is FlowClosed] == ["end_of_capture"]


def test_sides_unknown_and_swap_hook() -> None:
    conv = TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 41000), handshake=False)
    conv.send("b2c", CONNACK)
    conv.send("c2b", CONNECT)
    r = TcpReassembler()
    out: list = []
    h = None
    for seg in conv.segments:
        key = (seg.src[0] + seg.dst[0] + str(seg.src[1]) + str(seg.dst[1])).encode()
        if h is None:
            rkey = (seg.dst[0] + seg.src[0] + str(seg.dst[1]) + str(seg.src[1])).encode()
            first, known = decide_sides(seg.flags, seg.src[1], seg.dst[1], {1883})
            assert (first, known) == (True, False)
            h = r.open_flow(key, rkey, Endpoint(*seg.src), Endpoint(*seg.dst),
                            sender_is_client=first, sides_known=known, handshake_seen=False,
                            frame=1, ts_ns=seg.ts_ns)
        half = r.halves[key]
        r.segment(half, seg.ts_ns, 1, seg.seq, seg.ack, seg.flags, seg.window, seg.payload, 0,
                  out)
    flow = h.flow if h else None
    assert flow is not None and not flow.sides_known
    assert flow.client == Endpoint("10.0.0.2", 41000)  # the first sender, presumed client
    assert [r_.direction for r_ in out if type(r_) is StreamData] == [Direction.C2B,
                                                                     Direction.B2C]
    flow.swap_sides()
    assert flow.sides_known and flow.client == Endpoint("10.0.0.1", 40000)
    assert flow.info.client == flow.client and flow.c2b.direction is Direction.C2B


def test_decide_sides() -> None:
    assert decide_sides(SYN, 1883, 5000, {1883}) == (True, True)
    assert decide_sides(SYN | ACK, 5000, 1883, {1883}) == (False, True)
    assert decide_sides(ACK, 1883, 5000, {1883}) == (False, True)
    assert decide_sides(ACK, 5000, 1883, {1883}) == (True, True)
    assert decide_sides(ACK, 1883, 1883, {1883}) == (True, False)


def test_snaplen_cut_is_a_gap_not_zeros() -> None:
    conv = TcpConversation()
    (seg,) = conv.send("c2b", CONNECT, ack=False)
    seg.snaplen = 14 + 20 + 20 + 5
    conv.send("c2b", CONNACK, ack=False)
    recs = run_bytes(capture(conv.segments))
    assert streams(recs)[(0, "c2b")] == [CONNECT[:5], len(CONNECT) - 5, CONNACK]
    assert [r.reason for r in recs if type(r) is Gap] == ["snaplen"]


def test_out_of_order_limit_turns_into_a_gap() -> None:
    conv = TcpConversation()
    segs = conv.send("c2b", bytes(range(256)) * 8, segment_size=100, ack=False)
    del conv.segments[3]  # the first data segment is never seen, and nobody ACKs
    recs = run_bytes(capture(conv.segments), ooo_limit=500)
    got = streams(recs)[(0, "c2b")]
    assert got[0] == 100 and b"".join(got[1:]) == b"".join(s.payload for s in segs[1:])  # type: ignore[misc]
    assert [r.reason for r in recs if type(r) is Gap] == ["ooo_limit"]
    assert recs[-1].flow.c2b.ooo_bytes == 0


def test_rst_closes_and_late_segments_do_not_reopen() -> None:
    conv = TcpConversation()
    conv.send("c2b", CONNECT)
    conv.close("rst", by="b2c")
    conv.pure_ack("c2b")  # arrives after the RST
    conv.close()  # FIN exchange on a dead connection: still ignored
    recs = run_bytes(capture(conv.segments))
    assert [type(r) for r in recs] == [FlowOpened, StreamData, FlowClosed]
    assert recs[-1].how == "rst" and recs[-1].closed_by is Direction.B2C  # type: ignore[union-attr]


def test_port_reuse_opens_a_new_connection() -> None:
    a = TcpConversation(isn_client=100)
    a.send("c2b", CONNECT)
    a.close()
    b = TcpConversation(isn_client=90000, start_ns=a.t + 10**9)
    b.send("c2b", CONNECT)
    recs = run_bytes(capture(a.segments + b.segments))
    assert [(type(r).__name__, r.flow.conn_id) for r in recs if type(r) in (
        FlowOpened, FlowClosed)] == [("FlowOpened", 0), ("FlowClosed", 0), ("FlowOpened", 1),
                                     ("FlowClosed", 1)]


def test_idle_timeout_closes_and_frees() -> None:
    a = TcpConversation(("10.0.0.1", 1000))
    a.send("c2b", CONNECT)
    b = TcpConversation(("10.0.0.3", 1001), start_ns=a.t + 30 * 10**9)
    b.send("c2b", CONNECT)
    recs = run_bytes(capture(a.segments + b.segments), idle_timeout_ns=5 * 10**9)
    closes = [(r.flow.conn_id, r.how) for r in recs if type(r) is FlowClosed]
    assert closes == [(0, "idle"), (1, "end_of_capture")]


def test_ack_of_unseen_data_is_a_gap_at_once() -> None:
    conv = TcpConversation()
    conv.send("c2b", CONNECT, ack=False)
    lost = conv.send("c2b", b"\xc0\x00", ack=True)  # dropped below; the broker's ACK covers it
    conv.segments.remove(lost[0])
    recs = run_bytes(capture(conv.segments))
    gaps = [r for r in recs if type(r) is Gap]
    assert [(g.missing_bytes, g.reason, g.frame) for g in gaps] == [(2, "ack", 5)]


def test_stats_counters() -> None:
    conv = TcpConversation()
    conv.send("c2b", CONNECT, segment_size=4)
    retransmit(conv.segments, 4)
    recs = run_bytes(capture(conv.segments))
    stats = recs[0].flow.c2b.stats()
    assert stats["retransmissions"] == 1 and stats["retrans_bytes"] == 4
    assert stats["data_bytes"] == len(CONNECT)
    assert isinstance(recs[1], Retransmitted) or any(type(r) is Retransmitted for r in recs)
