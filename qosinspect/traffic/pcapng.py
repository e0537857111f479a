"""A pcapng file written while a run goes on, from the bytes the fault proxy saw.

Used when no real capture is possible (not root, no tcpdump/dumpcap): every chunk the proxy
read from a client or wrote to it becomes one TCP segment, in IPv4 (or IPv6) packets with valid
checksums, in Ethernet frames as on Linux's loopback, so any reader (Wireshark, tshark, our
decoder) takes the file like a real capture of the clients' side.

What differs from a real capture (README "Captures made without root"):

- the TCP level is synthetic: a three-way handshake when the proxy accepted the connection,
  one segment per chunk, pure ACKs only in the handshake and the close (data segments carry the
  ACK number), a fixed window, no options, and never a TCP retransmission, a zero window or a
  lost segment: TCP on loopback does not lose them, and the proxy sees no others;
- timestamps are the proxy's clock when it read (client to broker) or wrote (broker to client)
  the bytes, not the kernel's;
- segments larger than 65,000 bytes are split (an IP packet has a 16-bit length).

The file is valid after every :meth:`PcapngRecorder.flush` (blocks are only ever appended), so an
interrupted run still leaves what was recorded so far. The section header's ``shb_userappl``
and a comment say the framing is synthetic.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..capture.writer import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    link_frame,
    pcap_header,
    pcap_record,
    pcapng_epb,
    pcapng_idb,
    pcapng_option,
    pcapng_shb,
    tcp_ip_packet,
)
from ..events import Endpoint
from ..mqtt.enums import Direction

__all__ = ["PcapngRecorder", "SyntheticTcp", "convert_to_pcapng"]

_M = 0xFFFFFFFF
_MAX_SEG = 65_000
_LINKTYPE_ETHERNET = 1


class _Conn:
    __slots__ = ("broker", "client", "closed", "ident", "seq")

    def __init__(self, client: Endpoint, broker: Endpoint, isn: int) -> None:
        self.client = client
        self.broker = broker
        self.seq = {Direction.C2B: isn & _M, Direction.B2C: (isn * 7919 + 12345) & _M}
        self.ident = 0
        self.closed = False


class SyntheticTcp:
    """Connections' bytes as synthetic TCP segments in Ethernet frames (see the module
    docstring); each frame goes to :meth:`_frame` (``frame(ts_ns, data)`` when given)."""

    def __init__(self, frame: Callable[[int, bytes], None] | None = None) -> None:
        self._conns: dict[int, _Conn] = {}
        self._next = 0
        self.frames = 0
        self._sink = frame

    def _frame(self, ts_ns: int, data: bytes) -> None:
        if self._sink is not None:
            self._sink(ts_ns, data)

    def flush(self) -> None:
        """Nothing is buffered here (a file writer flushes)."""

    # -- connections ------------------------------------------------------------------------

    def opened(self, ts_ns: int, client: Endpoint, broker: Endpoint) -> int:
        """A connection was accepted at ``ts_ns``: writes the handshake, returns its key."""
        key = self._next
        self._next += 1
        conn = self._conns[key] = _Conn(client, broker, 0x10000 + key * 0x01000193)
        c2b, b2c = Direction.C2B, Direction.B2C
        self._segment(conn, ts_ns - 2000, c2b, SYN, b"", ack=0)
        conn.seq[c2b] = (conn.seq[c2b] + 1) & _M
        self._segment(conn, ts_ns - 1000, b2c, SYN | ACK, b"")
        conn.seq[b2c] = (conn.seq[b2c] + 1) & _M
        self._segment(conn, ts_ns, c2b, ACK, b"")
        return key

    def data(self, key: int, ts_ns: int, direction: Direction, data: bytes) -> None:
        conn = self._conns.get(key)
        if conn is None or conn.closed:
            return
        for pos in range(0, len(data), _MAX_SEG):
            chunk = data[pos:pos + _MAX_SEG]
            self._segment(conn, ts_ns, direction, ACK | PSH, chunk)
            conn.seq[direction] = (conn.seq[direction] + len(chunk)) & _M

    def closed(self, key: int, ts_ns: int, how: str, by: Direction) -> None:
        """``how`` is ``fin`` (FIN, FIN-ACK, ACK) or ``rst``; ``by`` the side that closed."""
        conn = self._conns.pop(key, None)
        if conn is None or conn.closed:
            return
        conn.closed = True
        other = by.reverse
        if how == "rst":
            self._segment(conn, ts_ns, by, RST | ACK, b"")
        else:
            self._segment(conn, ts_ns, by, FIN | ACK, b"")
            conn.seq[by] = (conn.seq[by] + 1) & _M
            self._segment(conn, ts_ns + 1000, other, FIN | ACK, b"")
            conn.seq[other] = (conn.seq[other] + 1) & _M
            self._segment(conn, ts_ns + 2000, by, ACK, b"")
        self.flush()

    # -- frames -----------------------------------------------------------------------------

    def _segment(self, conn: _Conn, ts_ns: int, direction: Direction, flags: int,
                 payload: bytes, *, ack: int | None = None) -> None:
        if direction is Direction.C2B:
            src, dst = conn.client, conn.broker
        else:
            src, dst = conn.broker, conn.client
        ack_no = conn.seq[direction.reverse] if ack is None else ack
        conn.ident = (conn.ident + 1) & 0xFFFF
        ip = tcp_ip_packet((src.host, src.port), (dst.host, dst.port), conn.seq[direction],
                           ack_no, flags, payload, ident=conn.ident)
        self.frames += 1
        self._frame(ts_ns, link_frame(_LINKTYPE_ETHERNET, ip, loopback=True))


class PcapngRecorder(SyntheticTcp):
    """Streams synthetic TCP segments into a pcapng file (see the module docstring)."""

    def __init__(self, path: str | Path, *, comment: str = "") -> None:
        super().__init__()
        self.path = Path(path)
        self._f: BinaryIO | None = self.path.open("wb")
        opts = pcapng_option(
            4, b"qosinspect generate (synthetic TCP/IP framing from the fault proxy)")
        if comment:
            opts += pcapng_option(1, comment.encode())
        self._write(pcapng_shb(opts))
        self._write(pcapng_idb(_LINKTYPE_ETHERNET, tsresol=9, name="lo"))
        self.flush()

    def _frame(self, ts_ns: int, data: bytes) -> None:
        # if_tsresol = 9: the stamp is in nanoseconds
        self._write(pcapng_epb(0, ts_ns, data))

    def _write(self, data: bytes) -> None:
        if self._f is not None:
            self._f.write(data)

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def convert_to_pcapng(src: str | Path, dst: str | Path, *, comment: str = "",
                      drop_udp_port: int | None = None) -> int:
    """Rewrite a pcap or pcapng file as ``dst``: pcapng with nanosecond stamps, or a
    nanosecond pcap when ``dst`` ends in ``.pcap``; returns the frames copied.

    tcpdump writes pcap and dumpcap pcapng; either way the file becomes what its name says.
    ``drop_udp_port`` leaves out IPv4 UDP datagrams to that port (the live capture's readiness
    probes). A last record cut short (a capture tool killed mid-write) ends the copy quietly.
    """
    from ..capture.pcapfile import read_frames
    from ..errors import CaptureError

    as_pcap = str(dst).endswith(".pcap")
    interfaces: dict[int, int] = {}
    n = 0
    with Path(dst).open("wb") as out:
        if not as_pcap:
            opts = pcapng_option(4, b"qosinspect generate")
            if comment:
                opts += pcapng_option(1, comment.encode())
            out.write(pcapng_shb(opts))
        frames = read_frames(src)
        while True:
            try:
                frame = next(frames)
            except (StopIteration, CaptureError):
                break
            if drop_udp_port is not None and _is_udp_to(frame.linktype, frame.data,
                                                        drop_udp_port):
                continue
            data = frame.data
            iface = interfaces.get(frame.linktype)
            if iface is None:
                if as_pcap and interfaces:
                    raise CaptureError(f"frames of several link types ({frame.linktype} after "
                                       f"{next(iter(interfaces))}) cannot go into one pcap; "
                                       "use a .pcapng name", path=str(dst))
                iface = interfaces[frame.linktype] = len(interfaces)
                out.write(pcap_header(frame.linktype) if as_pcap else
                          pcapng_idb(frame.linktype, tsresol=9))
            if as_pcap:
                out.write(pcap_record(frame.ts_ns, data, frame.orig_len))
            else:       # if_tsresol = 9: the stamp is in nanoseconds
                out.write(pcapng_epb(iface, frame.ts_ns, data, frame.orig_len))
            n += 1
        if as_pcap and not interfaces:      # no frame at all: still a valid, empty pcap
            out.write(pcap_header(_LINKTYPE_ETHERNET))
    return n


_IP_OFFSET = {1: 14, 113: 16, 276: 20, 0: 4, 108: 4, 101: 0, 228: 0, 12: 0, 14: 0}


def _is_udp_to(linktype: int, data: bytes, port: int) -> bool:
    off = _IP_OFFSET.get(linktype)
    if off is None or len(data) < off + 28 or data[off] >> 4 != 4 or data[off + 9] != 17:
        return False
    udp = off + (data[off] & 0x0F) * 4
    return len(data) >= udp + 4 and int.from_bytes(data[udp + 2:udp + 4], "big") == port
