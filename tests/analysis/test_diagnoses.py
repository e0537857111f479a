"""Issue 16 on synthetic captures: each packet's first byte on the wire, the time a split packet
spent there, and the diagnoses read from the TCP facts around an exchange (Nagle with a delayed
ACK, a zero window, a retransmission), on the C fast path and on the Python reference alike.

The frames are scripted (:mod:`qosinspect.testing.synthcap`) so the expected figures are exact:
a PUBLISH whose second half waited 40 ms for the broker's ACK of the first must report 40 ms on
the wire and ``nagle_delayed_ack``; the same exchange sent in one segment must report nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect import _accel
from qosinspect.analysis.api import analyze_capture
from qosinspect.capture.decoder import iter_events
from qosinspect.events import MqttPacketEvent
from qosinspect.mqtt.encoder import encode
from qosinspect.mqtt.packets import Connect, PubAck, Publish
from qosinspect.testing.synthcap import PcapngInterface, TcpConversation, pcapng_bytes, render

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def _conversation(split: bool, *, zero_window: bool = False,
                  retransmit: bool = False, n: int = 3) -> TcpConversation:
    conv = TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 1883), start_ns=T0,
                           step_ns=100_000)
    conv.send("c2b", encode(Connect("nagle", 4), 4))
    conv.send("b2c", b"\x20\x02\x00\x00")
    for i in range(n):
        pub = encode(Publish(f"t/{i}", b"x" * 60, 1, False, False, i + 1), 4)
        t = conv.t + 100 * MS
        if split:
            half = len(pub) // 2
            conv.send("c2b", pub[:half], at_ns=t, ack=False)
            conv.pure_ack("b2c")
            conv.segments[-1].ts_ns = t + 40 * MS          # the broker's delayed ACK
            conv.send("c2b", pub[half:], at_ns=t + 40 * MS + 100_000, ack=False)
        elif zero_window:
            conv.pure_ack("b2c", window=0)                 # the broker stopped reading
            conv.segments[-1].ts_ns = t - MS
            conv.send("c2b", pub, at_ns=t, ack=False)
            conv.pure_ack("b2c")                           # a window again (window update)
            conv.segments[-1].ts_ns = t + 30 * MS
        else:
            segs = conv.send("c2b", pub, at_ns=t, ack=False)
            if retransmit:
                again = conv.segments.append
                copy = type(segs[0])(**{**segs[0].__dict__, "ts_ns": t + 210 * MS})
                again(copy)                                # the RTO fired
        conv.send("b2c", encode(PubAck(i + 1), 4), at_ns=conv.t + (220 * MS if retransmit
                                                                     else 35 * MS if zero_window
                                                                     else MS // 10))
    conv.close()
    return conv


def _write(tmp: Path, conv: TcpConversation) -> Path:
    path = tmp / "synth.pcapng"
    path.write_bytes(pcapng_bytes(render(conv.segments, 1), [PcapngInterface(1, tsresol=9)]))
    return path


@pytest.fixture(params=["c", "python"])
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "c":
        if not _accel.enabled():
            pytest.skip("the C accelerator is not built (or QOSINSPECT_PURE is set)")
        yield "c"
    else:
        with _accel.pure():
            yield "python"


def test_split_publish_carries_its_first_byte_time_and_the_ack_it_waited_for(
        tmp_path: Path, engine: str) -> None:
    path = _write(tmp_path, _conversation(split=True))
    pubs = [ev for ev in iter_events(str(path)) if isinstance(ev, MqttPacketEvent)
            and isinstance(ev.packet, Publish)]
    assert len(pubs) == 3
    for ev in pubs:
        assert ev.first_frame == ev.frame - 2             # first half, the ACK, second half
        assert ev.ts_ns - ev.first_ts_ns == 40 * MS + 100_000
        assert ev.ack_ts_ns - ev.first_ts_ns == 40 * MS   # the broker's delayed ACK


def test_whole_packets_have_no_wire_time_and_no_ack(tmp_path: Path, engine: str) -> None:
    path = _write(tmp_path, _conversation(split=False))
    evs = [ev for ev in iter_events(str(path)) if isinstance(ev, MqttPacketEvent)]
    assert evs and all(ev.first_ts_ns == ev.ts_ns and ev.ack_ts_ns == 0 for ev in evs)


def test_nagle_is_diagnosed_with_its_frames_and_wire_time(tmp_path: Path, engine: str) -> None:
    a = analyze_capture(str(_write(tmp_path, _conversation(split=True))))
    ex = a.exchanges[a.exchanges.qos == 1]
    assert (ex.wire_publish == pd.Timedelta(40_100_000, "ns")).all()
    assert ex.wire_puback.isna().all()
    assert list(ex.cause) == ["nagle_delayed_ack"] * 3
    d = a.result.diagnoses
    assert d is not None
    first = d.diagnoses[0]
    assert first.frames == (int(ex.frame.iloc[0]) - 2, int(ex.frame.iloc[0]))
    assert "waited 40.0 ms for the broker's ACK" in first.sentence
    assert "TCP_NODELAY on the client" in first.advice


def test_clean_exchanges_get_no_cause(tmp_path: Path, engine: str) -> None:
    a = analyze_capture(str(_write(tmp_path, _conversation(split=False))))
    assert a.exchanges.cause.isna().all()
    assert a.exchanges.wire_publish.isna().all()


def test_zero_window_is_diagnosed(tmp_path: Path, engine: str) -> None:
    a = analyze_capture(str(_write(tmp_path, _conversation(split=False, zero_window=True))))
    ex = a.exchanges[a.exchanges.qos == 1]
    assert list(ex.cause) == ["zero_window"] * 3
    d = a.result.diagnoses
    assert d is not None and "broker advertised a zero window" in d.diagnoses[0].sentence


def test_retransmission_is_diagnosed(tmp_path: Path, engine: str) -> None:
    a = analyze_capture(str(_write(tmp_path, _conversation(split=False, retransmit=True))))
    ex = a.exchanges[a.exchanges.qos == 1]
    assert list(ex.cause) == ["retransmission_timeout"] * 3


def test_floor_and_percentile_are_options(tmp_path: Path) -> None:
    from qosinspect.analysis.options import AnalysisOptions

    path = _write(tmp_path, _conversation(split=True))
    high = analyze_capture(str(path), options=AnalysisOptions(diagnose_floor_ns=100 * MS))
    assert high.exchanges.cause.isna().all()
    off = analyze_capture(str(path), options=AnalysisOptions(diagnose=False))
    assert off.exchanges.cause.isna().all() and off.result.diagnoses is None


def test_report_flows_and_ladder_say_the_cause(tmp_path: Path) -> None:
    from qosinspect.report.flows import flows_frame
    from qosinspect.report.text import format_report, ladder_lines

    path = _write(tmp_path, _conversation(split=True))
    a = analyze_capture(str(path))
    text = format_report(a, "table", capture="run.pcapng")
    section = text[text.index("Diagnoses\n"):text.index("Clear text\n")]
    assert "nagle_delayed_ack          3" in section
    assert "ladder: qosinspect ladder run.pcapng --conn 0 --since" in section
    assert "time on the wire (3 packets in pieces)" in text
    data = a.report()
    (nagle,) = data["diagnoses"]
    assert nagle["exchanges"] == 3 and nagle["latency_explained_ms"] == pytest.approx(
        3 * 40.2, abs=0.5)
    assert data["time_on_wire_ms"] == [{"qos": 1, "packets": 3, "p50": 40.1, "p90": 40.1,
                                        "p99": 40.1, "max": 40.1}]
    assert list(flows_frame(a)["cause"].dropna()) == ["nagle_delayed_ack"] * 3
    marks = [line for line in ladder_lines(a, conn=0) if "!! cause nagle_delayed_ack" in line]
    assert len(marks) == 3


def test_keepalive_diagnosis_names_the_silence() -> None:
    from qosinspect.analysis.diagnoses import keepalive
    from qosinspect.analysis.records import Connection, Reconnect

    prev = Connection(0, "10.0.0.1:1", "10.0.0.2:1883", keep_alive=2, t_last_c2b=T0,
                      t_close=T0 + 3_100 * MS, end="keepalive_expired")
    rc = Reconnect("s", "s", 0, 1, T0 + 3_100 * MS, T0 + 3_600 * MS, "keepalive_expired", None,
                   False)
    d = keepalive.check(4, rc, prev, 77)
    assert d is not None and d.ref == 4 and d.frames == (77,)
    assert d.latency_ns == 500 * MS
    assert "sent nothing for 3100.0 ms, past 1.5 x its keep alive of 2 s" in d.sentence
    rc_fin = Reconnect("s", "s", 0, 1, T0, T0 + MS, "fin", None, False)
    assert keepalive.check(0, rc_fin, prev, 77) is None


def test_latency_histogram_quantiles_are_within_an_eighth_of_an_octave() -> None:
    import random

    from qosinspect.analysis.state import LatencyHistogram

    rng = random.Random(7)
    values = [int(rng.lognormvariate(15, 2)) + 1 for _ in range(20_000)]
    h = LatencyHistogram()
    for v in values:
        h.add(v)
    data = sorted(values)
    for q in (50, 90, 99, 99.9):
        exact = data[min(len(data) - 1, int(q / 100 * len(data)))]
        got = h.quantile(q)
        assert exact <= got <= exact * 1.13, (q, exact, got)
    assert LatencyHistogram().quantile(99) == 0


def test_slowest_keeps_the_slowest_in_arrival_order() -> None:
    from qosinspect.analysis.diagnoses.core import Slowest

    s = Slowest(3)
    dropped = sum(s.add(lat, i, 0, i * 10) for i, lat in enumerate([5, 9, 1, 7, 8, 2, 6]))
    assert [r[1] for r in s.rows()] == [1, 3, 4]          # latencies 9, 7, 8
    assert dropped + s.excess() == 4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 20), max_size=80), st.integers(1, 6))
def test_slowest_is_the_slowest_of_everything_added(latencies: list[int], keep: int) -> None:
    """With its floor (one quicker than the slowest kept is dropped at once), the rows are
    the ``keep`` slowest of all that were added, later ones winning ties, in arrival order, and
    every other one is counted dropped once."""
    from qosinspect.analysis.diagnoses.core import Slowest

    s = Slowest(keep)
    dropped = sum(s.add(lat, i, 0, 0) for i, lat in enumerate(latencies))
    want = sorted(sorted(range(len(latencies)), key=latencies.__getitem__)[-keep:])
    assert [r[1] for r in s.rows()] == want
    assert dropped + s.excess() == len(latencies) - len(want)


def test_a_segment_sent_again_right_after_a_newer_one_is_a_retransmission(
        tmp_path: Path, engine: str) -> None:
    """A PUBLISH segment sent again right after the next PUBLISH (a tail loss probe) comes
    sooner after the highest segment than the first round trip: Wireshark calls it
    out-of-order, not a retransmission (capture/tcp_analysis.py). The bytes behind it waited
    all the same: retransmission_timeout is named (in the TUN loss run a slow handshake made the
    first round trip long, and one run in six named only some of the lost segments)."""
    conv = TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 1883), start_ns=T0,
                           step_ns=2_500_000)          # first round trip: 5 ms
    conv.send("c2b", encode(Connect("tlp", 4), 4))
    conv.send("b2c", b"\x20\x02\x00\x00")
    t = conv.t + 100 * MS
    (first,) = conv.send("c2b", encode(Publish("t/1", b"x" * 60, 1, False, False, 1), 4),
                         at_ns=t, ack=False)
    conv.send("c2b", encode(Publish("t/2", b"x" * 60, 1, False, False, 2), 4),
              at_ns=t + 30 * MS, ack=False)
    conv.segments.append(type(first)(**{**first.__dict__, "ts_ns": t + 30 * MS + MS // 2}))
    conv.send("b2c", encode(PubAck(1), 4) + encode(PubAck(2), 4), at_ns=t + 31 * MS)
    conv.close()
    a = analyze_capture(str(_write(tmp_path, conv)))
    assert list(a.tcp_evidence.kind) == ["out_of_order"]
    ex = a.exchanges.set_index("packet_id")
    assert ex.cause[1] == "retransmission_timeout"
    (rto,) = [d for d in a.report()["diagnoses"] if d["cause"] == "retransmission_timeout"]
    assert "Wireshark: out-of-order" in rto["examples"][0]["evidence"]
