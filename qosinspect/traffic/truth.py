"""The ground truth of a run: what each client sent, what each received, what the faults did.

The generator's clients record every message at the application level (the payload says who sent
it, its sequence number and when: :mod:`.payload`), independently of any capture. From that:

- per publisher and QoS: ``sent`` (publish calls), ``completed`` (PUBACK / PUBCOMP with a success
  code), ``refused`` (a reason code >= 0x80), ``incomplete`` (no final ack when the run ended),
  ``resent`` (extra transmissions after reconnections);
- per subscriber and delivered QoS: ``expected`` (messages published to a topic its filters
  match, at the lower of the publish and subscription QoS [MQTT-3.8.4-8]), ``received`` (all
  copies), ``unique``, ``duplicates`` (copies beyond the first), ``lost`` (expected, never
  received), ``dup_flagged`` (copies with DUP=1), and latency from the send time in the payload;
- reconnections per client, with the gap, session present and what was resent;
- the fault log (:class:`~.faults.FaultRecord`), in time order.

:meth:`GroundTruth.to_json` is the file written next to the capture; :func:`format_truth` the
text printed at the end of a run.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..mqtt.topics import topic_matches
from .faults import FaultRecord
from .payload import parse_payload

__all__ = ["GroundTruth", "PublisherLog", "SubscriberLog", "format_truth", "percentiles_ms"]

NS = 1_000_000_000


def percentiles_ms(values_ns: list[int]) -> dict[str, float] | None:
    """p50/p90/p99/max in milliseconds (nearest rank), None when empty."""
    if not values_ns:
        return None
    data = sorted(values_ns)
    n = len(data)

    def rank(p: float) -> float:
        return round(data[min(n - 1, max(0, int(-(-p * n // 100)) - 1))] / 1e6, 3)

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": round(data[-1] / 1e6, 3)}


@dataclass
class PublisherLog:
    client_id: str
    index: int
    sent: Counter[int] = field(default_factory=Counter)
    completed: Counter[int] = field(default_factory=Counter)
    refused: Counter[int] = field(default_factory=Counter)
    resent: Counter[int] = field(default_factory=Counter)
    #: (seq, topic, qos, ts_ns) of every message, in order.
    messages: list[tuple[int, str, int, int]] = field(default_factory=list)
    latencies: dict[int, list[int]] = field(default_factory=dict)

    def record_sent(self, seq: int, topic: str, qos: int, ts_ns: int) -> None:
        self.sent[qos] += 1
        self.messages.append((seq, topic, qos, ts_ns))

    def record_result(self, qos: int, reason_code: int, sends: int, latency_ns: int) -> None:
        if reason_code >= 0x80:
            self.refused[qos] += 1
        else:
            self.completed[qos] += 1
            self.latencies.setdefault(qos, []).append(latency_ns)
        if sends > 1:
            self.resent[qos] += sends - 1

    def as_json(self) -> dict[str, Any]:
        per_qos = {}
        for q in sorted(self.sent):
            done = self.completed[q] + self.refused[q]
            per_qos[str(q)] = {
                "sent": self.sent[q],
                "completed": self.completed[q] if q else self.sent[q],
                "refused": self.refused[q],
                "incomplete": self.sent[q] - done if q else 0,
                "resent": self.resent[q],
                "latency_ms": percentiles_ms(self.latencies.get(q, [])) if q else None,
            }
        return {"role": "publisher", "index": self.index, "per_qos": per_qos}


@dataclass
class SubscriberLog:
    client_id: str
    filters: tuple[tuple[str, int], ...]
    copies: Counter[tuple[int, int]] = field(default_factory=Counter)
    received: Counter[int] = field(default_factory=Counter)
    dup_flagged: Counter[int] = field(default_factory=Counter)
    foreign: int = 0
    latencies: dict[int, list[int]] = field(default_factory=dict)
    #: (pub, seq) -> delivered qos, for the copies seen.
    qos_of: dict[tuple[int, int], int] = field(default_factory=dict)

    def record(self, payload: bytes, qos: int, dup: bool, ts_ns: int) -> None:
        info = parse_payload(payload)
        self.received[qos] += 1
        if dup:
            self.dup_flagged[qos] += 1
        if info is None:
            self.foreign += 1
            return
        key = (info.pub, info.seq)
        self.copies[key] += 1
        self.qos_of[key] = qos
        if self.copies[key] == 1:
            self.latencies.setdefault(qos, []).append(ts_ns - info.ts_ns)

    def delivered_qos(self, topic: str, qos: int) -> int | None:
        """The QoS this subscriber gets ``topic`` at (None: no filter matches)."""
        granted = [q for f, q in self.filters if topic_matches(f, topic)]
        return min(qos, max(granted)) if granted else None

    def tally(self, publishers: list[PublisherLog]) -> dict[str, Any]:
        expected: dict[tuple[int, int], int] = {}
        for pub in publishers:
            for seq, topic, qos, _ts in pub.messages:
                q = self.delivered_qos(topic, qos)
                if q is not None:
                    expected[(pub.index, seq)] = q
        per_qos: dict[str, Any] = {}
        levels = sorted(set(expected.values()) | set(self.received))
        for q in levels:
            exp = {k for k, v in expected.items() if v == q}
            got = {k for k, v in self.qos_of.items() if v == q}
            copies = sum(self.copies[k] for k in got)
            per_qos[str(q)] = {
                "expected": len(exp),
                "received": self.received[q],
                "unique": len(got),
                "duplicates": copies - len(got),
                "lost": len(exp - got),
                "unexpected": len(got - exp),
                "dup_flagged": self.dup_flagged[q],
                "latency_ms": percentiles_ms(self.latencies.get(q, [])),
            }
        return {"role": "subscriber", "filters": [list(f) for f in self.filters],
                "per_qos": per_qos, "foreign": self.foreign}


@dataclass
class GroundTruth:
    """Everything a run records (see the module docstring)."""

    scenario: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    publishers: list[PublisherLog] = field(default_factory=list)
    subscribers: list[SubscriberLog] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        clients: dict[str, Any] = {}
        for pub in self.publishers:
            clients[pub.client_id] = {**pub.as_json(), **self.sessions.get(pub.client_id, {})}
        for sub in self.subscribers:
            clients[sub.client_id] = {**sub.tally(self.publishers),
                                      **self.sessions.get(sub.client_id, {})}
        per_qos: dict[int, dict[str, int]] = {}
        for c in clients.values():
            for q, row in c["per_qos"].items():
                agg = per_qos.setdefault(int(q), Counter())
                for key in ("sent", "completed", "incomplete", "refused", "resent", "expected",
                            "received", "unique", "duplicates", "lost", "dup_flagged"):
                    if key in row:
                        agg[key] += row[key]
        faults = [r.as_json() for r in sorted(self.faults, key=lambda r: r.ts_ns)]
        applied = Counter(f"faults[{r.fault}] {r.kind}: {r.action}" for r in self.faults)
        return {
            "scenario": self.scenario,
            "run": self.run,
            "per_qos": [{"qos": q, **dict(per_qos[q])} for q in sorted(per_qos)],
            "clients": clients,
            "faults": {"timeline": self.timeline, "applied": dict(sorted(applied.items())),
                       "log": faults},
        }

    def write(self, path: str | Path) -> dict[str, Any]:
        data = self.to_json()
        Path(path).write_text(json.dumps(data, indent=1, sort_keys=False) + "\n",
                              encoding="utf-8")
        return data


def format_truth(data: dict[str, Any]) -> str:
    """The end-of-run summary: per QoS, per client, faults applied."""
    lines = []
    run = data.get("run", {})
    head = f"scenario {data['scenario'].get('name')}: {run.get('published_for_s', 0):.1f} s"
    if run.get("interrupted"):
        head += " (interrupted)"
    lines.append(head)
    lines.append(f"{'QoS':>3}  {'sent':>7} {'completed':>9} {'incomplete':>10} "
                 f"{'expected':>8} {'received':>8} {'dups':>6} {'lost':>6}")
    for row in data["per_qos"]:
        lines.append(f"{row['qos']:>3}  {row.get('sent', 0):>7} {row.get('completed', 0):>9} "
                     f"{row.get('incomplete', 0):>10} {row.get('expected', 0):>8} "
                     f"{row.get('received', 0):>8} {row.get('duplicates', 0):>6} "
                     f"{row.get('lost', 0):>6}")
    lines.append("clients:")
    for cid, c in data["clients"].items():
        parts = []
        for q, row in c["per_qos"].items():
            if c["role"] == "publisher":
                parts.append(f"q{q} sent {row['sent']} done {row['completed']}")
            else:
                lat = row.get("latency_ms") or {}
                parts.append(f"q{q} got {row['unique']}/{row['expected']} dup {row['duplicates']}"
                             f" lost {row['lost']}" + (f" p50 {lat['p50']:.2f} ms"
                                                       if lat else ""))
        rec = c.get("reconnects") or []
        if rec:
            parts.append(f"reconnected {len(rec)}x")
        lines.append(f"  {cid:<16} {c['role']:<10} " + "; ".join(parts))
    applied = data["faults"]["applied"]
    if applied:
        lines.append("faults applied:")
        lines.extend(f"  {k}: {v}" for k, v in applied.items())
    return "\n".join(lines)
