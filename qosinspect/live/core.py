"""The incremental core of ``qosinspect watch``: events in, snapshots and notable events out.

One analysis, not two. Every event goes to the same :class:`~qosinspect.analysis.Correlator`
that ``qosinspect report`` runs (with its options: report columns only), so the final report is
that correlator's :meth:`~qosinspect.analysis.Correlator.finish` and equals ``report`` on the
same packets by construction. What the live view adds is read *off* the correlator's state, never
recomputed by a second set of rules:

* **Counters** (messages, completed, re-sends, DUPs, duplicates delivered, not delivered) are
  :func:`qosinspect.analysis.metrics.summary_rows` of the exchanges finished so far, plus the
  handshakes still open (the correlator's open exchanges, by QoS).
* **Latency** per QoS and step (:data:`~qosinspect.analysis.metrics.STEP_SPANS`): each finished
  exchange's steps go once into a :class:`~.latency.LatencySketches` (since start, last 10 s).
* **Notable events**, each one JSON object: an ``anomaly`` as soon as the correlator records it;
  a ``reconnection`` once it has settled (``settle_ms`` of packet time after the new CONNECT, so
  the session-present flag and what was redelivered are in), or at the end; a ``stall`` once
  per handshake open longer than ``stall_ms``.

Time is a parameter, never read here (aioquic's ``handle_timer(now)``): the events' ``ts_ns``,
and :meth:`LiveCore.tick` with a ``now_ns`` the driver chooses (packet time; a live driver may
advance it by the wall clock while the link is silent).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from ..analysis.connlist import ConnBrokers
from ..analysis.correlate import CorrelationResult, Correlator
from ..analysis.logs import DIRECTION_NAMES
from ..analysis.metrics import STEP_SPANS, summary_rows
from ..analysis.options import AnalysisOptions
from ..analysis.records import NO_TS, STEPS, AnomalyRecord, Reconnect
from ..events import Event
from ..report.output import format_time
from .latency import WINDOW_S, LatencySketches

__all__ = ["LiveCore", "report_options"]

_MS = 1_000_000


def report_options(same_broker: tuple[tuple[str, ...], ...] = ()) -> AnalysisOptions:
    """The analysis options of ``qosinspect report`` (its figures only, every packet and
    delivery counted): the final report must be that command's."""
    return AnalysisOptions(detail=False, packets=True, deliveries=True, same_broker=same_broker)


def _ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / _MS, 3)


