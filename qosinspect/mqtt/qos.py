"""The QoS 1 and QoS 2 endpoints, sans-I/O: packets and a ``now`` in, packets out.

Which acknowledgement answers which PUBLISH and which state it leads to is read from the one
transition table, :mod:`qosinspect.mqtt.transitions`, which the capture analysis follows too; this
module adds what only an endpoint does (allocating packet ids, answering, re-sending on a new
connection, flow control), so the broker, the client and a replay from capture timestamps follow
exactly the same rules. Nothing here reads a clock or
touches a socket; ``now`` is integer nanoseconds supplied by the caller and is only recorded
(first and last send time, never overwritten, as the analysis needs them).

Packet identifiers (one allocator per direction of a session; the two directions are
independent):

- a QoS > 0 PUBLISH gets a non-zero id [MQTT-2.2.1-3] that is not in use by another
  unacknowledged PUBLISH in that direction [MQTT-4.3.2-1] [MQTT-4.3.3-1]; ids in use are skipped;
  an id becomes free again when its flow ends; a QoS 0 PUBLISH has none [MQTT-2.2.1-2].

Sender side (:class:`Sender`): the transition table's rows that an endpoint may take (a pair the
table lacks, or marks ``endpoint`` no, is a protocol error), seen from the sender, which answers a
PUBREC with its PUBREL at once (so it goes from WAIT_PUBREC straight to WAIT_PUBCOMP)::

    state          event                   -> state          send      statement
    -------------  ----------------------  ----------------  --------  --------------------------
    -              publish qos 1           WAIT_PUBACK       PUBLISH   [MQTT-4.3.2-1] [MQTT-4.3.2-2]
    WAIT_PUBACK    PUBACK (any reason)     done              -         [MQTT-4.3.2-3] [MQTT-4.4.0-2]
    -              publish qos 2           WAIT_PUBREC       PUBLISH   [MQTT-4.3.3-1] [MQTT-4.3.3-2]
    WAIT_PUBREC    PUBREC reason < 0x80    WAIT_PUBCOMP      PUBREL    [MQTT-4.3.3-3] [MQTT-4.3.3-4]
    WAIT_PUBREC    PUBREC reason >= 0x80   done (refused)    -         [MQTT-4.4.0-2]
    WAIT_PUBCOMP   PUBREC (again)          WAIT_PUBCOMP      PUBREL    (peer lost our PUBREL)
    WAIT_PUBCOMP   PUBCOMP                 done              -         [MQTT-4.3.3-5]
    -              PUBREC for unknown id   -                 PUBREL 0x92 (MQTT 5 3.6.2.1)
    -              PUBACK/PUBCOMP unknown  - (ignored, counted as orphan)
    any            reconnect, session kept same              PUBLISH DUP=1 (WAIT_PUBACK,
                                                             WAIT_PUBREC) or PUBREL
                                                             (WAIT_PUBCOMP), original ids, in
                                                             original order [MQTT-4.4.0-1]
                                                             [MQTT-3.3.1-1] [MQTT-4.6.0-1]
    WAIT_PUBCOMP   -                       never PUBLISH again                [MQTT-4.3.3-6]

No resend ever happens on a live connection [MQTT-4.4.0-1]: there is no timer here on purpose.
A PUBACK for a QoS 2 flow (or PUBREC/PUBCOMP for QoS 1) is a protocol error (0x82).

Flow control: at most ``receive_maximum`` QoS > 0 PUBLISH flows are unacknowledged at once
[MQTT-4.9.0-1] [MQTT-4.9.0-2]; QoS 0 is not counted [MQTT-4.9.0-3].

Receiver side (:class:`Receiver`), QoS 2 "method B" (store the id, deliver at once)::

    event                          -> deliver  send      statement
    -----------------------------  ----------  --------  ------------------------------------
    PUBLISH qos 0                  yes         -
    PUBLISH qos 1 (DUP or not)     yes         PUBACK    [MQTT-4.3.2-4] [MQTT-4.3.2-5]
    PUBLISH qos 2, id not stored   yes, store  PUBREC    [MQTT-4.3.3-8] [MQTT-4.3.3-12]
    PUBLISH qos 2, id stored       no          PUBREC    [MQTT-4.3.3-10]
    PUBREL, id stored              -, release  PUBCOMP   [MQTT-4.3.3-11]
    PUBREL, id unknown             -           PUBCOMP (0x92 in MQTT 5)  [MQTT-4.3.3-11]

The table of stored QoS 2 ids is bounded by our receive maximum: one more is a "Receive Maximum
exceeded" (0x93) error by the peer [MQTT-3.3.4-9]. PUBACK and PUBREC go out in the order the
PUBLISH packets came [MQTT-4.6.0-2] [MQTT-4.6.0-3], which a driver gets by sending them as they
are returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .packets import Packet, PubAck, PubComp, Publish, PubRec, PubRel
from .transitions import TRANSITIONS, FlowState, Transition, initial_state, transition

__all__ = [
    "MAX_PACKET_ID",
    "Completed",
    "OutFlight",
    "PacketIdAllocator",
    "Receiver",
    "SendState",
    "Sender",
]

MAX_PACKET_ID = 0xFFFF


#: Where an outbound QoS 1/2 flow stands: the transition table's states (a sender is only ever in
#: WAIT_PUBACK, WAIT_PUBREC or WAIT_PUBCOMP; the values are stored by the broker's persistence).
SendState = FlowState

# The table's answers for what a sender meets on every message, computed once from it (a call
# of transition() per acknowledgement was a tenth of the broker's cost of a QoS 1 message):
#: transition(state, packet type) with reason code 0, keyed ``state << 3 | packet type``.
_SUCCESS_ROWS: dict[int, Transition] = {
    int(state) << 3 | ptype: row for (state, ptype) in TRANSITIONS
    if (row := transition(state, ptype)) is not None}
#: initial_state(qos) for QoS 1 and 2.
_INITIAL: dict[int, FlowState] = {1: initial_state(1), 2: initial_state(2)}


@dataclass(slots=True)
class OutFlight:
    """One unacknowledged outbound PUBLISH: first/last send time and send count, never lost."""

    publish: Publish
    state: SendState
    t_first_ns: int
    t_last_ns: int
    sends: int = 1
    t_pubrec_ns: int | None = None
    #: Whatever the driver attached to the message (e.g. a future to resolve on completion).
    tag: object = None


class Completed(NamedTuple):
    """An outbound flow that ended: acknowledged (reason < 0x80) or refused by the peer."""

    publish: Publish
    reason_code: int
    t_first_ns: int
    t_done_ns: int
    sends: int
    tag: object = None

    @property
    def ok(self) -> bool:
        return self.reason_code < 0x80


class PacketIdAllocator:
    """Non-zero 16-bit ids, handed out in a cycle, skipping those still in use."""

    def __init__(self, first: int = 1) -> None:
        self._next = first if 0 < first <= MAX_PACKET_ID else 1
        self.in_use: set[int] = set()

    def allocate(self) -> int:
        """A free id; LocalProtocolError when all 65535 are in use."""
        if len(self.in_use) >= MAX_PACKET_ID:
            raise LocalProtocolError("all 65535 packet identifiers are in use")
        pid = self._next
        while pid in self.in_use:
            pid = pid + 1 if pid < MAX_PACKET_ID else 1
        self.in_use.add(pid)
        self._next = pid + 1 if pid < MAX_PACKET_ID else 1
        return pid

    def release(self, pid: int) -> None:
        self.in_use.discard(pid)

    @property
    def next_id(self) -> int:
        """The id the next allocation tries first (ids continue across reconnections)."""
        return self._next


class Sender:
    """The sending side of QoS 1/2 for one direction of one session (see the module table)."""

    def __init__(self, *, version: int = 4, receive_maximum: int = 65535) -> None:
        self.version = version
        self.receive_maximum = max(1, min(receive_maximum, MAX_PACKET_ID))
        self.ids = PacketIdAllocator()
        #: Unacknowledged flows by packet id, in the order they were first sent.
        self.in_flight: dict[int, OutFlight] = {}
        self.orphan_acks = 0

    @property
    def quota(self) -> int:
        """How many more QoS > 0 PUBLISH flows may start now [MQTT-4.9.0-2]."""
        return self.receive_maximum - len(self.in_flight)

    def send(self, publish: Publish, now: int, tag: object = None) -> Publish:
        """Start a flow for a new application message; returns the PUBLISH to send.

        QoS 0 passes through unchanged. For QoS > 0 a fresh id is assigned, DUP is cleared
        [MQTT-4.3.2-2] [MQTT-4.3.3-2]; raises LocalProtocolError when the quota is used up.
        """
        if publish.qos == 0:
            return publish._replace(dup=False, packet_id=None)
        if self.quota <= 0:
            raise LocalProtocolError("send quota exhausted: wait for an acknowledgement "
                                     "[MQTT-4.9.0-2]")
        pid = self.ids.allocate()
        # the constructor: _replace costs three times as much, on every message sent
        out = Publish(publish.topic, publish.payload, publish.qos, False, publish.retain, pid,
                      publish.properties)
        self.in_flight[pid] = OutFlight(out, _INITIAL[publish.qos], now, now, 1, None, tag)
        return out

    def _finish(self, pid: int, reason: int, now: int) -> Completed:
        flight = self.in_flight.pop(pid)
        self.ids.release(pid)
        return Completed(flight.publish, int(reason), flight.t_first_ns, now, flight.sends,
                         flight.tag)

    def _expect(self, pid: int, packet_type: int, reason: int, got: str
                ) -> tuple[OutFlight, FlowState] | None:
        """The flow an acknowledgement belongs to and the state the table sends it to; None for
        an unknown id (an orphan); RemoteProtocolError for a pair the table does not allow an
        endpoint (e.g. PUBACK for QoS 2) [MQTT-4.3.2-1] [MQTT-4.3.3-1]."""
        flight = self.in_flight.get(pid)
        if flight is None:
            self.orphan_acks += 1
            return None
        row = transition(flight.state, packet_type, reason) if reason else \
            _SUCCESS_ROWS.get(flight.state << 3 | packet_type)
        if row is None or not row.endpoint:
            raise RemoteProtocolError(ProtocolError(
                f"{got} for packet id {pid}, whose flow is in state {flight.state.name}",
                packet_type=None))
        return flight, row.next

    def on_puback(self, packet: PubAck, now: int) -> Completed | None:
        """PUBACK ends a QoS 1 flow, whatever its reason code [MQTT-4.3.2-3] [MQTT-4.4.0-2]."""
        if self._expect(packet.packet_id, 4, packet.reason_code, "PUBACK") is None:
            return None
        return self._finish(packet.packet_id, packet.reason_code, now)

    def on_pubrec(self, packet: PubRec, now: int) -> tuple[PubRel | None, Completed | None]:
        """PUBREC: answer PUBREL [MQTT-4.3.3-4], or end the flow if refused [MQTT-4.4.0-2]."""
        pid = packet.packet_id
        got = self._expect(pid, 5, packet.reason_code, "PUBREC")
        if got is None:
            return PubRel(pid, 0x92 if self.version >= 5 else 0), None
        flight, state = got
        if state is FlowState.REFUSED:
            return None, self._finish(pid, packet.reason_code, now)
        if flight.state is FlowState.WAIT_PUBREC:
            # The PUBREL we send at once takes the flow on from WAIT_PUBREL (the table's next row).
            after = _SUCCESS_ROWS.get(state << 3 | 6)
            assert after is not None
            flight.state = after.next
            flight.t_pubrec_ns = now
        else:
            flight.sends += 1                  # PUBREC again: our PUBREL was lost, send it again
        flight.t_last_ns = now
        return PubRel(pid), None

    def on_pubcomp(self, packet: PubComp, now: int) -> Completed | None:
        """PUBCOMP ends a QoS 2 flow [MQTT-4.3.3-5]."""
        if self._expect(packet.packet_id, 7, packet.reason_code, "PUBCOMP") is None:
            return None
        return self._finish(packet.packet_id, packet.reason_code, now)

    def resend(self, now: int) -> list[Packet]:
        """What to send again on a new connection of the same session [MQTT-4.4.0-1].

        PUBLISH with DUP=1 [MQTT-3.3.1-1] for flows still waiting for PUBACK/PUBREC, PUBREL for
        those past PUBREC [MQTT-4.3.3-6], all with their original ids, in original order
        [MQTT-4.6.0-1]. Call it only then: never on a live connection.
        """
        out: list[Packet] = []
        for pid, flight in self.in_flight.items():
            flight.sends += 1
            flight.t_last_ns = now
            if flight.state is SendState.WAIT_PUBCOMP:
                out.append(PubRel(pid))
            else:
                flight.publish = flight.publish._replace(dup=True)
                out.append(flight.publish)
        return out

    def clear(self) -> None:
        """Forget every flow (a clean start)."""
        self.in_flight.clear()
        self.ids.in_use.clear()


class Receiver:
    """The receiving side of QoS 1/2 for one direction of one session (method B for QoS 2)."""

    def __init__(self, *, version: int = 4, receive_maximum: int = 65535) -> None:
        self.version = version
        self.receive_maximum = max(1, min(receive_maximum, MAX_PACKET_ID))
        #: QoS 2 ids whose PUBLISH was delivered and whose PUBREL has not come: id -> ts_ns.
        self.awaiting_pubrel: dict[int, int] = {}

    def on_publish(self, packet: Publish, now: int) -> tuple[bool, Packet | None]:
        """``(deliver, ack)`` for an incoming PUBLISH (see the module table)."""
        if packet.qos == 0:
            return True, None
        pid = packet.packet_id
        assert pid is not None
        if packet.qos == 1:
            return True, PubAck(pid)
        if pid in self.awaiting_pubrel:
            return False, PubRec(pid)          # [MQTT-4.3.3-10]: acknowledge, don't deliver
        if len(self.awaiting_pubrel) >= self.receive_maximum:
            raise RemoteProtocolError(ProtocolError(
                f"more than Receive Maximum ({self.receive_maximum}) QoS 2 flows "
                "unacknowledged [MQTT-3.3.4-9]", reason_code=0x93))
        self.awaiting_pubrel[pid] = now
        return True, PubRec(pid)

    def on_pubrel(self, packet: PubRel, now: int) -> PubComp:
        """Release the id and answer PUBCOMP [MQTT-4.3.3-11]; 0x92 if it was unknown (MQTT 5)."""
        pid = packet.packet_id
        if self.awaiting_pubrel.pop(pid, None) is None and self.version >= 5:
            return PubComp(pid, 0x92)
        return PubComp(pid)

    def clear(self) -> None:
        self.awaiting_pubrel.clear()
