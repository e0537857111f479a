"""``qosinspect watch`` on real runs: the generator's ``reconnect`` and ``flaky-acks`` scenarios on
127.0.0.1, watched at once on the loopback (``watch -i lo``, dumpcap) and through the built-in
broker's tap (``broker --watch``), with a loopback capture of the broker's own port beside them.

What must hold:

* ``watch``'s final JSON report is ``qosinspect report --format json`` of the pcapng it wrote,
  field for field;
* its ``reconnection`` events name the reconnections the ground truth names (client, session
  present), and so do the tap's;
* the tap's report counts (per QoS, connections, sessions, reconnections, redeliveries) equal
  those of ``report`` on the capture of the broker's port (the tap hands over the events the
  capture decoder makes), but for a packet the broker wrote to a connection just reset.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from qosinspect.testing.tools import loopback_capture, require_tool, stop_process, wait_port

from ._runs import QOSINSPECT, free_run, read_until, require_root


def _jsonl(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def _counts(report: dict[str, Any]) -> dict[str, Any]:
    """The counting fields of a report (times and latencies differ between two vantage
    points of one run: the broker's clock and the kernel's)."""
    keep = ("publishes", "completed", "incomplete", "retransmissions", "dup_flagged",
            "duplicates_delivered", "not_delivered")
    return {"per_qos": [{k: row[k] for k in ("qos", *keep)} for row in report["per_qos"]],
            "connections": report["connections"], "sessions": report["sessions"],
            "reconnects": report["reconnects"], "redelivered": report["redelivered"]}


SCENARIOS = {"reconnect": ["--duration", "5"], "flaky-acks": []}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_watch_interface_and_tap(tmp_path: Path, scenario: str) -> None:
    require_root()
    require_tool("dumpcap")
    require_tool("tcpdump")
    front = free_run(4)
    broker_port = free_run(1)
    ports = [f"-p{p}" for p in range(front, front + 4)]
    written = tmp_path / "watch.pcapng"
    watch_report = tmp_path / "watch.json"
    tap_report = tmp_path / "tap.json"
    truth_path = tmp_path / "truth.json"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # the broker-side capture first: it sees all the broker sees (wait_port's probe too)
        with loopback_capture(tmp_path / "broker-side.pcapng", [broker_port]):
            broker = subprocess.Popen(
                [QOSINSPECT, "broker", "--port", str(broker_port), "--allow-anonymous",
                 "--watch", "--watch-report", str(tap_report), "--report-format", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs.append(broker)
            wait_port(broker_port, proc=broker)
            watch = subprocess.Popen(
                [QOSINSPECT, "watch", "-i", "lo", "--tool", "dumpcap", *ports, "--write",
                 str(written), "--report", str(watch_report), "--report-format", "json",
                 "--stall-ms", "500"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            procs.append(watch)
            start = read_until(watch, "start", 20)
            assert json.loads(start[-1])["tool"] == "dumpcap"
            subprocess.run([QOSINSPECT, "generate", scenario, *SCENARIOS[scenario],
                            "--broker", f"127.0.0.1:{broker_port}", "--port", str(front),
                            "--truth", str(truth_path), "--seed", "7", "-q"],
                           check=True, timeout=120, capture_output=True)
            watch.send_signal(signal.SIGINT)
            out, err = watch.communicate(timeout=60)
            assert watch.returncode == 0, err.decode()
            broker.send_signal(signal.SIGTERM)
            tap_out, tap_err = broker.communicate(timeout=60)
            assert broker.returncode == 0, tap_err.decode()
    finally:
        for p in procs:
            stop_process(p)
    events = _jsonl(b"".join(start) + out)
    truth = json.loads(truth_path.read_text())
    ports_used = truth["run"]["front_ports"]
    assert set(ports_used) <= set(range(front, front + 4))

    # 1. the final report is `report` of the file written, field for field
    report = subprocess.run([QOSINSPECT, "report", str(written), "--format", "json",
                             *ports], capture_output=True, check=True, timeout=120).stdout
    mine = json.loads(watch_report.read_text())
    assert mine == json.loads(report)
    assert mine["capture"]["source"] == str(written)

    # 2. the reconnections the ground truth names, named by the events
    want = sorted((client, r["session_present"]) for client, c in truth["clients"].items()
                  for r in c.get("reconnects", []))
    assert want, "the scenario reconnects"
    got = sorted((e["client_id"], e["session_present"]) for e in events
                 if e["type"] == "reconnection")
    assert got == want
    assert mine["reconnects"] == len(want)
    tap_events = _jsonl(tap_out)
    got_tap = sorted((e["client_id"], e["session_present"]) for e in tap_events
                     if e["type"] == "reconnection")
    assert got_tap == want

    # 3. the snapshots count what the report counts; drops are the tool's own figure
    last = [e for e in events if e["type"] == "snapshot"][-1]
    assert isinstance(last["drops"], int)   # read back from dumpcap's statistics
    for row, snap in zip(mine["per_qos"], last["per_qos"], strict=True):
        assert (snap["messages"], snap["completed"], snap["retransmissions"],
                snap["dup_flagged"]) == (row["publishes"], row["completed"],
                                         row["retransmissions"], row["dup_flagged"])

    # 4. the tap's report counts what a capture of the broker's port counts, but for what the
    # broker wrote to a connection its peer had just reset: the tap says a packet when it is
    # written, the kernel then sends nothing. At most one packet per reset connection.
    broker_side = subprocess.run(
        [QOSINSPECT, "report", str(tmp_path / "broker-side.pcapng"), "--format", "json",
         "-p", str(broker_port)], capture_output=True, check=True, timeout=120).stdout
    tap, wire = json.loads(tap_report.read_text()), json.loads(broker_side)
    resets = tap["connection_ends"].get("rst", 0)
    t, w = _counts(tap), _counts(wire)
    for trow, wrow in zip(t.pop("per_qos"), w.pop("per_qos"), strict=True):
        for k in trow:
            assert 0 <= trow[k] - wrow[k] <= resets, (trow["qos"], k, trow[k], wrow[k])
    assert t == w


def test_tcpdump_drops_are_known_during_the_run(tmp_path: Path) -> None:
    """With tcpdump, the kernel's drop count is in the snapshots while the capture runs (asked
    with SIGUSR1), not only in the last one; dumpcap says it when it stops (above)."""
    require_root()
    require_tool("tcpdump")
    front = free_run(4)
    watch = subprocess.Popen(
        [QOSINSPECT, "watch", "-i", "lo", "--tool", "tcpdump", *[f"-p{p}" for p in
                                                                range(front, front + 4)],
         "--interval", "0.25", "--report", str(tmp_path / "report.txt")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        read_until(watch, "start", 20)
        subprocess.run([QOSINSPECT, "generate", "seed-qos1", "--duration", "3", "--port",
                        str(front), "--truth", str(tmp_path / "truth.json"), "-q"],
                       check=True, timeout=120, capture_output=True)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=60)
        assert watch.returncode == 0, err.decode()
    finally:
        stop_process(watch)
    snaps = [e for e in _jsonl(out) if e["type"] == "snapshot"]
    assert len(snaps) > 4
    during = [s["drops"] for s in snaps[:-1]]
    assert all(d is None or isinstance(d, int) for d in during)
    assert any(isinstance(d, int) for d in during[:-2]), during
    assert isinstance(snaps[-1]["drops"], int)
