"""Retained messages, stored compactly, and the cursor that sends a large set in slices.

A broker may hold a retained message on each of hundreds of thousands of topics, so one entry
is a slotted object of five fields (payload, QoS, properties, expiry, sequence number) keyed by
its topic, not a full PUBLISH plus a tuple around it: about 100 bytes less per topic, and the
PUBLISH is made only when one is sent.

A subscription with a wildcard may match all of them. Sending them in one go would hold the
event loop (and every other client) for as long as it takes to queue and encode them, so the
engine sends ``BrokerConfig.retained_batch`` of them at once and leaves a
:class:`RetainedCursor` on the connection; the server asks for the next slice on the next turn
of its loop, and waits while the subscriber's socket buffer or queue is full. A topic whose
retained message changed after the subscription is skipped by the cursor: the subscriber got
that newer message live already.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..mqtt.packets import Publish
from ..mqtt.properties import NO_PROPERTIES, Properties
from .state import SubOptions

__all__ = ["RetainedCursor", "RetainedMessage"]


@dataclass(slots=True, eq=False)
class RetainedMessage:
    """One topic's retained message (the topic is its key in ``EngineState.retained``)."""

    payload: bytes
    qos: int
    properties: Properties | None = None
    expires_ns: int | None = None
    #: Order of acceptance: a cursor skips messages newer than its subscription.
    seq: int = 0

    def publish(self, topic: str) -> Publish:
        return Publish(topic, self.payload, self.qos, False, True, None,
                       self.properties or NO_PROPERTIES)


@dataclass(slots=True, eq=False)
class RetainedCursor:
    """Where a wildcard subscription is in sending the retained messages it matches."""

    topic_filter: str
    options: SubOptions
    topics: Iterator[str]      # a snapshot of the retained topics at subscription time
    since_seq: int             # messages accepted after the subscription are skipped
