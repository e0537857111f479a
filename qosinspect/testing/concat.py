"""A capture made of another one played ``times`` times in a row, each copy shifted in time to
start after the previous one ended: a long capture with the traffic of a short one (issue 14's
bounded-memory test and ``benchmarks/report.py --scale N``).

Done with Wireshark's own tools (``capinfos`` for the first and last timestamps, ``editcap -t``
to shift a copy, ``mergecap -a`` to append the copies), which keep the file's format and
timestamp resolution; they come with tshark (``scripts/ensure-system-deps.sh``).
"""

from __future__ import annotations

import subprocess
import tempfile
from decimal import Decimal
from pathlib import Path

from .tools import require_tool

__all__ = ["concatenate_shifted"]


def _span(path: Path) -> Decimal:
    """Seconds from the first to the last packet of ``path``."""
    out = subprocess.run([require_tool("capinfos"), "-T", "-r", "-a", "-e", "-S", str(path)],
                         capture_output=True, text=True, check=True).stdout
    _, first, last = out.strip().split("\t")
    return Decimal(last) - Decimal(first)


#: Classic pcap magic numbers (either byte order) and Wireshark's name of each format.
_PCAP_FORMATS = {b"\xd4\xc3\xb2\xa1": "pcap", b"\xa1\xb2\xc3\xd4": "pcap",
                 b"\x4d\x3c\xb2\xa1": "nsecpcap", b"\xa1\xb2\x3c\x4d": "nsecpcap"}


def concatenate_shifted(src: Path, dst: Path, times: int, gap_s: float = 1.0) -> Path:
    """Write ``dst``: ``src`` ``times`` times, copy ``k`` shifted by ``k * (span + gap_s)``
    seconds (so each starts ``gap_s`` after the previous one's last packet), in the format of
    ``src`` (pcap, pcap with nanoseconds, else pcapng). Returns ``dst``."""
    if times < 1:
        raise ValueError("times must be at least 1")
    step = _span(src) + Decimal(str(gap_s))
    with src.open("rb") as f:
        fmt = _PCAP_FORMATS.get(f.read(4), "pcapng")
    editcap, mergecap = require_tool("editcap"), require_tool("mergecap")
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        copies = []
        for k in range(times):
            copy = Path(tmp) / f"{k}.pcap"
            subprocess.run([editcap, "-F", fmt, "-t", f"{step * k:f}", str(src), str(copy)],
                           check=True, capture_output=True)
            copies.append(str(copy))
        part = Path(tmp) / "all.pcap"
        subprocess.run([mergecap, "-F", fmt, "-a", "-w", str(part), *copies], check=True,
                       capture_output=True)
        part.replace(dst)
    return dst
