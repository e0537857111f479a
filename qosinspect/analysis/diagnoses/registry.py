"""The causes the diagnoser tries, in order: the first whose signature matches names the cause.

Why an ordered list: an exchange can carry more than one symptom (a zero window makes the
sender split a packet too); the most specific evidence comes first. Adding a cause is one
module with a ``check`` and one line here.
"""

from __future__ import annotations

from collections.abc import Callable

from . import nagle, retransmission, zero_window
from .evidence import Diagnosis, ExchangeFacts
from .facts import ConnFacts

__all__ = ["EXCHANGE_CHECKS"]

#: ``check(exchange, connection facts, min_wait_ns)`` of each exchange cause, in order.
EXCHANGE_CHECKS: tuple[Callable[[ExchangeFacts, ConnFacts, int], Diagnosis | None], ...] = (
    zero_window.check,
    retransmission.check,
    nagle.check,
)
