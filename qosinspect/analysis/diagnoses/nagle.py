"""``nagle_delayed_ack``: a packet written in pieces, its rest held for the ACK of the first.

Signature (RFC 896 meeting RFC 1122 4.2.3.2): a packet of the exchange left in more than one
segment; the receiver's ACK came at least ``min_wait`` after the first piece, and the rest
followed that ACK at once (within a quarter of the wait, and of 5 ms), while most of the time
on the wire was spent before the ACK. A sender without TCP_NODELAY holds a small segment while
data is unacknowledged; the receiver, with no complete packet to answer, delays its ACK (40 ms
on Linux, 200 ms on Windows, up to 500 ms allowed).
"""

from __future__ import annotations

from .evidence import Diagnosis, ExchangeFacts, ms
from .facts import ConnFacts, Split

__all__ = ["CAUSE", "check"]

CAUSE = "nagle_delayed_ack"
_SIDE = ("client", "broker")


def _held(s: Split, min_wait: int) -> tuple[int, int] | None:
    """``(wait for the ACK, time from the ACK to the rest)`` when the split packet ``s`` shows
    the signature, else None."""
    wait = s.ack_ts - s.first_ts
    after = s.ts - s.ack_ts
    if wait < min_wait or after < 0 or after > min(wait // 4, 5_000_000):
        return None
    return wait, after


def check(ex: ExchangeFacts, conn: ConnFacts, min_wait: int) -> Diagnosis | None:
    for name, sender, ts, wire in ex.steps:
        for s in conn.splits:
            if s.ts != ts or s.sender != sender:
                continue
            held = _held(s, min_wait)
            if held is None:
                continue
            wait, after = held
            fix = (f"set TCP_NODELAY on the {_SIDE[sender]}'s socket, or write each MQTT "
                   "packet in one send()")
            if wire >= min_wait:
                return Diagnosis(
                    CAUSE, "exchange", ex.ex_id, ex.conn_id, ex.start, ex.latency,
                    (s.first_frame, s.frame),
                    f"the {name.upper()} left in pieces (frames {s.first_frame} to {s.frame}); "
                    f"the rest waited {ms(wait)} for the {_SIDE[1 - sender]}'s ACK of the "
                    f"first and left {ms(after)} after it: Nagle's algorithm with a delayed "
                    "ACK", fix)
            # written while another packet's tail was held: it left with that tail
            return Diagnosis(
                CAUSE, "exchange", ex.ex_id, ex.conn_id, ex.start, ex.latency,
                (s.first_frame, s.frame),
                f"the {name.upper()} was held back with the rest of a packet begun at frame "
                f"{s.first_frame}, which waited {ms(wait)} for the {_SIDE[1 - sender]}'s ACK; "
                f"they left together at frame {s.frame}: Nagle's algorithm with a delayed ACK",
                fix)
    return None
