"""``analyze(events)`` and ``analyze_capture(path)``: the analysis as one object of DataFrames.

The tables are built on first access and cached, so a caller who wants only ``report()`` (the
``report`` command) never pays for the per-packet table, nor even imports pandas.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..errors import CaptureError
from ..events import Event
from .correlate import CorrelationResult, Correlator
from .options import AnalysisOptions
from .records import RowSink

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TABLES", "Analysis", "analyze", "analyze_capture", "relaxed_gc"]

#: The tables of an analysis, in the order ``export`` writes them.
TABLES = ("packets", "connections", "sessions", "exchanges", "reconnects", "deliveries",
          "anomalies", "tcp_retransmissions", "undecoded_streams", "tcp_evidence")


class Analysis:
    """The analysis of one event stream: DataFrames, ``summary()`` and ``report()``.

    ``source`` names where the events came from (a capture path), ``capture_error`` holds the
    error that ended reading a damaged capture early (everything before it is analysed), and
    ``capture_summary`` the decoder's counters when the events came from a capture.
    """

    def __init__(self, result: CorrelationResult, *, source: str | None = None,
                 capture_error: CaptureError | None = None,
                 capture_summary: Any = None) -> None:
        self.result = result
        self.source = source
        self.capture_error = capture_error
        self.capture_summary = capture_summary

    def __repr__(self) -> str:
        r = self.result
        return (f"<Analysis {self.source or 'events'}: {len(r.connections)} connections, "
                f"{r.exchanges.rows + r.q0.rows} exchanges, {len(r.anomalies)} anomalies>")

    @cached_property
    def packets(self) -> pd.DataFrame:
        """One row per MQTT packet (empty if the analysis ran with ``packets=False``)."""
        from . import tables

        return tables.packets_frame(self.result)

    def packets_of(self, conn_ids: Iterable[int] | None = None, *,
                   resend_only: bool = False) -> pd.DataFrame:
        """Some rows of :attr:`packets` (the connections given, and/or only the MQTT re-sends),
        built without building the whole table."""
        from . import tables

        if "packets" in self.__dict__:
            df = self.packets
            if conn_ids is not None:
                df = df[df["conn_id"].isin(list(conn_ids))]
            return df[df["resend"]] if resend_only else df
        return tables.packets_frame(self.result, conn_ids, resend_only)

    @cached_property
    def connections(self) -> pd.DataFrame:
        from . import tables

        return tables.connections_frame(self.result)

    @cached_property
    def sessions(self) -> pd.DataFrame:
        from . import tables

        return tables.sessions_frame(self.result)

    @cached_property
    def exchanges(self) -> pd.DataFrame:
        """One row per QoS delivery per direction (QoS 0 included), in ``ex_id`` order."""
        from . import tables

        return tables.exchanges_frame(self.result)

    @cached_property
    def reconnects(self) -> pd.DataFrame:
        from . import tables

        return tables.reconnects_frame(self.result)

    @cached_property
    def deliveries(self) -> pd.DataFrame:
        from . import tables

        return tables.deliveries_frame(self.result)

    @cached_property
    def anomalies(self) -> pd.DataFrame:
        from . import tables

        return tables.anomalies_frame(self.result)

    @cached_property
    def tcp_retransmissions(self) -> pd.DataFrame:
        from . import tables

        return tables.tcp_retransmissions_frame(self.result)

    @cached_property
    def undecoded_streams(self) -> pd.DataFrame:
        """TCP streams that carried data and were not decoded, with the ``--port`` that would
        decode each (the first 100,000; ``report()["undecoded_streams"]`` counts them all)."""
        from .undecoded import undecoded_frame

        return undecoded_frame(self.result.undecoded)

    @cached_property
    def tcp_evidence(self) -> pd.DataFrame:
        """Wireshark's ``tcp.analysis`` flags, one row per flag and frame, on every connection
        (encrypted ones too; the first 100,000; ``report()["tcp_evidence"]`` counts them all)."""
        from .tcp_evidence import evidence_frame

        return evidence_frame(self.result.tcp_evidence.rows)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table by name (:data:`TABLES`)."""
        return {name: getattr(self, name) for name in TABLES}

    def summary(self) -> pd.DataFrame:
        """One row per QoS level: publishes, completed, incomplete, retransmissions, DUP,
        duplicates delivered, latency percentiles in ms (see :mod:`.metrics`)."""
        import pandas as pd

        from . import metrics

        rows = []
        for row in metrics.summary_rows(self.result):
            flat = {k: v for k, v in row.items()
                    if k not in ("latency_ms", "latency_ms_by_step", "qos2_incomplete")}
            for k, v in row["latency_ms"].items():
                flat[f"latency_ms_{k}"] = v
            rows.append(flat)
        df = pd.DataFrame(rows).set_index("qos")
        for col in df.columns:
            df[col] = df[col].astype("float64" if col.startswith("latency") else "int64")
        return df

    def report(self) -> dict[str, Any]:
        """The report as JSON-ready data (``qosinspect report --format json``)."""
        from . import metrics  # numpy: loaded once the traffic has been read

        out = metrics.report_dict(self.result)
        cap = out["capture"]
        if self.source is not None:
            cap["source"] = self.source
        s = self.capture_summary
        if s is not None:
            cap.update(frames=s.frames, mqtt_packets=s.mqtt_packets)
        if self.capture_error is not None:
            cap["error"] = str(self.capture_error)
        return out


