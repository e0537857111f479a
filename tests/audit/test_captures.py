"""Passive audit on captures from real peers: every finding of each capture in captures/audit
(and the shared captures) is the one its reviewed expected file lists, with the same frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qosinspect.audit import Severity, audit_capture, render
from qosinspect.testing.tools import PROJECT_ROOT, shared_captures

AUDIT = PROJECT_ROOT / "captures" / "audit"
CAPTURES = sorted(AUDIT.glob("*.pcap"))
EXPECTED_SHARED = Path(__file__).with_name("expected_shared.json")


def _rows(path: Path) -> list[dict[str, object]]:
    return [{"id": f.check, "severity": str(f.level), "title": f.title, "frames": list(f.frames)}
            for f in audit_capture(path).sorted()]


def test_the_audit_captures_are_shipped() -> None:
    assert {p.stem for p in CAPTURES} == {"audit-bruteforce", "audit-wildcard", "audit-secrets",
                                          "audit-takeover", "audit-flood", "audit-tls-old"}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_findings_match_the_expected_file(path: Path) -> None:
    expected = json.loads((AUDIT / "expected" / f"{path.stem}.findings.json").read_text())
    assert _rows(path) == expected["findings"]


def test_each_capture_proves_its_check() -> None:
    """The finding each capture was made for, with its key evidence."""
    by = {p.stem: {f.check: f for f in audit_capture(p).findings} for p in CAPTURES}
    bf = by["audit-bruteforce"]["brute-force"]
    assert bf.evidence["refused"] == 8 and bf.evidence["per_second"] > 0
    assert by["audit-bruteforce"]["brute-force-success"].evidence["refused_before"] == 8
    assert by["audit-bruteforce"]["clear-credentials"].level is Severity.HIGH
    wc = by["audit-wildcard"]
    assert {(s["filter"], s["granted"]) for s in
            wc["wildcard-subscribe"].evidence["subscriptions"]} == {("#", True), ("$SYS/#", True)}
    assert wc["vulnerable-version"].evidence["version"] == "2.0.11"
    assert "CVE-2023-0809" in wc["vulnerable-version"].evidence["cves"]
    assert wc["wide-reader"].evidence["publishers"] == ["sensor-1", "sensor-2", "sensor-3"]
    kinds = {f.evidence["kind"]: f.level for f in audit_capture(AUDIT / "audit-secrets.pcap")
             .findings if f.check == "secret-in-payload"}
    assert kinds == {"private_key": Severity.CRITICAL, "password_json": Severity.HIGH,
                     "jwt": Severity.HIGH, "token_json": Severity.HIGH, "gps": Severity.MEDIUM,
                     "email": Severity.LOW}
    take = by["audit-takeover"]["client-id-takeover"].evidence["takeovers"][0]
    assert take["client_id"] == "valve-3"
    assert take["first"].startswith("127.0.0.1:") and take["second"].startswith("127.0.0.2:")
    assert by["audit-flood"]["malformed"].evidence["kinds"] == {"invalid_qos": 1}
    tls = by["audit-tls-old"]
    assert tls["tls-old-version"].evidence["versions"] == ["TLS 1.1"]
    assert tls["tls-expired"].evidence["subjects"] == ["CN=old-gateway"]
    assert {"tls-self-signed", "plaintext-fallback"} <= set(tls)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_no_secret_is_ever_printed(path: Path) -> None:
    report = audit_capture(path)
    for fmt in ("table", "markdown", "json"):
        text = render(report, fmt)
        for secret in ("correct-horse", "guess", "hunter22", "c2lnbmF0dXJl", "jane.doe",
                       "48.858", "PRIVATE KEY"):
            assert secret not in text, (secret, fmt)


def test_shared_captures() -> None:
    """The public captures (Suricata's and the community's: credentials in clear, accepted or
    refused, empty client ids, malformed packets; none subscribes to a wildcard): their
    finding ids and severities, reviewed, in expected_shared.json."""
    expected = json.loads(EXPECTED_SHARED.read_text())
    got = {}
    root = shared_captures()
    for path in sorted(root.glob("*.pcap")) + sorted(root.glob("community/*.pcap")):
        findings = audit_capture(path).findings
        got[str(path.relative_to(root))] = sorted(f"{f.check}:{f.level}" for f in findings)
    assert got == expected


def test_one_client_id_on_two_brokers_is_no_takeover() -> None:
    """captures/two-brokers.pcap: 'sub' connected to two mosquitto at once. A session belongs
    to one broker: that is two sessions, not one client id taken over."""
    report = audit_capture(PROJECT_ROOT / "captures" / "two-brokers.pcap")
    assert sorted(report.ids()) == ["anonymous", "clear-text"]


def _tshark(path: Path, filt: str, *fields: str, mqtt: bool = True) -> list[list[str]]:
    """tshark's fields of the frames matching ``filt``; with ``mqtt``, the port of the first
    frame (the broker's) is decoded as MQTT."""
    import subprocess

    from qosinspect.testing.tools import require_tool

    cmd = [require_tool("tshark"), "-r", str(path), "-Y", filt, "-T", "fields"]
    if mqtt:
        port = subprocess.run([cmd[0], "-r", str(path), "-c", "1", "-T", "fields", "-e",
                               "tcp.dstport"], capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()
        cmd += ["-d", f"tcp.port=={port},mqtt"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.tools
def test_evidence_frames_agree_with_tshark() -> None:
    """The frames a finding names are the ones Wireshark's dissector shows doing it."""
    by = {p.stem: {f.check: f for f in audit_capture(p).findings} for p in CAPTURES}
    refused = _tshark(AUDIT / "audit-bruteforce.pcap", "mqtt.conack.val == 5", "frame.number")
    assert [int(r[0]) for r in refused] == list(by["audit-bruteforce"]["brute-force"].frames)
    accepted = _tshark(AUDIT / "audit-bruteforce.pcap", "mqtt.conack.val == 0", "frame.number")
    assert [int(r[0]) for r in accepted] == list(
        by["audit-bruteforce"]["brute-force-success"].frames)
    connects = _tshark(AUDIT / "audit-takeover.pcap", "mqtt.clientid == \"valve-3\"",
                       "frame.number", "ip.src")
    assert [(int(f), ip) for f, ip in connects] == [
        (f, ip) for f, ip in zip(by["audit-takeover"]["client-id-takeover"].frames,
                                 ("127.0.0.1", "127.0.0.2"), strict=True)]
    hello = _tshark(AUDIT / "audit-tls-old.pcap", "tls.handshake.type == 2", "frame.number",
                    "tls.handshake.version", "tls.handshake.ciphersuite", mqtt=False)
    assert hello == [[str(by["audit-tls-old"]["tls-old-version"].frames[0]), "0x0302",
                      "0xc00a"]]
    bad = _tshark(AUDIT / "audit-flood.pcap", "_ws.malformed", "frame.number", "mqtt.hdrflags")
    assert [(int(f), h) for f, h in bad] == [(by["audit-flood"]["malformed"].frames[0], "0x36")]
