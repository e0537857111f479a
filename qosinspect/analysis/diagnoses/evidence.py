"""What a diagnosis says: the cause, the thing it explains, the frames that prove it, and why.

Why a record of its own: every output (the ``cause`` columns, ``report --format json``'s
``diagnoses``, the text report's section, the ladder's markers) reads the same few fields, and
a user must be able to check each verdict in Wireshark, so the frames travel with it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CAUSES", "EXAMPLES", "NO_KNOWN_CAUSE", "ByCause", "Counted", "Diagnosis",
           "ExchangeFacts", "example_key", "ms"]

#: The stable identifiers of the causes, in the order the report lists them: of slow exchanges
#: (the wire's, then the delivery level's), of reconnections, of copies never delivered.
CAUSES = ("nagle_delayed_ack", "zero_window", "retransmission_timeout", "receive_maximum",
          "offline_queue_flush", "keepalive_timeout", "subscriber_offline", "connection_lost")
#: An outlier no signature explains: said, rather than guessed.
NO_KNOWN_CAUSE = "no_known_cause"


def ms(ns: int) -> str:
    """A duration in milliseconds, as the sentences print it."""
    return f"{ns / 1e6:.1f} ms"


@dataclass(frozen=True, slots=True)
class ExchangeFacts:
    """A finished exchange as the cause checks see it (times in ns; ``start`` is the first byte
    of its PUBLISH on the wire, ``end`` its last acknowledgement or the end of its connection).

    ``steps`` holds, per packet step seen, ``(name, sender, completed, time on the wire)``,
    ``sender`` 0 for the client (``c2b``) and 1 for the broker."""

    ex_id: int
    conn_id: int
    direction: int
    qos: int
    packet_id: int
    start: int
    end: int
    complete: bool
    steps: tuple[tuple[str, int, int, int], ...]

    @property
    def latency(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """One verdict. ``subject`` is ``exchange`` (``ref`` its ``ex_id``), ``reconnect`` (``ref``
    its ordinal, the row in the reconnects table) or ``delivery`` (a copy never delivered:
    ``ref`` its ordinal among those, the deliveries table's ``not_delivered`` rows in order);
    ``latency_ns`` is the latency it explains (the
    exchange's, from its PUBLISH's first byte; a reconnection's gap); ``frames`` the frames of
    the evidence, in order; ``sentence`` the signature that decided, ``advice`` what to do."""

    cause: str
    subject: str
    ref: int
    conn_id: int
    ts_ns: int
    latency_ns: int
    frames: tuple[int, ...]
    sentence: str
    advice: str


#: Examples a report gives per cause.
EXAMPLES = 3


def example_key(d: Diagnosis) -> tuple[int, int, int]:
    """The order of a cause's examples in the report: the slowest first, then the earliest."""
    return (-d.latency_ns, d.ts_ns, d.ref)


class Counted:
    """The verdicts of one cause past the cap: how many and the latency they explain, and the
    ``EXAMPLES`` worst of them kept whole (in the order of :func:`example_key`, so the report's
    examples are those of keeping every verdict)."""

    __slots__ = ("n", "ns", "worst")

    def __init__(self) -> None:
        self.worst: list[Diagnosis] = []
        self.n = 0
        self.ns = 0

    def add(self, d: Diagnosis) -> None:
        worst = self.worst
        if len(worst) < EXAMPLES:
            worst.append(d)
            return
        i = max(range(len(worst)), key=lambda k: example_key(worst[k]))
        if example_key(d) < example_key(worst[i]):
            d, worst[i] = worst[i], d
        self.n += 1
        self.ns += d.latency_ns


class ByCause(dict[str, Counted]):
    """Verdicts of one kind past the cap, a :class:`Counted` per cause (in the order the
    causes came): the one way the diagnoses count what they do not keep whole."""

    def add(self, d: Diagnosis) -> None:
        counted = self.get(d.cause)
        if counted is None:
            counted = self[d.cause] = Counted()
        counted.add(d)

    def examples(self) -> list[Diagnosis]:
        """The worst of each cause, kept whole."""
        return [d for counted in self.values() for d in counted.worst]

    def totals(self) -> dict[str, tuple[int, int]]:
        """By cause, how many were counted past the examples and the latency they explain."""
        return {cause: (counted.n, counted.ns) for cause, counted in self.items()}
