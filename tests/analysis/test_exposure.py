"""The report's clear-text part: what an eavesdropper reads, checked on scripted connections and
against tshark's reading of the CONNECT packets of every shipped and shared capture."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import qosinspect
from qosinspect.analysis.api import analyze_capture
from qosinspect.mqtt.packets import Connect
from qosinspect.report.text import format_report
from qosinspect.testing.events import EventBuilder
from qosinspect.testing.tools import PROJECT_ROOT, SHARED_CAPTURES, require_tool

CAPTURES = PROJECT_ROOT / "captures"
ENTRIES = {e["file"]: e for e in json.loads((CAPTURES / "captures.json").read_text())}
#: Captures whose CONNECTs tshark reads on the wire as they are (TLS is decrypted by tshark only
#: with the key log, and tshark 4.0 does not dissect MQTT inside WebSocket).
PLAIN = sorted(SHARED_CAPTURES.glob("*.pcap")) + sorted(
    CAPTURES / name for name, e in ENTRIES.items() if not e.get("tls") and not e["websocket"])


def _connect(b: EventBuilder, transport: str, client_id: str, user: str | None,
             password: bytes | None, code: int) -> None:
    c = b.open(transport=transport)
    b.send(c, "c2b", Connect(client_id, 4, True, 60, user, password))
    b.connack(c, code=code)
    b.close(c)


def test_scripted_connections() -> None:
    b = EventBuilder()
    _connect(b, "tcp", "a", "alice", b"secret-a", 0)         # a working credential, in clear
    _connect(b, "tcp", "b", "bob", b"secret-b", 5)           # refused: readable all the same
    _connect(b, "websocket", "c", "carol", None, 0)          # the WebSocket mask hides nothing
    _connect(b, "tls", "d", "dave", b"secret-d", 0)          # decrypted with keys: not in clear
    _connect(b, "tcp", "e", None, None, 0)
    analysis = qosinspect.analyze(b.events)
    ct = analysis.report()["clear_text"]
    assert ct == {"connections": 4, "encrypted": 1,
                  "mqtt_bytes": int(analysis.connections.query("transport != 'tls'")
                                    [["n_bytes_c2b", "n_bytes_b2c"]].to_numpy().sum()),
                  "publish_packets": 0, "with_username": 3, "with_password": 2,
                  "password_accepted": 1, "usernames": ["alice", "bob", "carol"],
                  "usernames_capped": False, "first_conn_with_password": 0}
    assert ct["mqtt_bytes"] > 0
    text = format_report(analysis)
    assert "Clear text" in text and "an eavesdropper can log in with them" in text
    for fmt in ("table", "markdown", "json"):
        assert "secret" not in format_report(analysis, fmt)   # never the passwords themselves


def test_a_refused_password_is_not_called_a_working_one() -> None:
    b = EventBuilder()
    _connect(b, "tcp", "b", "bob", b"wrong", 4)
    text = format_report(qosinspect.analyze(b.events))
    assert "accepted by the broker on 0: none seen accepted" in text
    assert "can log in" not in text


def test_without_credentials_the_report_says_none() -> None:
    b = EventBuilder()
    _connect(b, "tcp", "x", None, None, 0)
    ct = qosinspect.analyze(b.events).report()["clear_text"]
    assert (ct["with_username"], ct["with_password"], ct["usernames"]) == (0, 0, [])
    assert "credentials in clear text: none" in format_report(qosinspect.analyze(b.events))


def test_tls_connections_are_encrypted_not_clear() -> None:
    """The decoder learns TLS after the connection opened: the connection's transport says so."""
    entry = next(e for e in ENTRIES.values() if e.get("tls"))
    a = analyze_capture(CAPTURES / entry["file"], ports=tuple(entry["ports"]))
    assert len(a.connections) == 2
    assert set(a.connections["transport"]) == {"tls"}
    ct = a.report()["clear_text"]
    assert (ct["connections"], ct["encrypted"], ct["mqtt_bytes"]) == (0, 2, 0)


def _tshark_credentials(path: Path, ports: list[int]) -> list[tuple[str, str]]:
    cmd = [require_tool("tshark"), "-n", "-r", str(path), "-Y", "mqtt.msgtype == 1",
           "-T", "fields", "-e", "mqtt.username", "-e", "mqtt.passwd"]
    for port in ports:
        if port != 1883:
            cmd += ["-d", f"tcp.port=={port},mqtt"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    rows = [[*row.split("\t"), ""] for row in out.splitlines()]
    return [(row[0], row[1]) for row in rows]


@pytest.mark.tools
@pytest.mark.parametrize("path", PLAIN, ids=lambda p: p.name)
def test_credentials_agree_with_tshark(path: Path) -> None:
    ports = [int(p) for p in ENTRIES.get(path.name, {}).get("ports", [1883])]
    rows = _tshark_credentials(path, ports)
    ct = analyze_capture(path, ports=tuple(ports)).report()["clear_text"]
    assert ct["with_username"] == sum(1 for user, _ in rows if user)
    assert ct["with_password"] == sum(1 for _, password in rows if password)
    assert ct["usernames"] == sorted({user for user, _ in rows if user})


def test_refused_attempts_are_not_counted_as_read() -> None:
    """A connection that never carried an MQTT packet (refused by RST, or closed before its
    first packet) exposed nothing."""
    b = EventBuilder()
    _connect(b, "tcp", "a", None, None, 0)
    refused = b.open()
    b.close(refused, "rst")
    ct = qosinspect.analyze(b.events).report()["clear_text"]
    assert (ct["connections"], ct["encrypted"]) == (1, 0)
