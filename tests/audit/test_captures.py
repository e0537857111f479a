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
