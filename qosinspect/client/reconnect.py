"""Reconnection: the back-off schedule and the record of each reconnection. Pure, no I/O.

A lost connection is retried after ``initial`` seconds, then after delays growing by ``factor``
up to ``maximum``, each spread by +/- ``jitter`` (a fraction) so that many clients cut off at
once do not come back in lockstep. ``max_attempts`` bounds the retries (None: forever).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Backoff", "ReconnectEvent"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """The delays between reconnection attempts, in seconds."""

    initial: float = 0.1
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial < 0 or self.maximum < self.initial:
            raise ValueError("Backoff needs 0 <= initial <= maximum")
        if self.factor < 1:
            raise ValueError("Backoff factor must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("Backoff jitter is a fraction in [0, 1)")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("Backoff max_attempts must be at least 1 (or None)")

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The delay before each attempt; finite when ``max_attempts`` is set."""
        rng = rng or random.Random()
        delay = self.initial
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            attempt += 1
            spread = delay * self.jitter
            yield min(self.maximum, max(0.0, delay + rng.uniform(-spread, spread)))
            delay = min(self.maximum, delay * self.factor)


@dataclass(frozen=True, slots=True)
class ReconnectEvent:
    """One successful reconnection after a lost connection.

    ``t_lost_ns`` is when the old connection ended, ``ts_ns`` when the new CONNACK arrived;
    ``gap_ns`` the time in between. ``resent_publish`` counts the PUBLISH packets sent again with
    DUP=1 and ``resent_pubrel`` the PUBRELs [MQTT-4.4.0-1]; ``lost`` the flows given up because
    the session was not resumed [MQTT-3.2.2-5].
    """

    ts_ns: int
    t_lost_ns: int
    cause: str
    session_present: bool
    attempts: int
    conn_id: int
    previous_conn_id: int
    resent_publish: int = 0
    resent_pubrel: int = 0
    lost: int = 0

    @property
    def gap_ns(self) -> int:
        return self.ts_ns - self.t_lost_ns

    @property
    def gap_s(self) -> float:
        return self.gap_ns / 1e9
