"""The passive checks' rules on scripted events (the boundaries of each threshold, what must
not be flagged), the data files, and the TLS handshake reader on real and damaged bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qosinspect.audit import Finding, Severity, Thresholds, audit_events, render
from qosinspect.audit.rules import load_rules
from qosinspect.audit.tls import TlsFacts, parse_handshake, tls_handshakes
from qosinspect.events import Endpoint
from qosinspect.mqtt.packets import ConnAck, Connect, Publish, SubAck, Subscribe, Subscription, Will
from qosinspect.testing.events import Conn, EventBuilder
from qosinspect.testing.tools import PROJECT_ROOT

CAPTURES = PROJECT_ROOT / "captures"


def _login(b: EventBuilder, client: tuple[str, int], client_id: str, user: str | None,
           password: bytes | None, code: int, will: Will | None = None) -> Conn:
    c = b.open(client=client)
    b.send(c, "c2b", Connect(client_id, 4, True, 60, user, password, will))
    b.send(c, "b2c", ConnAck(False, code))
    return c


def _ids(b: EventBuilder, **kw: Any) -> dict[str, Finding]:
    return {f.check: f for f in audit_events(b.events, **kw).findings}


@pytest.mark.parametrize("refused, found", [(4, False), (5, True)])
def test_brute_force_threshold(refused: int, found: bool) -> None:
    b = EventBuilder()
    for i in range(refused):
        c = _login(b, ("10.0.0.9", 40000 + i), "x", "alice", b"guess%d" % i, 0x86)
        b.close(c)
    assert ("brute-force" in _ids(b)) is found


def test_success_after_failures_and_refusals_by_address() -> None:
    b = EventBuilder()
    for i in range(3):
        _login(b, ("10.0.0.9", 40000 + i), "x", "alice", b"g%d" % i, 5)
    _login(b, ("10.0.0.8", 41000), "y", "bob", b"right", 0)          # another address
    assert "brute-force-success" not in _ids(b)
    _login(b, ("10.0.0.9", 42000), "x", "alice", b"right", 0)
    f = _ids(b)["brute-force-success"]
    assert f.evidence == {"address": "10.0.0.9", "username": "alice",
                          "refused_before": 3}


def test_a_reconnection_is_not_a_takeover() -> None:
    b = EventBuilder()
    c = _login(b, ("10.0.0.2", 40000), "valve", None, None, 0)
    b.close(c)
    _login(b, ("10.0.0.3", 40001), "valve", None, None, 0)      # the first one was closed
    assert "client-id-takeover" not in _ids(b)
    _login(b, ("10.0.0.4", 40002), "valve", None, None, 0)      # the second is still open
    assert "client-id-takeover" in _ids(b)


def test_shared_password_is_compared_never_shown() -> None:
    b = EventBuilder()
    _login(b, ("10.0.0.2", 40000), "dev-1", "fleet", b"s3cr3t-shared", 0)
    _login(b, ("10.0.0.3", 40000), "dev-2", "fleet", b"s3cr3t-shared", 0)
    _login(b, ("10.0.0.4", 40000), "dev-3", "fleet", b"other", 0)
    report = audit_events(b.events)
    f = next(f for f in report.findings if f.check == "shared-secret")
    assert f.evidence["groups"] == [["dev-1", "dev-2"]]
    for fmt in ("table", "markdown", "json"):
        assert "s3cr3t" not in render(report, fmt)


def test_refused_wildcard_is_low_and_granted_medium() -> None:
    b = EventBuilder()
    c = _login(b, ("10.0.0.2", 40000), "spy", None, None, 0)
    b.send(c, "c2b", Subscribe(1, (Subscription("#"), Subscription("a/b"))))
    b.send(c, "b2c", SubAck(1, (0x80, 0)))
    f = _ids(b)["wildcard-subscribe"]
    assert f.level is Severity.LOW
    b.send(c, "c2b", Subscribe(2, (Subscription("+/#"),)))
    b.send(c, "b2c", SubAck(2, (1,)))
    assert _ids(b)["wildcard-subscribe"].level is Severity.MEDIUM


def test_oversized_and_sensitive_will() -> None:
    b = EventBuilder()
    c = _login(b, ("10.0.0.2", 40000), "cam", None, None, 0,
               Will("home/door/cmd", b"open"))
    b.send(c, "c2b", Publish("cam/frame", b"x" * 10), wire_len=2 << 20)
    ids = _ids(b, limits=Thresholds(oversized=1 << 20))
    assert ids["oversized"].evidence["sizes"] == [2 << 20]
    assert ids["sensitive-will"].evidence["wills"][0]["topic"] == "home/door/cmd"


def test_secret_patterns_mask_their_values() -> None:
    rules = load_rules()
    hits = rules.scan('{"password": "hunter22", "api_key": "AKIAABCDEFGHIJKLMNOP"}')
    assert {(h.kind, h.masked) for h in hits} == {
        ("password_json", "***(8 chars)"), ("token_json", "***(20 chars)"),
        ("aws_access_key", "AKIA***(20 chars)")}
    assert rules.scan("temperature 21.5") == []


@pytest.mark.parametrize("client_id, default", [
    ("mosqpub|1234-host", True), ("mosq-AbCdEf1234567890", True), ("paho12345", True),
    ("mqttjs_3f2a", True), ("a4:cf:12:00:11:22", True), ("A4CF12001122", True),
    ("test", True), ("boiler-room-3", False), ("mosquitto-bridge", False)])
def test_default_client_ids(client_id: str, default: bool) -> None:
    assert load_rules().is_default_client_id(client_id) is default


@pytest.mark.parametrize("payload, vulnerable", [
    (b"mosquitto version 2.0.11", True), (b"mosquitto version 2.0.15", True),
    (b"mosquitto version 2.0.16", False), (b"mosquitto version 2.0.18", False)])
def test_vulnerable_versions(payload: bytes, vulnerable: bool) -> None:
    v = load_rules().broker_version("$SYS/broker/version", payload)
    assert v is not None and v.vulnerable is vulnerable
    assert load_rules().broker_version("$SYS/broker/uptime", payload) is None


def test_tls13_handshake_of_a_real_capture() -> None:
    """mosquitto-tls.pcap: paho over TLS 1.3 (the certificate is encrypted there)."""
    hs = tls_handshakes(CAPTURES / "mosquitto-tls.pcap")
    assert [(t.version, t.cipher, t.certificates) for t in hs] == [(0x0304, 0x1302, [])] * 2
    assert all(0x0304 in t.offered for t in hs)


def test_handshake_bytes_with_a_hole_stop_there(tmp_path: Path) -> None:
    """Truncated or damaged handshakes give what they have and never raise."""
    hs = tls_handshakes(CAPTURES / "audit" / "audit-tls-old.pcap")
    assert len(hs) == 1 and hs[0].certificates
    facts = TlsFacts(Endpoint("a", 1), Endpoint("b", 2), 0, 0)
    server = b"\x16\x03\x02\x00\x30\x02\x00\x00\x2c\x03\x02" + b"\x00" * 10   # cut short
    parse_handshake(facts, b"\x16\x03\x01\x00\x05\x01\x00\x00\xff", server, [])
    assert (facts.version, facts.cipher, facts.offered) == (None, None, ())
    parse_handshake(facts, b"\x17\x03\x03\x00\x01x", b"garbage", [])
    assert facts.version is None


@pytest.mark.timeout(60)
def test_long_payloads_are_searched_in_linear_time() -> None:
    """A payload of long letter runs once took the e-mail pattern quadratic time (a 1 MB
    payload: hours). Runs longer than an address cannot hold one; the search is bounded."""
    rules = load_rules()
    assert rules.scan("x" * 1_000_000 + "@example.com") == []
    assert [h.kind for h in rules.scan("y" * 20_000 + " jane@example.com")] == []  # past 16 KiB
    assert [h.kind for h in rules.scan("a" * 5_000 + " jane@example.com")] == ["email"]
    b = EventBuilder()
    c = _login(b, ("10.0.0.2", 40000), "cam", None, None, 0)
    for _ in range(50):
        b.send(c, "c2b", Publish("cam/frame", b"Z" * 200_000 + b"@lat"))
    assert "secret-in-payload" not in _ids(b)


@settings(max_examples=300, deadline=None)
@given(client=st.binary(max_size=300), server=st.binary(max_size=300))
def test_any_handshake_bytes_parse_without_error(client: bytes, server: bytes) -> None:
    facts = TlsFacts(Endpoint("a", 1), Endpoint("b", 2), 0, 0)
    for prefix in (b"", b"\x16\x03\x01\x01\x00\x01\x00\x00\xfc\x03\x03"):
        parse_handshake(facts, prefix + client, prefix.replace(b"\x01\x00\x00", b"\x02\x00\x00")
                        + server, [])