def analyze(events: Iterable[Event], options: AnalysisOptions | None = None, *,
            sink: RowSink | None = None) -> Analysis:
    """Analyse boundary events (from a capture, a live tap or a test builder) with ``options``
    (:class:`~.options.AnalysisOptions`; the defaults keep everything); ``sink`` takes the
    rows of the large tables as they become final instead of the result
    (:class:`~.spool.RowSpool`)."""
    correlator = Correlator(options, sink=sink)
    with relaxed_gc():
        correlator.consume(events)
    return Analysis(correlator.finish())


@contextlib.contextmanager
def relaxed_gc(gen0: int = 50_000) -> Iterator[None]:
    """Run the block with a higher first-generation threshold of the cyclic garbage collector,
    then put the old thresholds back.

    Why: a capture's analysis allocates millions of short-lived tuples while keeping tens of
    thousands of objects alive (open exchanges, pending publications); with the default
    threshold (700) the collector runs every few hundred packets and rescans them, about a
    quarter of the run time. Nothing in the analysis makes reference cycles, so collecting less
    often frees nothing later; memory is not affected.
    """
    old = gc.get_threshold()
    gc.set_threshold(max(gen0, old[0]), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


def _reporting(stream: Iterable[Event], progress: Callable[[int, int, int], None]
               ) -> Iterator[Event]:
    """``stream``, calling ``progress`` every 16,384 events."""
    for n, ev in enumerate(stream, 1):
        if not n & 0x3FFF:
            done, total = getattr(stream, "position", (0, 0))
            progress(n, done, total)
        yield ev


def analyze_capture(source: str | os.PathLike[str], *, ports: Iterable[int] = (1883,),
                    tls_ports: Iterable[int] = (8883,), detect_any_port: bool = True,
                    mqtt_version: int = 4, engine: str = "native", tls_keylog: str | None = None,
                    strict: bool = False, options: AnalysisOptions | None = None,
                    broker: str | None = None,
                    progress: Callable[[int, int, int], None] | None = None,
                    sink: RowSink | None = None) -> Analysis:
    """Decode a pcap/pcapng file and analyse it (only the connections to ``broker``, an
    ``ADDR[:PORT]``, when given).

    A capture that ends badly (cut short, corrupt past some frame) is analysed up to the
    problem and the error kept in ``Analysis.capture_error``; with ``strict=True`` it is raised
    instead. A file that cannot be read at all always raises
    :class:`~qosinspect.errors.CaptureError`.

    ``progress(events, bytes_read, bytes_in_all)`` is called every few thousand events (a
    progress bar; the file's size and position, 0 when unknown). ``sink`` as in
    :func:`analyze`.
    """
    from ..drivers import iter_capture_events

    # The decoder need not keep every connection's TCP statistics (a few hundred bytes each,
    # issue 11 §9): they travel on the ConnectionClosed events, which is where the analysis
    # would read them.
    stream: Iterable[Event] = iter_capture_events(
        source, ports=ports, tls_ports=tls_ports, detect_any_port=detect_any_port,
        mqtt_version=mqtt_version, engine=engine, tls_keylog=tls_keylog, keep_tcp_stats=False)
    if broker is not None:
        from ..capture.brokers import only_broker, parse_broker

        stream = only_broker(stream, parse_broker(broker))
    correlator = Correlator(options, sink=sink)
    error: CaptureError | None = None
    try:
        with relaxed_gc():
            correlator.consume(stream if progress is None else _reporting(stream, progress))
    except CaptureError as exc:
        if strict or correlator.n_events == 0:
            raise
        error = exc
    result = correlator.finish()
    return Analysis(result, source=os.fspath(source), capture_error=error,
                    capture_summary=getattr(stream, "summary", None))
