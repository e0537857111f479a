"""What a capture gives away to anyone on the path: MQTT in clear text and its credentials.

MQTT carries CONNECT's user name and password as plain strings (3.1.3.5 and 3.1.3.6 of 3.1.1,
3.1.3.5 and 3.1.3.6 of 5.0); only the transport can hide them. Whoever captures a link without
TLS reads every topic and payload, and a password that the broker accepted is a working
credential they can use themselves. Embedded teams often run plain 1883 "on the local network",
so the report says plainly what their capture exposes, per connection, without ever printing a
password: the report is a file people share.

Connections the decoder saw as TLS are counted apart (``encrypted``): nothing of them is readable.
A connection decrypted with a key log (tshark engine) keeps ``transport == "tls"`` and counts as
encrypted too: an eavesdropper without the keys reads nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .records import Connection

__all__ = ["CLEAR_TRANSPORTS", "exposure"]

#: Transports an eavesdropper reads as they are (a WebSocket mask is no protection: its key is in
#: every frame, RFC 6455 10.3).
CLEAR_TRANSPORTS = frozenset({"tcp", "websocket"})


def exposure(connections: Iterable[Connection]) -> dict[str, Any]:
    """The ``clear_text`` part of the report (JSON-ready)."""
    conns = list(connections)
    # a refused attempt (SYN answered by RST) or a connection closed before its first packet
    # showed nothing: only connections that carried MQTT count as read in clear
    clear = [c for c in conns if c.transport in CLEAR_TRANSPORTS
             and c.n_packets_c2b + c.n_packets_b2c > 0]
    encrypted = sum(1 for c in conns if c.transport not in CLEAR_TRANSPORTS)
    with_user = [c for c in clear if c.username is not None]
    with_password = [c for c in clear if c.password_present]
    accepted = [c for c in with_password if c.accepted]
    return {
        "connections": len(clear),
        "encrypted": encrypted,
        "mqtt_bytes": sum(c.n_bytes_c2b + c.n_bytes_b2c for c in clear),
        "publish_packets": sum(c.n_publish_c2b + c.n_publish_b2c for c in clear),
        "with_username": len(with_user),
        "with_password": len(with_password),
        "password_accepted": len(accepted),
        "usernames": sorted({c.username for c in with_user if c.username is not None}),
        "first_conn_with_password": min((c.conn_id for c in with_password), default=None),
    }
