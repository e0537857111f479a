"""``retransmission_timeout``: a segment was lost and TCP sent it again after its timer.

Signature: during the exchange, a segment of its connection was retransmitted
(Wireshark's ``tcp.analysis.retransmission``; ``fast_retransmission`` when duplicate ACKs
triggered it): the bytes behind it, the exchange's among them, waited for the retransmission
timeout (RTO, at least 200 ms on Linux, 1 s by RFC 6298) or the duplicate ACKs.
"""

from __future__ import annotations

from .evidence import Diagnosis, ExchangeFacts, ms
from .facts import ConnFacts

__all__ = ["CAUSE", "check"]

CAUSE = "retransmission_timeout"
_SIDE = ("client", "broker")


def check(ex: ExchangeFacts, conn: ConnFacts, min_wait: int) -> Diagnosis | None:
    for r in conn.retransmits:
        if not ex.start < r.ts <= ex.end:
            continue
        how = ("after duplicate ACKs (fast retransmission)" if r.kind == "fast_retransmission"
               else "when its retransmission timer expired")
        return Diagnosis(
            CAUSE, "exchange", ex.ex_id, ex.conn_id, ex.start, ex.latency, (r.frame,),
            f"the {_SIDE[r.sender]} sent a lost segment again at frame {r.frame}, "
            f"{ms(r.ts - ex.start)} after the PUBLISH began, {how}",
            "look for loss on the path (Wi-Fi, cellular, a congested link or a middlebox); "
            "on lossy links prefer fewer larger writes and a lower minimum RTO "
            "(ip route ... rto_min)")
    return None
