"""What an audit reports: findings with a stable id, a severity, evidence and a remedy.

Every check the audit can make is declared once, in :data:`CHECKS` (its id, default severity,
what it means and what to do about it); the passive checks (a capture) and the active probes
(a live broker) both emit :class:`Finding` objects naming one of these ids, so a finding reads
the same whichever way it was found, and the JSON schema (:data:`SCHEMA`) stays stable for CI.

Evidence never carries a secret: a password is only ever said to have been sent (and whether it
was accepted), secrets found in payloads are masked (:mod:`.secrets`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

__all__ = ["CHECKS", "SCHEMA", "AuditReport", "Check", "Finding", "Severity"]

#: The JSON schema's name and version; bumped when a key changes meaning.
SCHEMA = "qosinspect-audit/1"


class Severity(IntEnum):
    """How bad a finding is; ``--fail-on`` compares with these."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, name: str) -> Severity:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {name!r} (one of "
                             f"{', '.join(s.name.lower() for s in cls)})") from None

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Check:
    """One kind of finding: ``mode`` is ``passive``, ``active`` or ``both``."""

    id: str
    severity: Severity
    mode: str
    summary: str
    remedy: str


def _checks(*rows: tuple[str, Severity, str, str, str]) -> dict[str, Check]:
    return {r[0]: Check(*r) for r in rows}


S = Severity
#: Every check, by id (docs/audit.md lists them with the tools that have each).
CHECKS: dict[str, Check] = _checks(
    ("clear-text", S.MEDIUM, "both", "MQTT readable by anyone on the path (no TLS)",
     "Serve MQTT over TLS (port 8883) and close the plain listener."),
    ("clear-credentials", S.HIGH, "passive", "User names and passwords sent in clear text",
     "Use TLS; change the passwords that were sent in clear."),
    ("shared-secret", S.MEDIUM, "passive",
     "The same password or token used by several client ids",
     "Give every device its own credential so one leak does not open all of them."),
    ("anonymous", S.HIGH, "both", "The broker accepts clients without a user name",
     "Set allow_anonymous false and give every client a user name and password or a "
     "certificate."),
    ("empty-client-id", S.LOW, "both", "Clients with an empty client id accepted",
     "Require client ids (mosquitto: allow_zero_length_clientid false)."),
    ("default-client-id", S.LOW, "passive", "Client ids that look like library defaults",
     "Give each device a unique, configured client id."),
    ("brute-force", S.HIGH, "passive", "Repeated refused CONNECTs from one address",
     "Rate-limit or block the address; use long random passwords or certificates."),
    ("brute-force-success", S.CRITICAL, "passive", "A CONNECT accepted after refused ones",
     "Treat the account as compromised: change its password, check what it did."),
    ("default-credentials", S.CRITICAL, "active", "The broker accepts a default password",
     "Remove or change the default accounts."),
    ("wildcard-subscribe", S.MEDIUM, "both", "Subscriptions to every topic (#, +/#, $SYS/#)",
     "Restrict reads with an ACL so a client reads only its own topics."),
    ("wide-reader", S.MEDIUM, "passive", "A client receives the messages of many other clients",
     "Restrict reads with an ACL; check whether this client should see them."),
    ("sys-readable", S.LOW, "both", "$SYS topics readable (broker internals disclosed)",
     "Deny $SYS/# to ordinary clients in the ACL, or turn $SYS off."),
    ("broker-version", S.INFO, "both", "Broker version disclosed", "Hide $SYS from clients."),
    ("vulnerable-version", S.HIGH, "both", "Broker version with known CVEs",
     "Upgrade the broker."),
    ("sys-writable", S.HIGH, "active", "Clients can publish to $SYS",
     "Deny writes to $SYS/# in the ACL."),
    ("topic-writable", S.HIGH, "active", "A client can publish to a topic it has just read",
     "Restrict writes with an ACL: devices publish only their own topics."),
    ("secret-in-payload", S.HIGH, "both", "Secrets or personal data in topics or payloads",
     "Do not send secrets over MQTT; encrypt payloads or use TLS and ACLs."),
    ("retained-exposure", S.LOW, "passive", "Retained messages served to every new subscriber",
     "Retain only what every reader may see; clear others with an empty retained message."),
    ("sensitive-will", S.MEDIUM, "passive", "Wills on sensitive topics or with secrets",
     "Put wills on status topics only; restrict who may connect with the client id."),
    ("malformed", S.MEDIUM, "passive", "Malformed or invalid MQTT packets on the wire",
     "Find the sender; a broker must close such connections [MQTT-4.8.0-1]."),
    ("oversized", S.MEDIUM, "passive", "Very large MQTT packets",
     "Set a maximum packet size on the broker (mosquitto: max_packet_size)."),
    ("client-id-takeover", S.HIGH, "both", "A client id used from two places at once "
     "(the newer connection takes the session over)",
     "Bind client ids to credentials in the ACL (mosquitto: use_username_as_clientid)."),
    ("connect-flood", S.MEDIUM, "passive", "A flood of CONNECTs from one address",
     "Rate-limit connections per address (firewall, max_connections)."),
    ("subscribe-flood", S.MEDIUM, "passive", "A flood of SUBSCRIBEs on one connection",
     "Limit subscriptions per client."),
    ("tls-version", S.INFO, "both", "TLS versions and cipher suites negotiated", ""),
    ("tls-old-version", S.HIGH, "both", "TLS 1.0 or 1.1 in use or accepted",
     "Allow TLS 1.2 and 1.3 only (mosquitto: tls_version tlsv1.2)."),
    ("tls-self-signed", S.MEDIUM, "passive", "Self-signed broker certificate",
     "Use a certificate signed by a CA the clients pin."),
    ("tls-expired", S.HIGH, "passive", "Expired (or not yet valid) broker certificate",
     "Renew the certificate."),
    ("plaintext-fallback", S.HIGH, "both", "The same clients or users also talk MQTT in clear",
     "Close the plain listener, or refuse on it the users of the TLS one."),
    ("mqtt-versions", S.INFO, "active", "MQTT versions accepted", ""),
    ("max-packet-size-ignored", S.MEDIUM, "active",
     "The broker accepts packets above the maximum size it advertises",
     "Upgrade or fix the broker's maximum packet size enforcement."),
    ("invalid-packet-kept", S.MEDIUM, "active", "The broker keeps a connection that sent an "
     "invalid packet", "A broker must close it [MQTT-4.8.0-1]; upgrade or report it."),
)


