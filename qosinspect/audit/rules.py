"""The audit's data files, loaded once per call: secret patterns, default client ids and
credentials, broker versions with known CVEs (``qosinspect/audit/data/*.toml``).

They are data, not code, so that a new pattern or a new CVE is a one-line change a reviewer can
check against its source, and both the passive and the active audit read the same lists.
Values are masked here and only here (:meth:`SecretPattern.mask`).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from importlib import resources
from typing import Any

from .findings import Finding, Severity

__all__ = [
    "BrokerVersion",
    "Rules",
    "SecretHit",
    "SecretPattern",
    "load_rules",
    "version_findings",
    "version_key",
]


#: How much of a message (topic and payload) is searched for secrets: bounded, so that a capture
#: of large payloads costs time in proportion to its messages.
SCAN_CHARS = 16 * 1024


@dataclass(frozen=True)
class SecretPattern:
    kind: str
    title: str
    regex: re.Pattern[str]
    severity: Severity
    keep: int
    #: Lower-case strings one of which a text must contain for :attr:`regex` to be tried.
    hints: tuple[str, ...] = ()

    def mask(self, value: str) -> str:
        """``value`` with all but its first ``keep`` characters hidden, and its length."""
        shown = value[:self.keep] if len(value) > 2 * self.keep else ""
        return f"{shown}***({len(value)} chars)"


@dataclass(frozen=True)
class SecretHit:
    kind: str
    masked: str


@dataclass(frozen=True)
class BrokerVersion:
    """A broker version read from $SYS, and the CVEs fixed after it (empty when none known)."""

    product: str
    version: str
    fixed_in: str
    cves: tuple[str, ...]
    source: str

    @property
    def vulnerable(self) -> bool:
        return bool(self.fixed_in) and version_key(self.version) < version_key(self.fixed_in)


def version_findings(v: BrokerVersion, evidence: dict[str, Any],
                     frames: tuple[int, ...] = ()) -> list[Finding]:
    """``broker-version``, and ``vulnerable-version`` when ``v`` is older than the fix."""
    ev = {**evidence, "product": v.product, "version": v.version}
    out = [Finding("broker-version", f"{v.product} {v.version} disclosed in $SYS", ev, frames)]
    if v.vulnerable:
        out.append(Finding("vulnerable-version", f"{v.product} {v.version} is older than "
                           f"{v.fixed_in} ({', '.join(v.cves)})",
                           {**ev, "fixed_in": v.fixed_in, "cves": list(v.cves),
                            "source": v.source}, frames))
    return out


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


@dataclass(frozen=True)
class Rules:
    """Everything the data files say, compiled (see the module)."""

    secrets: tuple[SecretPattern, ...]
    sensitive_topic: re.Pattern[str]
    default_client_ids: tuple[re.Pattern[str], ...]
    credentials: tuple[tuple[str, str], ...]
    credential_interval: float
    brokers: tuple[dict[str, Any], ...]

    def scan(self, text: str) -> list[SecretHit]:
        """Every secret-like value in the first :data:`SCAN_CHARS` characters of ``text``,
        masked. Patterns whose hints the text lacks are not tried (most payloads hold none)."""
        text = text[:SCAN_CHARS]
        lower = text.lower()
        hits = []
        for p in self.secrets:
            if p.hints and not any(h in lower for h in p.hints):
                continue
            for m in p.regex.finditer(text):
                value = m.group("value") if "value" in p.regex.groupindex else m.group(0)
                hits.append(SecretHit(p.kind, p.mask(value.strip())))
        return hits

    def scan_message(self, topic: str, payload: bytes) -> list[SecretHit]:
        """:meth:`scan` of a PUBLISH's topic and payload. One search for every pattern's
        hints in the raw bytes comes first: most payloads hold none and are never decoded."""
        head = payload[:SCAN_CHARS]
        if not (self.any_hint.search(head) or _hinted(self.any_hint, topic)):
            return []
        return self.scan(topic + "\n" + head.decode("utf-8", "replace"))

    @cached_property
    def any_hint(self) -> re.Pattern[bytes]:
        """Matches any hint of any pattern (a pattern without hints matches everything)."""
        if any(not p.hints for p in self.secrets):
            return re.compile(b"")
        # (case-insensitive on bytes folds ASCII only, as bytes.lower() does: no copy per PUBLISH)
        return re.compile(b"|".join(re.escape(h.encode()) for p in self.secrets
                                    for h in p.hints), re.IGNORECASE)

    def pattern(self, kind: str) -> SecretPattern:
        return next(p for p in self.secrets if p.kind == kind)

    def is_default_client_id(self, client_id: str) -> bool:
        return any(r.search(client_id) for r in self.default_client_ids)

    def broker_version(self, topic: str, payload: bytes) -> BrokerVersion | None:
        """The broker and version a $SYS message discloses, if it is a version topic."""
        text: str | None = None  # decoded once a version topic matches, not for every $SYS
        for b in self.brokers:
            if re.search(b["topic"], topic):
                if text is None:
                    text = payload.decode("utf-8", "replace").strip()
                m = re.search(b["payload"], text)
                if m:
                    return BrokerVersion(b["product"], m.group("version"), b["fixed_in"],
                                         tuple(b["cves"]), b["source"])
        return None


@lru_cache(maxsize=8192)
def _hinted(hints: re.Pattern[bytes], topic: str) -> bool:
    """Whether ``topic`` holds a hint (topics repeat: the answer is cached)."""
    return hints.search(topic.lower().encode("utf-8", "replace")) is not None


def _toml(name: str) -> dict[str, Any]:
    return tomllib.loads(resources.files(__package__).joinpath("data", name)
                         .read_text(encoding="utf-8"))


@cache
def load_rules() -> Rules:
    """The rules from the package data (read once)."""
    pats = _toml("patterns.toml")
    sensitive = pats.pop("sensitive_topics")
    secrets = tuple(SecretPattern(kind, p["title"], re.compile(p["regex"]),
                                  Severity.parse(p["severity"]), int(p["keep"]),
                                  tuple(h.lower() for h in p.get("hints", ())))
                    for kind, p in pats.items())
    defaults = _toml("defaults.toml")
    return Rules(secrets=secrets, sensitive_topic=re.compile(sensitive["regex"]),
                 default_client_ids=tuple(re.compile(r) for r in defaults["client_ids"]),
                 credentials=tuple((u, p) for u, p in defaults["credentials"]),
                 credential_interval=float(defaults["interval"]),
                 brokers=tuple(_toml("brokers.toml")["broker"]))
