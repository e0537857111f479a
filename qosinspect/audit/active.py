"""``qosinspect audit --broker HOST:PORT``: bounded probes against a broker you own.

Each probe connects as an ordinary client would (:class:`~.link.Link`), does one thing and
looks at the answer: a CONNECT without a user name, with an empty client id, with a client id
already connected; SUBSCRIBEs to ``#`` and ``$SYS/#`` and what arrives in ``listen`` seconds;
a PUBLISH to ``$SYS`` and to a topic just read, each proven by reading it back (a PUBACK proves
nothing: MQTT 3.1.1 brokers acknowledge a denied publish, [MQTT-3.3.5-2]); the MQTT versions
accepted; a packet above the advertised Maximum Packet Size (MQTT 5 3.2.2.3.6); an invalid
packet, which a broker must answer by closing the connection [MQTT-4.8.0-1]; the TLS versions
its TLS port accepts (the standard :mod:`ssl` module); whether the plain port accepts the TLS
port's user; with ``try_defaults``, a small dictionary of default accounts, one every
``interval`` seconds.

It never floods: the number of connections and packets is fixed by the plan (:func:`plan`
lists it, for ``--dry-run``), every wait has a timeout, the listen window is bounded in time
and in messages. What arrives is counted and masked, never printed.
"""

from __future__ import annotations

import ssl
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..mqtt.packets import (
    Connect,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
)
from .findings import AuditReport, Finding, Severity
from .link import Closed, Link, Target
from .rules import BrokerVersion, Rules, load_rules, version_findings
from .tls import OLD_TLS

__all__ = ["ProbeOptions", "plan", "probe_broker", "tls_versions"]

PROBE_PAYLOAD = b"qosinspect audit probe"
#: The largest packet the max-packet-size probe sends (an advertised limit above it is not
#: tested: the probe must stay small).
MAX_PROBE_PACKET = 1 << 24
_TLS_VERSIONS = (("TLS 1.0", ssl.TLSVersion.TLSv1), ("TLS 1.1", ssl.TLSVersion.TLSv1_1),
                 ("TLS 1.2", ssl.TLSVersion.TLSv1_2), ("TLS 1.3", ssl.TLSVersion.TLSv1_3))


@dataclass(frozen=True)
class ProbeOptions:
    """What the probes may do: ``username``/``password`` the user to test besides anonymous;
    ``listen`` seconds of ``#`` and ``$SYS/#``; ``write`` allows the two PUBLISH probes."""

    username: str | None = None
    password: str | None = None
    listen: float = 3.0
    timeout: float = 3.0
    max_messages: int = 10_000
    try_defaults: bool = False
    write: bool = True


def plan(targets: list[Target], opts: ProbeOptions, rules: Rules | None = None) -> list[str]:
    """What :func:`probe_broker` would do, one line per probe (``--dry-run``)."""
    rules = rules or load_rules()
    who = "anonymous" + (f" and user {opts.username!r}" if opts.username else "")
    out = []
    for t in targets:
        out.append(f"{t}: CONNECT as {who} (1 connection each)")
        out.append(f"{t}: CONNECT with an empty client id; two CONNECTs with one client id "
                   "(is the first closed?)")
        out.append(f"{t}: as each accepted identity, SUBSCRIBE # and $SYS/#, listen "
                   f"{opts.listen:g} s (at most {opts.max_messages} messages)")
        if opts.write:
            out.append(f"{t}: as each accepted identity, PUBLISH QoS 1 {PROBE_PAYLOAD!r} "
                       "(not retained) to $SYS/qosinspect-audit/<id> and to a topic just read, "
                       "subscribed to each to read it back")
        out.append(f"{t}: CONNECT with MQTT 3.1, 3.1.1 and 5.0 (3 connections)")
        out.append(f"{t}: MQTT 5: one PUBLISH of the advertised Maximum Packet Size + 16 bytes "
                   f"(if advertised and at most {MAX_PROBE_PACKET} bytes)")
        out.append(f"{t}: one invalid packet (PUBLISH with QoS 3): is the connection closed?")
        if t.tls is not None:
            out.append(f"{t}: TLS handshakes with TLS 1.0, 1.1, 1.2 and 1.3 (4 connections)")
        if opts.try_defaults:
            out.append(f"{t}: {len(rules.credentials)} default user names and passwords, one "
                       f"every {rules.credential_interval:g} s")
    plain = [t for t in targets if t.tls is None]
    if opts.username and plain and len(plain) < len(targets):
        out.append(f"{plain[0]}: does the plain port accept user {opts.username!r} too?")
    return out


