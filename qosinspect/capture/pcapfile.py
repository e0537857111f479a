"""Readers for pcap and pcapng capture files: bytes on disk to numbered, timestamped frames.

Hard rules, and why:

* **Frames are numbered from 1 in file order**, counting every packet record (pcap records; pcapng
  Enhanced, Simple and obsolete Packet Blocks), exactly as Wireshark numbers them, so a frame number
  printed by qosinspect can be typed into Wireshark's "Go to packet".
* **Timestamps are integer nanoseconds since the epoch.** pcap files say microseconds or
  nanoseconds by their magic number; every pcapng interface has its own ``if_tsresol`` (a power of
  10 or, with the high bit set, a power of 2) and ``if_tsoffset`` (seconds added), honoured per
  interface. Float seconds would lose precision at epoch scale. A Simple Packet Block has no
  timestamp: it gets the previous frame's, so time never runs backward. A timestamp that goes
  back, jumps more than a day or leaves the sane range goes through :func:`.clock.check_clock`
  (clamped if out of range) and its note waits in :attr:`CaptureFile.clock_notes`.
* **Corrupt gzip is a CaptureError** ("corrupt gzip data: ..."), never ``zlib.error``.
* **Errors come late and precise.** A generator yields every good frame before raising
  :class:`~qosinspect.errors.CaptureError` for the first bad one, naming the file, the frame number
  it would have had and the byte offset of its record. A record cut short at the end of the file
  (tcpdump killed mid-write) raises :class:`TruncatedCapture`, a subclass, so a caller may choose to
  warn and keep what it has.
* **No per-byte Python loops.** The file is memory-mapped (or, for gzip and stdin, spooled to an
  unnamed temporary file and mapped), and records are read with precompiled ``struct`` unpackers.
  :meth:`CaptureFile.records` yields only offsets into :attr:`CaptureFile.buf`, so the pipeline can
  parse headers in place without copying frame bytes; :meth:`CaptureFile.frames` is the convenient,
  copying form.
* **Python is the reference, C the accelerator.** With ``qosinspect._speedups`` built, the
  capture engine of :mod:`.pipeline` walks pcap and pcapng records in C with these same rules;
  on any error or anything unusual it hands over to :meth:`CaptureFile._pcap_records` or
  :meth:`CaptureFile._pcapng_records`, started at the block where it stopped (their keyword
  arguments are that state), so every error message comes from here.
* **Memory stays flat, whatever the file size.** Mapped pages count in the resident set as they
  are touched; every :data:`RELEASE_STEP` bytes the pages already walked are handed back with
  ``madvise(MADV_DONTNEED)`` (the file is read once, front to back; anything kept from it is a
  copy). A 200 MB capture is thus read in a few MB of RSS, not 200.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import mmap
import os
import shutil
import stat
import struct
import sys
import tempfile
import zlib
from collections.abc import Iterator
from typing import IO, NamedTuple

from ..errors import CaptureError
from .clock import BACK_TOLERANCE_NS, JUMP_GAP_NS, TS_LIMIT, check_clock
from .formats import HEAD as FORMAT_HEAD
from .formats import other_format
from .records import Notice

__all__ = [
    "MAX_CAPLEN",
    "PCAPNG_BOM",
    "PCAPNG_EPB",
    "PCAPNG_IDB",
    "PCAPNG_SHB",
    "PCAP_MAGIC_NS",
    "PCAP_MAGIC_US",
    "CaptureFile",
    "Interface",
    "OtherFormat",
    "RawFrame",
    "Record",
    "TruncatedCapture",
    "capture_format",
    "convert_command",
    "file_head",
    "open_capture",
    "read_frames",
]

#: Largest captured length accepted for one record (Wireshark's standard maximum snap length).
MAX_CAPLEN = 262144
#: Mapped bytes walked between two releases of the pages behind the current record.
RELEASE_STEP = 8 << 20
_PAGE = mmap.PAGESIZE

#: The pcap magic numbers of microsecond and nanosecond files, as written in their byte order.
PCAP_MAGIC_US, PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
_PCAP_MAGICS = {
    # magic as read little-endian -> (byte order, fraction multiplier to ns, record header size)
    PCAP_MAGIC_US: ("<", 1000, 16),
    0xD4C3B2A1: (">", 1000, 16),
    PCAP_MAGIC_NS: ("<", 1, 16),
    0x4D3CB2A1: (">", 1, 16),
    0xA1B2CD34: ("<", 1000, 24),  # Kuznetzov's modified pcap (extra fields after the header)
    0x34CDB2A1: (">", 1000, 24),
}
#: pcapng block types (section header, interface description, obsolete packet, simple and
#: enhanced packet) and the section header's byte-order magic.
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
_PB = 2
_SPB = 3
PCAPNG_EPB = 6
PCAPNG_BOM = 0x1A2B3C4D
_GZIP_MAGIC = b"\x1f\x8b"


class TruncatedCapture(CaptureError):
    """The file ends inside a record: usually a capture whose writer was killed."""


class RawFrame(NamedTuple):
    """One captured frame: ``data`` is the captured bytes, ``orig_len`` the length on the wire."""

    ts_ns: int
    frame_no: int
    linktype: int
    data: bytes
    orig_len: int


#: A frame located in :attr:`CaptureFile.buf`, as a plain tuple (cheaper than a NamedTuple on the
#: hot path): ``(frame_no, ts_ns, linktype, offset, caplen, orig_len)``; its bytes are
#: ``buf[offset:offset + caplen]``.
Record = tuple[int, int, int, int, int, int]


class Interface(NamedTuple):
    """A pcapng interface (or the single implicit one of a pcap file)."""

    linktype: int
    snaplen: int
    #: Timestamp units are converted as ``units * ts_mul // ts_div + ts_offset_ns``.
    ts_mul: int
    ts_div: int
    ts_offset_ns: int


def _tsresol(value: int) -> tuple[int, int]:
    """``(mul, div)`` turning timestamp units of resolution ``if_tsresol=value`` into ns."""
    exp = value & 0x7F
    if value & 0x80:  # 2**-exp seconds per unit
        return 1_000_000_000, 1 << exp
    if exp <= 9:
        return 10 ** (9 - exp), 1
    return 1, 10 ** (exp - 9)


def file_head(path: str | os.PathLike[str], n: int = 4) -> bytes:
    """The first ``n`` bytes of a file, decompressed when it is gzip (what
    :func:`capture_format` reads); OSError, EOFError or zlib.error when it cannot."""
    with open(path, "rb") as f:
        head = f.read(max(n, len(_GZIP_MAGIC)))
        if head[:2] != _GZIP_MAGIC:
            return head[:n]
        f.seek(0)
        with gzip.GzipFile(fileobj=f) as gz:
            return gz.read(n)


class OtherFormat(CaptureError):
    """A file that is not pcap or pcapng; ``format_name`` when its magic names another
    capture format (:mod:`.formats`), else None. Wireshark's ``editcap`` may convert it
    (:mod:`qosinspect.drivers.convert` does when it is installed)."""

    def __init__(self, message: str, *, path: str, format_name: str | None) -> None:
        super().__init__(message, path=path, offset=0)
        self.format_name = format_name


def convert_command(path: str) -> str:
    """The command that converts ``path`` to pcapng (told to users who lack editcap)."""
    return f"editcap -F pcapng {path} {path}.pcapng"


def capture_format(head: bytes, path: str) -> str:
    """``"pcap"`` or ``"pcapng"`` from the first (decompressed) bytes of a file (four are
    enough; :data:`.formats.HEAD` name other formats); an :class:`OtherFormat` naming ``path``
    (and the format, when known, with the command that converts it) for anything else."""
    if len(head) < 4:
        raise OtherFormat("not a capture file (too short)", path=path, format_name=None)
    (magic,) = struct.unpack_from("<I", head, 0)
    if magic in _PCAP_MAGICS:
        return "pcap"
    if magic == PCAPNG_SHB:
        return "pcapng"
    name = other_format(head)
    if name is not None:
        raise OtherFormat(f"a {name} capture, not pcap or pcapng: convert it with Wireshark's "
                          f"editcap: {convert_command(path)}", path=path, format_name=name)
    raise OtherFormat(f"not a pcap or pcapng file (magic 0x{magic:08x}); if Wireshark reads "
                      f"it, convert it: {convert_command(path)}", path=path, format_name=None)


class CaptureFile:
    """An open capture (pcap or pcapng, possibly gzip-compressed) mapped into memory.

    Use as a context manager. ``path`` ``"-"`` reads standard input. :attr:`buf` is the whole
    (decompressed) file; :meth:`records` walks it.
    """

    def __init__(self, path: str | os.PathLike[str], *, stdin: IO[bytes] | None = None) -> None:
        self.path = os.fspath(path)
        self._file: IO[bytes] | None = None
        self._map: mmap.mmap | None = None
        self._released = 0
        self.buf: bytes | mmap.mmap = b""
        #: ``clock_jump`` and ``timestamp_out_of_range`` notes (:mod:`.clock`) not yet reported;
        #: the pipeline takes them.
        self.clock_notes: list[Notice] = []
        self._open(stdin)
        self.format = self._detect()

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "<memory>") -> CaptureFile:
        """A capture held in memory (gzip allowed): handy for tests and for small inputs."""
        self = cls.__new__(cls)
        self.path = name
        self._file = None
        self._map = None
        self._released = 0
        self.clock_notes = []
        try:
            self.buf = gzip.decompress(data) if data[:2] == _GZIP_MAGIC else data
        except (OSError, EOFError, zlib.error) as exc:
            raise CaptureError(f"corrupt gzip data: {exc}", path=name) from None
        self.format = self._detect()
        return self

    # -- opening ----------------------------------------------------------------------------

    def _open(self, stdin: IO[bytes] | None) -> None:
        try:
            if self.path == "-":
                src = stdin if stdin is not None else sys.stdin.buffer
                self._file = self._spool(src)
            else:
                f: IO[bytes] = open(self.path, "rb")  # noqa: SIM115 - kept open while mapped
                head = f.read(2)
                f.seek(0)
                if head == _GZIP_MAGIC or not _is_regular(f):
                    try:
                        self._file = self._spool(f)
                    finally:
                        f.close()
                else:
                    self._file = f
            size = os.fstat(self._file.fileno()).st_size
            if size == 0:
                self.buf = b""
                return
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            if hasattr(self._map, "madvise"):
                with contextlib.suppress(OSError):
                    self._map.madvise(mmap.MADV_SEQUENTIAL)
            self.buf = self._map
        except CaptureError:
            self.close()
            raise
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            # gzip.BadGzipFile is an OSError; zlib.error (a damaged deflate stream) is not
            self.close()
            what = "corrupt gzip data" if isinstance(exc, EOFError | zlib.error
                                                     | gzip.BadGzipFile) else "cannot read"
            raise CaptureError(f"{what}: {exc}", path=self.path) from None

    def _spool(self, src: IO[bytes]) -> IO[bytes]:
        """Copy ``src`` (decompressing gzip) into an unnamed temporary file that can be mapped."""
        head = src.read(2)
        tmp = tempfile.TemporaryFile()  # noqa: SIM115 - returned open, closed by close()
        try:
            if head == _GZIP_MAGIC:
                with gzip.GzipFile(fileobj=_Prefixed(head, src), mode="rb") as gz:
                    shutil.copyfileobj(gz, tmp, 1 << 20)
            else:
                tmp.write(head)
                shutil.copyfileobj(src, tmp, 1 << 20)
            tmp.flush()
            tmp.seek(0)
        except BaseException:
            tmp.close()
            raise
        return tmp

    def close(self) -> None:
        """Unmap and close; frames already yielded (copies) stay valid."""
        self.buf = b""
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a view still exported: the GC unmaps it
                self._map.close()
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _detect(self) -> str:
        return capture_format(self.buf[:FORMAT_HEAD], self.path)

    # -- walking ----------------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        """Every frame as offsets into :attr:`buf`, in file order; errors after good frames."""
        if self.format == "pcap":
            return self._pcap_records()
        return self._pcapng_records()

    def frames(self) -> Iterator[RawFrame]:
        """Every frame with a copy of its bytes."""
        buf = self.buf
        for n, ts, lt, off, cl, ol in self.records():
            yield RawFrame(ts, n, lt, buf[off:off + cl], ol)

    def _release(self, offset: int) -> int:
        """Hand back the mapped pages before ``offset``; returns the next offset to do it at."""
        m = self._map
        start = self._released
        stop = offset - offset % _PAGE
        if m is not None and stop > start and hasattr(m, "madvise"):
            with contextlib.suppress(OSError, ValueError):
                m.madvise(mmap.MADV_DONTNEED, start, stop - start)
            self._released = stop
        return offset + RELEASE_STEP

    def _clock(self, frame: int, ts: int, last_ts: int) -> int:
        """A frame whose time may be odd (:mod:`.clock`): the time to use; a note, if any, is
        kept in :attr:`clock_notes` for the pipeline to report."""
        ts, note = check_clock(frame, ts, last_ts if frame > 1 else None)
        if note is not None:
            self.clock_notes.append(note)
        return ts

    def _err(self, cls: type[CaptureError], msg: str, frame: int, offset: int) -> CaptureError:
        return cls(msg, path=self.path, frame=frame, offset=offset)

    def _pcap_records(self, off: int = 24, n: int = 0, release_at: int = RELEASE_STEP,
                      last_ts: int = 0) -> Iterator[Record]:
        """The records of a pcap file from the record at ``off`` on (``n`` records before it,
        the last one stamped ``last_ts``; the C walker of ``_speedups.CaptureEngine`` hands over
        here on anything unusual)."""
        buf = self.buf
        end = len(buf)
        if end < 24:
            raise self._err(TruncatedCapture, "truncated pcap file header", 1, 0)
        (magic,) = struct.unpack_from("<I", buf, 0)
        order, frac_mul, hdr_len = _PCAP_MAGICS[magic]
        _, _, _, _, snaplen, network = struct.unpack_from(order + "HHiIII", buf, 4)
        self.interfaces = [Interface(network & 0xFFFF, snaplen, 1, 1, 0)]
        linktype = network & 0xFFFF
        unpack = struct.Struct(order + "IIII").unpack_from
        while off < end:
            if off >= release_at:
                release_at = self._release(off)
            n += 1
            if off + hdr_len > end:
                raise self._err(TruncatedCapture, f"file ends inside the header of record {n} "
                                f"({end - off} of {hdr_len} bytes)", n, off)
            sec, frac, caplen, orig_len = unpack(buf, off)
            if caplen > MAX_CAPLEN:
                raise self._err(CaptureError, f"corrupt record: captured length {caplen} is "
                                f"larger than the maximum {MAX_CAPLEN}", n, off)
            data = off + hdr_len
            nxt = data + caplen
            if nxt > end:
                raise self._err(TruncatedCapture, f"truncated record: captured length {caplen} "
                                f"but only {end - data} bytes left in the file", n, off)
            ts = sec * 1_000_000_000 + frac * frac_mul
            if (last_ts - ts > BACK_TOLERANCE_NS or ts - last_ts > JUMP_GAP_NS
                    or not 0 <= ts < TS_LIMIT):
                ts = self._clock(n, ts, last_ts)
            last_ts = ts
            yield (n, ts, linktype, data, caplen, orig_len if orig_len > caplen else caplen)
            off = nxt

    def _pcapng_records(self, off: int = 0, n: int = 0, order: str = "<",
                        ifaces: list[Interface] | None = None, last_ts: int = 0,
                        release_at: int = RELEASE_STEP) -> Iterator[Record]:
        """The records of a pcapng file from the block at ``off`` on, in the section of byte
        order ``order`` whose interfaces are ``ifaces`` (``n`` records before it, the last
        one stamped ``last_ts``; the C walker hands over here on anything unusual)."""
        buf = self.buf
        end = len(buf)
        if ifaces is None:
            ifaces = []
        self.interfaces = ifaces
        hdr = struct.Struct(order + "II").unpack_from
        epb = struct.Struct(order + "IIIII").unpack_from
        pb = struct.Struct(order + "HHIIII").unpack_from
        u32 = struct.Struct(order + "I").unpack_from
        while off < end:
            if off >= release_at:
                release_at = self._release(off)
            if off + 12 > end:
                raise self._err(TruncatedCapture, f"file ends inside a block header "
                                f"({end - off} bytes left)", n + 1, off)
            (btype,) = u32(buf, off)
            if btype == PCAPNG_SHB:
                (bom,) = struct.unpack_from("<I", buf, off + 8)
                if bom == PCAPNG_BOM:
                    order = "<"
                elif bom == 0x4D3C2B1A:
                    order = ">"
                else:
                    raise self._err(CaptureError, f"corrupt section header: byte-order magic "
                                    f"0x{bom:08x}", n + 1, off)
                self.byte_order = order     # a stream resumes the walk with it (.stream)
                hdr = struct.Struct(order + "II").unpack_from
                epb = struct.Struct(order + "IIIII").unpack_from
                pb = struct.Struct(order + "HHIIII").unpack_from
                u32 = struct.Struct(order + "I").unpack_from
                ifaces = []
                self.interfaces = ifaces
            btype, blen = hdr(buf, off)
            if blen < 12 or blen % 4:
                raise self._err(CaptureError, f"corrupt block length {blen} "
                                f"(block type 0x{btype:08x})", n + 1, off)
            nxt = off + blen
            if nxt > end:
                raise self._err(TruncatedCapture, f"truncated block: length {blen} but only "
                                f"{end - off} bytes left in the file", n + 1, off)
            if u32(buf, nxt - 4)[0] != blen:
                raise self._err(CaptureError, f"corrupt block: trailing length "
                                f"{u32(buf, nxt - 4)[0]} differs from leading length {blen}",
                                n + 1, off)
            if btype in (PCAPNG_EPB, _PB):
                n += 1
                if blen < 32:
                    raise self._err(CaptureError, f"corrupt packet block length {blen}", n, off)
                if btype == PCAPNG_EPB:
                    if_id, hi, lo, caplen, orig_len = epb(buf, off + 8)
                else:
                    if_id, _drops, hi, lo, caplen, orig_len = pb(buf, off + 8)
                if caplen > blen - 32:
                    raise self._err(CaptureError, f"corrupt packet block: captured length "
                                    f"{caplen} exceeds block length {blen}", n, off)
                if if_id >= len(ifaces):
                    raise self._err(CaptureError, f"packet block names interface {if_id} but "
                                    f"only {len(ifaces)} are described", n, off)
                iface = ifaces[if_id]
                units = (hi << 32) | lo
                if iface.ts_div == 1:
                    ts = units * iface.ts_mul + iface.ts_offset_ns
                else:
                    ts = units * iface.ts_mul // iface.ts_div + iface.ts_offset_ns
                if (last_ts - ts > BACK_TOLERANCE_NS or ts - last_ts > JUMP_GAP_NS
                        or not 0 <= ts < TS_LIMIT):
                    ts = self._clock(n, ts, last_ts)
                last_ts = ts
                yield (n, ts, iface.linktype, off + 28, caplen,
                             orig_len if orig_len > caplen else caplen)
            elif btype == _SPB:
                n += 1
                if not ifaces:
                    raise self._err(CaptureError, "simple packet block before any interface "
                                    "description", n, off)
                (orig_len,) = u32(buf, off + 8)
                iface = ifaces[0]
                caplen = min(orig_len, blen - 16)
                if iface.snaplen:
                    caplen = min(caplen, iface.snaplen)
                yield (n, last_ts, iface.linktype, off + 12, caplen, orig_len)
            elif btype == PCAPNG_IDB:
                if blen < 20:
                    raise self._err(CaptureError, f"corrupt interface block length {blen}",
                                    n + 1, off)
                ifaces.append(self._parse_idb(order, off, blen, n + 1))
            off = nxt

    def _parse_idb(self, order: str, off: int, blen: int, frame: int) -> Interface:
        buf = self.buf
        linktype, _res, snaplen = struct.unpack_from(order + "HHI", buf, off + 8)
        mul, div, tsoff = 1000, 1, 0  # default resolution: microseconds
        opt = off + 16
        stop = off + blen - 4
        oh = struct.Struct(order + "HH").unpack_from
        while opt + 4 <= stop:
            code, olen = oh(buf, opt)
            if code == 0:
                break
            val = opt + 4
            if val + olen > stop:
                raise self._err(CaptureError, f"corrupt interface option {code}: length {olen} "
                                "runs past the block", frame, opt)
            if code == 9 and olen >= 1:
                mul, div = _tsresol(buf[val])
            elif code == 14 and olen >= 8:
                (secs,) = struct.unpack_from(order + "q", buf, val)
                tsoff = secs * 1_000_000_000
            opt = val + ((olen + 3) & ~3)
        return Interface(linktype, snaplen, mul, div, tsoff)


class _Prefixed(io.RawIOBase):
    """A readable stream that first returns ``head`` (already read for sniffing), then ``rest``."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            k = min(len(b), len(self._head))
            b[:k] = self._head[:k]
            self._head = self._head[k:]
            return k
        data = self._rest.read(len(b))
        b[:len(data)] = data
        return len(data)


def _is_regular(f: IO[bytes]) -> bool:
    return stat.S_ISREG(os.fstat(f.fileno()).st_mode)


def open_capture(path: str | os.PathLike[str]) -> CaptureFile:
    """Open a capture file (pcap/pcapng, gzip or not; ``"-"`` for stdin)."""
    return CaptureFile(path)


def read_frames(path: str | os.PathLike[str]) -> Iterator[RawFrame]:
    """Yield every frame of a capture file; the file is closed when the iteration ends."""
    with CaptureFile(path) as cap:
        yield from cap.frames()
