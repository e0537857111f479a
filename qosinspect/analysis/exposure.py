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
from typing import Any, Final

from .records import Connection

__all__ = ["CLEAR_TRANSPORTS", "MAX_USERNAMES", "Exposure", "exposure"]

#: Transports an eavesdropper reads as they are (a WebSocket mask is no protection: its key is in
#: every frame, RFC 6455 10.3).
CLEAR_TRANSPORTS = frozenset({"tcp", "websocket"})
#: Distinct user names the report lists at most: a fleet where each device logs in with its own
#: name (its serial number) would otherwise make the list, and a watch's memory, grow with the
#: fleet. Past it the report lists the first names in sorted order (the same whatever order the
#: connections came in) and says ``usernames_capped``.
MAX_USERNAMES: Final = 1000


class Exposure:
    """The ``clear_text`` figures, one connection at a time (:meth:`add`), so a long watch can
    fold each ended connection in and let it go (issue 13); :meth:`report` is the JSON."""

    __slots__ = ("_last", "accepted", "clear", "encrypted", "first_password", "mqtt_bytes",
                 "publishes", "usernames", "usernames_capped", "with_password", "with_user")

    def __init__(self) -> None:
        self.clear = self.encrypted = self.mqtt_bytes = self.publishes = 0
        self.with_user = self.with_password = self.accepted = 0
        self.usernames: set[str] = set()
        self.usernames_capped = False
        self.first_password: int | None = None
        #: The last kept name in sorted order, once capped (None before).
        self._last: str | None = None

    def copy(self) -> Exposure:
        new = Exposure()
        for name in Exposure.__slots__:
            setattr(new, name, getattr(self, name))
        new.usernames = set(self.usernames)
        return new

    def add(self, c: Connection) -> None:
        if c.transport not in CLEAR_TRANSPORTS:
            self.encrypted += 1
            return
        # a refused attempt (SYN answered by RST) or a connection closed before its first
        # packet showed nothing: only connections that carried MQTT count as read in clear
        if c.n_packets_c2b + c.n_packets_b2c == 0:
            return
        self.clear += 1
        self.mqtt_bytes += c.n_bytes_c2b + c.n_bytes_b2c
        self.publishes += c.n_publish_c2b + c.n_publish_b2c
        if c.username is not None:
            self.with_user += 1
            self._name(c.username)
        if c.password_present:
            self.with_password += 1
            self.accepted += bool(c.accepted)
            if self.first_password is None or c.conn_id < self.first_password:
                self.first_password = c.conn_id

    def _name(self, name: str) -> None:
        names = self.usernames
        if name in names:
            return
        if len(names) < MAX_USERNAMES:
            names.add(name)
            return
        # keep the first MAX_USERNAMES in sorted order: an order-free rule, so a watch that
        # folds connections as they end lists the names ``report`` lists
        self.usernames_capped = True
        last = self._last if self._last is not None else max(names)
        if name < last:
            names.discard(last)
            names.add(name)
            last = max(names)
        self._last = last

    def report(self) -> dict[str, Any]:
        return {
            "connections": self.clear,
            "encrypted": self.encrypted,
            "mqtt_bytes": self.mqtt_bytes,
            "publish_packets": self.publishes,
            "with_username": self.with_user,
            "with_password": self.with_password,
            "password_accepted": self.accepted,
            "usernames": sorted(self.usernames),
            "usernames_capped": self.usernames_capped,
            "first_conn_with_password": self.first_password,
        }


def exposure(connections: Iterable[Connection]) -> dict[str, Any]:
    """The ``clear_text`` part of the report (JSON-ready), in one pass over ``connections``
    (a result's connections are made from packed rows as they are read: no list of them)."""
    e = Exposure()
    for c in connections:
        e.add(c)
    return e.report()
