"""``keepalive_timeout``: a client silent past its keep-alive, and the connection dropped.

Signature [MQTT-3.1.2-24]: the connection before a reconnection ended ``keepalive_expired``
(the broker's DISCONNECT 0x8D, or no packet from the client for more than 1.5 times the keep
alive it announced when the transport closed). The client stopped sending (a blocked loop, a
sleeping radio, PINGREQs not sent while it was busy), so the broker dropped it.
"""

from __future__ import annotations

from ..records import Connection, Reconnect
from .evidence import Diagnosis, ms

__all__ = ["CAUSE", "CAUSE_END", "check"]

CAUSE = "keepalive_timeout"
#: How the connection before the reconnection ended (:mod:`..sessions`).
CAUSE_END = "keepalive_expired"


def check(index: int, rc: Reconnect, prev: Connection | None, close_frame: int
          ) -> Diagnosis | None:
    if rc.cause != CAUSE_END or prev is None:
        return None
    ka = prev.keep_alive or prev.server_keep_alive or 0
    last = prev.t_last_c2b
    closed = prev.t_close
    silence = (f"sent nothing for {ms(closed - last)}" if last is not None and closed is not None
               else "went silent")
    who = ("the broker sent DISCONNECT 0x8D (keep alive timeout)" if prev.disconnect_by == "b2c"
           else "the connection was closed")
    gap = rc.gap_ns or 0
    return Diagnosis(
        CAUSE, "reconnect", index, rc.prev_conn_id, rc.t_drop or rc.t_connect, gap,
        (close_frame,) if close_frame else (),
        f"the client {silence}, past 1.5 x its keep alive of {ka} s, and {who}; it "
        f"reconnected {ms(gap)} later",
        "send PINGREQ (or any packet) within the keep alive even while busy: run the MQTT loop "
        "apart from slow work, or announce a longer keep alive")
