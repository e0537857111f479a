"""The incremental core of ``qosinspect watch``: events in, snapshots and notable events out.

One analysis, not two. Every event goes to the same :class:`~qosinspect.analysis.Correlator`
that ``qosinspect report`` runs (with its options: report mode, which folds what is finished and
keeps nothing that grows with the traffic), so the final report is that correlator's
:meth:`~qosinspect.analysis.Correlator.finish` and equals ``report`` on the same packets by
construction. What the live view adds comes from the correlator's snapshot API and listeners
(:mod:`qosinspect.analysis.snapshot`), never from its stores, nor from a second set of rules:

* **Counters** (messages, completed, re-sends, DUPs, duplicates delivered, not delivered) are
  :meth:`~qosinspect.analysis.Correlator.snapshot`: the exchanges finished so far, plus the
  handshakes still open, by QoS.
* **Latency** per QoS and step (:data:`~qosinspect.analysis.metrics.STEP_SPANS`): each exchange's
  times are taken when it finishes (the correlator's ``on_exchange_end``), and its steps go into
  a :class:`~.latency.LatencySketches` (since start, last 10 s) at the next snapshot, all the
  exchanges since the last one at once (as arrays).
* **Notable events**, each one JSON object: an ``anomaly`` as soon as the correlator records it;
  a ``reconnection`` once it has settled (``settle_ms`` of packet time after the new CONNECT, so
  the session-present flag and what was redelivered are in), or at the end; a ``stall`` once
  per handshake open longer than ``stall_ms``.

Time is a parameter, never read here (aioquic's ``handle_timer(now)``): the events' ``ts_ns``,
and :meth:`LiveCore.tick` with a ``now_ns`` the driver chooses (packet time; a live driver may
advance it by the wall clock while the link is silent).
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from ..analysis.correlate import CorrelationResult, Correlator
from ..analysis.metrics import STEP_SPANS
from ..analysis.options import AnalysisOptions
from ..analysis.records import NO_TS, OUTCOMES, AnomalyRecord, Reconnect
from ..analysis.snapshot import Snapshot
from ..analysis.state import OpenExchange, SessionState
from ..events import Event
from ..report.output import format_time
from .latency import WINDOW_S, LatencySketches

__all__ = ["LiveCore", "report_options"]

_MS = 1_000_000
#: The times an exchange's steps are read from, in the order :meth:`LiveCore._ended` keeps them.
_TIMES = ("t_publish", "t_puback", "t_pubrec", "t_pubrel", "t_pubcomp")
_NT = 1 + len(_TIMES)
#: Finished exchanges whose times wait at most (then folded at once: bounded between snapshots).
_FOLD_AT = 65_536
#: Outcome codes of a completed exchange.
_COMPLETED = (OUTCOMES.index("complete"), OUTCOMES.index("complete_after_reconnect"))
#: Before the first event no snapshot is due: the first one taken sets the clock.
_FIRST = -(2**63)


def report_options(same_broker: tuple[tuple[str, ...], ...] = ()) -> AnalysisOptions:
    """The analysis options of ``qosinspect report`` (its figures only, every packet and
    delivery counted): the final report must be that command's, bounds included (a finished
    exchange stays joinable for :data:`~qosinspect.analysis.options.JOINABLE_NS` in both)."""
    return AnalysisOptions(detail=False, packets=True, deliveries=True, same_broker=same_broker)


def _ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / _MS, 3)


class LiveCore:
    """Feed events in capture order (:meth:`feed`); a snapshot comes every ``interval_ms`` of
    packet time (or when :meth:`tick` is called); :meth:`finish` ends it."""

    def __init__(self, *, interval_ms: int = 1000, stall_ms: int = 5000, settle_ms: int = 1000,
                 options: AnalysisOptions | None = None,
                 on_latency: Callable[[int, str, Any], None] | None = None,
                 max_clients: int = 0) -> None:
        self.corr = Correlator(options if options is not None else report_options(),
                               on_anomaly=self._found_anomaly,
                               on_reconnect=self._found_reconnect,
                               on_exchange_end=self._ended if max_clients else None)
        self.interval_ns = interval_ms * _MS
        self.stall_ns = stall_ms * _MS
        self.settle_ns = settle_ms * _MS
        self.sketches = {(q, name): LatencySketches()
                         for q, spans in STEP_SPANS.items() for name, _, _ in spans}
        #: Packets the capture tool says the kernel dropped (None: not known).
        self.drops: int | None = None
        self.now_ns: int | None = None
        self._next_tick: int | None = None
        #: Anomalies found since the last :meth:`feed` returned; reconnections found, waiting
        #: until they settled.
        self._anomalies: list[AnomalyRecord] = []
        self._settling: list[Reconnect] = []
        self._stalled: set[int] = set()
        self.n_reconnects = 0
        self.n_anomalies = 0
        self.n_stalls = 0
        self.reconnects_by_cause: Counter[str] = Counter()
        self.anomalies_by_kind: Counter[str] = Counter()
        #: Called with (qos, step, milliseconds: a float64 array) for the step latencies folded
        #: in at each snapshot (the Prometheus histograms of :mod:`.metrics`).
        self.on_latency = on_latency
        #: qos, t_publish, t_puback, t_pubrec, t_pubrel, t_pubcomp of each exchange finished
        #: since the last snapshot, one after the other (a flat array: no object per exchange
        #: for the garbage collector to walk), appended by the compiled exchange tracker.
        self._ended_times = array("q")
        self.corr.ex.ended_times = self._ended_times
        #: Clients with a row of their own in the snapshot's ``clients`` (0: no such rows; the
        #: rest summed in one), and the QoS 1 and 2 exchanges completed by session code.
        self.max_clients = max_clients
        self._completed: dict[int, list[int]] = {}
        #: Client labels with a row of their own (the first ``max_clients`` seen, in that
        #: order), those summed in the last row, and what released sessions (report mode drops
        #: a session an hour after its last connection) had counted, by row: sent, received,
        #: re-sends, QoS 1 and 2 completed (and open: 0). So the counters never go down.
        self._labels: dict[str, None] = {}
        self._others: set[str] = set()
        self._gone: dict[str | None, list[int]] = {}
        if max_clients:
            self.corr.sess.on_session_released = self._released

    @property
    def next_tick_ns(self) -> int | None:
        """When the next snapshot is due (packet time; None before the first event)."""
        return self._next_tick

    # -- input --------------------------------------------------------------------------------

    def feed(self, ev: Event) -> list[dict[str, Any]]:
        """Take one event; returns what became notable (and a snapshot when one is due)."""
        self.corr.feed(ev)
        self._fold_if_full()
        return self._moved(ev.ts_ns)

    def consume(self, events: Iterator[Event], most: int) -> tuple[list[dict[str, Any]], int]:
        """Take events from ``events``: at most ``most``, and none past the one a snapshot is
        due at; returns what became notable (as :meth:`feed` would have, event by event) and
        how many were taken (0: ``events`` ended). The correlator walks them in its own
        (compiled) loop (:meth:`~qosinspect.analysis.Correlator.consume_until`): a live view
        adds no work per packet to what ``report`` does."""
        until = self._next_tick if self._next_tick is not None else _FIRST
        n, newest = self.corr.consume_until(events, until, most if until != _FIRST else 1)
        self._fold_if_full()
        return (self._moved(newest) if n else []), n

    def _moved(self, ts: int) -> list[dict[str, Any]]:
        """Events up to ``ts`` (the newest) were taken: the anomalies they raised, and the
        snapshot if its time came."""
        out: list[dict[str, Any]] = self._new_anomalies() if self._anomalies else []
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

    def _found_anomaly(self, a: AnomalyRecord) -> None:
        self._anomalies.append(a)

    def _found_reconnect(self, r: Reconnect) -> None:
        self._settling.append(r)

    def _new_anomalies(self) -> list[dict[str, Any]]:
        new = self._anomalies
        self._anomalies = []
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
        for h in self.corr.open_handshakes(now_ns - self.stall_ns):
            still.add(h.ex_id)
            if h.ex_id in self._stalled:
                continue
            out.append({
                "type": "stall", "ts": format_time(now_ns), "ts_ns": now_ns,
                "client_id": h.client_id, "session": h.session, "conn_id": h.conn_id,
                "direction": h.direction, "qos": h.qos, "packet_id": h.packet_id,
                "last_step": h.last_step, "open_ms": _ms(now_ns - h.t_publish),
                "t_publish": format_time(h.t_publish), "t_publish_ns": h.t_publish})
        self._stalled = still
        self.n_stalls += len(out)
        return out

    # -- the snapshot -------------------------------------------------------------------------

    def _ended(self, s: SessionState, ex: OpenExchange) -> None:
        """A QoS 1/2 exchange finished (called only with the client label): counted for its
        session if it completed. Its times are appended by the exchange tracker itself
        (:attr:`~qosinspect.analysis.exchanges.ExchangeTracker.ended_times`)."""
        if ex.outcome in _COMPLETED:
            done = self._completed.get(s.code)
            if done is None:
                done = self._completed[s.code] = [0, 0, 0]
            done[ex.qos] += 1

    def _row_key(self, label: str) -> str | None:
        """The row a client label counts in: its own (the first ``max_clients`` labels seen)
        or the last one (None)."""
        labels = self._labels
        if label in labels:
            return label
        if len(labels) < self.max_clients:
            labels[label] = None
            return label
        self._others.add(label)
        return None

    def _released(self, s: SessionState) -> None:
        """A session is released: what it counted stays in its client's row."""
        rec = s.rec
        done = self._completed.pop(s.code, None) or [0, 0, 0]
        gone = self._gone.setdefault(self._row_key(rec.client_id or s.key), [0] * 7)
        for i, n in enumerate((rec.n_exchanges_c2b, rec.n_exchanges_b2c, rec.n_resends,
                               done[1], done[2])):
            gone[i] += n

    def _fold_if_full(self) -> None:
        """Fold the finished exchanges' times once ``_FOLD_AT`` of them wait (bounded between
        snapshots however many finish)."""
        if len(self._ended_times) >= _FOLD_AT * _NT:
            self._fold_latency()

    def _fold_latency(self) -> None:
        """The steps of the exchanges finished since the last call, into the sketches (and the
        Prometheus hook), as arrays: one pass per QoS and step, not one per sample."""
        if not self._ended_times:
            return
        import numpy as np

        # a copy: the tracker keeps appending to the same array, emptied here
        cols = np.array(self._ended_times, dtype=np.int64).reshape(-1, _NT)
        del self._ended_times[:]
        at = {name: i for i, name in enumerate(_TIMES, start=1)}
        for q, spans in STEP_SPANS.items():
            rows = cols[cols[:, 0] == q]
            if not len(rows):
                continue
            for name, later, earlier in spans:
                t1, t0 = rows[:, at[later]], rows[:, at[earlier]]
                ok = (t1 != NO_TS) & (t0 != NO_TS)
                if not ok.any():
                    continue
                t1 = t1[ok]
                ms = (t1 - t0[ok]) / _MS
                self.sketches[(q, name)].add_many(t1, ms)
                if self.on_latency is not None:
                    self.on_latency(q, name, ms)

    def snapshot(self) -> dict[str, Any]:
        """Where things stand at :attr:`now_ns` (see the module docstring)."""
        self._fold_latency()
        snap = self.corr.snapshot(clients=self.max_clients > 0)
        now = self.now_ns if self.now_ns is not None else 0
        per_qos = []
        for row in snap.per_qos:
            q = row["qos"]
            item = {**_counters(row, snap.open_by_qos[q]), "latency_ms": {}}
            for name, _, _ in STEP_SPANS.get(q, ()):
                sk = self.sketches[(q, name)]
                item["latency_ms"][name] = {f"last_{WINDOW_S}s": sk.last(now).as_dict(),
                                            "since_start": sk.since_start().as_dict()}
            per_qos.append(item)
        seen = self.now_ns is not None      # no packet yet: no time to give
        return {"type": "snapshot", "ts": format_time(now) if seen else None,
                "ts_ns": now if seen else None, "per_qos": per_qos,
                "connections": {"open": snap.connections_open, "seen": snap.connections_seen},
                "reconnections": self.n_reconnects, "anomalies": self.n_anomalies,
                "stalls": self.n_stalls, "drops": self.drops,
                "reconnections_by_cause": dict(sorted(self.reconnects_by_cause.items())),
                "anomalies_by_kind": dict(sorted(self.anomalies_by_kind.items())),
                "tcp_retransmissions": snap.tcp_retransmissions,
                "brokers": _per_broker(snap, per_qos),
                **({"clients": self._per_client(snap)} if self.max_clients else {})}

    def _per_client(self, snap: Snapshot) -> list[dict[str, Any]]:
        """Per client id (its sessions summed; a session without one by its key), the first
        :attr:`max_clients` seen each in a row of their own, in the order they were first seen
        (so a label never moves: the counters only grow), the others summed in a last row
        whose ``client_id`` is None and ``clients`` says how many. ``sent``/``received``:
        exchanges the client published / was sent (every QoS); ``resends``: MQTT-level re-sends
        on its exchanges, either side (PUBLISH, PUBREC, PUBREL sent again, counted as they are
        seen: the sum of its exchanges' ``retransmissions``); ``completed`` and ``open``: its
        QoS 1 and 2 handshakes."""
        done = self._completed
        figures: dict[str | None, list[int]] = {key: list(v) for key, v in self._gone.items()}
        for code, label, sent, received, open1, open2, resends in snap.clients:
            got = figures.setdefault(self._row_key(label), [0] * 7)
            for i, n in enumerate((sent, received, resends)):
                got[i] += n
            completed = done.get(code)
            if completed is not None:
                got[3] += completed[1]
                got[4] += completed[2]
            got[5] += open1
            got[6] += open2
        out = []
        for key in [*self._labels, None]:
            f = figures.get(key)
            if f is None:
                continue
            row: dict[str, Any] = {
                "client_id": key, "sent": f[0], "received": f[1], "resends": f[2],
                "completed": {"1": f[3], "2": f[4]}, "open": {"1": f[5], "2": f[6]}}
            if key is None:
                row["clients"] = len(self._others)
            out.append(row)
        return out


def _per_broker(snap: Snapshot, per_qos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per broker (a server endpoint, as the report has them), its per-QoS counters: the
    snapshot's own when there is one broker (the metrics' ``broker`` label)."""
    if len(snap.brokers) <= 1:
        return [{"broker": name, "per_qos": [{k: v for k, v in row.items()
                                               if k != "latency_ms"} for row in per_qos]}
                for name in snap.brokers]
    return [{"broker": name, "per_qos": [_counters(row, opened[row["qos"]]) for row in rows]}
            for name, (rows, opened) in zip(snap.brokers, snap.per_broker, strict=True)]


def _counters(row: dict[str, Any], opened: int) -> dict[str, Any]:
    """A snapshot's counters of one QoS from the report's summary row of the exchanges
    finished so far and the number of handshakes still open."""
    return {"qos": row["qos"], "messages": row["publishes"] + opened,
            "completed": row["completed"], "open": opened, "incomplete": row["incomplete"],
            "retransmissions": row["retransmissions"], "dup_flagged": row["dup_flagged"],
            "duplicates_delivered": row["duplicates_delivered"],
            "not_delivered": row["not_delivered"]}