@dataclass
class _Read:
    granted: dict[str, bool] = field(default_factory=dict)
    topics: dict[str, int] = field(default_factory=dict)
    sys_topics: set[str] = field(default_factory=set)
    versions: dict[tuple[str, str], BrokerVersion] = field(default_factory=dict)
    secrets: dict[str, set[str]] = field(default_factory=dict)
    messages: int = 0


class _Prober:
    def __init__(self, target: Target, opts: ProbeOptions, rules: Rules) -> None:
        self.t = target
        self.o = opts
        self.rules = rules
        self.notes: list[str] = []

    def _cid(self) -> str:
        return f"qi-audit-{uuid.uuid4().hex[:10]}"

    def _connect(self, link: Link, user: str | None, password: str | None,
                 client_id: str | None = None, version: int = 4) -> int | None:
        ack = link.connect(Connect(self._cid() if client_id is None else client_id, version,
                                   username=user,
                                   password=None if password is None else password.encode()))
        return None if ack is None else int(ack.reason_code)

    def try_login(self, user: str | None, password: str | None, version: int = 4
                  ) -> int | None:
        try:
            with Link(self.t, version, self.o.timeout) as link:
                return self._connect(link, user, password, version=version)
        except Closed as exc:
            self.notes.append(f"{self.t}: {exc}")
            return None

    def read(self, who: tuple[str | None, str | None]) -> _Read:
        r = _Read()
        with Link(self.t, 4, self.o.timeout) as link:
            if self._connect(link, *who) != 0:
                return r
            filters = ("#", "$SYS/#")
            link.send(Subscribe(1, tuple(Subscription(f) for f in filters)))
            deadline = time.monotonic() + self.o.listen
            try:
                while time.monotonic() < deadline and r.messages < self.o.max_messages:
                    p = link.recv(deadline - time.monotonic())
                    if isinstance(p, SubAck) and p.packet_id == 1:
                        r.granted = {f: int(c) < 0x80
                                     for f, c in zip(filters, p.reason_codes, strict=False)}
                    elif isinstance(p, Publish):
                        self._message(r, p)
            except Closed:
                self.notes.append(f"{self.t}: closed while listening to # and $SYS/#")
        return r

    def _message(self, r: _Read, p: Publish) -> None:
        r.messages += 1
        if p.topic.startswith("$SYS/"):
            r.sys_topics.add(p.topic)
            v = self.rules.broker_version(p.topic, p.payload)
            if v is not None:
                r.versions[(v.product, v.version)] = v
        else:
            r.topics[p.topic] = r.topics.get(p.topic, 0) + 1
        for hit in self.rules.scan_message(p.topic, p.payload):
            r.secrets.setdefault(hit.kind, set()).add(hit.masked)

    def writable(self, who: tuple[str | None, str | None], topic: str) -> bool:
        """Publish the probe payload to ``topic`` and read it back on the same connection."""
        with Link(self.t, 4, self.o.timeout) as link:
            if self._connect(link, *who) != 0:
                return False
            try:
                link.send(Subscribe(1, (Subscription(topic, 1),)))
                link.send(Publish(topic, PROBE_PAYLOAD, qos=1, packet_id=2))
                deadline = time.monotonic() + self.o.timeout
                while time.monotonic() < deadline:
                    p = link.recv(deadline - time.monotonic())
                    if isinstance(p, Publish) and p.topic == topic and \
                            p.payload == PROBE_PAYLOAD:
                        if p.qos and p.packet_id is not None:
                            link.send(PubAck(p.packet_id))
                        return True
            except Closed:
                return False
        return False

    def takeover(self, who: tuple[str | None, str | None]) -> bool | None:
        """True: a second CONNECT with the same client id closed the first; None: refused."""
        cid = self._cid()
        with Link(self.t, 4, self.o.timeout) as first:
            if self._connect(first, *who, client_id=cid) != 0:
                return None
            with Link(self.t, 4, self.o.timeout) as second:
                if self._connect(second, *who, client_id=cid) != 0:
                    return None
                return first.wait_closed(self.o.timeout)

    def empty_id(self, who: tuple[str | None, str | None]) -> bool:
        try:
            with Link(self.t, 4, self.o.timeout) as link:
                return self._connect(link, *who, client_id="") == 0
        except Closed:
            return False

    def oversize(self, who: tuple[str | None, str | None]) -> tuple[int | None, bool]:
        """(advertised Maximum Packet Size, kept the connection after a larger packet)."""
        with Link(self.t, 5, self.o.timeout) as link:
            ack = link.connect(Connect(self._cid(), 5, username=who[0],
                                       password=None if who[1] is None else who[1].encode()))
            if ack is None or ack.reason_code != 0:
                return None, False
            limit = ack.properties.maximum_packet_size
            if limit is None or limit > MAX_PROBE_PACKET:
                return limit, False
            topic = f"qosinspect-audit/{self._cid()}"
            link.send(Publish(topic, b"x" * (limit + 16 - len(topic))))
            return limit, not link.wait_closed(self.o.timeout)

    def invalid_kept(self, who: tuple[str | None, str | None]) -> bool | None:
        with Link(self.t, 4, self.o.timeout) as link:
            if self._connect(link, *who) != 0:
                return None
            link.send_bytes(b"\x36\x03\x00\x01a")        # PUBLISH with QoS 3 [MQTT-3.3.1-4]
            return not link.wait_closed(self.o.timeout)


