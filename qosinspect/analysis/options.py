"""What an analysis is asked to keep, and its bounds: one typed, frozen object.

Every entry point (:func:`~.api.analyze`, :func:`~.api.analyze_capture`, the
:class:`~.correlate.Correlator`, the CLI commands) takes an :class:`AnalysisOptions` instead of
loose keyword arguments, so a misspelt option is a type error rather than silently ignored, and
the defaults are written once. ``dataclasses.replace(options, packets=False)`` makes a variant
(type-checked too).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["JOINABLE_NS", "REPORT_OPTIONS", "AnalysisOptions"]

#: How long (packet time) a finished exchange can still be joined by a late acknowledgement
#: or re-send, as well as the count bound: 300 s (docs/watch.md, "Bounded memory", says why).
#: Past it the window's memory stops growing at any rate, not only past 131,072 finished
#: exchanges, which a slow link takes hours to reach. One bound for ``report`` and ``watch``
#: alike, so a watch's final report is ``report``'s of the same packets however late a join.
JOINABLE_NS = 300 * 10**9


@dataclass(frozen=True, slots=True)
class AnalysisOptions:
    """Options of one analysis.

    - ``packets``: keep the per-packet table (detail mode only).
    - ``deliveries``: match publications to deliveries end to end (:mod:`.deliveries`).
    - ``detail``: keep every column and build DataFrames; False keeps only what ``report``
      needs (smaller rows, no packets table), for captures of millions of packets.
    - ``max_open_per_session`` / ``max_open_total``: open exchanges followed at most, per
      session (65535: one direction's packet id space [MQTT-2.2.1-3]; real peers were seen
      with tens of thousands of QoS 2 flows open in one session, so less would change right
      answers) and overall (100,000, four per connection the decoder follows at once); past the
      first
      the session's oldest is evicted, past the second the oldest tenth of all (anomaly
      ``too_many_exchanges``, outcome ``evicted``, counted in the report's ``evictions``).
      What each open exchange costs is in docs/memory.md.
    - ``max_anomalies_per_kind``: anomaly rows per connection and kind; the rest are counted.
    - ``delivery_window_ns``: how long a publication waits for its copies.
    - ``default_version``: the MQTT version assumed for a connection whose CONNECT is missing.
    - ``first_chunk_rows`` / ``max_chunk_rows``: the row stores' first and largest chunk, the
      granularity of their memory (smaller chunks: less slack, more of them).
    - ``diagnose``: say why (:mod:`.diagnoses`): the causes of slow exchanges and
      reconnections; ``diagnose_floor_ns`` the latency under which an exchange is not
      explained, ``diagnose_percentile`` the capture's percentile an exchange with no known
      cause must also exceed to be listed (docs/diagnoses.md).
    - ``session_idle_timeout_ns``: how long, in packet time, a session with no connection is
      kept after its last connection ended (1 hour): what a later reconnection needs of it (its
      open exchanges, its subscriptions for delivery matching, the finished-exchange index a
      DUP re-send joins) stays until then; then it is dropped, said by a ``sessions_dropped``
      note (open exchanges end ``evicted``; a later CONNECT with the client id starts a new
      session). An ended connection keeps only its packed row at once (docs/memory.md).
    - ``release_ended``: in report mode (``detail=False``), fold an ended connection into the
      report's totals and release its row once it ended more than ``session_idle_timeout_ns``
      ago and nothing can ask for it again, and release a dropped session (:mod:`.sessions`):
      a watch's memory then follows the connections and sessions alive, not how many came and
      went. False keeps them (the figures are the same: tests compare both).
    - ``max_joinable_finished``: finished exchanges a late acknowledgement or DUP re-send can
      still join (131,072: both directions' packet id space of one session); in report mode
      also the rows kept before they are folded into the aggregate (:mod:`.exchanges`).
    - ``joinable_ns``: how long (packet time) a finished exchange stays joinable, as well as
      the count bound (:data:`JOINABLE_NS`, 300 s; 0: no bound in time): a watch runs for days,
      and ``report`` takes the same bound so both give the same answers (:mod:`.exchanges`,
      docs/watch.md).
    - ``max_verdicts``: the diagnoses' verdicts of each kind (on exchanges, on held copies,
      on copies never delivered) a report (``detail=False``) keeps whole; past it each is
      counted under its cause with the latency it explains, the worst kept as examples, so the
      report says what keeping them all would say in memory that stops growing (a verdict
      whole is about 0.7 kB; :mod:`.diagnoses.core`). A detail analysis keeps 100,000 (the
      tables name each one's cause).
    - ``exact_percentiles_up_to``: latency values a series keeps exactly; past it the series
      is a DDSketch of relative accuracy ``sketch_relative_accuracy`` (:mod:`.aggregate`).
    - ``same_broker``: groups of server endpoints (``host:port``) that are one broker, e.g. a
      TCP proxy or load balancer in front of it (the generator's fault proxy listens on several
      ports); the first of a group names it. Otherwise every endpoint is a broker of its own.
    """

    packets: bool = True
    deliveries: bool = True
    detail: bool = True
    max_open_per_session: int = 65535
    max_open_total: int = 100_000
    max_anomalies_per_kind: int = 1000
    delivery_window_ns: int = 60 * 10**9
    default_version: int = 4
    first_chunk_rows: int = 1024
    max_chunk_rows: int = 1 << 16
    same_broker: tuple[tuple[str, ...], ...] = ()
    diagnose: bool = True
    diagnose_floor_ns: int = 10_000_000
    diagnose_percentile: float = 99.0
    session_idle_timeout_ns: int = 3600 * 10**9
    release_ended: bool = True
    max_joinable_finished: int = 131_072
    joinable_ns: int = JOINABLE_NS
    max_verdicts: int = 4_096
    exact_percentiles_up_to: int = 65_536
    sketch_relative_accuracy: float = 0.01

    def __reduce__(self) -> tuple[type[AnalysisOptions], tuple[object, ...]]:
        """Pickled as its constructor call (to a process pool, a Dask worker): compiled by
        mypyc, a frozen dataclass cannot be restored attribute by attribute."""
        return (AnalysisOptions, tuple(getattr(self, f.name) for f in fields(self)))


#: What ``qosinspect report`` uses: report columns only.
REPORT_OPTIONS = AnalysisOptions(detail=False)
