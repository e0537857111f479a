"""pcap and pcapng read from a pipe or a file still being written, record by record as they arrive.

``tcpdump -w - | qosinspect watch -`` must see each packet when it arrives, not when the pipe
closes; spooling the input to a file first (what :class:`~.pcapfile.CaptureFile` does for
stdin) would wait for the end. This module reads the stream in whatever pieces the pipe hands
over and gives the pipeline every *complete* record at once.

Hard rules, and why:

* **The record rules are the file readers' own.** :class:`StreamCapture` is a
  :class:`~.pcapfile.CaptureFile` whose :attr:`buf` is the bytes read so far and not yet
  walked; it walks them with :meth:`~.pcapfile.CaptureFile._pcap_records` /
  :meth:`~.pcapfile.CaptureFile._pcapng_records`, resumed with their state (frame count, last
  timestamp, pcapng byte order and interfaces), so frame numbers, timestamps, ``if_tsresol``,
  clock notes and every error message are exactly those of the same bytes read from a file.
* **A partial record waits for the next read.** The walkers raise
  :class:`~.pcapfile.TruncatedCapture` at the record the bytes end in; here that only means
  "more to come": the bytes from that record on are kept and the next read is appended. Only
  at the end of the stream is a cut record the file's error. An error raised anywhere names
  the byte offset in the whole stream, not in the piece.
* **gzip streams too** (``zcat``-free ``tcpdump -w - | gzip | ...``): a gzip stream is
  inflated incrementally, members one after the other.
* **Following a file** (``--follow``, like ``tail -f``): at the end of the file, wait
  :attr:`poll_s` and read again, until ``stop()`` says so. Reading a pipe, ``stop()`` is
  asked every :attr:`poll_s` while no byte arrives, so a ``--duration`` ends a silent pipe.
  ``idle()``, when given, is called at those moments: a live display refreshes although no
  packet came (it may read the wall clock; the readers never do).
* **The C engine walks streams too.** With the accelerator built, the pipeline hands every
  piece (:meth:`StreamCapture.pieces`) to the capture engine of :mod:`.pipeline`, resumed with
  the state above (:meth:`StreamCapture.resume_state`); the engine stops at a record the piece
  cuts short and says where (:meth:`StreamCapture.walked` keeps the rest for the next read).
  Anything unusual goes to the same Python walkers, so both paths give the same frames, notes
  and errors (``tests/capture/test_stream.py`` runs every piece size through both).
"""

from __future__ import annotations

import os
import select
import time
import zlib
from collections.abc import Callable, Iterator
from typing import IO, Protocol

from ..errors import CaptureError
from .formats import HEAD as FORMAT_HEAD
from .pcapfile import CaptureFile, Interface, Record, TruncatedCapture

__all__ = ["Readable", "StreamCapture", "open_stream"]

#: Bytes asked for per read (a pipe hands over at most what it holds).
READ_SIZE = 1 << 16
_GZIP_MAGIC = b"\x1f\x8b"


class Readable(Protocol):
    """What a stream needs: ``read(n)`` returning at most ``n`` bytes, ``b""`` at the end."""

    def read(self, n: int, /) -> bytes: ...


