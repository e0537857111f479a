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
    """The ``clear_text`` part of the report (JSON-ready), in one pass over ``connections``
    (a result's connections are made from packed rows as they are read: no list of them)."""
    clear = encrypted = mqtt_bytes = publishes = with_user = with_password = accepted = 0
    usernames: set[str] = set()
    first_password: int | None = None
    for c in connections:
        if c.transport not in CLEAR_TRANSPORTS:
            encrypted += 1
            continue
        # a refused attempt (SYN answered by RST) or a connection closed before its first
        # packet showed nothing: only connections that carried MQTT count as read in clear
        if c.n_packets_c2b + c.n_packets_b2c == 0:
            continue
        clear += 1
        mqtt_bytes += c.n_bytes_c2b + c.n_bytes_b2c
        publishes += c.n_publish_c2b + c.n_publish_b2c
        if c.username is not None:
            with_user += 1
            usernames.add(c.username)
        if c.password_present:
            with_password += 1
            accepted += bool(c.accepted)
            if first_password is None or c.conn_id < first_password:
                first_password = c.conn_id
    return {
        "connections": clear,
        "encrypted": encrypted,
        "mqtt_bytes": mqtt_bytes,
        "publish_packets": publishes,
        "with_username": with_user,
        "with_password": with_password,
        "password_accepted": accepted,
        "usernames": sorted(usernames),
        "first_conn_with_password": first_password,
    }
