"""The terminal dashboard, drawn to a recording console from a fixed snapshot and fixed events."""

from __future__ import annotations

from rich.console import Console

from qosinspect.live.dashboard import NEWEST, Dashboard

SNAPSHOT = {
    "type": "snapshot", "ts": "2026-11-26T06:45:55.482806176Z", "ts_ns": 1795675555482806176,
    "per_qos": [
        {"qos": 0, "messages": 54, "completed": 54, "open": 0, "incomplete": 0,
         "retransmissions": 0, "dup_flagged": 0, "duplicates_delivered": 0,
         "not_delivered": 10, "latency_ms": {}},
        {"qos": 1, "messages": 64, "completed": 61, "open": 3, "incomplete": 0,
         "retransmissions": 3, "dup_flagged": 3, "duplicates_delivered": 2,
         "not_delivered": 0,
         "latency_ms": {"puback": {"last_10s": {"n": 20, "p50": 0.421, "p99": 7.5},
                                   "since_start": {"n": 61, "p50": 0.38, "p99": 812.25}}}},
        {"qos": 2, "messages": 64, "completed": 64, "open": 0, "incomplete": 0,
         "retransmissions": 0, "dup_flagged": 0, "duplicates_delivered": 0,
         "not_delivered": 0,
         "latency_ms": {step: {"last_10s": {"n": 0, "p50": None, "p99": None},
                               "since_start": {"n": 64, "p50": 0.2, "p99": 1.5}}
                        for step in ("pubrec", "pubrel", "pubcomp")}}],
    "connections": {"open": 4, "seen": 6}, "reconnections": 1, "anomalies": 0, "stalls": 2,
    "drops": 7}
RECONNECTION = {
    "type": "reconnection", "ts": "2026-11-26T06:45:53.944186190Z", "client_id": "sub-persistent",
    "session": "sub-persistent", "prev_conn_id": 0, "next_conn_id": 5, "cause": "rst",
    "gap_ms": 1190.2, "session_present": True, "clean_start": False,
    "unfinished": {"c2b": 0, "b2c": 3},
    "redelivered": {"publish": 6, "pubrel": 0, "resumed": 3, "abandoned": 0}}


def draw(d: Dashboard) -> str:
    console = Console(record=True, width=240, force_terminal=False, color_system=None)
    console.print(d.render())
    return console.export_text()


def test_snapshot_and_events() -> None:
    d = Dashboard()
    d.update({"type": "start", "source": "lo", "ports": [1883], "tool": "dumpcap",
              "filter": "tcp port 1883"})
    d.update(RECONNECTION)
    d.update(SNAPSHOT)
    text = draw(d)
    assert "lo (dumpcap 'tcp port 1883')" in text
    assert "connections open 4 (seen 6)" in text and "drops 7" in text
    rows = [line.split("│")[1:-1] for line in text.splitlines() if line.count("│") > 10]
    cells = [[c.strip() for c in r] for r in rows]
    assert ["1", "64", "61", "3", "3", "3", "2", "0", "puback", "0.421", "7.500", "0.380",
            "812.250"] in cells
    assert ["0", "54", "54", "0", "0", "0", "0", "10", "-", "-", "-", "-", "-"] in cells
    assert ["", "", "", "", "", "", "", "", "pubrel", "-", "-", "0.200", "1.500"] in cells
    assert ("sub-persistent: gap 1190.200 ms after rst, session present True, redelivered 6 "
            "PUBLISH 0 PUBREL, resumed 3, abandoned 0") in text


def test_newest_events_only() -> None:
    d = Dashboard()
    for i in range(NEWEST + 5):
        d.update({"type": "anomaly", "ts": f"t{i:02d}", "kind": "orphan_ack", "conn_id": i,
                  "frame": i, "detail": f"number {i}"})
    text = draw(d)
    assert f"number {NEWEST + 4}" in text and "number 4" not in text
    # newest first
    assert text.index(f"number {NEWEST + 4}") < text.index("number 5")
