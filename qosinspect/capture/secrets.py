"""Decryption Secrets Blocks of pcapng files: the TLS keys a capture may carry inside.

Why: Wireshark (``editcap --inject-secrets tls,KEYLOG``) and capture tools can embed the TLS
session secrets in the file itself (pcapng block type 0x0000000A, draft-ietf-opsawg-pcapng
section 4.7: Secrets Type, Secrets Length, the secrets). A file that carries them can be
decrypted with no key log beside it; :mod:`qosinspect.drivers.engines` hands such a file's
encrypted connections to the tshark engine, which reads the block itself.

Only the block chain is walked (headers, not packet data). Secrets are written before the
packets they decrypt, in practice right after the section header, so the walk stops after
:data:`SCAN_BLOCKS` blocks: a secret further on is not seen (said in the docstring of the
caller). Pure: bytes in, secrets out.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .pcapfile import PCAPNG_SHB, CaptureFile

__all__ = ["DSB", "SCAN_BLOCKS", "TLS_KEY_LOG", "Secrets", "decryption_secrets"]

#: The Decryption Secrets Block type.
DSB = 0x0000000A
#: Secrets Type of an NSS key log (TLS), "TLSK".
TLS_KEY_LOG = 0x544C534B
#: Blocks looked at from the start of the file.
SCAN_BLOCKS = 10_000
_NAMES = {TLS_KEY_LOG: "TLS key log", 0x57474B4C: "WireGuard keys", 0x5A4E574B: "ZigBee NWK key",
          0x5A415053: "ZigBee APS key", 0x45534B4C: "OPC UA key log"}


class Secrets(NamedTuple):
    """One Decryption Secrets Block: its type (``TLS_KEY_LOG`` ...), bytes and block number."""

    secrets_type: int
    data: bytes
    block: int

    @property
    def kind(self) -> str:
        return _NAMES.get(self.secrets_type, f"type 0x{self.secrets_type:08x}")


def decryption_secrets(cap: CaptureFile, scan_blocks: int = SCAN_BLOCKS) -> list[Secrets]:
    """The Decryption Secrets Blocks among the first ``scan_blocks`` blocks of a pcapng
    capture (none for pcap); a damaged block chain ends the walk (the reader reports it)."""
    if cap.format != "pcapng":
        return []
    buf = cap.buf
    end = len(buf)
    off = 0
    order = "<"
    out: list[Secrets] = []
    for block in range(scan_blocks):
        if off + 12 > end:
            break
        if struct.unpack_from("<I", buf, off)[0] == PCAPNG_SHB:
            order = "<" if struct.unpack_from("<I", buf, off + 8)[0] == 0x1A2B3C4D else ">"
        btype, blen = struct.unpack_from(order + "II", buf, off)
        if blen < 12 or blen % 4 or off + blen > end:
            break
        if btype == DSB and blen >= 20:
            stype, slen = struct.unpack_from(order + "II", buf, off + 8)
            if slen <= blen - 20:
                out.append(Secrets(stype, bytes(buf[off + 16:off + 16 + slen]), block))
        off += blen
    return out
