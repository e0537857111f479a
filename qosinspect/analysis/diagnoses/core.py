"""The diagnoser: which exchanges and reconnections to explain, and the verdicts.

Which ones (issue 16): every exchange whose latency (from its PUBLISH's first byte on the wire
to its last acknowledgement) is over ``floor_ns``; every exchange that did not complete; every
reconnection, as it becomes final (all of them, past the rows a report keeps too); every copy a
subscriber got at least ``floor_ns`` after its publication and every copy never delivered
(:mod:`.delivery`, fed by the delivery matcher). An exchange over the floor whose evidence
matches a cause gets that cause; one that matches none is listed as ``no_known_cause`` only
when it is also over the capture's ``percentile`` (an outlier of this capture, not of a slow
link in general).

Why it works as exchanges finish: the report may fold finished exchanges into aggregates and
release their rows, and the TCP facts around an exchange are kept in short rings
(:mod:`.facts`). So each exchange is diagnosed when it ends, while its facts are there, and
only the candidates over the floor are kept: the verdicts and the slowest ``MAX_UNEXPLAINED`` of
those no cause explains (the rest are counted in ``dropped``). Of the verdicts of each kind (on
exchanges, on reconnections, on copies never delivered, on held copies: :mod:`.delivery`) at
most ``whole_cap`` are kept whole (a detail analysis: ``max_candidates``, and the exchange
checks stop there; a report: a few thousand, ``AnalysisOptions.max_verdicts``); past it each is
counted under its cause with the latency it explains and the worst kept as examples
(:class:`~.evidence.ByCause`), so a report's counts, latency explained and examples are those of
keeping every verdict, in memory that does not grow with the capture (a verdict whole is about
0.7 kB with its sentences: the cap of 100,000 was 70 MB). An
exchange that began after the last fact of its connection skips the checks. The percentile is
known only at the end: the exchange tracker counts the latency of every completed exchange in a
log-scale histogram (:class:`~..state.LatencyHistogram`, 12 % buckets) and hands only the
candidates over; :meth:`finish` reads the percentile there.

Pure: events and records in, :class:`~.evidence.Diagnosis` out; no clock is read.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

from ...events import ConnectionClosed, TcpEvidence
from ..records import NO_TS, OUTCOMES, STEPS, Connection, Reconnect
from ..state import LatencyHistogram, OpenExchange
from . import keepalive
from .delivery import MAX_OVER_IDS, DeliveryChecks, Held, Lost, after_ack
from .evidence import NO_KNOWN_CAUSE, ByCause, Diagnosis, ExchangeFacts, ms
from .facts import Facts
from .registry import EXCHANGE_CHECKS

__all__ = ["DEFAULT_FLOOR_NS", "DEFAULT_PERCENTILE", "Diagnoser", "DiagnosisResult",
           "WireSample"]

DEFAULT_FLOOR_NS = 10_000_000
DEFAULT_PERCENTILE = 99.0
MAX_CANDIDATES = 100_000
#: Unexplained exchanges over the floor kept (the slowest): enough for the p99 of 1,000,000.
MAX_UNEXPLAINED = 10_000
#: Steps and who sends each, relative to the PUBLISH's sender (0 the same side, 1 the other).
_COMPLETE = frozenset(OUTCOMES.index(o) for o in ("complete", "complete_after_reconnect"))
_STEP_SIDE = {"publish": 0, "puback": 1, "pubrec": 1, "pubrel": 0, "pubcomp": 1}


class Slowest:
    """The ``keep`` slowest of the exchanges no cause explained, as ``(latency, ex_id, conn_id,
    start)``, in four int64 arrays of twice ``keep`` allocated once: no Python object per
    exchange and no reallocation (10,000 tuples kept and replaced over a long capture, or
    arrays grown and rebuilt, scattered the allocator's heap: +21 MB of peak RSS on the report
    benchmark). When the arrays are full, the slowest ``keep`` move to the front, and the
    quickest of them is a floor: one quicker than it can never be among the slowest ``keep``
    (that many are slower already), so it is dropped at once (one comparison: most exchanges
    over the diagnoses' floor of a long capture are not among the slowest)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.n = 0
        self.floor = 0
        self.cols: tuple[array[int], ...] = tuple(array("q", bytes(16 * keep))
                                                  for _ in range(4))

    def add(self, latency: int, ex_id: int, conn_id: int, start: int) -> int:
        """Add one; returns how many were dropped to make room."""
        if latency < self.floor:
            return 1
        lat, ids, conns, starts = self.cols
        n = self.n
        lat[n] = latency
        ids[n] = ex_id
        conns[n] = conn_id
        starts[n] = start
        self.n = n = n + 1
        if n < len(lat):
            return 0
        rows = self.rows()
        for i, row in enumerate(rows):
            lat[i], ids[i], conns[i], starts[i] = row
        self.n = len(rows)
        self.floor = min(lat[:self.n])
        return n - len(rows)

    def rows(self) -> list[tuple[int, int, int, int]]:
        """The slowest ``keep``, in the order they ended."""
        lat, ids, conns, starts = self.cols
        idx = sorted(sorted(range(self.n), key=lat.__getitem__)[-self.keep:])
        return [(lat[i], ids[i], conns[i], starts[i]) for i in idx]

    def excess(self) -> int:
        """How many :meth:`rows` leaves out."""
        return max(0, self.n - self.keep)


class Named:
    """The exchanges a verdict named (a held copy's handshake explained on the wire is not
    explained again): a set of those kept whole, and the sorted numbers of those counted past
    the cap (8 bytes each, looked up by bisection)."""

    def __init__(self, whole: set[int], counted: array[int]) -> None:
        import numpy as np

        self.whole = whole
        self.counted = np.sort(np.frombuffer(counted, dtype=np.int64)) if len(counted) else None

    def __contains__(self, ex_id: int) -> bool:
        if ex_id in self.whole:
            return True
        counted = self.counted
        if counted is None:
            return False
        import numpy as np

        i = int(np.searchsorted(counted, ex_id))
        return i < len(counted) and int(counted[i]) == ex_id

    def add(self, ex_id: int) -> None:
        self.whole.add(ex_id)


class WireSample:
    """Times on the wire of one QoS: every one up to ``cap``, then a uniform reservoir
    (Vitter's algorithm R, seeded: the same capture gives the same figures)."""

    def __init__(self, seed: int, cap: int = MAX_CANDIDATES) -> None:
        self.values: array[int] = array("q")
        self.n = 0
        self.max = 0
        self.cap = cap
        self._rng = random.Random(seed)

    def add(self, ns: int) -> None:
        self.n += 1
        self.max = max(self.max, ns)
        if len(self.values) < self.cap:
            self.values.append(ns)
        else:
            k = self._rng.randrange(self.n)
            if k < self.cap:
                self.values[k] = ns


@dataclass
class DiagnosisResult:
    """The verdicts of one analysis. ``exchanges``: by ``ex_id``, the cause of each exchange
    diagnosed (``no_known_cause`` included); ``diagnoses``: every verdict with its evidence,
    ``threshold_ns`` the latency an unexplained exchange had to exceed (the floor or the
    percentile, whichever is higher), ``dropped`` candidates not kept past the cap."""

    diagnoses: list[Diagnosis] = field(default_factory=list)
    exchanges: dict[int, str] = field(default_factory=dict)
    reconnects: dict[int, str] = field(default_factory=dict)
    #: By (publication's ``ex_id``, subscriber's session code), the cause of each copy never
    #: delivered (the deliveries table's ``not_delivered`` rows).
    deliveries: dict[tuple[int, int], str] = field(default_factory=dict)
    floor_ns: int = DEFAULT_FLOOR_NS
    percentile: float = DEFAULT_PERCENTILE
    threshold_ns: int = 0
    dropped: int = 0
    wire: dict[int, WireSample] = field(default_factory=dict)
    #: By cause, verdicts on exchanges and held copies counted but not kept whole (past the
    #: cap): how many exchanges and the latency they explain (ns); and verdicts on copies never
    #: delivered counted so. The report adds them to its counts.
    counted: dict[str, tuple[int, int]] = field(default_factory=dict)
    counted_deliveries: dict[str, int] = field(default_factory=dict)
    #: By cause, verdicts on reconnections counted past the cap, and the gap they explain.
    counted_reconnects: dict[str, tuple[int, int]] = field(default_factory=dict)

    def by_cause(self) -> dict[str, list[Diagnosis]]:
        out: dict[str, list[Diagnosis]] = {}
        for d in self.diagnoses:
            out.setdefault(d.cause, []).append(d)
        return out


class Diagnoser:
    """Fed by the correlator in its pass (see the module docstring)."""

    def __init__(self, floor_ns: int = DEFAULT_FLOOR_NS,
                 percentile: float = DEFAULT_PERCENTILE,
                 max_candidates: int = MAX_CANDIDATES,
                 whole_cap: int = MAX_CANDIDATES) -> None:
        self.floor_ns = floor_ns
        self.percentile = percentile
        self.max_candidates = max_candidates
        #: Verdicts of each kind kept whole (see the module docstring), and by cause those
        #: of the exchange checks counted past it, with their exchange numbers (at most
        #: ``MAX_OVER_IDS``).
        self.whole_cap = whole_cap
        self.found_over = ByCause()
        self.found_ids: array[int] = array("q")
        self.facts = Facts()
        #: Every completed exchange's latency, counted by the exchange tracker (which calls
        #: :meth:`exchange` only for the candidates): the percentile's source.
        self.latencies = LatencyHistogram()
        self.found: list[Diagnosis] = []
        #: Candidates no cause explained: the slowest MAX_UNEXPLAINED.
        self.unexplained = Slowest(MAX_UNEXPLAINED)
        self.dropped = 0
        self.close_frames: dict[int, int] = {}
        #: The verdicts on reconnections (at most ``whole_cap``), and by cause those counted
        #: past it (``max_candidates`` at most, ``dropped`` the rest, in a detail analysis).
        self.reconnect_found: list[Diagnosis] = []
        self.reconnect_over = ByCause()
        #: Time on the wire of the packets that spanned frames, per QoS (a bounded sample).
        self.wire: dict[int, WireSample] = {}
        #: Held and lost copies (:mod:`.delivery`), and each session's last PUBACK/PUBCOMP to
        #: the broker (time, frame): what freed a slot of its inflight window.
        self.deliveries = DeliveryChecks(whole_cap)
        self.acks: dict[int, tuple[int, int]] = {}

    # -- fed during the pass -----------------------------------------------------------------

    def split(self, conn_id: int, client: str, sender: int, first_ts: int, ts: int,
              ack_ts: int, first_frame: int, frame: int) -> None:
        """A packet whose bytes spanned frames (only those are reported)."""
        self.facts.split(conn_id, client, sender, first_ts, ts, ack_ts, first_frame, frame)

    def connection(self, conn_id: int, client: str) -> None:
        """A connection carrying MQTT (its client endpoint tells the sides of TCP flags)."""
        self.facts.conn(conn_id, client)

    def tcp(self, ev: TcpEvidence) -> None:
        self.facts.tcp(ev)

    def released(self, conn_id: int) -> None:
        """The session tracker released an ended connection (report mode): no reconnection
        can name it any more, so its close frame goes."""
        self.close_frames.pop(conn_id, None)

    def closed(self, ev: ConnectionClosed) -> None:
        """A connection ended: its close frame is the evidence of a reconnection that follows
        (kept for the last ``MAX_CANDIDATES`` connections, taken when read)."""
        frames = self.close_frames
        frames[ev.conn.conn_id] = ev.frame
        if len(frames) > MAX_CANDIDATES:
            del frames[next(iter(frames))]

    def reconnect(self, rc: Reconnect, connection: Callable[[int], Connection | None]) -> None:
        """A reconnection is final (the connection it began ended, or the capture did): every
        one is diagnosed here, also past the rows a report keeps (``rc.index`` names it);
        ``connection`` gives the record of a connection by ``conn_id``, looked up only for a
        reconnection whose cause needs it."""
        frame = self.close_frames.pop(rc.prev_conn_id, 0)
        if rc.cause != keepalive.CAUSE_END:
            return
        d = keepalive.check(rc.index, rc, connection(rc.prev_conn_id), frame)
        if d is None:
            return
        if len(self.reconnect_found) < self.whole_cap:
            self.reconnect_found.append(d)
        elif self.whole_cap >= self.max_candidates:
            self.dropped += 1
        else:
            self.reconnect_over.add(d)

    def connect(self, conn_id: int, client: str, receive_maximum: int | None) -> None:
        """A CONNECT: the Receive Maximum the client announced (MQTT 5)."""
        if receive_maximum:
            self.facts.conn(conn_id, client).receive_maximum = receive_maximum

    def connack(self, conn_id: int, client: str, frame: int) -> None:
        self.facts.conn(conn_id, client).connack_frame = frame

    def freed(self, session: int, ts: int, frame: int) -> None:
        """A client's PUBACK or PUBCOMP: a slot of the broker's window towards it is free."""
        self.acks[session] = (ts, frame)

    def paced(self, conn_id: int, session: int, pub_ts: int, ts: int) -> int:
        """A copy to a connected subscriber (its PUBLISH at ``ts``) that came at least the
        floor after its publication at ``pub_ts``: counted; returns how many open messages
        prove a limit (its Receive Maximum; 1 without one) when it left right after an
        acknowledgement of the subscriber that came after the publication, else 0 (then
        nothing more is asked: :meth:`held` follows only a nonzero answer)."""
        d = self.deliveries
        d.late[session] += 1
        ack_ts, _ = self.acks.get(session, (0, 0))
        if not after_ack(pub_ts, ts, ack_ts):
            return 0
        facts = self.facts.conns.get(conn_id)
        return facts.receive_maximum if facts is not None and facts.receive_maximum else 1

    def held(self, ex_id: int, conn_id: int, session: int, pub_ts: int, ts: int, *,
             offline: bool, gap: tuple[int, int], session_present: bool, n_open: int) -> None:
        """A copy (the subscriber's exchange ``ex_id``, its PUBLISH at ``ts``) that came at
        least the floor after its publication at ``pub_ts``: queued while the subscriber was
        ``offline`` (``gap`` the offline time around it), or one :meth:`paced` found right
        after an acknowledgement; ``n_open`` the QoS 1/2 messages open towards it, this one
        included (counted up to the limit :meth:`paced` gave, or ``OPEN_COUNTED``)."""
        facts = self.facts.conns.get(conn_id)
        ack_ts, ack_frame = self.acks.get(session, (0, 0))
        self.deliveries.add_held(Held(
            ex_id, conn_id, session, pub_ts, ts, offline, gap[0], gap[1], session_present,
            facts.connack_frame if facts is not None else 0, n_open,
            facts.receive_maximum if facts is not None else 0, ack_ts, ack_frame))

    def lost(self, pub_ex_id: int, qos: int, session: int, conn_id: int, pub_ts: int,
             reason: int) -> None:
        """An expected copy that never came (``reason``: the subscriber's presence)."""
        d = self.deliveries
        d.add_lost(Lost(d.n_lost, pub_ex_id, qos, session, conn_id, pub_ts, reason),
                   self.facts.conns)

    def exchange(self, ex: OpenExchange) -> None:
        """A QoS 1/2 exchange ended: one that did not complete, or completed over the floor or
        with a packet that spanned frames (the tracker counted its latency and filtered). Its
        latency runs from its PUBLISH's first byte on the wire to its end (when it was
        abandoned, else its last step, when it did not complete)."""
        t_end = ex.t_end
        start = ex.t_publish - ex.wire_publish
        complete = t_end != NO_TS and ex.outcome in _COMPLETE
        if (ex.wire_publish or ex.wire_puback or ex.wire_pubrec or ex.wire_pubrel
                or ex.wire_pubcomp):
            self._wire(ex)
        if complete and t_end - start < self.floor_ns:
            return    # only its time on the wire was wanted
        facts = self.facts.conns.get(ex.conn_id)
        if facts is not None and facts.quiet_since(start):
            facts = None    # nothing on the wire since it began: no check can match
        # not completed: until it was abandoned (its session ended), else its last step
        # (NO_TS is the smallest int64: max() skips the steps not seen)
        end = t_end if t_end != NO_TS else max(ex.t_publish, ex.t_puback, ex.t_pubrec,
                                                ex.t_pubrel, ex.t_pubcomp)
        latency = end - start
        if facts is None:
            if latency >= self.floor_ns:
                self._unexplained(latency, ex.ex_id, ex.conn_id, start)
            return
        counting = len(self.found) >= self.whole_cap
        if counting and self.whole_cap >= self.max_candidates:
            self.dropped += 1
            return
        d = ex.direction
        named = tuple((STEPS[i], d ^ _STEP_SIDE[STEPS[i]], t, w) for i, t, w in (
            (0, ex.t_publish, ex.wire_publish), (1, ex.t_puback, ex.wire_puback),
            (2, ex.t_pubrec, ex.wire_pubrec), (3, ex.t_pubrel, ex.wire_pubrel),
            (4, ex.t_pubcomp, ex.wire_pubcomp)) if t != NO_TS)
        fx = ExchangeFacts(ex.ex_id, ex.conn_id, d, ex.qos, ex.packet_id, start, end,
                           complete, named)
        for check in EXCHANGE_CHECKS:
            found = check(fx, facts, self.floor_ns)
            if found is not None:
                if counting:
                    self._count(found)
                else:
                    self.found.append(found)
                return
        if latency >= self.floor_ns:
            self._unexplained(latency, ex.ex_id, ex.conn_id, start)

    def _count(self, d: Diagnosis) -> None:
        """A verdict of the exchange checks past the cap: counted under its cause."""
        self.found_over.add(d)
        if len(self.found_ids) < MAX_OVER_IDS:
            self.found_ids.append(d.ref)

    def _unexplained(self, latency: int, ex_id: int, conn_id: int, start: int) -> None:
        self.dropped += self.unexplained.add(latency, ex_id, conn_id, start)

    def _wire(self, ex: OpenExchange) -> None:
        sample = self.wire.get(ex.qos)
        if sample is None:
            sample = self.wire[ex.qos] = WireSample(ex.qos)
        for w in (ex.wire_publish, ex.wire_puback, ex.wire_pubrec, ex.wire_pubrel,
                  ex.wire_pubcomp):
            if w > 0:
                sample.add(w)

    # -- the end -----------------------------------------------------------------------------

    def quantile(self, q: float) -> int:
        """The latency at quantile ``q`` (0-100) of the completed exchanges (upper bucket
        edge, within 12 %)."""
        return self.latencies.quantile(q)

    def finish(self) -> DiagnosisResult:
        """The diagnoses at the end of the capture (every reconnection was diagnosed as it
        became final: :meth:`reconnect`)."""
        threshold = max(self.floor_ns, self.quantile(self.percentile))
        out = DiagnosisResult(floor_ns=self.floor_ns, percentile=self.percentile,
                              threshold_ns=threshold,
                              dropped=self.dropped + self.unexplained.excess(), wire=self.wire)
        out.diagnoses.extend(self.found)
        out.diagnoses.extend(self.found_over.examples())
        counted = self.found_over.totals()
        # a held copy's handshake may be slow too: what the wire shows of it comes first
        named = Named({d.ref for d in out.diagnoses}, self.found_ids)
        unexplained = self.unexplained.rows()
        out.diagnoses.extend(self.deliveries.finish(self.facts.conns, named,
                                                    asked={row[1] for row in unexplained}))
        out.dropped += self.deliveries.dropped
        for cause, (n, ns) in self.deliveries.counted.items():
            had_n, had_ns = counted.get(cause, (0, 0))
            counted[cause] = (had_n + n, had_ns + ns)
        out.counted = counted
        out.counted_deliveries = self.deliveries.counted_lost
        for latency, ex_id, conn_id, start in unexplained:
            if latency > threshold and ex_id not in named:
                out.diagnoses.append(Diagnosis(
                    NO_KNOWN_CAUSE, "exchange", ex_id, conn_id, start, latency, (),
                    f"{ms(latency)}, over the floor and the capture's p{self.percentile:g} "
                    f"({ms(threshold)}); no known signature fits", ""))
        out.diagnoses.extend(self.reconnect_found)
        out.diagnoses.extend(self.reconnect_over.examples())
        out.counted_reconnects = self.reconnect_over.totals()
        for d in out.diagnoses:
            if d.subject != "delivery":
                (out.exchanges if d.subject == "exchange" else out.reconnects)[d.ref] = d.cause
        out.deliveries = self.deliveries.lost_causes
        return out
