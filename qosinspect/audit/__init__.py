"""``qosinspect audit``: what an attacker could read or do, from a capture and from a broker.

Passive (:mod:`.passive`): the decoded packets of a capture, the analysis' clear-text figures and
the TLS handshakes (:mod:`.tls`) become findings that name the frames proving them. Active
(:mod:`.active`): bounded probes against a broker the user owns, as an ordinary client. Both
report :class:`~.findings.Finding` objects of the checks declared once in
:data:`~.findings.CHECKS`, written as a table, markdown or JSON (:mod:`.render`). The patterns,
default client ids and credentials, and broker versions with known CVEs are package data
(:mod:`.rules`). This package sits above ``analysis/`` and the drivers and below ``cli/``.
"""

from __future__ import annotations

from .findings import CHECKS, SCHEMA, AuditReport, Check, Finding, Severity
from .passive import Thresholds, audit_capture, audit_events
from .render import FORMATS, render

__all__ = ["CHECKS", "FORMATS", "SCHEMA", "AuditReport", "Check", "Finding", "Severity",
           "Thresholds", "audit_capture", "audit_events", "render"]