class LiveCore:
    """Feed events in capture order (:meth:`feed`); a snapshot comes every ``interval_ms`` of
    packet time (or when :meth:`tick` is called); :meth:`finish` ends it."""

    def __init__(self, *, interval_ms: int = 1000, stall_ms: int = 5000, settle_ms: int = 1000,
                 options: AnalysisOptions | None = None,
                 on_latency: Callable[[int, str, float], None] | None = None) -> None:
        self.corr = Correlator(options if options is not None else report_options())
        self.interval_ns = interval_ms * _MS
        self.stall_ns = stall_ms * _MS
        self.settle_ns = settle_ms * _MS
        self.sketches = {(q, name): LatencySketches()
                         for q, spans in STEP_SPANS.items() for name, _, _ in spans}
        #: Packets the capture tool says the kernel dropped (None: not known).
        self.drops: int | None = None
        self.now_ns: int | None = None
        self._next_tick: int | None = None
        self._rows_seen = 0
        self._anomalies_seen = 0
        self._reconnects_seen = 0
        self._settling: list[Reconnect] = []
        self._stalled: set[int] = set()
        self.n_reconnects = 0
        self.n_anomalies = 0
        self.n_stalls = 0
        self.reconnects_by_cause: Counter[str] = Counter()
        self.anomalies_by_kind: Counter[str] = Counter()
        #: Called with (qos, step, milliseconds) for every step latency folded in (the
        #: Prometheus histograms of :mod:`.metrics`).
        self.on_latency = on_latency

    @property
    def next_tick_ns(self) -> int | None:
        """When the next snapshot is due (packet time; None before the first event)."""
        return self._next_tick

    # -- input --------------------------------------------------------------------------------

    def feed(self, ev: Event) -> list[dict[str, Any]]:
        """Take one event; returns what became notable (and a snapshot when one is due)."""
        corr = self.corr
        corr.feed(ev)
        out: list[dict[str, Any]] = []
        if len(corr.anomalies.rows) > self._anomalies_seen:
            out += self._new_anomalies()
        if len(corr.sess.reconnects) > self._reconnects_seen:
            self._settling += corr.sess.reconnects[self._reconnects_seen:]
            self._reconnects_seen = len(corr.sess.reconnects)
        ts = ev.ts_ns
        if self.now_ns is None or ts > self.now_ns:
            self.now_ns = ts
            if self._next_tick is None:
                self._next_tick = ts + self.interval_ns
            elif ts >= self._next_tick:
                out += self.tick(ts)
        return out

    def tick(self, now_ns: int) -> list[dict[str, Any]]:
        """Time ``now_ns`` has come: settled reconnections, new stalls, then a snapshot."""
        if self.now_ns is None or now_ns > self.now_ns:
            self.now_ns = now_ns
        self._next_tick = now_ns + self.interval_ns
        out = self._settled(now_ns, everything=False)
        out += self._stalls(now_ns)
        out.append(self.snapshot())
        return out

    def finish(self) -> tuple[list[dict[str, Any]], CorrelationResult]:
        """The end of the input: the last notable events and snapshot, and the correlator's
        result (the final report's)."""
        now = self.now_ns if self.now_ns is not None else 0
        out = self._settled(now, everything=True)
        out += self._stalls(now)
        out.append(self.snapshot())
        result = self.corr.finish()
        out += self._new_anomalies()    # found at the end (a connection never closed ...)
        return out, result

    # -- notable events -----------------------------------------------------------------------

    def _new_anomalies(self) -> list[dict[str, Any]]:
        rows = self.corr.anomalies.rows
        new = rows[self._anomalies_seen:]
        self._anomalies_seen = len(rows)
        self.n_anomalies += len(new)
        self.anomalies_by_kind.update(str(a.kind) for a in new)
        return [self._anomaly(a) for a in new]

    @staticmethod
    def _anomaly(a: AnomalyRecord) -> dict[str, Any]:
        return {"type": "anomaly", "ts": format_time(a.ts_ns), "ts_ns": a.ts_ns, "kind": a.kind,
                "severity": a.severity, "detail": a.detail, "conn_id": a.conn_id,
                "direction": a.direction, "frame": a.frame, "packet_id": a.packet_id}

    def _settled(self, now_ns: int, *, everything: bool) -> list[dict[str, Any]]:
        out = []
        keep = []
        for r in self._settling:
            if everything or now_ns - r.t_connect >= self.settle_ns:
                out.append(self._reconnection(r))
                self.reconnects_by_cause[r.cause or "unknown"] += 1
            else:
                keep.append(r)
        self._settling = keep
        self.n_reconnects += len(out)
        return out

    @staticmethod
    def _reconnection(r: Reconnect) -> dict[str, Any]:
        return {"type": "reconnection", "ts": format_time(r.t_connect), "ts_ns": r.t_connect,
                "client_id": r.client_id, "session": r.session,
                "prev_conn_id": r.prev_conn_id, "next_conn_id": r.next_conn_id,
                "cause": r.cause, "gap_ms": _ms(r.gap_ns), "t_drop_ns": r.t_drop,
                "session_present": r.session_present, "clean_start": r.clean_start,
                "unfinished": {"c2b": r.unfinished_c2b, "b2c": r.unfinished_b2c},
                "redelivered": {"publish": r.redelivered_publish,
                                "pubrel": r.redelivered_pubrel, "resumed": r.resumed,
                                "abandoned": r.abandoned}}

    def _stalls(self, now_ns: int) -> list[dict[str, Any]]:
        """Handshakes open longer than ``stall_ms``, each said once (the set of those said is
        pruned to the handshakes still open, so it stays bounded by them)."""
        out = []
        still: set[int] = set()
        for s in self.corr.sess.by_code:
            for ex in s.open.values():
                if ex.ex_id in self._stalled:
                    still.add(ex.ex_id)
                    continue
                if ex.t_publish != NO_TS and now_ns - ex.t_publish > self.stall_ns:
                    still.add(ex.ex_id)
                    out.append({
                        "type": "stall", "ts": format_time(now_ns), "ts_ns": now_ns,
                        "client_id": s.rec.client_id, "session": s.key, "conn_id": ex.conn_id,
                        "direction": DIRECTION_NAMES[ex.direction], "qos": ex.qos,
                        "packet_id": ex.packet_id, "last_step": STEPS[ex.last_step],
                        "open_ms": _ms(now_ns - ex.t_publish),
                        "t_publish": format_time(ex.t_publish), "t_publish_ns": ex.t_publish})
        self._stalled = still
        self.n_stalls += len(out)
        return out

    # -- the snapshot -------------------------------------------------------------------------

    def _fold_latency(self) -> None:
        """Every exchange finished since the last call, into the sketches (once each)."""
        store = self.corr.ex.exchanges
        if store.rows <= self._rows_seen:
            return
        start = 0
        for chunk in store.chunks():
            end = start + len(chunk)
            if end > self._rows_seen:
                new = chunk[max(0, self._rows_seen - start):]
                for qos, spans in STEP_SPANS.items():
                    sel = new[new["qos"] == qos]
                    if not len(sel):
                        continue
                    for name, later, earlier in spans:
                        sketch = self.sketches[(qos, name)]
                        t1, t0 = sel[later], sel[earlier]
                        ok = (t1 != NO_TS) & (t0 != NO_TS)
                        hook = self.on_latency
                        for a, b in zip(t1[ok].tolist(), t0[ok].tolist(), strict=True):
                            sketch.add(a, (a - b) / _MS)
                            if hook is not None:
                                hook(qos, name, (a - b) / _MS)
            start = end
        self._rows_seen = store.rows

    def snapshot(self) -> dict[str, Any]:
        """Where things stand at :attr:`now_ns` (see the module docstring)."""
        corr = self.corr
        self._fold_latency()
        now = self.now_ns if self.now_ns is not None else 0
        so_far = CorrelationResult(
            connections=[], sessions=[], reconnects=[], anomalies=[],
            exchanges=corr.ex.exchanges, q0=corr.ex.q0, packets=None,
            deliveries=corr.matcher.store if corr.matcher is not None else None,
            tcp_retransmissions=corr.tcp_retrans, topics=corr.ex.topics, session_keys=[],
            client_ids=[])
        open_by_qos = {0: 0, 1: 0, 2: 0}
        for s in corr.sess.by_code:
            for ex in s.open.values():
                open_by_qos[ex.qos] += 1
        per_qos = []
        for row in summary_rows(so_far):
            q = row["qos"]
            item = {**_counters(row, open_by_qos[q]), "latency_ms": {}}
            for name, _, _ in STEP_SPANS.get(q, ()):
                sk = self.sketches[(q, name)]
                item["latency_ms"][name] = {f"last_{WINDOW_S}s": sk.last(now).as_dict(),
                                            "since_start": sk.since_start().as_dict()}
            per_qos.append(item)
        conns = corr.sess.conns.values()
        seen = self.now_ns is not None      # no packet yet: no time to give
        return {"type": "snapshot", "ts": format_time(now) if seen else None,
                "ts_ns": now if seen else None, "per_qos": per_qos,
                "connections": {"open": sum(1 for c in conns if not c.closed),
                                "seen": corr.sess.n_connections_seen},
                "reconnections": self.n_reconnects, "anomalies": self.n_anomalies,
                "stalls": self.n_stalls, "drops": self.drops,
                "reconnections_by_cause": dict(sorted(self.reconnects_by_cause.items())),
                "anomalies_by_kind": dict(sorted(self.anomalies_by_kind.items())),
                "tcp_retransmissions": corr.tcp_retrans.rows,
                "brokers": self._per_broker(so_far, per_qos)}

    def _per_broker(self, so_far: CorrelationResult, per_qos: list[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
        """Per broker (a server endpoint, as the report has them), its per-QoS counters: the
        snapshot's own when there is one broker (the metrics' ``broker`` label)."""
        sess = self.corr.sess
        names = list(sess.brokers)
        if len(names) <= 1:
            return [{"broker": name, "per_qos": [{k: v for k, v in row.items()
                                                   if k != "latency_ms"} for row in per_qos]}
                    for name in names]
        so_far.brokers = names
        so_far.conn_brokers = {**ConnBrokers(sess.table),      # ended: packed rows
                               **{c.conn_id: c.broker for c in sess.conns.values()}}
        so_far.session_brokers = [sd.broker for sd in sess.by_code]
        out = []
        for code, name in enumerate(names):
            opened = {0: 0, 1: 0, 2: 0}
            for sd in sess.by_code:
                if sd.broker == code:
                    for ex in sd.open.values():
                        opened[ex.qos] += 1
            out.append({"broker": name, "per_qos": [_counters(row, opened[row["qos"]])
                                                    for row in summary_rows(so_far, code)]})
        return out


def _counters(row: dict[str, Any], opened: int) -> dict[str, Any]:
    """A snapshot's counters of one QoS from the report's summary row of the exchanges
    finished so far and the number of handshakes still open."""
    return {"qos": row["qos"], "messages": row["publishes"] + opened,
            "completed": row["completed"], "open": opened, "incomplete": row["incomplete"],
            "retransmissions": row["retransmissions"], "dup_flagged": row["dup_flagged"],
            "duplicates_delivered": row["duplicates_delivered"],
            "not_delivered": row["not_delivered"]}
