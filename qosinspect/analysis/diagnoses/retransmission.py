"""``retransmission_timeout``: a segment was lost and TCP sent it again after its timer.

Signature: during the exchange, a segment of its connection was retransmitted
(Wireshark's ``tcp.analysis.retransmission``; ``fast_retransmission`` when duplicate ACKs
triggered it): the bytes behind it, the exchange's among them, waited for the retransmission
timeout (RTO, at least 200 ms on Linux, 1 s by RFC 6298; a tail loss probe sooner) or the
duplicate ACKs. A hole in the sequence filled later (``out_of_order``: the first copy was lost
before the capture point, or overtaken) counts too: the bytes behind it waited the same way.
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
        if r.kind == "out_of_order":
            what = (f"a segment of the {_SIDE[r.sender]} missing from the capture (lost before "
                    f"the capture point and sent again, or overtaken) came at frame {r.frame}, "
                    f"{ms(r.ts - ex.start)} after the PUBLISH began, and the bytes behind it "
                    "waited for it (Wireshark: out-of-order)")
        else:
            how = ("after duplicate ACKs (fast retransmission)"
                   if r.kind == "fast_retransmission" else "when its retransmission timer expired")
            what = (f"the {_SIDE[r.sender]} sent a lost segment again at frame {r.frame}, "
                    f"{ms(r.ts - ex.start)} after the PUBLISH began, {how}")
        return Diagnosis(
            CAUSE, "exchange", ex.ex_id, ex.conn_id, ex.start, ex.latency, (r.frame,), what,
            "look for loss on the path (Wi-Fi, cellular, a congested link or a middlebox); "
            "on lossy links prefer fewer larger writes and a lower minimum RTO "
            "(ip route ... rto_min)")
    return None