@dataclass(frozen=True)
class Finding:
    """One finding: ``check`` is an id of :data:`CHECKS`; ``evidence`` is JSON-ready (counts,
    connections, client ids, topics, masked values); ``frames`` the capture frames that prove
    it (empty for active probes)."""

    check: str
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)
    frames: tuple[int, ...] = ()
    severity: Severity | None = None

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"unknown check {self.check!r}")
        if self.severity is None:
            object.__setattr__(self, "severity", CHECKS[self.check].severity)

    @property
    def level(self) -> Severity:
        assert self.severity is not None
        return self.severity

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.check, "severity": str(self.level), "title": self.title,
                "evidence": self.evidence, "frames": list(self.frames),
                "remedy": CHECKS[self.check].remedy}


@dataclass
class AuditReport:
    """The findings of one audit (``mode``: ``capture`` or ``broker``), worst first."""

    target: str
    mode: str
    findings: list[Finding] = field(default_factory=list)
    #: What the audit could not do or assumed (a damaged capture, a probe that timed out).
    notes: list[str] = field(default_factory=list)

    def sorted(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (-f.level, f.check))

    def ids(self) -> set[str]:
        return {f.check for f in self.findings}

    def worst(self) -> Severity | None:
        return max((f.level for f in self.findings), default=None)

    def fails(self, threshold: Severity) -> bool:
        """True when a finding is at or above ``threshold`` (``--fail-on``)."""
        worst = self.worst()
        return worst is not None and worst >= threshold

    def to_dict(self) -> dict[str, Any]:
        counts = Counter(str(f.level) for f in self.findings)
        return {"schema": SCHEMA, "target": self.target, "mode": self.mode,
                "counts": {str(s): counts.get(str(s), 0) for s in reversed(Severity)},
                "findings": [f.to_dict() for f in self.sorted()], "notes": self.notes}
