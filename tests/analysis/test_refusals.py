"""Refusals and attempts (issue 11, point 2): a 3.1.1-format CONNACK refusing an MQTT 5 client is
a refusal, not a malformed packet; a SYN answered by RST is an attempt, not a connection.

Real peers: the built-in broker told to speak 3.1.1 only and mosquitto_pub
(captures/scripts/refusals.py; the shipped captures/refusals.pcap is one such run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from qosinspect.analysis.api import analyze_capture
from qosinspect.mqtt import decode
from qosinspect.mqtt.enums import ConnAckReturnCode
from qosinspect.mqtt.packets import ConnAck
from qosinspect.testing.tools import PROJECT_ROOT, loopback_capture

CAPTURE = PROJECT_ROOT / "captures" / "refusals.pcap"
ENTRY = next(e for e in json.loads((PROJECT_ROOT / "captures" / "captures.json").read_text())
             if e["file"] == CAPTURE.name)


def _check(path: Path, ports: tuple[int, int]) -> None:
    a = analyze_capture(path, ports=ports)
    report = a.report()
    assert (report["connections"], report["refused_connections"],
            report["tcp_attempts_refused"]) == (2, 1, 1)
    assert report["anomalies"] == {}              # the 2-byte CONNACK is not "malformed"
    conns = a.connections.set_index("conn_id")
    refused = conns[conns["connack_code"] == 1]
    assert len(refused) == 1 and refused["version"].iloc[0] == 5
    assert refused["end"].iloc[0] == "fin"       # the broker closed after its CONNACK
    attempt = conns[conns["attempt"]]
    assert len(attempt) == 1 and attempt["broker"].iloc[0].endswith(f":{ports[1]}")
    assert attempt["end"].iloc[0] == "rst"
    assert report["per_qos"][1]["publishes"] == 1 and report["per_qos"][1]["completed"] == 1
    assert report["reconnects"] == 0
    # a port where nothing listens is no broker: one broker, the attempt counted apart
    assert [(b["port"], b["connections"]) for b in report["brokers"]] == [(ports[0], 2)]


def test_shipped_capture_of_refusals() -> None:
    _check(CAPTURE, tuple(ENTRY["ports"]))


@pytest.mark.tools
def test_refusals_recorded_now(tmp_path: Path) -> None:
    sys.path.insert(0, str(PROJECT_ROOT / "captures" / "scripts"))
    try:
        import refusals
    finally:
        sys.path.pop(0)
    with loopback_capture(tmp_path / "probe.pcap", [9]):
        pass  # (skips or fails as the suite does when tcpdump cannot capture)
    path = tmp_path / "refusals.pcap"
    _check(path, refusals.record(path))


def test_a_two_byte_connack_to_an_mqtt5_client_is_a_311_connack() -> None:
    """A 3.1.1-only server answers an MQTT 5 CONNECT with its own CONNACK, return code 1
    [MQTT-3.1.2-2]: two bytes, which MQTT 5 (a property length at least) cannot be."""
    packet, size = decode(bytes((0x20, 2, 0, 1)), 5)     # type: ignore[misc]
    assert packet == ConnAck(False, ConnAckReturnCode.UNACCEPTABLE_PROTOCOL_VERSION)
    assert size == 4
    packet, _ = decode(bytes((0x20, 3, 0, 0x84, 0)), 5)  # type: ignore[misc]
    assert packet == ConnAck(False, 0x84)                 # a real MQTT 5 CONNACK still is one