def tls_versions(target: Target, timeout: float = 3.0) -> dict[str, str | None]:
    """TLS version name -> the cipher the broker chose, or None when it refused it.

    Old versions are offered with OpenSSL's security level 0, so that the local library's
    defaults do not hide what the broker accepts."""
    import socket

    out: dict[str, str | None] = {}
    for name, v in _TLS_VERSIONS:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with warnings.catch_warnings():     # deprecated, and exactly what is asked about
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ctx.maximum_version = v
            if name in OLD_TLS:
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):
            continue                        # this OpenSSL cannot speak it at all
        try:
            with socket.create_connection((target.host, target.port), timeout=timeout) as s, \
                    ctx.wrap_socket(s, server_hostname=target.host) as tls:
                cipher = tls.cipher()
                out[name] = cipher[0] if cipher else ""
        except (OSError, ssl.SSLError):
            out[name] = None
    return out


def _target_findings(p: _Prober, opts: ProbeOptions) -> Iterator[Finding]:
    t = p.t
    base: dict[str, Any] = {"broker": str(t)}
    identities: list[tuple[str, tuple[str | None, str | None]]] = [("anonymous", (None, None))]
    if opts.username:
        identities.append((f"user {opts.username}", (opts.username, opts.password)))
    codes = {label: p.try_login(*who) for label, who in identities}
    if all(c is None for c in codes.values()):
        raise ConnectionError(f"{t}: no CONNACK ({'; '.join(p.notes) or 'no answer'}): "
                              "not an MQTT broker, or unreachable")
    if t.tls is None:
        yield Finding("clear-text", f"{t} speaks MQTT without TLS", base)
    if codes["anonymous"] == 0:
        yield Finding("anonymous", f"{t} accepts anonymous clients", base)
    if opts.try_defaults:
        yield from _default_credentials(p)
    accepted = [(label, who) for label, who in identities if codes[label] == 0]
    if not accepted:
        p.notes.append(f"{t}: every identity refused ({codes}); later probes skipped")
        return
    first = accepted[0][1]
    label0 = accepted[0][0]
    if p.empty_id(first):
        yield Finding("empty-client-id", f"{t} accepts an empty client id ({label0})", base)
    # Anyone may connect with any client id: then anyone can push any device off the broker
    # (a broker closes the older connection, [MQTT-3.1.4-3]). A user reusing its own client
    # id is ordinary reconnection, so the probe runs as anonymous only.
    kicked = p.takeover((None, None)) if codes["anonymous"] == 0 else None
    if kicked is not None:
        yield Finding("client-id-takeover", "an anonymous CONNECT with a connected client id "
                      f"{'closed the first connection' if kicked else 'was accepted too'}",
                      {**base, "as": "anonymous", "first_closed": kicked})
    for label, who in accepted:
        yield from _read_findings(p, opts, label, who)
    versions = {name: p.try_login(*first, version=v) == 0
                for name, v in (("3.1", 3), ("3.1.1", 4), ("5.0", 5))}
    yield Finding("mqtt-versions", "MQTT versions accepted: "
                  + ", ".join(n for n, ok in versions.items() if ok), {**base, **versions})
    if versions["5.0"]:
        limit, kept = p.oversize(first)
        if kept:
            yield Finding("max-packet-size-ignored", f"{t} kept a connection that sent "
                          f"{limit:,}+16 bytes above its Maximum Packet Size",
                          {**base, "maximum_packet_size": limit})
        elif limit is None:
            p.notes.append(f"{t}: no Maximum Packet Size advertised (not probed)")
    if p.invalid_kept(first):
        yield Finding("invalid-packet-kept", f"{t} kept the connection after a PUBLISH "
                      "with QoS 3", base)


