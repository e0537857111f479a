"""Generator payloads: each message says who sent it, its sequence number and when.

So a subscriber (or a reader of the capture) can tell a lost message from a late one, a
duplicate from a new message, and measure the end-to-end latency without any side channel.
Two encodings, both padded to the configured size:

- ``text`` (readable in Wireshark and mosquitto_sub)::

      seq=42 ts=1700000000123456789 pub=3 xxxxxxxx...

- ``binary``: ``b"QIP1"``, publisher index (u16), sequence (u32), send time in ns (u64), all
  big-endian (18 bytes), then filler.

``seq`` counts the messages of one publisher across all its topics (from 0), so
``(pub, seq)`` identifies a message uniquely within a run.
"""

from __future__ import annotations

import re
import struct
from typing import NamedTuple

__all__ = ["PayloadInfo", "make_payload", "min_payload_size", "parse_payload"]

_BIN = struct.Struct(">4sHIQ")
_MAGIC = b"QIP1"
_TEXT = re.compile(rb"seq=(\d{1,10}) ts=(\d{1,20}) pub=(\d{1,5}) ")
#: Longest text header: 10-digit seq, 19-digit ts, 5-digit publisher index.
_TEXT_MAX = len("seq= ts= pub= ") + 10 + 19 + 5
_FILL_TEXT = b"x"


class PayloadInfo(NamedTuple):
    pub: int
    seq: int
    ts_ns: int


def min_payload_size(fmt: str) -> int:
    """The smallest payload that always holds the header of ``fmt``."""
    return _BIN.size if fmt == "binary" else _TEXT_MAX


def make_payload(fmt: str, size: int, pub: int, seq: int, ts_ns: int) -> bytes:
    """The payload of message ``seq`` of publisher ``pub`` sent at ``ts_ns``, ``size`` bytes."""
    if fmt == "binary":
        head = _BIN.pack(_MAGIC, pub & 0xFFFF, seq & 0xFFFFFFFF, ts_ns)
        return head + bytes((i * 31 + seq) & 0xFF for i in range(size - len(head)))
    head = b"seq=%d ts=%d pub=%d " % (seq, ts_ns, pub)
    return head + _FILL_TEXT * (size - len(head))


def parse_payload(data: bytes) -> PayloadInfo | None:
    """Read back a generator payload (either encoding); None for anything else."""
    if data[:4] == _MAGIC and len(data) >= _BIN.size:
        _magic, pub, seq, ts = _BIN.unpack_from(data)
        return PayloadInfo(pub, seq, ts)
    m = _TEXT.match(data)
    if m is None:
        return None
    return PayloadInfo(int(m.group(3)), int(m.group(1)), int(m.group(2)))
