"""TCP evidence as Wireshark shows it: the ``tcp.analysis.*`` flags of every segment.

Why: users debug MQTT over bad links with Wireshark open; the report must count what Wireshark
flags, per connection and direction, with frame numbers, on encrypted connections too (the
flags are TCP's, not MQTT's). The reassembler (:mod:`.reassembly`) counts what *it* did (bytes
already had, holes); that is not the same thing, so the rules below follow Wireshark's
``tcp_analyze_sequence_number`` (epan/dissectors/packet-tcp.c), in its order, per direction:

* ``zero_window_probe``: 1 byte at the next sequence number while the peer's window is 0.
* ``zero_window``: window 0 on a segment without SYN/FIN/RST.
* ``lost_segment`` ("previous segment not captured"): a sequence number beyond the next one
  expected (not on RST).
* ``keep_alive``: 0 or 1 byte at the next sequence number minus one (no SYN/FIN/RST).
* ``window_update``: no data, a new window, same sequence and ACK number.
* ``keep_alive_ack`` / ``zero_window_probe_ack``: what would be a duplicate ACK, answering the
  peer's keep-alive or zero-window probe (not a duplicate ACK).
* ``duplicate_ack``: no data, the same window (not 0), sequence and ACK number as before; the
  count of duplicates goes back to 0 when the ACK number moves (a segment with data and the
  same ACK number keeps it).
* ``ack_lost_segment`` ("ACKed unseen segment"): an ACK beyond every byte seen from the peer.
* For a segment with data (or SYN/FIN) below the next sequence number, not a keep-alive:
  ``fast_retransmission`` (and ``retransmission``) when the peer sent 2 or more duplicate
  ACKs for exactly this sequence number, the last less than 20 ms before; else
  ``spurious_retransmission`` (and ``retransmission``) when the peer had already
  acknowledged all of it; else
  ``out_of_order`` when it comes sooner after the highest segment so far than the
  connection's first round trip (SYN to the client's first ACK, as captured; 3 ms when the
  handshake was not captured) and does not end where that one ended; else
  ``retransmission``.

**One pass.** The rules run on :class:`TcpDirState`, the state of one direction. The decoder's
:class:`~.reassembly.HalfStream` *is* one (a subclass), so the capture decoder applies them in
its own pass over the frames (:meth:`~.reassembly.TcpReassembler.segment` calls
:func:`analyze_segment` first), on every connection it tracks. The plain case costs almost
nothing there: :attr:`TcpDirState.plain` says that a direction's state is the ordinary one (the
last segment flagged nothing, every byte seen may be acknowledged, no duplicate ACK counted),
and while both directions are plain, a segment at the next sequence number with a non-zero
window that acknowledges nothing unseen, and (without data) moves the ACK number, flags
nothing: the pipeline's fast path (and the C engine's copy of it) then only updates
``nextseq = maxseqtobeacked = seq + len`` and ``nextseqtime`` (with data) and ``lastack`` and
``lastacktime`` (the decoder reads it: when a receiver last ACKed, Nagle's evidence), and
every other segment comes here. :func:`tcp_flags` is the
same rules in a pass of their own over every TCP conversation of a file (the tests compare it
with tshark frame by frame).

Connections there are numbered like Wireshark's ``tcp.stream`` (every TCP conversation, in
order of first appearance; a SYN on a conversation that was closed starts a new one), which is
the decoder's ``conn_id``. Pure: frames in, flags out; timestamps from the capture only.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..events import Endpoint, TcpEvidence
from .layers import Defragmenter, IpFragment, TcpSegment, decode_tcp, format_ip
from .pcapfile import CaptureFile

__all__ = ["KINDS", "TcpAnalyzer", "TcpDirState", "analyze_segment", "tcp_flags"]

#: Every flag, in Wireshark's names (``tcp.analysis.<kind>``).
KINDS = ("lost_segment", "ack_lost_segment", "duplicate_ack", "fast_retransmission",
         "retransmission", "spurious_retransmission", "out_of_order", "keep_alive",
         "keep_alive_ack", "window_update", "zero_window", "zero_window_probe",
         "zero_window_probe_ack")

_M = 0xFFFFFFFF
_FIN, _SYN, _RST, _ACK = 0x01, 0x02, 0x04, 0x10
_FAST_RETRANS_NS = 20_000_000
_OOO_NS = 3_000_000
_NOTHING: tuple[str, ...] = ()


def _lt(a: int, b: int) -> bool:
    return 0 < ((b - a) & _M) < 0x80000000


def _gt(a: int, b: int) -> bool:
    return _lt(b, a)


class TcpDirState:
    """Wireshark's analysis state of one direction of a TCP conversation (what its sender
    sent and acknowledged). ``win`` is the last window it advertised (the reassembler reads
    it too). ``plain``: see the module docstring; kept by :func:`analyze_segment`."""

    __slots__ = ("dupacknum", "lastack", "lastacktime", "lastflags", "maxseqtobeacked",
                 "nextseq", "nextseqtime", "plain", "rtt", "syn_ts", "win")

    def __init__(self) -> None:
        self.nextseq: int | None = None
        self.nextseqtime = 0
        self.maxseqtobeacked: int | None = None
        self.lastack: int | None = None
        self.lastacktime = 0
        self.dupacknum = 0
        self.win = 1
        self.lastflags: tuple[str, ...] = _NOTHING
        self.plain = False
        #: When this side sent the conversation's SYN (None: it did not, or not seen).
        self.syn_ts: int | None = None
        #: The conversation's first round trip (SYN to the client's first ACK, as captured),
        #: the same on both sides once known: the out-of-order threshold.
        self.rtt: int | None = None


def analyze_segment(fwd: TcpDirState, rev: TcpDirState, seq: int, ack: int, seglen: int,
                    flags: int, window: int, ts: int) -> list[str]:
    """The flags of one segment sent by ``fwd``'s side (``rev`` is the other side), in the
    order of the rules; updates both states. ``seglen`` counts the payload bytes on the wire
    (captured or not)."""
    if flags & _SYN and not flags & _ACK and fwd.syn_ts is None and rev.syn_ts is None:
        fwd.syn_ts = ts
    elif (fwd.rtt is None and fwd.syn_ts is not None and flags & _ACK
          and not flags & _SYN):
        fwd.rtt = rev.rtt = ts - fwd.syn_ts
    out = _analyze(fwd, rev, seq, ack, seglen, flags, window, ts,
                   fwd.rtt if fwd.rtt else _OOO_NS)
    fwd.plain = (not out and fwd.dupacknum == 0 and fwd.lastack is not None
                 and fwd.nextseq is not None and fwd.maxseqtobeacked == fwd.nextseq)
    if rev.plain and rev.maxseqtobeacked != rev.nextseq:
        rev.plain = False
    return out


def _analyze(fwd: TcpDirState, rev: TcpDirState, seq: int, ack: int, seglen: int, flags: int,
             window: int, ts: int, ooo_ns: int) -> list[str]:
    out: list[str] = []
    ctl = flags & (_SYN | _FIN | _RST)
    keep_alive = False
    dup = False
    done = False
    if (seglen == 1 and fwd.nextseq is not None and seq == fwd.nextseq
            and rev.win == 0):
        out.append("zero_window_probe")
        done = True
    if not done:
        if window == 0 and not ctl:
            out.append("zero_window")
        if fwd.nextseq is not None and _gt(seq, fwd.nextseq) and not flags & _RST:
            out.append("lost_segment")
        if (seglen <= 1 and not ctl and fwd.nextseq is not None
                and ((fwd.nextseq - 1) & _M) == seq):
            out.append("keep_alive")
            keep_alive = True
        if not keep_alive:
            same = (seglen == 0 and not ctl and fwd.nextseq is not None
                    and seq == fwd.nextseq and fwd.lastack is not None
                    and ack == fwd.lastack and flags & _ACK)
            if same and window != fwd.win and window:
                out.append("window_update")
            elif same and window == fwd.win and "keep_alive" in rev.lastflags:
                out.append("keep_alive_ack")  # not a duplicate ACK
            elif same and window == fwd.win and "zero_window_probe" in rev.lastflags:
                out.append("zero_window_probe_ack")
            elif same and window == fwd.win and window:
                fwd.dupacknum += 1
                out.append("duplicate_ack")
                dup = True
    if not dup and ack != fwd.lastack:
        fwd.dupacknum = 0  # a segment with data and the same ACK keeps the count
    if (flags & _ACK and rev.maxseqtobeacked is not None
            and _gt(ack, rev.maxseqtobeacked)):
        out.append("ack_lost_segment")
        rev.maxseqtobeacked = ack
    if ((seglen > 0 or flags & (_SYN | _FIN)) and fwd.nextseq is not None
            and _lt(seq, fwd.nextseq) and not keep_alive):
        end = (seq + seglen) & _M
        if (rev.dupacknum >= 2 and rev.lastack == seq
                and ts - rev.lastacktime < _FAST_RETRANS_NS):
            out += ["fast_retransmission", "retransmission"]
        elif seglen > 0 and rev.lastack is not None and not _lt(rev.lastack, end):
            out += ["spurious_retransmission", "retransmission"]
        elif seglen > 0 and ts - fwd.nextseqtime < ooo_ns and fwd.nextseq != end:
            out.append("out_of_order")
        else:
            out.append("retransmission")
    nextseq = (seq + seglen + (1 if flags & (_SYN | _FIN) else 0)) & _M
    if not keep_alive and (fwd.nextseq is None or _gt(nextseq, fwd.nextseq)):
        fwd.nextseq = nextseq
        fwd.nextseqtime = ts
    # what the peer may acknowledge: up to the highest byte seen, but not on a segment
    # after a hole (that waits for the next segment) nor on a zero-window probe
    if fwd.nextseq is not None and (fwd.maxseqtobeacked is None or (
            _gt(fwd.nextseq, fwd.maxseqtobeacked) and "lost_segment" not in out
            and "zero_window_probe" not in out)):
        fwd.maxseqtobeacked = fwd.nextseq
    if flags & _ACK:
        fwd.lastack = ack
        fwd.lastacktime = ts
    fwd.win = window
    fwd.lastflags = tuple(out) if out else _NOTHING
    return out


class _Conv:
    __slots__ = ("closed", "conn_id", "dirs")

    def __init__(self, conn_id: int, key: bytes, rkey: bytes) -> None:
        self.conn_id = conn_id
        self.dirs = {key: TcpDirState(), rkey: TcpDirState()}
        self.closed = False


class TcpAnalyzer:
    """The rules over every TCP conversation, numbered as ``tcp.stream`` (the standalone pass;
    the decoder keeps the same state on its half-streams instead)."""

    def __init__(self) -> None:
        self._convs: dict[bytes, _Conv] = {}
        self._next_id = 0

    def conn_id(self, seg: TcpSegment) -> int:
        """The conversation number of a segment already given to :meth:`segment`."""
        return self._convs[seg.key].conn_id

    def segment(self, ts: int, seg: TcpSegment) -> list[str]:
        """The flags of one segment (in :data:`KINDS` order of the rules)."""
        flags = seg.flags
        conv = self._convs.get(seg.key)
        if conv is None or (conv.closed and flags & _SYN and not flags & _ACK):
            conv = _Conv(self._next_id, seg.key, seg.rkey)
            self._next_id += 1
            self._convs[seg.key] = self._convs[seg.rkey] = conv
        if flags & (_FIN | _RST):
            conv.closed = True
        return analyze_segment(conv.dirs[seg.key], conv.dirs[seg.rkey], seg.seq, seg.ack,
                               len(seg.payload) + seg.missing, flags, seg.window, ts)


def tcp_flags(source: str | CaptureFile) -> Iterator[TcpEvidence]:
    """The ``tcp.analysis`` flags of every TCP segment of a capture, in frame order, on every
    TCP conversation (the decoder flags those it tracks, in its own pass)."""
    cap = source if isinstance(source, CaptureFile) else CaptureFile(source)
    analyzer = TcpAnalyzer()
    defrag = Defragmenter()
    buf = cap.buf
    try:
        for n, ts, lt, off, cl, ol in cap.records():
            seg = decode_tcp(lt, buf, off, cl, ol, defrag)
            if type(seg) is IpFragment:
                seg = seg.segment
            if not isinstance(seg, TcpSegment):
                continue
            kinds = analyzer.segment(ts, seg)
            if kinds:
                conn = analyzer.conn_id(seg)
                src = Endpoint(format_ip(seg.src), seg.sport)
                dst = Endpoint(format_ip(seg.dst), seg.dport)
                for kind in kinds:
                    yield TcpEvidence(ts, n, conn, src, dst, kind)
    finally:
        if cap is not source:
            cap.close()
