"""Packet-level fault rules, pure: which packet the proxy drops, doubles, holds, delays or cuts.

The fault proxy (:mod:`.proxy`) frames each direction of each connection into MQTT packets and
asks :class:`PacketRules` what to do with every one; the answer is a :class:`Verdict`. Time-driven
faults (cut at a time, black-hole, broker restart) are started by the run's timeline instead and
only recorded here. Every fault that touched a packet leaves a :class:`FaultRecord`: that log is
part of the ground truth the analysis is checked against, so it says exactly which packet
(type, packet id, direction, client) was affected and when.

Rules, and why:

- A rule is active from ``at`` for ``duration`` seconds (to the end of the run when absent),
  counted from the start of publishing; before that (clients connecting) nothing is touched.
- ``count``, ``every`` and ``probability`` select among the matching packets of all the
  fault's clients together, in the order the proxy sees them; ``probability`` draws from a
  generator seeded by the scenario seed and the fault's index, so a run is reproducible.
- Directions are the client's point of view: ``c2b`` is what the client sends.
- A delay keeps order within a direction (TCP never reorders bytes): the proxy releases a
  packet no earlier than the one before it. Each delayed packet is logged with the delay drawn
  for it (a packet queued behind a delayed one waits too, but is not logged: no rule chose it).
- Held acknowledgements are released in order when the hold ends; if the connection closes
  first they are lost with it, and the record says so.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import NamedTuple

from ..mqtt.enums import Direction
from ..mqtt.packets import Packet, packet_type_of
from .scenario import ACK_TYPES, FaultSpec, Scenario

__all__ = ["FaultRecord", "PacketRules", "Verdict", "packet_id_of"]

NS = 1_000_000_000


class FaultRecord(NamedTuple):
    """One thing a fault did. ``t`` is seconds from the start of publishing."""

    ts_ns: int
    t: float
    fault: int
    kind: str
    action: str
    client_id: str = ""
    direction: str = ""
    packet_type: str = ""
    packet_id: int | None = None
    detail: str = ""

    def as_json(self) -> dict[str, object]:
        return {k: v for k, v in self._asdict().items() if v not in ("", None)}


@dataclass(slots=True)
class Verdict:
    """What to do with one packet: drop it, send ``copies`` of it, hold it, delay it, and
    whether to cut the connection once it went through."""

    drop: bool = False
    copies: int = 1
    hold_until_ns: int | None = None
    hold_fault: int = -1
    delay_ns: int = 0
    cut: str | None = None
    cut_fault: int = -1


def packet_id_of(packet: Packet) -> int | None:
    pid = getattr(packet, "packet_id", None)
    return pid if isinstance(pid, int) else None


@dataclass
class _Rule:
    spec: FaultSpec
    rng: random.Random
    matched: int = 0
    applied: int = 0
    fired: bool = False
    clients: frozenset[str] = field(default_factory=frozenset)

    def active(self, rel_ns: int) -> bool:
        start = int(self.spec.at * NS)
        if rel_ns < start:
            return False
        return self.spec.duration is None or rel_ns < start + int(self.spec.duration * NS)

    def end_ns(self, t0_ns: int) -> int | None:
        if self.spec.duration is None:
            return None
        return t0_ns + int((self.spec.at + self.spec.duration) * NS)

    def matches(self, direction: Direction, ptype: str) -> bool:
        s = self.spec
        if s.direction != "both" and s.direction != direction.value:
            return False
        types = s.packet_types or (ACK_TYPES if s.kind == "hold_acks" else ())
        return not types or ptype in types

    def select(self) -> bool:
        """count / every / probability, in that order, for a matching packet."""
        s = self.spec
        self.matched += 1
        if s.count is not None and self.applied >= s.count:
            return False
        if (self.matched - 1) % s.every:
            return False
        if s.probability < 1.0 and self.rng.random() >= s.probability:
            return False
        self.applied += 1
        return True


class PacketRules:
    """The packet-level faults of a scenario, shared by all connections of one proxy.

    ``t0_ns`` (the start of publishing) is set by the run; until then no rule applies.
    """

    def __init__(self, scenario: Scenario) -> None:
        self.t0_ns: int | None = None
        self.records: list[FaultRecord] = []
        #: Every fault of the scenario by index (the time-driven ones too).
        self.specs = {spec.index: spec for spec in scenario.faults}
        self._rules: list[_Rule] = []
        for spec in scenario.faults:
            if spec.kind in ("drop", "duplicate", "hold_acks", "delay") or (
                    spec.kind == "cut" and spec.after_packets is not None):
                self._rules.append(_Rule(spec, random.Random(scenario.seed * 1000 + spec.index),
                                         clients=frozenset(spec.clients)))

    def record(self, ts_ns: int, spec: FaultSpec, action: str, *, client_id: str = "",
               direction: str = "", packet: Packet | None = None, detail: str = "") -> None:
        rel = (ts_ns - self.t0_ns) / NS if self.t0_ns is not None else 0.0
        ptype = packet_type_of(packet).name if packet is not None else ""
        pid = packet_id_of(packet) if packet is not None else None
        self.records.append(FaultRecord(ts_ns, round(rel, 6), spec.index, spec.kind, action,
                                        client_id, direction, ptype, pid, detail))

    def applies_to(self, client_id: str) -> bool:
        return any(client_id in r.clients for r in self._rules)

    def verdict(self, client_id: str, direction: Direction, packet: Packet, now_ns: int
                ) -> Verdict:
        """Decide the fate of one packet (see the module docstring)."""
        out = Verdict()
        if self.t0_ns is None:
            return out
        rel = now_ns - self.t0_ns
        ptype = packet_type_of(packet).name
        for rule in self._rules:
            if client_id not in rule.clients or rule.fired or not rule.active(rel):
                continue
            if not rule.matches(direction, ptype):
                continue
            spec = rule.spec
            kind = spec.kind
            if kind == "delay":
                extra = spec.delay + (rule.rng.uniform(0, spec.jitter) if spec.jitter else 0.0)
                out.delay_ns += int(extra * NS)
                rule.applied += 1
                self.record(now_ns, spec, "delay", client_id=client_id,
                            direction=direction.value, packet=packet,
                            detail=f"{extra * 1000:.3f} ms")
                continue
            if kind == "cut":
                rule.matched += 1
                if rule.matched >= (spec.after_packets or 0):
                    rule.fired = True
                    out.cut = spec.how
                    out.cut_fault = spec.index
                    self.record(now_ns, spec, f"cut_{spec.how}", client_id=client_id,
                                direction=direction.value, packet=packet,
                                detail=f"after {rule.matched} packets")
                continue
            if out.drop or not rule.select():
                continue
            if kind == "drop":
                out.drop = True
                self.record(now_ns, spec, "drop", client_id=client_id,
                            direction=direction.value, packet=packet)
            elif kind == "duplicate":
                out.copies += 1
                self.record(now_ns, spec, "duplicate", client_id=client_id,
                            direction=direction.value, packet=packet)
            elif kind == "hold_acks":
                end = rule.end_ns(self.t0_ns)
                if end is not None and (out.hold_until_ns is None or end > out.hold_until_ns):
                    out.hold_until_ns = end
                    out.hold_fault = spec.index
                self.record(now_ns, spec, "hold", client_id=client_id,
                            direction=direction.value, packet=packet)
        return out

    def record_release(self, ts_ns: int, fault: int, client_id: str, direction: Direction,
                       packet: Packet, action: str) -> None:
        """A held packet was released (``release``) or lost with its connection (``lost``)."""
        spec = self.specs[fault]
        self.record(ts_ns, spec, action, client_id=client_id, direction=direction.value,
                    packet=packet)

    def summary(self) -> dict[str, int]:
        """Packets affected per fault (``faults[i] kind`` -> count)."""
        return {r.spec.label: r.applied for r in self._rules}

