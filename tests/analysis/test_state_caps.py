"""The analysis state is small and capped, and says when a cap evicted something (issue 11 §9,
issue 13 "Bounded, long-running").

Memory is asserted on ``qosinspect report`` run as a process of its own (peak RSS from
``wait4``), by its growth between a small and a large scripted capture of the same shape: what
one more in-flight packet id, or one more concurrent connection, costs. No time is asserted.
The captures are the ones the benchmark measures at full size
(:mod:`qosinspect.testing.stresscaps`; ``benchmarks/concurrent_streams.py`` gives the figures).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qosinspect.analysis.api import analyze, analyze_capture
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.capture.decoder import CaptureDecoder
from qosinspect.capture.pcapfile import CaptureFile
from qosinspect.testing.stresscaps import (
    write_concurrent_streams,
    write_ended_connections,
    write_inflight_ids,
)

QOSINSPECT = Path(sys.executable).with_name("qosinspect")


def report_rss(path: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """``qosinspect report --format json PATH`` as its own process: its peak RSS in bytes and
    the report."""
    proc = subprocess.Popen([str(QOSINSPECT), "report", "--format", "json", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # reaps it: its own peak RSS
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return usage.ru_maxrss * 1024, json.loads(out)


@pytest.fixture(scope="module")
def inflight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """1,000 and 101,000 QoS 1 packet ids in flight on one connection (10 bytes an id; the
    client's 65535, then the broker's)."""
    d = tmp_path_factory.mktemp("inflight")
    small, large = d / "small.pcap", d / "large.pcap"
    write_inflight_ids(small, 1_000)
    write_inflight_ids(large, 101_000)
    return small, large


@pytest.fixture(scope="module")
def streams(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """1,000 and 31,000 TCP connections open at once, each with a QoS 1 PUBLISH in flight
    (past the decoder's 25,000: the least recently active are evicted)."""
    d = tmp_path_factory.mktemp("streams")
    small, large = d / "small.pcap", d / "large.pcap"
    write_concurrent_streams(small, 1_000)
    write_concurrent_streams(large, 31_000)
    return small, large


@pytest.fixture(scope="module")
def ended(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """1,000 and 21,000 connections one after the other, 100 ms apart, each ended by
    DISCONNECT and FIN (the decoder keeps the same 1,200 closed flows for their tombstones in
    both)."""
    d = tmp_path_factory.mktemp("ended")
    small, large = d / "small.pcap", d / "large.pcap"
    write_ended_connections(small, 1_000)
    write_ended_connections(large, 21_000)
    return small, large


def analysis_rss(path: Path) -> int:
    """Peak RSS in bytes of a process that analyses ``path`` (decoder and analysis, report
    options) and builds nothing after it: what the analysis keeps."""
    code = ("import resource, sys\n"
            "from qosinspect.analysis.api import analyze_capture\n"
            "from qosinspect.analysis.options import REPORT_OPTIONS\n"
            "a = analyze_capture(sys.argv[1], options=REPORT_OPTIONS)\n"
            "assert len(a.result.connections) > 0\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True, timeout=300).stdout
    return int(out) * 1024


def test_an_ended_connection_keeps_a_row_not_its_objects(ended: tuple[Path, Path]) -> None:
    """Issue 13 ("connections and sessions are dropped after they end"): an ended connection
    is one packed row, its ConnState and Connection released at once. What the analysis keeps
    per ended connection and its (idle) session: 2,960 bytes before, 1,950 after."""
    small, large = ended
    per_conn = (analysis_rss(large) - analysis_rss(small)) / 20_000
    assert per_conn < 2_400, f"{per_conn:.0f} bytes per ended connection"
    rss_small, _ = report_rss(small)
    rss_large, rep = report_rss(large)
    assert rep["connections"] == rep["sessions"] == 21_000
    assert rep["per_qos"][1]["completed"] == 21_000
    assert rep["connection_ends"] == {"disconnect": 21_000}
    # the report reads the rows back as records: 2,690 bytes a connection before, 2,310 after
    per_conn = (rss_large - rss_small) / 20_000
    assert per_conn < 2_600, f"{per_conn:.0f} bytes per ended connection in report"


def test_inflight_ids_cost_their_rows_not_objects(inflight: tuple[Path, Path]) -> None:
    """Issue 11 §9: 10^5 ids in flight took 84x the capture. Past ``max_open_per_session``
    (65535, one direction's id space) the oldest are evicted, said and counted, so past it
    what grows with the ids is the report's exchange row (82 bytes, in the ring of joinable
    finished exchanges, before it is folded) and the publication
    waiting for its copies (bounded by the delivery window), not an object per open exchange:
    589 bytes an id before, 449 after (over these 100,000 ids); then 483 on main with the
    diagnoses, 312 with an open exchange and a pending publication made small (issue 11 §9,
    branch ``mem``)."""
    small, large = inflight
    rss_small, _ = report_rss(small)
    rss_large, rep = report_rss(large)
    per_id = (rss_large - rss_small) / 100_000
    assert per_id < 400, f"{per_id:.0f} bytes per in-flight id"
    q1 = rep["per_qos"][1]
    assert q1["publishes"] == 101_000
    assert q1["evicted"] == 101_000 - 65535 and q1["at_end_of_capture"] == 65535
    assert rep["evictions"] == {"exchanges": q1["evicted"], "connections": 0}
    # said: one anomaly per eviction (rows capped per connection, the rest counted)
    assert rep["anomalies"]["too_many_exchanges"] == q1["evicted"]


def test_concurrent_connections_cost_little_each(streams: tuple[Path, Path]) -> None:
    """Issue 11 §9: 100,000 concurrent streams took 664 MB in ``report``. Per connection the
    analysis keeps a record, a session and one open exchange, and nothing it does not need
    yet (pending-subscription maps, anomaly counts, the finished-exchange index are made on
    first use; the decoder keeps no per-connection TCP statistics for the report), and a flow
    the decoder evicted is freed at once: 6.05 kB a connection before, 4.97 kB after (the
    decoder's 25,000 open flows included); then an ended connection became a packed row and a
    stream decoder's maps lazy (issue 13): 5.36 kB before, 4.76 kB after; the diagnoses'
    rings of TCP facts took it to 6.43 kB, made on first use 4.70 kB."""
    small, large = streams
    rss_small, _ = report_rss(small)
    rss_large, rep = report_rss(large)
    per_conn = (rss_large - rss_small) / 30_000
    assert per_conn < 5_000, f"{per_conn:.0f} bytes per connection"
    assert rep["per_qos"][1]["publishes"] == 31_000
    assert rep["evictions"]["connections"] > 0


def _traced_per_id(tmp: Path, deliveries: bool) -> float:
    """Bytes the correlator keeps per QoS 1 packet id in flight (tracemalloc, which sees the
    compiled objects too), between 2,500 and 40,000 ids on one connection: both sizes fill the
    session's dict of open exchanges to the same load, so its growth steps do not count."""
    import gc
    import tracemalloc

    from qosinspect.analysis.correlate import Correlator

    traced = []
    for n in (2_500, 40_000):
        path = tmp / f"inflight-{n}.pcap"
        if not path.exists():
            write_inflight_ids(path, n)
        events = list(CaptureDecoder(CaptureFile(path), keep_tcp_stats=False))
        gc.collect()
        tracemalloc.start()
        try:
            corr = Correlator(AnalysisOptions(detail=False, packets=False,
                                              deliveries=deliveries))
            for ev in events:
                corr.feed(ev)
            assert corr.n_open_total == n
            traced.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
        del corr, events
    return (traced[1] - traced[0]) / 37_500


def _compiled() -> bool:
    import qosinspect.analysis.state as state

    return not state.__file__.endswith(".py")


def test_an_open_exchange_is_small(tmp_path: Path) -> None:
    """Issue 11 §9: an open exchange with its entry in its session's index cost 475 bytes
    compiled (44 unboxed fields); its nine small fields now share one int and the 20 of its
    acknowledgement steps are made at the first acknowledgement: 251 bytes compiled, 324
    interpreted (where every field is an object)."""
    per_ex = _traced_per_id(tmp_path, deliveries=False)
    assert per_ex < (300 if _compiled() else 360), f"{per_ex:.0f} bytes per open exchange"


def test_a_pending_publication_is_small(tmp_path: Path) -> None:
    """Issue 11 §9: a publication waiting for its copies (with its content index entry) cost
    187 bytes compiled; nine fields instead of twelve and one shared empty expectation (a
    topic nobody subscribed to): 162 bytes compiled, 137 interpreted."""
    per_pub = _traced_per_id(tmp_path, deliveries=True) - _traced_per_id(tmp_path,
                                                                         deliveries=False)
    assert per_pub < 175, f"{per_pub:.0f} bytes per pending publication"


def test_a_connection_without_tcp_facts_costs_its_entry_only() -> None:
    """Issue 11 §9: the diagnoses keep rings of TCP facts for up to ``MAX_CONNECTIONS``
    connections; three empty deques were 2.3 kB a connection (46 MB at the cap). A ring is
    made at its first fact now, and a fact still lands in it."""
    import tracemalloc

    from qosinspect.analysis.diagnoses.facts import RING, Facts

    facts = Facts()
    tracemalloc.start()
    try:
        for conn_id in range(10_000):
            facts.conn(conn_id, f"10.0.{conn_id >> 8}.{conn_id & 255}:40000")
        per_conn = tracemalloc.get_traced_memory()[0] / 10_000
    finally:
        tracemalloc.stop()
    assert per_conn < 400, f"{per_conn:.0f} bytes per connection's facts"
    for i in range(RING + 3):
        facts.split(7, "", 0, i, i + 1, i, i, i + 1)
    assert len(facts.conns[7].splits) == RING and facts.conns[7].splits[-1].ts == RING + 3
    assert not facts.conns[8].splits and not facts.conns[8].windows


def test_pure_and_compiled_agree_past_the_caps(inflight: tuple[Path, Path],
                                               streams: tuple[Path, Path]) -> None:
    """The interpreted analysis (QOSINSPECT_PURE=1) evicts exactly what the compiled one does:
    the per-session cap on the in-flight capture, the total cap (set low) on the streams."""
    code = ("import json, sys\n"
            "from qosinspect.analysis.api import analyze_capture\n"
            "from qosinspect.analysis.options import AnalysisOptions\n"
            "o = AnalysisOptions(detail=False, max_open_total=int(sys.argv[2]))\n"
            "print(json.dumps(analyze_capture(sys.argv[1], options=o).report()))\n")
    for path, total in ((inflight[1], 100_000), (streams[0], 300)):
        runs = []
        for pure in ("0", "1"):
            out = subprocess.run([sys.executable, "-c", code, str(path), str(total)],
                                 env={**os.environ, "QOSINSPECT_PURE": pure}, check=True,
                                 capture_output=True, timeout=300).stdout
            runs.append(json.loads(out))
        assert runs[0] == runs[1]
        assert runs[0]["evictions"]["exchanges"] > 0


def test_total_cap_evicts_the_oldest_tenth_and_says_it(streams: tuple[Path, Path]) -> None:
    """Past ``max_open_total`` the oldest tenth of every session's open exchanges goes (one
    anomaly per batch, with the frame); a late PUBACK would still find them."""
    small, _ = streams
    a = analyze_capture(small, options=AnalysisOptions(max_open_total=300))
    ex = a.exchanges
    q1 = ex[ex["qos"] == 1].sort_values("ex_id")
    evicted = q1["outcome"] == "evicted"
    # the oldest go first: every evicted exchange is older than every one still open at the end
    assert q1[evicted]["ex_id"].max() < q1[~evicted]["ex_id"].min()
    assert int(evicted.sum()) == a.result.n_evicted == a.report()["evictions"]["exchanges"]
    caps = a.anomalies[a.anomalies["kind"] == "too_many_exchanges"]
    assert len(caps) and (caps["frame"] > 0).all()
    assert caps["detail"].str.contains("oldest").all()


def test_exchanges_on_connections_the_decoder_evicted_are_evicted(tmp_path: Path) -> None:
    """A connection the decoder stops following (its ``max_flows`` cap) leaves its open
    exchanges ``evicted``, not ``abandoned`` (nobody abandoned them) nor open, and both are
    counted in the report's ``evictions``."""
    path = tmp_path / "streams.pcap"
    write_concurrent_streams(path, 300)
    dec = CaptureDecoder(CaptureFile(path), keep_tcp_stats=False, max_flows=100)
    a = analyze(dec)
    ev = a.report()["evictions"]
    evicted_conns = int((a.connections["transport_end"] == "evicted").sum())
    assert evicted_conns == dec.pipeline.reassembler.evicted > 0
    assert ev == {"exchanges": evicted_conns, "connections": evicted_conns}
    outcomes = a.exchanges.groupby("conn_id")["outcome"].first()
    gone = a.connections.set_index("conn_id")["transport_end"] == "evicted"
    assert (outcomes[gone[gone].index] == "evicted").all()
    assert (outcomes[gone[~gone].index] == "open_at_end").all()


def test_a_closed_flow_is_freed_without_the_cyclic_collector() -> None:
    """A flow and its two halves point at each other; once the decoder has read a closed
    flow's statistics it cuts those cycles (``Flow.release``), so the flow goes when its last
    record does. Before, every closed or evicted flow waited for a full collection, which the
    analysis' relaxed collector thresholds make rare: 110 MB on 100,000 evicted flows."""
    import gc

    from qosinspect.capture.reassembly import Flow

    def flows() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is Flow)

    gc.collect()
    before = flows()
    gc.disable()
    try:
        events = list(CaptureDecoder(CaptureFile.from_bytes(_streams_bytes(50)),
                                     keep_tcp_stats=False))
        assert sum(1 for e in events if type(e).__name__ == "ConnectionClosed") == 50
        assert flows() == before
    finally:
        gc.enable()


def test_flows_lingering_at_the_end_are_freed_without_the_cyclic_collector() -> None:
    """A flow closed by FIN keeps its halves for its tombstone (late ACKs); those still there
    at the end of the capture are released too. Before, each was left as a reference cycle
    (about 1.5 kB; up to 25,000 of them) while the report was built."""
    import gc

    from qosinspect.capture.reassembly import Flow, HalfStream

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if type(o) in (Flow, HalfStream))

    gc.collect()
    before = alive()
    gc.disable()
    try:
        events = list(CaptureDecoder(CaptureFile.from_bytes(_streams_bytes(50, ended=True)),
                                     keep_tcp_stats=False))
        assert sum(1 for e in events if type(e).__name__ == "ConnectionClosed") == 50
        assert alive() == before
    finally:
        gc.enable()


def _streams_bytes(n: int, *, ended: bool = False) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.pcap"
        (write_ended_connections if ended else write_concurrent_streams)(path, n)
        return path.read_bytes()
