"""The wire facts the causes are read from, kept per connection in short rings.

Why rings: a diagnosis needs the TCP segments and ACKs *around* one exchange (when the receiver
ACKed the first piece of a split packet, when a window went to zero and reopened, which segment
was retransmitted), not the history of the connection. Each ring keeps the last few facts of
its kind, so memory stays flat however long the capture; an exchange is diagnosed when it
finishes, while its facts are still there. Connections are forgotten oldest first past
``MAX_CONNECTIONS``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TypeVar

from ...events import TcpEvidence

__all__ = ["MAX_CONNECTIONS", "RING", "ConnFacts", "Facts", "Retransmit", "Split", "ZeroWindow"]

_T = TypeVar("_T")
#: Facts of each kind kept per connection.
RING = 64
#: Connections whose facts are kept at once (the oldest are forgotten first).
MAX_CONNECTIONS = 20_000
#: The ``tcp.analysis`` flags a cause reads.
_KINDS = frozenset({"zero_window", "window_update", "retransmission", "fast_retransmission",
                    "out_of_order"})


@dataclass(slots=True)
class Split:
    """A packet whose bytes spanned frames: ``first_ts``/``first_frame`` its first byte,
    ``ts``/``frame`` the frame that completed it, ``ack_ts`` the receiver's last ACK before."""

    sender: int
    first_ts: int
    ts: int
    ack_ts: int
    first_frame: int
    frame: int


@dataclass(slots=True)
class ZeroWindow:
    """A receive window at zero, advertised by ``sender`` (0 the client, 1 the broker) from
    ``start`` (frame ``frame``) until ``end`` (frame ``end_frame``; 0 while still closed)."""

    sender: int
    start: int
    frame: int
    end: int = 0
    end_frame: int = 0


@dataclass(slots=True)
class Retransmit:
    """A TCP retransmission by ``sender``: Wireshark's flag ``kind`` on frame ``frame``."""

    sender: int
    ts: int
    frame: int
    kind: str


@dataclass(slots=True)
class ConnFacts:
    """The rings of one connection; ``client`` is its client endpoint (``host:port``).

    A ring is the empty tuple until its first fact (:func:`_ring`): an empty ``deque`` is
    760 bytes (its first block), and most connections never have a fact of most kinds; three
    of them were 2.3 kB for each of ``MAX_CONNECTIONS`` connections (issue 11 §9)."""

    client: str
    splits: deque[Split] | tuple[Split, ...] = ()
    windows: deque[ZeroWindow] | tuple[ZeroWindow, ...] = ()
    retransmits: deque[Retransmit] | tuple[Retransmit, ...] = ()
    #: The latest time of any fact, and whether a zero window is still open: an exchange that
    #: began after the one with none open can match no fact (the checks are skipped).
    last_ts: int = 0
    window_open: bool = False
    #: The client's Receive Maximum (MQTT 5 CONNECT; 0: not announced) and the frame of the
    #: broker's CONNACK: the delivery checks' evidence (:mod:`.delivery`).
    receive_maximum: int = 0
    connack_frame: int = 0

    def quiet_since(self, start: int) -> bool:
        """No fact at or after ``start`` and no window still closed."""
        return self.last_ts < start and not self.window_open


def _ring(ring: deque[_T] | tuple[_T, ...]) -> deque[_T]:
    """``ring`` to append to: a new ring of ``RING`` in place of the empty tuple."""
    return deque(maxlen=RING) if isinstance(ring, tuple) else ring


class Facts:
    """Every connection's rings, fed from the analysis' single pass over the events."""

    def __init__(self, max_connections: int = MAX_CONNECTIONS) -> None:
        self.conns: OrderedDict[int, ConnFacts] = OrderedDict()
        self.max_connections = max_connections

    def conn(self, conn_id: int, client: str = "") -> ConnFacts:
        f = self.conns.get(conn_id)
        if f is None:
            f = self.conns[conn_id] = ConnFacts(client)
            if len(self.conns) > self.max_connections:
                self.conns.popitem(last=False)
        elif client and not f.client:
            f.client = client
        return f

    def split(self, conn_id: int, client: str, sender: int, first_ts: int, ts: int,
              ack_ts: int, first_frame: int, frame: int) -> None:
        f = self.conn(conn_id, client)
        f.splits = ring = _ring(f.splits)
        ring.append(Split(sender, first_ts, ts, ack_ts, first_frame, frame))
        f.last_ts = max(f.last_ts, ts)

    def tcp(self, ev: TcpEvidence) -> None:
        """A ``tcp.analysis`` flag: zero windows (and their end), retransmissions."""
        kind = ev.kind
        if kind not in _KINDS:
            return
        f = self.conns.get(ev.conn_id)
        if f is None or not f.client:
            return  # a connection that carries no MQTT exchange (yet): nothing to explain
        sender = 0 if str(ev.src) == f.client else 1
        if kind == "zero_window":
            last = f.windows[-1] if f.windows else None
            if last is None or last.sender != sender or last.end:
                f.windows = windows = _ring(f.windows)
                windows.append(ZeroWindow(sender, ev.ts_ns, ev.frame))
            f.window_open = True
        elif kind == "window_update":
            for w in reversed(f.windows):
                if w.sender == sender and not w.end:
                    w.end, w.end_frame = ev.ts_ns, ev.frame
                    break
            f.window_open = any(not w.end for w in f.windows)
        elif kind in ("retransmission", "fast_retransmission", "out_of_order"):
            # out_of_order: a hole filled sooner after the highest segment than the first round
            # trip (Wireshark's rule, capture/tcp_analysis.py); what fills it was sent again or
            # overtaken on the way, and the bytes behind it waited either way (a slow handshake
            # makes the first round trip long, and a retransmission by the tail loss probe then
            # is labelled so: tests/traffic/test_diagnoses_retransmission_run.py)
            last_r = f.retransmits[-1] if f.retransmits else None
            if last_r is not None and last_r.frame == ev.frame:
                last_r.kind = "fast_retransmission"  # both flags on one frame
            else:
                f.retransmits = retransmits = _ring(f.retransmits)
                retransmits.append(Retransmit(sender, ev.ts_ns, ev.frame, kind))
        else:
            return
        f.last_ts = max(f.last_ts, ev.ts_ns)
