"""The bound in time on the joinable window (``joinable_ns``, 300 s in ``watch`` and ``report``
alike): memory stops growing once the last minutes are in, however slow the traffic, a late
join is taken while it is within the bound and not after, and a watch's final report is
``report``'s even for a join later than the bound (docs/watch.md, "Bounded memory")."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import qosinspect
from qosinspect.analysis.correlate import Correlator
from qosinspect.analysis.exchanges import FOLD_BLOCK
from qosinspect.analysis.options import JOINABLE_NS, AnalysisOptions
from qosinspect.live.core import report_options
from qosinspect.mqtt import encode
from qosinspect.mqtt.packets import ConnAck, Connect, PubAck, Publish
from qosinspect.testing.events import EventBuilder
from qosinspect.testing.synthcap import TcpConversation, pcap_bytes, render

S = 10**9


def _peak_store_bytes(options: AnalysisOptions, exchanges: int, every_ms: float
                      ) -> tuple[int, Any]:
    """The most the ring of finished exchanges held, over ``exchanges`` QoS 1 exchanges one
    every ``every_ms`` of packet time (built and fed a thousand at a time), and the figures."""
    corr = Correlator(options)
    b = EventBuilder(step_ns=round(every_ms * 1e6))
    c = b.client("slow-sensor", clean_start=False)
    peak = 0
    for i in range(exchanges):
        b.qos1(c, "c2b", "t", b"%d" % i, i % 60000 + 1, ack_ms=1.0)
        if len(b.events) >= 2000:
            for ev in b.events:
                corr.feed(ev)
            b.events.clear()
            peak = max(peak, corr.ex.exchanges.nbytes())
    for ev in b.events:
        corr.feed(ev)
    return peak, corr.finish().aggregate.qos_rows()


def test_a_slow_stream_holds_only_the_last_seconds() -> None:
    """40,000 exchanges at 100 per second fill the window of four blocks and come round it
    again; bounded to 30 s of packet time, at most the block being filled and the one before
    it are held (a block freed is allocated again when the ring comes back to it), and the
    figures are the same (no late join here)."""
    base = replace(report_options(), max_joinable_finished=4 * FOLD_BLOCK)
    row = Correlator(base).ex.exchanges.size
    unbounded, want = _peak_store_bytes(replace(base, joinable_ns=0), 40_000, 10.0)
    bounded, got = _peak_store_bytes(replace(base, joinable_ns=30 * S), 40_000, 10.0)
    assert unbounded == 4 * FOLD_BLOCK * row
    assert bounded <= 2 * FOLD_BLOCK * row
    assert got == want and got[1]["publishes"] == 40_000


def _late_dup(after_s: float) -> list[Any]:
    """Five QoS 1 exchanges (one block of four and one more, ``after_s`` later), then the first
    one's PUBLISH sent again with DUP and acknowledged again."""
    b = EventBuilder()
    c = b.client("dev", clean_start=False)
    for pid in range(1, 5):
        b.qos1(c, "c2b", "t", b"m%d" % pid, pid)
    b.advance(after_s)
    b.qos1(c, "c2b", "t", b"m5", 5)
    b.publish(c, "c2b", "t", b"m1", qos=1, packet_id=1, dup=True)
    b.puback(c, "b2c", 1)
    return b.events


def _qos1(events: list[Any], joinable_ns: int) -> dict[str, Any]:
    options = replace(report_options(), max_joinable_finished=8, joinable_ns=joinable_ns)
    report: dict[str, Any] = qosinspect.analyze(events, options).report()
    return next(r for r in report["per_qos"] if r["qos"] == 1)


def test_a_late_join_within_the_bound_joins_and_after_it_does_not() -> None:
    within, after = _late_dup(5), _late_dup(11)
    joined = _qos1(within, 0)
    assert joined["publishes"] == 5 and joined["retransmissions"] == 1
    assert _qos1(within, 10 * S) == joined           # 5 s later: still joinable
    assert _qos1(after, 0) == _qos1(within, 0)       # no bound in time: joined
    late = _qos1(after, 10 * S)                      # 11 s later: a new exchange
    assert late["publishes"] == 6 and late["retransmissions"] == 0
    assert late["dup_flagged"] == 1


def test_watch_and_report_share_the_bound_in_time() -> None:
    """A finished exchange stays joinable for five minutes (docs/watch.md says why) in watch's
    analysis and in report's (the default), so the two agree on every late join."""
    assert report_options().joinable_ns == AnalysisOptions().joinable_ns == JOINABLE_NS
    assert JOINABLE_NS == 300 * S


def _late_dup_capture(path: Path, after_s: float) -> None:
    """A capture of one client: a block of FOLD_BLOCK QoS 1 exchanges, one more ``after_s``
    later, then the first one's PUBLISH sent again with DUP and acknowledged again."""
    conv = TcpConversation(step_ns=100_000)
    conv.send("c2b", encode(Connect(client_id="dev", clean_start=False), 4))
    conv.send("b2c", encode(ConnAck(False, 0), 4))
    for pid in range(1, FOLD_BLOCK + 1):
        conv.send("c2b", encode(Publish("t", b"%d" % pid, 1, False, False, pid), 4), ack=False)
        conv.send("b2c", encode(PubAck(pid), 4), ack=False)
    conv.t += round(after_s * S)
    last = FOLD_BLOCK + 1
    conv.send("c2b", encode(Publish("t", b"last", 1, False, False, last), 4), ack=False)
    conv.send("b2c", encode(PubAck(last), 4), ack=False)
    conv.send("c2b", encode(Publish("t", b"1", 1, True, False, 1), 4), ack=False)
    conv.send("b2c", encode(PubAck(1), 4))
    conv.close()
    path.write_bytes(pcap_bytes(render(conv.segments)))


def test_watch_final_report_is_reports_past_the_bound(tmp_path: Path) -> None:
    """A DUP re-send 400 s after its exchange finished (past the bound: a new exchange) and one
    10 s after (within it: joined): ``watch``'s final JSON report is ``report --format json``
    of the same capture in both, and tells the two apart."""
    qosinspect_cli = str(Path(sys.executable).with_name("qosinspect"))
    got = {}
    for after in (10, 400):
        capture = tmp_path / f"late-{after}.pcap"
        _late_dup_capture(capture, after)
        report = subprocess.run([qosinspect_cli, "report", str(capture), "--format", "json"],
                                check=True, capture_output=True, timeout=120).stdout
        watched = tmp_path / f"watch-{after}.json"
        subprocess.run([qosinspect_cli, "watch", str(capture), "--report", str(watched),
                        "--report-format", "json"], check=True, capture_output=True,
                       timeout=120)
        mine = json.loads(watched.read_text())
        assert mine == json.loads(report)
        got[after] = next(r for r in mine["per_qos"] if r["qos"] == 1)
    n = FOLD_BLOCK + 1
    assert (got[10]["publishes"], got[10]["retransmissions"]) == (n, 1)
    assert (got[400]["publishes"], got[400]["retransmissions"]) == (n + 1, 0)
    assert got[10]["dup_flagged"] == got[400]["dup_flagged"] == 1