def _read_findings(p: _Prober, opts: ProbeOptions, label: str,
                   who: tuple[str | None, str | None]) -> Iterator[Finding]:
    base = {"broker": str(p.t), "as": label}
    r = p.read(who)
    if r.topics:
        yield Finding("wildcard-subscribe", f"{label} subscribed to # and read "
                      f"{sum(r.topics.values())} messages on {len(r.topics)} topics in "
                      f"{opts.listen:g} s", {**base, "granted": r.granted,
                                             "topics": sorted(r.topics)[:20]})
    elif r.granted.get("#"):
        p.notes.append(f"{p.t}: # granted to {label}, nothing arrived in {opts.listen:g} s")
    if r.sys_topics:
        yield Finding("sys-readable", f"{label} read {len(r.sys_topics)} $SYS topics",
                      {**base, "topics": sorted(r.sys_topics)[:20]})
    for v in r.versions.values():
        yield from version_findings(v, base)
    for kind, masked in sorted(r.secrets.items()):
        pat = p.rules.pattern(kind)
        yield Finding("secret-in-payload", f"{pat.title} in messages read by {label}",
                      {**base, "kind": kind, "masked": sorted(masked)[:5]}, (), pat.severity)
    if not opts.write:
        return
    sys_topic = f"$SYS/qosinspect-audit/{p._cid()}"
    if p.writable(who, sys_topic):
        yield Finding("sys-writable", f"{label} published to {sys_topic} and read it back",
                      {**base, "topic": sys_topic})
    read = next(iter(sorted(r.topics)), None)
    topic = read or f"qosinspect-audit/{p._cid()}"
    if p.writable(who, topic):
        yield Finding("topic-writable", f"{label} published to {topic} "
                      f"({'a topic it had read' if read else 'a new topic'}) and read it back",
                      {**base, "topic": topic, "read_before": read is not None})


def _default_credentials(p: _Prober) -> Iterator[Finding]:
    # a broker that takes any user name and password would "accept" every default: ask once
    # with a random pair first, and try the dictionary only if that is refused
    if p.try_login(p._cid(), uuid.uuid4().hex) == 0:
        p.notes.append(f"{p.t}: any user name and password accepted: default credentials "
                       "not tried")
        return
    hits: list[str] = []
    for user, password in p.rules.credentials:
        if p.try_login(user, password) == 0 and user not in hits:
            hits.append(user)
        time.sleep(p.rules.credential_interval)
    if hits:
        yield Finding("default-credentials", f"{p.t} accepts the default password of "
                      f"{', '.join(hits)}", {"broker": str(p.t), "usernames": hits})


def _tls_findings(t: Target, timeout: float) -> Iterator[Finding]:
    accepted = {k: v for k, v in tls_versions(t, timeout).items() if v is not None}
    yield Finding("tls-version", f"{t} accepts " + (", ".join(accepted) or "no TLS version"),
                  {"broker": str(t), "accepted": accepted})
    old = sorted(set(accepted) & OLD_TLS)
    if old:
        yield Finding("tls-old-version", f"{t} accepts {' and '.join(old)}",
                      {"broker": str(t), "versions": old})


def probe_broker(targets: list[Target], opts: ProbeOptions = ProbeOptions(),
                 rules: Rules | None = None) -> AuditReport:
    """Run the probes of :func:`plan` against ``targets`` (listeners of one broker).

    Raises ``ConnectionError`` when a target gives no CONNACK at all (unreachable, or not
    MQTT), rather than reporting "no findings" about a broker it never reached."""
    rules = rules or load_rules()
    report = AuditReport(", ".join(map(str, targets)), "broker")
    for t in targets:
        prober = _Prober(t, opts, rules)
        report.findings += _target_findings(prober, opts)
        if t.tls is not None:
            report.findings += _tls_findings(t, opts.timeout)
        report.notes += prober.notes
    plain = [t for t in targets if t.tls is None]
    if opts.username and plain and len(plain) < len(targets):
        prober = _Prober(plain[0], opts, rules)
        if prober.try_login(opts.username, opts.password) == 0:
            report.findings.append(Finding(
                "plaintext-fallback", f"{plain[0]} accepts user {opts.username} as its TLS "
                "port does", {"broker": str(plain[0]), "username": opts.username},
                severity=Severity.HIGH))
    return report
