"""Generator runs end to end: each fault produces exactly the effect the analysis of the
capture reports, checked packet id by packet id against the proxy's fault log and against what
the clients recorded (the ground truth JSON); the capture agrees with the proxy's tap.

The capture is the clients' side of the fault proxy, so a fault shows where a capture there
would show it: a dropped c2b acknowledgement was sent by the client (it is in the capture) and
its effect is the broker's resend after the reconnection; a dropped b2c one never reaches the
client, so its flow stays open until the client resends.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from qosinspect.analysis.api import analyze, analyze_capture
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.capture.decoder import iter_events
from qosinspect.events import ConnectionClosed, Event, MqttPacketEvent
from qosinspect.traffic.builtin import builtin_data
from qosinspect.traffic.faults import FaultRecord
from qosinspect.traffic.run import RunOptions, RunResult, run_scenario, truth_path_for
from qosinspect.traffic.scenario import parse_scenario

NS = 1_000_000_000
REAL = os.geteuid() == 0 and shutil.which("dumpcap") is not None


def run(data: dict[str, Any], tmp: Path, method: str = "auto", **kw: Any) -> RunResult:
    scenario = parse_scenario({"front_port": 0, **data})   # any free port, never 1883
    options = RunOptions(capture=tmp / f"{scenario.name}.pcapng", capture_method=method, **kw)
    return asyncio.run(run_scenario(scenario, options))


def fault_log(result: RunResult, index: int, action: str) -> list[dict[str, Any]]:
    return [r for r in result.truth["faults"]["log"]
            if r["fault"] == index and r["action"] == action]


def pids(records: list[dict[str, Any]]) -> set[int]:
    return {r["packet_id"] for r in records}


def exchange_ids(ex: pd.DataFrame, client: str, direction: str, qos: int,
                 mask: pd.Series) -> set[int]:
    sel = ex[(ex.client_id == client) & (ex.direction == direction) & (ex.qos == qos) & mask]
    return {int(p) for p in sel.packet_id}


def per_qos(report: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {row["qos"]: row for row in report["per_qos"]}


def test_reconnect_analysis_equals_what_the_clients_recorded_and_tap_equals_pcap(
        tmp_path: Path) -> None:
    data = builtin_data("reconnect")
    data.update(duration=4.0)
    # The hold outlasts the cut, so every acknowledgement it took is lost with the connection
    # even when a busy machine runs the timeline late.
    data["faults"][0].update(at=1.6, duration=1.0)
    data["faults"][1].update(at=1.8, down_for=1.2)
    tap: list[Event] = []
    result = run(data, tmp_path, "auto" if REAL else "tap", proxy_tap=tap.append)
    assert result.capture_method == ("dumpcap" if REAL else "tap")
    assert result.truth_path == truth_path_for(tmp_path / "reconnect.pcapng")
    assert json.loads(result.truth_path.read_text()) == result.truth
    truth = result.truth
    told = {row["qos"]: row for row in truth["per_qos"]}
    analysis = analyze_capture(str(result.capture_path), options=AnalysisOptions(
        same_broker=result.same_broker))
    report = per_qos(analysis.report())
    # QoS 0: every message published while the subscriber was away is lost, and the capture
    # analysis counts exactly the ones the subscriber never got.
    assert told[0]["lost"] > 0
    assert report[0]["not_delivered"] + report[0]["not_delivered_offline"] == told[0]["lost"]
    # The subscriber's acknowledgements held by the proxy and lost with the connection: in the
    # capture (the client's side) it sent them, the broker never got them [MQTT-4.4.0-1].
    lost = Counter(r["packet_type"] for r in fault_log(result, 0, "lost"))
    assert set(lost) <= {"PUBACK", "PUBREC", "PUBCOMP"}
    # QoS 1: delivered, PUBACK lost, delivered again (DUP).
    assert told[1]["duplicates"] > 0
    assert report[1]["duplicates_delivered"] == told[1]["duplicates"] == lost["PUBACK"]
    # QoS 2: exactly once, however many PUBLISH were resent; a lost PUBREC makes the broker
    # resend the PUBLISH (the exchange completes after the reconnection), a lost PUBCOMP the
    # PUBREL (the exchange had completed on the client's side).
    assert told[2]["duplicates"] == 0 and told[2]["unique"] == told[2]["expected"]
    assert report[2]["duplicates_delivered"] == 0 and report[2]["not_delivered"] == 0
    assert report[2]["complete_after_reconnect"] == lost["PUBREC"] > 0
    rec = analysis.reconnects
    assert list(rec.client_id) == ["sub-persistent"] and bool(rec.session_present.iloc[0])
    assert int(rec.redelivered_publish.iloc[0]) == lost["PUBACK"] + lost["PUBREC"]
    assert int(rec.redelivered_pubrel.iloc[0]) == lost["PUBCOMP"]
    sub = truth["clients"]["sub-persistent"]
    assert len(sub["reconnects"]) == 1 and sub["reconnects"][0]["session_present"]
    # The same run through the proxy's tap and through the capture: the same packets, in the
    # same order, per connection and direction; the same analysis.
    assert_same_packets(tap, list(iter_events(str(result.capture_path))))
    tap_report = per_qos(analyze(tap, AnalysisOptions(same_broker=result.same_broker)).report())
    for q in (0, 1, 2):
        for key in ("publishes", "completed", "retransmissions", "dup_flagged",
                    "duplicates_delivered", "not_delivered", "not_delivered_offline"):
            assert tap_report[q][key] == report[q][key], (q, key)


def assert_same_packets(tap: list[Event], pcap: list[Event]) -> None:
    def streams(events: list[Event]) -> dict[tuple[int, str], list[Any]]:
        out: dict[tuple[int, str], list[Any]] = defaultdict(list)
        for e in events:
            if isinstance(e, MqttPacketEvent):
                assert e.direction is not None
                out[(e.conn.client.port, e.direction.value)].append(
                    (e.packet, e.wire_len, e.version))
        return out

    def ends(events: list[Event]) -> dict[int, tuple[str, str | None]]:
        return {e.conn.client.port: (e.how, e.closed_by.value if e.closed_by else None)
                for e in events if isinstance(e, ConnectionClosed)}

    a, b = streams(tap), streams(pcap)
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key] == b[key], key
    assert sum(len(v) for v in a.values()) > 1000
    assert ends(tap) == {port: end for port, end in ends(pcap).items() if port in ends(tap)}


def test_packet_faults_have_exactly_their_effect(tmp_path: Path) -> None:
    """drop, duplicate and hold_acks in both directions, then a cut so that what was never
    acknowledged is resent: each packet id the log names shows up as its effect."""
    data = {
        "name": "packet-faults", "duration": 3.2, "seed": 3,
        "publishers": [
            {"name": "pub1", "clean_start": False,
             "topics": [{"topic": "pf/q1/t{i}", "count": 2, "qos": 1, "rate": 10}]},
            {"name": "pub2", "clean_start": False,
             "topics": [{"topic": "pf/q2/t{i}", "count": 2, "qos": 2, "rate": 10}]}],
        "subscribers": [{"name": "sub", "filters": ["pf/#"], "clean_start": False}],
        "faults": [
            {"kind": "drop", "client": "sub", "packet_type": "PUBACK", "direction": "c2b",
             "at": 0.3, "every": 4, "count": 3},
            {"kind": "drop", "client": "sub", "packet_type": "PUBCOMP", "direction": "c2b",
             "at": 0.3, "every": 5, "count": 2},
            {"kind": "duplicate", "client": "pub1", "packet_type": "PUBLISH",
             "direction": "c2b", "at": 0.5, "every": 6, "count": 2},
            {"kind": "drop", "client": "pub2", "packet_type": "PUBCOMP", "direction": "b2c",
             "at": 0.5, "every": 4, "count": 2},
            {"kind": "duplicate", "client": "pub1", "packet_type": "PUBACK", "direction": "b2c",
             "at": 1.2, "every": 3, "count": 2},
            {"kind": "hold_acks", "client": "pub2", "packet_type": "PUBREC", "direction": "b2c",
             "at": 1.5, "duration": 0.4},
            {"kind": "cut", "clients": ["sub", "pub1", "pub2"], "at": 2.5, "how": "fin",
             "down_for": 0.2},
        ],
    }
    result = run(data, tmp_path)
    analysis = analyze_capture(str(result.capture_path), options=AnalysisOptions(
        same_broker=result.same_broker))
    ex = analysis.exchanges
    dropped_puback = pids(fault_log(result, 0, "drop"))
    dropped_pubcomp = pids(fault_log(result, 1, "drop"))
    dup_publish = pids(fault_log(result, 2, "duplicate"))
    dropped_pubcomp_b2c = pids(fault_log(result, 3, "drop"))
    dup_puback = pids(fault_log(result, 4, "duplicate"))
    held = fault_log(result, 5, "hold")
    released = {r["packet_id"]: r["ts_ns"] for r in fault_log(result, 5, "release")}
    assert [len(s) for s in (dropped_puback, dropped_pubcomp, dup_publish,
                             dropped_pubcomp_b2c, dup_puback)] == [3, 2, 2, 2, 2]
    assert held and set(released) == pids(held)
    # Flows in flight at the cut are resent too, legitimately: allow those, and only those.
    cut_ns = fault_log(result, 6, "cut_fin")[0]["ts_ns"]
    t_pub = ex.t_publish.astype("int64")
    near_cut = (t_pub > cut_ns - NS // 10) & (t_pub < cut_ns + NS // 10)

    def exactly(client: str, direction: str, qos: int, mask: pd.Series, expected: set[int]
                ) -> None:
        got = exchange_ids(ex, client, direction, qos, mask)
        assert expected <= got, (client, expected, got)
        assert got - expected <= exchange_ids(ex, client, direction, qos, near_cut), \
            (client, expected, got)

    # A PUBACK the subscriber sent but the broker never got: the broker resends the PUBLISH
    # (DUP=1) on the new connection [MQTT-4.4.0-1].
    exactly("sub", "b2c", 1, ex.n_publish > 1, dropped_puback)
    exactly("sub", "b2c", 1, ex.dup_seen, dropped_puback)
    # A lost PUBCOMP: the broker resends the PUBREL.
    exactly("sub", "b2c", 2, ex.n_pubrel > 1, dropped_pubcomp)
    # A duplicated PUBLISH: the broker acknowledges and forwards both (QoS 1).
    assert exchange_ids(ex, "pub1", "c2b", 1, ex.n_puback > 1) == dup_publish | dup_puback
    # A PUBCOMP that never reached the publisher: it resends PUBREL after reconnecting.
    exactly("pub2", "c2b", 2, ex.outcome == "complete_after_reconnect", dropped_pubcomp_b2c)
    # Held PUBRECs reach the publisher only when the hold ends.
    got = ex[(ex.client_id == "pub2") & (ex.direction == "c2b") & ex.packet_id.isin(released)]
    assert len(got) == len(released)
    for pid, t_pubrec in zip(got.packet_id, got.t_pubrec, strict=True):
        assert t_pubrec.value >= released[int(pid)] - 1_000_000
    # And what the clients recorded agrees with the analysis.
    truth = result.truth
    report = per_qos(analysis.report())
    sub_q1 = truth["clients"]["sub"]["per_qos"]["1"]
    redelivered = exchange_ids(ex, "sub", "b2c", 1, ex.n_publish > 1)
    assert sub_q1["duplicates"] == len(redelivered) + len(dup_publish)
    assert report[1]["duplicates_delivered"] == sub_q1["duplicates"]
    assert truth["clients"]["sub"]["per_qos"]["2"]["duplicates"] == 0
    assert report[2]["duplicates_delivered"] == 0
    for row in truth["per_qos"]:
        assert row["lost"] == 0 and row["incomplete"] == 0
    assert analysis.report()["reconnects"] == 3


def test_timed_faults_in_a_synthetic_capture(tmp_path: Path) -> None:
    """delay, blackhole, cut after N packets and a broker restart, recorded without a capture
    tool (the proxy's synthetic pcapng, whose timestamps are the proxy's own clock).

    Every check is on what the proxy did (its log and its clock), never on how fast the
    machine was: a busy machine may slow any packet, so no upper bound on a latency is checked,
    and the restart comes a second after the subscriber's reconnection from the cut is due
    (its back-off retries 0.1, 0.2, 0.4 s after the cut), so it meets a connected subscriber."""
    data = {
        "name": "timed-faults", "duration": 5.2, "drain": 3.0,
        "publishers": [{"name": "pub", "clean_start": False, "topics": [
            {"topic": "tf/q1/t{i}", "count": 4, "qos": 1, "rate": 10}]}],
        "subscribers": [{"name": "sub", "filters": ["tf/#"], "clean_start": False,
                         "keep_alive": 10}],
        "faults": [
            {"kind": "delay", "client": "pub", "direction": "c2b", "delay": 0.05,
             "at": 0.4, "duration": 0.6},
            {"kind": "blackhole", "client": "sub", "at": 1.3, "duration": 0.6},
            {"kind": "cut", "client": "sub", "at": 2.3, "after_packets": 12,
             "packet_type": "PUBLISH", "direction": "b2c", "how": "rst", "down_for": 0.3},
            {"kind": "restart_broker", "at": 4.3, "down_for": 0.4},
        ],
    }
    tap: list[Event] = []
    result = run(data, tmp_path, "tap", proxy_tap=tap.append)
    assert result.capture_method == "tap"
    t0 = result.truth["run"]["t0_ns"]
    analysis = analyze_capture(str(result.capture_path), options=AnalysisOptions(
        same_broker=result.same_broker))
    ex = analysis.exchanges
    # delay: the proxy delayed exactly the PUBLISH it read in the window (the capture's times
    # are the clock the rule judged by), its log names each, and each waited at least the
    # 50 ms for its PUBACK.
    pub = ex[(ex.client_id == "pub") & (ex.direction == "c2b")]
    t_pub = pub.t_publish.astype("int64")
    in_window = (t_pub >= t0 + int(0.4 * NS)) & (t_pub < t0 + int(1.0 * NS))
    delayed = [r for r in fault_log(result, 0, "delay") if r["packet_type"] == "PUBLISH"]
    assert in_window.sum() > 10 and len(delayed) == in_window.sum()
    assert pids(delayed) == {int(p) for p in pub.packet_id[in_window]}
    assert (pub.latency_puback[in_window] >= pd.Timedelta(milliseconds=50)).all()
    # blackhole: nothing reached the subscriber while it lasted; what was published meanwhile
    # was delivered once it ended, none lost.
    start = fault_log(result, 1, "blackhole")[0]["ts_ns"]
    end = start + int(0.6 * NS)
    to_sub = [e.ts_ns for e in tap if isinstance(e, MqttPacketEvent)
              and e.conn.client.port and e.direction is not None
              and e.direction.value == "b2c" and _client_of(tap, e) == "sub"]
    assert not [t for t in to_sub if start < t < end]
    dl = analysis.deliveries
    t_sent = dl.t_publish.astype("int64")
    meanwhile = dl[(dl.subscriber == "sub") & (t_sent >= start) & (t_sent < end)]
    assert len(meanwhile) > 10 and (meanwhile.status == "delivered").all()
    assert (meanwhile.t_delivered.astype("int64") >= end).all()
    # cut after 12 PUBLISH: the subscriber's first connection ends there, reset by the broker
    # side, and the last PUBLISH it got on it is the 12th. (The broker's restart may end a
    # later connection with a reset too: a socket closed with unread bytes sends RST.)
    cut = fault_log(result, 2, "cut_rst")[0]
    conns = analysis.connections
    first = conns[conns.client_id == "sub"].sort_values("t_open").iloc[0]
    assert (first.end, first.closed_by) == ("rst", "b2c")
    cid = int(first.conn_id)
    last = ex[(ex.conn_id == cid) & (ex.direction == "b2c")].sort_values("t_publish").iloc[-1]
    assert int(last.packet_id) == cut["packet_id"]
    # restart: both clients lose their connection to the broker and come back to a broker that
    # forgot their sessions (no persistence).
    stop = fault_log(result, 3, "broker_stop")[0]["ts_ns"]
    rec = analysis.reconnects
    after_restart = rec[rec.t_drop.astype("int64") >= stop]
    assert sorted(after_restart.client_id) == ["pub", "sub"]
    assert not after_restart.session_present.any()
    truth = result.truth["clients"]
    assert [r["session_present"] for r in truth["sub"]["reconnects"]] == [True, False]
    assert [r["session_present"] for r in truth["pub"]["reconnects"]] == [False]
    actions = {f"{r['kind']}:{r['action']}" for r in result.truth["faults"]["log"]}
    assert {"delay:delay", "blackhole:blackhole", "cut:cut_rst", "cut:refuse",
            "restart_broker:broker_stop", "restart_broker:broker_start"} <= actions


def _client_of(tap: list[Event], event: MqttPacketEvent) -> str:
    from qosinspect.mqtt.packets import Connect

    for e in tap:
        if isinstance(e, MqttPacketEvent) and e.conn == event.conn and \
                isinstance(e.packet, Connect):
            return e.packet.client_id
    return ""


def test_fault_records_are_json_friendly() -> None:
    rec = FaultRecord(1, 0.5, 2, "drop", "drop", "sub", "c2b", "PUBACK", 7)
    assert rec.as_json() == {"ts_ns": 1, "t": 0.5, "fault": 2, "kind": "drop",
                             "action": "drop", "client_id": "sub", "direction": "c2b",
                             "packet_type": "PUBACK", "packet_id": 7}


def test_slow_subscriber_fills_the_brokers_window_and_still_gets_everything(
        tmp_path: Path) -> None:
    """Acknowledgements that wait for a slow application: the broker keeps at most its
    in-flight window (20) of unacknowledged messages to that subscriber, queues the rest, and
    delivers everything once each; the fast subscriber beside it is never held up."""
    data = builtin_data("slow-subscriber")
    data.update(duration=1.5, drain=15.0)
    result = run(data, tmp_path, "tap")
    truth = result.truth["clients"]
    for cid in ("sub-slow", "sub-fast"):
        for row in truth[cid]["per_qos"].values():
            assert row["unique"] == row["expected"] > 0 and row["duplicates"] == 0
    ex = analyze_capture(str(result.capture_path), options=AnalysisOptions(
        same_broker=result.same_broker)).exchanges

    def most_in_flight(client: str) -> int:
        mine = ex[(ex.client_id == client) & (ex.direction == "b2c")]
        points = sorted([(t.value, 1) for t in mine.t_publish] +
                        [(t.value, -1) for t in mine.t_end])
        level = peak = 0
        for _t, step in points:
            level += step
            peak = max(peak, level)
        return peak

    assert most_in_flight("sub-slow") == 20       # the broker's window (BrokerConfig.max_inflight)
    assert most_in_flight("sub-fast") < 20
