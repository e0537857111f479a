"""``zero_window``: the receiver stopped reading and its TCP window went to zero.

Signature: during the exchange (from its PUBLISH's first byte to its end), the side that had to
read the PUBLISH or an acknowledgement advertised a window of 0 (Wireshark's
``tcp.analysis.zero_window``): the peer may not send until the window reopens
(``window_update``), so the exchange waits on an application that does not read its socket.
"""

from __future__ import annotations

from .evidence import Diagnosis, ExchangeFacts, ms
from .facts import ConnFacts

__all__ = ["CAUSE", "check"]

CAUSE = "zero_window"
_SIDE = ("client", "broker")


def check(ex: ExchangeFacts, conn: ConnFacts, min_wait: int) -> Diagnosis | None:
    for w in conn.windows:
        if w.start > ex.end or (w.end and w.end < ex.start):
            continue
        end = w.end or ex.end
        if end - w.start < min_wait and ex.latency < min_wait:
            continue
        frames = (w.frame, w.end_frame) if w.end_frame else (w.frame,)
        closed = (f"reopened {ms(end - w.start)} later (frame {w.end_frame})" if w.end
                  else f"still closed {ms(end - w.start)} later")
        who = _SIDE[w.sender]
        return Diagnosis(
            CAUSE, "exchange", ex.ex_id, ex.conn_id, ex.start, ex.latency, frames,
            f"the {who} advertised a zero window at frame {w.frame}, {closed}: the {who} "
            "stopped reading its socket",
            f"make the {who} read its socket while it works (a reader apart from the message "
            "handler), or subscribe with a lower rate or QoS")
    return None
