"""TLS handshake facts read from a capture: versions offered and chosen, the cipher suite, the
broker's certificate.

The capture decoder reports a TLS connection as encrypted and drops its bytes (it decodes MQTT,
not TLS). The handshake before the encryption starts is plain, though, and it is what an audit
needs: a ClientHello lists the versions and cipher suites a client offers, the ServerHello says
which were chosen (RFC 8446 4.1.3: in TLS 1.3 the ``supported_versions`` extension carries the
real version, ``legacy_version`` says 1.2), and up to TLS 1.2 the Certificate message follows in
clear (RFC 5246 7.4.2; TLS 1.3 encrypts it, so a 1.3 certificate is never visible here).

So this module reads the capture file again, keeps the first :data:`HANDSHAKE_BYTES` of each
direction of every TCP connection whose first bytes are a TLS handshake record (content type 22,
major version 3), puts them in sequence order (retransmitted copies: first one wins; a hole ends
the bytes there, never filled), and parses records, then handshake messages, byte by byte. No
TLS library is involved: nothing is decrypted. Certificates are parsed with ``cryptography``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..capture.layers import TcpSegment, decode_tcp
from ..capture.pcapfile import CaptureFile
from ..capture.reassembly import format_ip
from ..events import Endpoint
from .findings import Finding

__all__ = ["CIPHER_NAMES", "HANDSHAKE_BYTES", "OLD_TLS", "TLS_VERSIONS", "TlsFacts",
           "parse_handshake",
           "tls_findings", "tls_handshakes", "version_name"]

#: Bytes kept per direction: a ClientHello, a ServerHello and a certificate chain fit.
HANDSHAKE_BYTES = 32 * 1024
_MAX_FLOWS = 100_000
TLS_VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
                0x0304: "TLS 1.3"}
#: Versions that an audit flags (RFC 8996 deprecates TLS 1.0 and 1.1).
OLD_TLS = frozenset({"SSL 3.0", "TLS 1.0", "TLS 1.1"})
#: IANA names of the cipher suites met in practice (others print as hex).
CIPHER_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x0005: "TLS_RSA_WITH_RC4_128_SHA",
}


def version_name(v: int | None) -> str | None:
    return None if v is None else TLS_VERSIONS.get(v, f"0x{v:04x}")


def _cipher_name(c: int) -> str:
    return CIPHER_NAMES.get(c, f"0x{c:04x}")


@dataclass
class TlsFacts:
    """One TLS connection's handshake as seen in clear. ``version`` is the negotiated one
    (None: no ServerHello seen), ``certificates`` the DER chain the broker sent (TLS <= 1.2)."""

    client: Endpoint
    broker: Endpoint
    ts_ns: int
    frame: int
    offered: tuple[int, ...] = ()
    version: int | None = None
    cipher: int | None = None
    server_frame: int = 0
    certificates: list[bytes] = field(default_factory=list)
    sni: str | None = None


class _Dir:
    __slots__ = ("base", "chunks", "frames", "host", "port", "ts")

    def __init__(self, host: bytes, port: int, seq: int, ts: int) -> None:
        self.host, self.port, self.base, self.ts = host, port, seq, ts
        self.chunks: dict[int, bytes] = {}
        self.frames: dict[int, int] = {}

    def add(self, seq: int, payload: bytes, frame: int) -> None:
        off = (seq - self.base) & 0xFFFFFFFF
        if off < HANDSHAKE_BYTES and off not in self.chunks:
            self.chunks[off] = payload
            self.frames[off] = frame

    def stream(self) -> tuple[bytes, list[tuple[int, int]]]:
        """The contiguous bytes from the start, and (stream offset, frame) of each piece."""
        out = bytearray()
        where = []
        for off in sorted(self.chunks):
            if off > len(out):
                break                                   # a hole: stop, never fill
            piece = self.chunks[off][len(out) - off:]
            if piece:
                where.append((len(out), self.frames[off]))
                out += piece
        return bytes(out), where


def _frame_at(where: list[tuple[int, int]], pos: int) -> int:
    frame = 0
    for off, f in where:
        if off > pos:
            break
        frame = f
    return frame


def _handshake_messages(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(type, body, stream offset) of the plain handshake messages at the start of ``data``:
    records of content type 22 until the first ChangeCipherSpec or application data."""
    hs = bytearray()
    starts: list[tuple[int, int]] = []
    pos = 0
    while pos + 5 <= len(data):
        ctype, major, length = data[pos], data[pos + 1], int.from_bytes(data[pos + 3:pos + 5])
        if major != 3 or ctype != 22:
            break
        starts.append((len(hs), pos + 5))
        hs += data[pos + 5:pos + 5 + length]
        pos += 5 + length
    at = 0
    while at + 4 <= len(hs):
        mtype, mlen = hs[at], int.from_bytes(hs[at + 1:at + 4])
        if at + 4 + mlen > len(hs):
            break
        offset = next((s + (at - h) for h, s in reversed(starts) if h <= at), 0)
        yield mtype, bytes(hs[at + 4:at + 4 + mlen]), offset
        at += 4 + mlen


