"""Capture formats other than pcap and pcapng, named by their magic bytes.

Why: a user handed a Sniffer, snoop or NetMon file must hear what it is and how to convert it,
not "bad magic". Only the naming lives here (pure: bytes in, a name out); the conversion with
Wireshark's ``editcap`` is a subprocess, in :mod:`qosinspect.drivers.convert`. Formats without
a magic number (Endace ERF, ...) are not named here; ``captype`` (Wireshark) names them when it
is installed.
"""

from __future__ import annotations

__all__ = ["HEAD", "MAGICS", "other_format"]

#: Leading bytes -> format name (Wireshark's wiretap names them the same way).
MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"TRSNIFF data    \x1a", "Network General Sniffer (DOS)"),
    (b"XCP\x00", "NetXRay / Sniffer (Windows)"),
    (b"snoop\x00\x00\x00", "Sun snoop"),
    (b"RTSS", "Microsoft NetMon 1.x"),
    (b"GMBU", "Microsoft NetMon 2.x"),
    (b"btsnoop\x00", "Symbian OS btsnoop"),
    (b"iptrace 1.0", "AIX iptrace 1.0"),
    (b"iptrace 2.0", "AIX iptrace 2.0"),
    (b"ObserverPktBufferVersion=", "Viavi Observer"),
    (b"\x00\x00\x02\x00\x12\x05\x00\x10", "Tektronix K12"),
    (b"TR\x00d", "HP-UX nettl"),
)

#: Bytes to read to recognise any of them.
HEAD = max(len(m) for m, _ in MAGICS)


def other_format(head: bytes) -> str | None:
    """The name of the capture format ``head`` (the file's first bytes) starts, if known."""
    for magic, name in MAGICS:
        if head.startswith(magic):
            return name
    return None
