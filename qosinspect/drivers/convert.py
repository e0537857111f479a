"""Capture files Wireshark reads but qosinspect does not: converted to pcapng with editcap.

Why: field captures come as Network General Sniffer, snoop, NetMon, ERF ... files. The native
decoder reads pcap and pcapng; Wireshark's ``editcap -F pcapng`` converts everything Wireshark
reads, losslessly for what qosinspect uses (frames, times, link types). When ``editcap`` is
installed the file is converted into a temporary pcapng (removed when the events end), and a
warning on the ``qosinspect`` logger says so (Python's last-resort handler prints it on
stderr). Without it, the :class:`~qosinspect.capture.pcapfile.OtherFormat` error names the
format and the command to run. ``captype`` (Wireshark) names formats without a magic number.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from ..capture.formats import HEAD
from ..capture.pcapfile import OtherFormat, capture_format, convert_command, file_head
from ..errors import CaptureError

__all__ = ["converted"]

_log = logging.getLogger("qosinspect")


def _needs_conversion(path: str) -> OtherFormat | None:
    try:
        head = file_head(path, HEAD)
        if len(head) < 4:
            return None  # empty or nearly: nothing to convert (the reader says "too short")
        capture_format(head, path)
    except OtherFormat as exc:
        return exc
    except (OSError, EOFError, ValueError, zlib.error, CaptureError):
        return None  # the reader says what is wrong, as before
    return None


def _format_name(path: str, known: str | None) -> str:
    if known is not None:
        return known
    captype = shutil.which("captype")
    if captype is not None:
        out = subprocess.run([captype, path], capture_output=True, text=True, timeout=60,
                             check=False).stdout
        _, _, name = out.strip().rpartition(": ")
        if name and name != "unknown":
            return name
    return "unknown"


@contextmanager
def converted(path: str, editcap: str | None = "editcap") -> Iterator[str]:
    """The path to read: ``path`` itself when it is pcap/pcapng (gzip too) or not a file, else
    a temporary pcapng converted by ``editcap`` (``None``: do not convert). Raises
    :class:`~qosinspect.errors.CaptureError` naming the format and the command to run when the
    file cannot be converted."""
    if path == "-" or not os.path.isfile(path):
        yield path
        return
    problem = _needs_conversion(path)
    if problem is None:
        yield path
        return
    tool = shutil.which(editcap) if editcap else None
    if tool is None:
        raise problem
    fd, tmp = tempfile.mkstemp(suffix=".pcapng", prefix="qosinspect-")
    os.close(fd)
    try:
        proc = subprocess.run([tool, "-F", "pcapng", path, tmp], capture_output=True,
                              text=True, timeout=600, check=False)
        if proc.returncode != 0:
            why = proc.stderr.strip().splitlines()
            raise CaptureError(f"{problem.message}; editcap could not convert it either"
                               f"{': ' + why[-1] if why else ''}", path=path,
                               offset=0) from None
        name = _format_name(path, problem.format_name)
        _log.warning("%s: not pcap or pcapng (format: %s); read through a pcapng copy made "
                     "with editcap (%s)", path, name, convert_command(path))
        yield tmp
    finally:
        os.unlink(tmp)