def _extensions(body: bytes, pos: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    if pos + 2 > len(body):
        return out
    end = min(len(body), pos + 2 + int.from_bytes(body[pos:pos + 2]))
    pos += 2
    while pos + 4 <= end:
        etype, elen = int.from_bytes(body[pos:pos + 2]), int.from_bytes(body[pos + 2:pos + 4])
        out[etype] = body[pos + 4:pos + 4 + elen]
        pos += 4 + elen
    return out


def parse_handshake(facts: TlsFacts, client: bytes, server: bytes,
                    server_where: list[tuple[int, int]]) -> None:
    """Fill ``facts`` from the client's and the server's first bytes (see the module)."""
    for mtype, body, _ in _handshake_messages(client):
        if mtype == 1 and len(body) >= 35:                     # ClientHello
            pos = 34 + 1 + body[34]
            pos += 2 + int.from_bytes(body[pos:pos + 2])        # cipher suites
            pos += 1 + body[pos] if pos < len(body) else 0      # compression methods
            ext = _extensions(body, pos)
            sv = ext.get(43)
            facts.offered = (tuple(int.from_bytes(sv[i:i + 2]) for i in range(1, 1 + sv[0], 2))
                             if sv else (int.from_bytes(body[0:2]),))
            sni = ext.get(0)
            if sni and len(sni) > 5:
                facts.sni = sni[5:5 + int.from_bytes(sni[3:5])].decode("ascii", "replace")
            break
    for mtype, body, offset in _handshake_messages(server):
        if mtype == 2 and len(body) >= 38:                     # ServerHello
            pos = 34 + 1 + body[34]
            facts.cipher = int.from_bytes(body[pos:pos + 2])
            sv = _extensions(body, pos + 3).get(43)
            facts.version = int.from_bytes(sv[:2]) if sv else int.from_bytes(body[0:2])
            facts.server_frame = _frame_at(server_where, offset)
        elif mtype == 11 and len(body) >= 3:                   # Certificate (TLS <= 1.2)
            pos, end = 3, 3 + int.from_bytes(body[0:3])
            while pos + 3 <= min(end, len(body)):
                n = int.from_bytes(body[pos:pos + 3])
                facts.certificates.append(body[pos + 3:pos + 3 + n])
                pos += 3 + n


def tls_handshakes(source: str | os.PathLike[str], *,
                   broker_ports: Iterable[int] = (1883, 8883)) -> list[TlsFacts]:
    """The TLS handshakes of a capture file, one per TCP connection that starts with one.

    ``broker_ports`` decide which end is the broker when the ClientHello was not captured.
    Raises :class:`~qosinspect.errors.CaptureError` for a file that cannot be read.
    """
    ports = frozenset(broker_ports)
    dirs: dict[tuple[bytes, int, bytes, int], _Dir] = {}
    ignored: set[tuple[bytes, int, bytes, int]] = set()
    with CaptureFile(source) as cap:
        for f in cap.frames():
            # Until a TLS connection is found, a frame without the bytes of a handshake
            # record header cannot start one: skip it without parsing (most captures hold no
            # TLS, and this pass then costs a byte search per frame).
            if not dirs and b"\x16\x03" not in f.data:
                continue
            seg = decode_tcp(f.linktype, f.data, 0, len(f.data), f.orig_len)
            if not isinstance(seg, TcpSegment) or not seg.payload:
                continue
            key = (seg.src, seg.sport, seg.dst, seg.dport)
            d = dirs.get(key)
            if d is None:
                if key in ignored or len(dirs) >= _MAX_FLOWS:
                    continue
                if not (seg.payload[0] == 22 and seg.payload[1:2] == b"\x03"):
                    ignored.add(key)
                    continue
                d = dirs[key] = _Dir(seg.src, seg.sport, seg.seq, f.ts_ns)
            d.add(seg.seq, seg.payload, f.frame_no)
    out = []
    for (src, sport, dst, dport), d in dirs.items():
        other = dirs.get((dst, dport, src, sport))
        cdata, cwhere = d.stream()
        first = next(_handshake_messages(cdata), None)
        if first is None:
            continue
        if first[0] != 1:
            if other is not None:
                continue        # the server's half: handled with its client's
            if sport not in ports and dport in ports:
                continue
        client_is_src = first[0] == 1
        c, s = (d, other) if client_is_src else (other, d)
        sdata, swhere = s.stream() if s is not None else (b"", [])
        cd = cdata if client_is_src else (c.stream()[0] if c is not None else b"")
        cl = Endpoint(format_ip(src if client_is_src else dst), sport if client_is_src else dport)
        br = Endpoint(format_ip(dst if client_is_src else src), dport if client_is_src else sport)
        facts = TlsFacts(cl, br, d.ts, _frame_at(cwhere, 0))
        parse_handshake(facts, cd, sdata, swhere)
        out.append(facts)
    return sorted(out, key=lambda t: (t.ts_ns, t.frame))


def _cert_problems(der: bytes, at_ns: int) -> tuple[bool, bool, str]:
    """(self-signed, outside its validity at ``at_ns``, subject) of a DER certificate."""
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return False, False, "(unparsable certificate)"
    self_signed = cert.issuer == cert.subject
    if self_signed:
        try:
            cert.verify_directly_issued_by(cert)
        except Exception:       # a different key under the same name: not self-signed
            self_signed = False
    when = datetime.fromtimestamp(at_ns / 1e9, UTC)
    expired = not (cert.not_valid_before_utc <= when <= cert.not_valid_after_utc)
    return self_signed, expired, cert.subject.rfc4514_string()


def tls_findings(handshakes: list[TlsFacts]) -> Iterator[Finding]:
    """``tls-version``, ``tls-old-version``, ``tls-self-signed`` and ``tls-expired``."""
    if not handshakes:
        return
    seen = Counter((version_name(t.version) or "no ServerHello",
                    _cipher_name(t.cipher) if t.cipher is not None else None)
                   for t in handshakes)
    yield Finding("tls-version", f"{len(handshakes)} TLS handshakes",
                  {"negotiated": [{"version": v, "cipher": c, "connections": n}
                                  for (v, c), n in sorted(seen.items(), key=str)],
                   "offered": sorted({version_name(v) or "" for t in handshakes
                                      for v in t.offered})},
                  tuple(sorted({t.server_frame or t.frame for t in handshakes}))[:20])
    old = [t for t in handshakes if version_name(t.version) in OLD_TLS]
    if old:
        names = sorted({version_name(t.version) or "" for t in old})
        yield Finding("tls-old-version", f"{len(old)} connections negotiated "
                      f"{' and '.join(names)}",
                      {"versions": names, "brokers": sorted({str(t.broker) for t in old})},
                      tuple(sorted({t.server_frame for t in old}))[:20])
    self_signed: dict[str, list[int]] = {}
    expired: dict[str, list[int]] = {}
    for t in handshakes:
        if t.certificates:
            ss, ex, subject = _cert_problems(t.certificates[0], t.ts_ns)
            if ss:
                self_signed.setdefault(subject, []).append(t.server_frame)
            if ex:
                expired.setdefault(subject, []).append(t.server_frame)
    if self_signed:
        yield Finding("tls-self-signed", f"self-signed certificate on "
                      f"{sum(map(len, self_signed.values()))} connections",
                      {"subjects": sorted(self_signed)},
                      tuple(sorted({f for v in self_signed.values() for f in v}))[:20])
    if expired:
        yield Finding("tls-expired", f"certificate outside its validity on "
                      f"{sum(map(len, expired.values()))} connections",
                      {"subjects": sorted(expired)},
                      tuple(sorted({f for v in expired.values() for f in v}))[:20])