class StreamCapture(CaptureFile):
    """A pcap or pcapng arriving on ``src`` (a pipe, a socket file, a file being written).

    :meth:`chunks` yields ``(buf, records)``: the records complete so far as offsets into
    ``buf`` (the pipeline's :data:`~.pcapfile.Record` tuples). ``follow=True`` keeps reading at
    the end of a regular file (``tail -f``) until ``stop()`` returns True; a pipe ends at its
    end. ``stop`` is also asked while a pipe is silent, every ``poll_s``; ``idle`` is called
    then too. ``bytes_read`` counts the (decompressed) bytes read so far.
    """

    def __init__(self, src: IO[bytes] | Readable, name: str = "-", *, follow: bool = False,
                 stop: Callable[[], bool] | None = None, idle: Callable[[], None] | None = None,
                 poll_s: float = 0.2, read_size: int = READ_SIZE,
                 tee: IO[bytes] | None = None,
                 on_frame: Callable[[int, int, int, bytes, int], None] | None = None) -> None:
        self.path = name
        self._file = None
        self._map = None
        self._released = 0
        self.clock_notes = []
        self.interfaces: list[Interface] = []
        self._src = src
        #: Gets every (decompressed) byte read, in order: ``watch --write`` keeps the capture.
        self._tee = tee
        #: Gets every frame walked, ``(frame_no, ts_ns, linktype, data, orig_len)``, before the
        #: pipeline sees it: ``watch --record-dir`` keeps the last seconds of raw packets.
        self._on_frame = on_frame
        self._fd = _fileno(src)
        self._follow = follow
        self._stop = stop
        self._idle = idle
        self.poll_s = poll_s
        self._read_size = read_size
        self._inflate: zlib._Decompress | None = None
        self._eof = False
        self.bytes_read = 0
        #: Stream offset of ``_pending[0]`` (for error messages).
        self._base = 0
        self._pending = b""
        self._head = b""
        # walker state carried from one piece to the next
        self._n = 0
        self._last_ts = 0
        self._order = self.byte_order = "<"
        self._ifaces: list[Interface] = []
        #: Ended by ``stop()`` rather than by the end of the stream: a partial record then is
        #: what the stop cut, not an error.
        self.stopped = False
        self._owned = False
        first = self._read_at_least(FORMAT_HEAD)
        self.buf = first
        self.format = self._detect()
        if self.format == "pcap":
            self._head = self._read_at_least(24)[:24]
            if len(self._head) < 24:
                raise TruncatedCapture("truncated pcap file header", path=name, frame=1,
                                       offset=0)
            self._pending = self._pending[24:]
            self._base = 24
        self.buf = b""

    # -- reading ------------------------------------------------------------------------------

    def _read_at_least(self, n: int) -> bytes:
        """Read until ``n`` bytes are pending (or the stream ends); returns the pending bytes."""
        while len(self._pending) < n and self._more():
            pass
        return self._pending

    def _more(self) -> bool:
        """Append the next piece of the stream to the pending bytes; False at its end."""
        while not self._eof:
            raw = self._read_raw()
            if raw is None:         # nothing yet: asked to stop?
                if self._stop is not None and self._stop():
                    self._eof = self.stopped = True
                    break
                if self._idle is not None:
                    self._idle()
                continue
            if not raw:
                self._eof = True
                break
            if self._take(self._decompress(raw)):
                return True
        if self._inflate is not None:
            tail = self._inflate.flush()
            self._inflate = None
            return self._take(tail)
        return False

    def _take(self, data: bytes) -> bool:
        """Append (decompressed) bytes to the pending ones; False if there are none."""
        if not data:
            return False
        if self._tee is not None:
            self._tee.write(data)
        self._pending += data
        self.bytes_read += len(data)
        return True

    def _read_raw(self) -> bytes | None:
        """The next bytes: ``b""`` at the end, None when none came within ``poll_s`` (a silent
        pipe, or the end of a followed file)."""
        if self._stop is not None and self._stop():
            self.stopped = True
            return b""
        fd = self._fd
        if fd is None:
            data = self._src.read(self._read_size)
            if not data and self._follow:
                time.sleep(self.poll_s)
                return None
            return data
        if self._stop is not None or self._idle is not None:
            ready, _, _ = select.select([fd], [], [], self.poll_s)
            if not ready:
                return None
        data = os.read(fd, self._read_size)
        if not data and self._follow:
            time.sleep(self.poll_s)
            return None
        return data

    def _decompress(self, raw: bytes) -> bytes:
        if (self.bytes_read == 0 and self._inflate is None and not self._pending
                and raw[:2] == _GZIP_MAGIC[:len(raw)]):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._inflate is None:
            return raw
        out = []
        try:
            while raw:
                out.append(self._inflate.decompress(raw))
                if not self._inflate.eof:
                    break
                raw = self._inflate.unused_data     # the next gzip member, if any
                self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise CaptureError(f"corrupt gzip data: {exc}", path=self.path) from None
        return b"".join(out)

    # -- walking ------------------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        """Every record, as offsets into the ``buf`` of its piece: only valid until the next
        one is read, so use :meth:`chunks` unless each is consumed at once."""
        for _buf, recs in self.chunks():
            yield from recs

    def chunks(self) -> Iterator[tuple[bytes, Iterator[Record]]]:
        """``(buf, records)`` for every piece read, in order: the records complete in it, walked
        as they are taken (so a clock note comes with its record, as from a file); take them
        all before the next piece. At the end, the error of a stream that ends inside a
        record. The Python walk (the reference); the pipeline's C engine walks :meth:`pieces`
        itself."""
        for buf, start, final in self.pieces():
            yield buf, self._walk(buf, start, final)

    def pieces(self) -> Iterator[tuple[bytes, int, bool]]:
        """The bytes to walk after each read, as ``(buf, start, final)``: the records begin at
        ``buf[start]`` (a pcap's file header is put back in front, so the file readers' walk
        applies as is); ``final`` when the stream has ended (a partial record is then the
        file's error). Before the next piece, the walker says how far it got with
        :meth:`walked`; :meth:`resume_state` is the state to resume its walk with."""
        more = True     # what the format's detection read is walked before reading on
        while True:
            if self._pending:
                if self.format == "pcap":
                    buf, start = self._head + self._pending, 24
                else:
                    buf, start = self._pending, 0
                self.buf = buf
                yield buf, start, not more and not self.stopped
            if not more:
                return
            more = self._more() if not self._eof else False

    def resume_state(self, start: int) -> tuple[int, int, int, str, list[Interface]]:
        """``(offset, frames, last_ts, byte_order, interfaces)``: where and with what the walk
        of the current piece starts (the keyword arguments of the file readers' walkers)."""
        return start, self._n, self._last_ts, self._order, self._ifaces

    def walked(self, stop: int, frames: int, last_ts: int) -> None:
        """The walk of the current piece got to ``stop`` (the start of a partial record, or
        its end), the last record numbered ``frames`` and stamped ``last_ts``: the bytes from
        ``stop`` on wait for the next read."""
        buf = self.buf
        start = 24 if self.format == "pcap" else 0
        self._n = frames
        self._last_ts = last_ts
        if self.format == "pcapng":
            self._order = self.byte_order
            self._ifaces = self.interfaces
        self._pending = buf[stop:]
        self._base += stop - start

    def frame_hook(self) -> Callable[[int, int, int, int, int, int], None] | None:
        """What a walker calls with every record before the pipeline sees it (``on_frame``
        with the frame's bytes), or None without ``on_frame``."""
        return self._frame if self._on_frame is not None else None

    def _frame(self, n: int, ts: int, lt: int, off: int, cl: int, ol: int) -> None:
        assert self._on_frame is not None
        self._on_frame(n, ts, lt, self.buf[off:off + cl], ol)

    def _walk(self, buf: bytes, start: int, final: bool) -> Iterator[Record]:
        """The complete records of ``buf`` from ``start``, then :meth:`walked`: a partial
        record waits for more bytes, unless ``final`` (then its error is raised)."""
        if self.format == "pcap":
            gen = self._pcap_records(off=start, n=self._n, last_ts=self._last_ts,
                                     release_at=1 << 62)
        else:
            gen = self._pcapng_records(off=start, n=self._n, order=self._order,
                                       ifaces=self._ifaces, last_ts=self._last_ts,
                                       release_at=1 << 62)
        n, last_ts = self._n, self._last_ts
        stop = len(buf)
        frame = self.frame_hook()
        try:
            for rec in gen:
                n, last_ts = rec[0], rec[1]
                if frame is not None:
                    frame(*rec)
                yield rec
        except CaptureError as exc:
            stop = self.stopped_at(exc, start, final)
        self.walked(stop, n, last_ts)

    def stopped_at(self, exc: CaptureError, start: int, final: bool) -> int:
        """Where the walk of the current piece (its records from ``start``) ended when it
        raised ``exc``: at a record cut short, unless the piece is the ``final`` one (its bytes
        wait for the next read); anything else is the stream's error, raised with its offset
        in the whole stream."""
        if isinstance(exc, TruncatedCapture) and not final:
            return exc.offset if exc.offset is not None else start
        raise self.stream_error(exc, start) from None

    def stream_error(self, exc: CaptureError, start: int) -> CaptureError:
        """``exc`` (raised walking the current piece, whose records begin at ``start``) with its
        byte offset in the whole stream rather than in the piece."""
        offset = None if exc.offset is None else exc.offset - start + self._base
        return type(exc)(exc.message, path=self.path, frame=exc.frame, offset=offset)

    def close(self) -> None:
        """Forget the pending bytes; close the source if :func:`open_stream` opened it."""
        self.buf = b""
        self._pending = b""
        if self._owned:
            self._owned = False
            self._src.close()  # type: ignore[union-attr]


def _fileno(src: object) -> int | None:
    try:
        fd = src.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) else None


def open_stream(path: str, *, follow: bool = False, stop: Callable[[], bool] | None = None,
                idle: Callable[[], None] | None = None, tee: IO[bytes] | None = None,
                on_frame: Callable[[int, int, int, bytes, int], None] | None = None
                ) -> StreamCapture:
    """A :class:`StreamCapture` of ``path`` (``"-"``: standard input)."""
    import sys

    if path == "-":
        return StreamCapture(sys.stdin.buffer, "-", follow=False, stop=stop, idle=idle, tee=tee,
                             on_frame=on_frame)
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed with the stream by the caller's with
    except OSError as exc:
        raise CaptureError(f"cannot read: {exc}", path=path) from None
    try:
        cap = StreamCapture(f, path, follow=follow, stop=stop, idle=idle, tee=tee,
                            on_frame=on_frame)
    except BaseException:
        f.close()
        raise
    cap._owned = True
    return cap
