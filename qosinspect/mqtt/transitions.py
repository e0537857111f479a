"""The QoS 1 and QoS 2 transition table: the one place that says which acknowledgement answers
which PUBLISH, who sends it, and which step it closes.

Both the endpoints (:mod:`qosinspect.mqtt.qos`: the broker's and the client's senders) and the
observer (:mod:`qosinspect.analysis.exchanges`: the capture analysis) read this table, so a rule
changed here changes for all of them.

A flow is one PUBLISH with QoS 1 or 2 and its acknowledgements, seen from outside (the state is
what has been *seen* on the wire, whichever side sent it)::

    state          packet   sent by    -> state          ends  endpoint  statement
    -------------  -------  ---------  ----------------  ----  --------  -----------------------
    WAIT_PUBACK    PUBACK   receiver   COMPLETE          yes   yes       [MQTT-4.3.2-3]
    WAIT_PUBREC    PUBREC   receiver   WAIT_PUBREL       no    yes       [MQTT-4.3.3-8]
    WAIT_PUBREL    PUBREL   sender     WAIT_PUBCOMP      no    yes       [MQTT-4.3.3-3]
    WAIT_PUBCOMP   PUBCOMP  receiver   COMPLETE          yes   yes       [MQTT-4.3.3-5]
    WAIT_PUBREL    PUBREC   receiver   WAIT_PUBREL       no    yes       PUBREC again (DUP PUBLISH
                                                                         answered) [MQTT-4.3.3-10]
    WAIT_PUBCOMP   PUBREC   receiver   WAIT_PUBCOMP      no    yes       the peer lost our PUBREL:
                                                                         PUBREL again
    WAIT_PUBCOMP   PUBREL   sender     WAIT_PUBCOMP      no    yes       PUBREL re-sent after a
                                                                         reconnect [MQTT-4.4.0-1]
    WAIT_PUBREC    PUBREL   sender     WAIT_PUBCOMP      no    no        PUBREC not seen (missing
                                                                         from the capture)
    WAIT_PUBREC    PUBCOMP  receiver   COMPLETE          yes   no        PUBREC and PUBREL not seen
    WAIT_PUBREL    PUBCOMP  receiver   COMPLETE          yes   no        PUBREL not seen

- A reason code >= 0x80 on PUBACK, PUBREC or PUBCOMP ends the flow as REFUSED (MQTT 5
  [MQTT-4.3.3-4] for PUBREC; section 4.13.2 and [MQTT-4.4.0-2]); it still counts as an
  acknowledgement (the sender frees the packet id).
- Any (state, packet) pair not in the table is a protocol error: PUBACK for a QoS 2 flow,
  PUBREC, PUBREL or PUBCOMP for a QoS 1 flow [MQTT-4.3.2-1] [MQTT-4.3.3-1].
- ``endpoint`` no: the pair is impossible between two correct endpoints (a step in between is
  missing) but an observer sees it when the capture missed a packet; endpoints treat it as a
  protocol error, the analysis follows it and keeps the step it did see.
- Which direction: PUBACK, PUBREC and PUBCOMP travel against the PUBLISH (sent by its
  receiver), PUBREL with it (sent by its sender): :data:`ACK_STEPS`.

Standard library only, like the rest of :mod:`qosinspect.mqtt`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, NamedTuple

__all__ = [
    "ACK_STEPS",
    "TRANSITIONS",
    "AckStep",
    "FlowState",
    "Step",
    "Transition",
    "initial_state",
    "transition",
]


class FlowState(IntEnum):
    """Where a QoS 1/2 flow stands (what has been seen of it)."""

    WAIT_PUBACK = 1
    WAIT_PUBREC = 2
    WAIT_PUBCOMP = 3
    WAIT_PUBREL = 4
    COMPLETE = 5
    REFUSED = 6


class Step(IntEnum):
    """The steps of a flow, in protocol order (the analysis' ``last_step``)."""

    PUBLISH = 0
    PUBACK = 1
    PUBREC = 2
    PUBREL = 3
    PUBCOMP = 4


class AckStep(NamedTuple):
    """What an acknowledgement packet type is: its step, the QoS it belongs to, and whether the
    PUBLISH's receiver sends it (False: the PUBLISH's sender, i.e. PUBREL)."""

    step: Step
    qos: int
    from_receiver: bool
    name: str


#: Packet type (4..7) -> what that acknowledgement is.
ACK_STEPS: Final[dict[int, AckStep]] = {
    4: AckStep(Step.PUBACK, 1, True, "PUBACK"),
    5: AckStep(Step.PUBREC, 2, True, "PUBREC"),
    6: AckStep(Step.PUBREL, 2, False, "PUBREL"),
    7: AckStep(Step.PUBCOMP, 2, True, "PUBCOMP"),
}


class Transition(NamedTuple):
    """One row of the table: where a flow goes, and what it means."""

    next: FlowState
    #: True for a packet of a step already seen (a re-send: DUP answered, PUBREL lost, reconnect).
    repeat: bool
    #: False: impossible between correct endpoints (a packet in between is missing).
    endpoint: bool
    meaning: str


W = FlowState
#: (state, packet type) -> transition, for reason codes < 0x80 (see the module table).
TRANSITIONS: Final[dict[tuple[FlowState, int], Transition]] = {
    (W.WAIT_PUBACK, 4): Transition(W.COMPLETE, False, True, "PUBACK ends QoS 1 [MQTT-4.3.2-3]"),
    (W.WAIT_PUBREC, 5): Transition(W.WAIT_PUBREL, False, True, "PUBREC [MQTT-4.3.3-8]"),
    (W.WAIT_PUBREL, 6): Transition(W.WAIT_PUBCOMP, False, True, "PUBREL [MQTT-4.3.3-3]"),
    (W.WAIT_PUBCOMP, 7): Transition(W.COMPLETE, False, True, "PUBCOMP ends QoS 2 "
                                    "[MQTT-4.3.3-5]"),
    (W.WAIT_PUBREL, 5): Transition(W.WAIT_PUBREL, True, True, "PUBREC again [MQTT-4.3.3-10]"),
    (W.WAIT_PUBCOMP, 5): Transition(W.WAIT_PUBCOMP, True, True, "PUBREC again: the PUBREL was "
                                    "lost, send it again"),
    (W.WAIT_PUBCOMP, 6): Transition(W.WAIT_PUBCOMP, True, True, "PUBREL again after a "
                                    "reconnect [MQTT-4.4.0-1]"),
    (W.WAIT_PUBREC, 6): Transition(W.WAIT_PUBCOMP, False, False, "PUBREL without the PUBREC "
                                   "(not captured)"),
    (W.WAIT_PUBREC, 7): Transition(W.COMPLETE, False, False, "PUBCOMP without PUBREC and "
                                   "PUBREL (not captured)"),
    (W.WAIT_PUBREL, 7): Transition(W.COMPLETE, False, False, "PUBCOMP without the PUBREL "
                                   "(not captured)"),
}
del W

#: Reason codes from this value up are failures: they end the flow as REFUSED.
FAILURE: Final = 0x80
#: Steps whose failure reason code ends the flow (PUBREL's reason never refuses a message).
_REFUSING: Final = frozenset({4, 5, 7})
#: The table keyed by one int, ``state << 3 | packet type``: a lookup on every acknowledgement
#: of a capture, where a tuple of an enum member would cost a call of ``Enum.__hash__``.
_INDEX: Final[dict[int, Transition]] = {
    int(state) << 3 | ptype: row for (state, ptype), row in TRANSITIONS.items()}


def initial_state(qos: int) -> FlowState:
    """The state right after the PUBLISH of a QoS 1 or 2 flow."""
    return FlowState.WAIT_PUBACK if qos == 1 else FlowState.WAIT_PUBREC


def transition(state: int, packet_type: int, reason_code: int = 0) -> Transition | None:
    """The row for ``packet_type`` arriving in ``state`` (a :class:`FlowState`; None: a
    protocol error), with a failure reason code turning it into REFUSED."""
    row = _INDEX.get(state << 3 | packet_type)
    if row is None or reason_code < FAILURE or packet_type not in _REFUSING:
        return row
    return row._replace(next=FlowState.REFUSED)
