"""What the report says of connections, folded one connection at a time.

Why: the report's connection figures (how many reached MQTT, were refused, ended how, per
broker, what they exposed in clear text, who had TCP evidence) were computed at the end from
every connection's record. A ``watch`` runs for days with devices reconnecting all day, so the
session tracker folds an ended connection in here once nothing can ask for its record again
(its idle timeout passed, :mod:`.sessions`) and lets the record go, as finished exchanges are
folded into the :class:`~.aggregate.Aggregate`. The connections still held at the end are added
the same way (:meth:`ConnectionTotals.with_held`), so ``report`` and ``watch`` compute every
figure with this one rule whichever connections were released.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Mapping
from typing import Final

from .exposure import Exposure
from .records import Connection

__all__ = ["REFUSALS_KEPT", "ConnectionTotals"]

#: Refused connections kept whole (those of the smallest ``conn_id``): the report lists the
#: first ten (``report.text.SHOWN``).
REFUSALS_KEPT: Final = 100


class ConnectionTotals:
    """The report's figures of connections (see the module docstring)."""

    __slots__ = ("accepted", "ends", "evicted", "exposure", "identities", "mqtt", "refusals",
                 "refused", "seen", "stream_gaps", "tcp_retransmission")

    def __init__(self) -> None:
        #: Connections, TCP attempts refused by RST included.
        self.seen = 0
        #: Connections that reached MQTT (not a TCP attempt refused by RST).
        self.mqtt = 0
        #: Of those, refused by CONNACK.
        self.refused = 0
        #: Connections with TCP retransmissions.
        self.tcp_retransmission = 0
        #: Stream gaps, all connections.
        self.stream_gaps = 0
        #: Connections the decoder stopped following (its ``max_flows``).
        self.evicted = 0
        #: How connections ended (``open`` for those still open).
        self.ends: Counter[str] = Counter()
        #: Connections that reached MQTT, by broker code.
        self.accepted: Counter[int] = Counter()
        self.exposure = Exposure()
        #: Refused connections (by CONNACK or by TCP), the :data:`REFUSALS_KEPT` of the
        #: smallest ids, for the report's list of the first ones.
        self.refusals: list[Connection] = []
        #: conn_id -> (client, broker, transport) of folded connections with TCP evidence:
        #: what the report's per-connection evidence names them by.
        self.identities: dict[int, tuple[str, str, str | None]] = {}

    def copy(self) -> ConnectionTotals:
        new = ConnectionTotals()
        new.seen, new.mqtt, new.refused = self.seen, self.mqtt, self.refused
        new.tcp_retransmission, new.stream_gaps = self.tcp_retransmission, self.stream_gaps
        new.evicted = self.evicted
        new.ends = Counter(self.ends)
        new.accepted = Counter(self.accepted)
        new.exposure = self.exposure.copy()
        new.refusals = list(self.refusals)
        new.identities = dict(self.identities)
        return new

    def add(self, c: Connection, broker_code: int, evidence: Container[int] = ()) -> None:
        """Fold one connection in (``broker_code``: its broker, -1 unknown; ``evidence``: the
        ids of connections with TCP evidence, whose names are kept)."""
        self.seen += 1
        refused = c.connack_code not in (None, 0)
        if not c.attempt:
            self.mqtt += 1
            self.accepted[broker_code] += 1
            self.refused += refused
        if c.attempt or refused:
            self._refusal(c)
        if c.tcp_retransmissions:
            self.tcp_retransmission += 1
        self.stream_gaps += c.stream_gaps
        if c.transport_end == "evicted":
            self.evicted += 1
        self.ends[c.end or "open"] += 1
        self.exposure.add(c)
        if c.conn_id in evidence:
            self.identities[c.conn_id] = (c.client, c.broker, c.transport)

    def _refusal(self, c: Connection) -> None:
        kept = self.refusals
        kept.append(c)
        if len(kept) >= 2 * REFUSALS_KEPT:
            kept.sort(key=_conn_id)
            del kept[REFUSALS_KEPT:]

    def first_refusals(self, n: int) -> list[Connection]:
        """The ``n`` refused connections of the smallest ids, in id order."""
        return sorted(self.refusals, key=_conn_id)[:n]

    def with_held(self, held: Iterable[Connection], brokers: Mapping[int, int],
                  evidence: Container[int] = ()) -> ConnectionTotals:
        """These totals with the connections still held added, each with its broker's code
        from ``brokers`` (a copy: the result can be reported twice)."""
        new = self.copy()
        for c in held:
            new.add(c, brokers.get(c.conn_id, -1), evidence)
        return new


def _conn_id(c: Connection) -> int:
    return c.conn_id
