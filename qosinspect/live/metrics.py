"""``watch --metrics HOST:PORT``: the live figures as OpenMetrics for Prometheus.

Rules, and why:

* **The figures are the snapshot's.** Counters and gauges are read, at scrape time, from the
  last snapshot of :class:`~.core.LiveCore` (a custom collector, the pattern prometheus-client
  documents for figures kept elsewhere), so ``/metrics``, the JSON lines and the dashboard never
  disagree, and the counters at the end are the final report's. Only the latency histograms are
  fed the samples (:attr:`~.core.LiveCore.on_latency`, an array per QoS and step at each
  snapshot): a histogram needs every sample.
* **Buckets from 0.1 ms to 30 s**, roughly 1-2.5-5 per decade: a QoS 1 round trip on a LAN is
  a fraction of a millisecond, a handshake across a reconnection takes seconds.
* **No global registry** (the project's no-global-state rule): each exporter has its own
  :class:`prometheus_client.CollectorRegistry` and HTTP server, stopped by :meth:`close`.
* Labels: ``qos`` and ``step`` on latencies; ``broker`` and ``qos`` on the per-QoS counters
  and the open handshakes (a broker is a server endpoint ``address:port``, as in the report;
  past :data:`MAX_BROKERS` of them the rest are summed as ``other``, so the cardinality stays
  bounded whatever the capture holds); ``cause`` on reconnections and ``kind`` on anomalies
  (both closed sets). A ``client_id`` label only when asked for (``--metrics-client-label``),
  on metrics of its own (``qosinspect_client_*``), for the first ``--metrics-max-clients``
  client ids seen, the others summed as ``other`` (:meth:`~.core.LiveCore._per_client`): a
  label never moves from one client to another, so its counters only grow.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "MAX_BROKERS", "MetricsExporter", "parse_listen"]

#: Brokers with a label of their own; the others are summed as ``broker="other"``.
MAX_BROKERS = 16
#: Seconds: 0.1 ms .. 30 s.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PER_QOS = (
    # (metric name without _total, snapshot field, help)
    ("qosinspect_publishes", "messages", "QoS exchanges seen (a re-sent PUBLISH is not a new "
                                         "one), both directions"),
    ("qosinspect_completed", "completed", "Exchanges whose handshake completed"),
    ("qosinspect_resends", "retransmissions", "MQTT-level re-sends (PUBLISH, PUBREC, PUBREL)"),
    ("qosinspect_dup_flagged", "dup_flagged", "PUBLISH packets with DUP=1"),
    ("qosinspect_duplicates_delivered", "duplicates_delivered",
     "Copies a subscriber got of a message it already had, by the QoS of the copy"),
    ("qosinspect_not_delivered", "not_delivered",
     "Expected copies that never reached a connected subscriber, by the publisher's QoS"),
)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as ``(host, port)``; ValueError if not."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class _SnapshotCollector(Collector):
    def __init__(self) -> None:
        self.snapshot: dict[str, Any] | None = None

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot            # one reference read: the writer replaces, never edits
        if snap is None:
            return
        brokers = _by_broker(snap)
        sent = CounterMetricFamily("qosinspect_client_exchanges",
                                   "Exchanges (every QoS) a client sent (direction c2b) or was "
                                   "sent (b2c); opt-in, bounded: --metrics-client-label",
                                   labels=["client_id", "direction"])
        completed = CounterMetricFamily("qosinspect_client_completed",
                                        "A client's QoS 1/2 handshakes that completed, both "
                                        "directions", labels=["client_id", "qos"])
        resends = CounterMetricFamily("qosinspect_client_resends",
                                      "MQTT-level re-sends (PUBLISH, PUBREC, PUBREL sent "
                                      "again) on a client's exchanges, either side",
                                      labels=["client_id"])
        handshakes = GaugeMetricFamily("qosinspect_client_open_handshakes",
                                       "A client's QoS 1/2 handshakes open now",
                                       labels=["client_id", "qos"])
        for name, field, doc in _PER_QOS:
            c = CounterMetricFamily(name, doc, labels=["broker", "qos"])
            for broker, rows in brokers.items():
                for row in rows:
                    c.add_metric([broker, str(row["qos"])], row[field])
            yield c
        opened = GaugeMetricFamily("qosinspect_open_handshakes",
                                   "QoS 1/2 handshakes open now", labels=["broker", "qos"])
        for broker, rows in brokers.items():
            for row in rows:
                if row["qos"]:
                    opened.add_metric([broker, str(row["qos"])], row["open"])
        yield opened
        rec = CounterMetricFamily("qosinspect_reconnections",
                                  "Reconnections, by how the previous connection ended",
                                  labels=["cause"])
        for cause, n in snap["reconnections_by_cause"].items():
            rec.add_metric([cause], n)
        yield rec
        an = CounterMetricFamily("qosinspect_anomalies", "Anomalies and notes, by kind",
                                 labels=["kind"])
        for kind, n in snap["anomalies_by_kind"].items():
            an.add_metric([kind], n)
        yield an
        yield CounterMetricFamily("qosinspect_stalls", "Handshakes open longer than --stall-ms",
                                  value=snap["stalls"])
        yield CounterMetricFamily("qosinspect_tcp_retransmissions",
                                  "TCP retransmissions (counted apart from MQTT re-sends)",
                                  value=snap["tcp_retransmissions"])
        yield GaugeMetricFamily("qosinspect_connections_open", "MQTT connections open now",
                                value=snap["connections"]["open"])
        for row in snap.get("clients", ()):
            label = "other" if row["client_id"] is None else row["client_id"]
            for direction, field in (("c2b", "sent"), ("b2c", "received")):
                sent.add_metric([label, direction], row[field])
            resends.add_metric([label], row["resends"])
            for qos in ("1", "2"):
                completed.add_metric([label, qos], row["completed"][qos])
                handshakes.add_metric([label, qos], row["open"][qos])
        if "clients" in snap:
            yield from (sent, resends, completed, handshakes)
        if snap["drops"] is not None:
            yield GaugeMetricFamily("qosinspect_capture_drops",
                                    "Packets the kernel dropped (the capture tool's count)",
                                    value=snap["drops"])


def _by_broker(snap: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The snapshot's per-QoS counters by broker label (at most :data:`MAX_BROKERS` and
    ``other``); before any broker is known, the snapshot's own under ``broker=""``."""
    per = snap.get("brokers") or [{"broker": "", "per_qos": snap["per_qos"]}]
    out = {b["broker"]: b["per_qos"] for b in per[:MAX_BROKERS]}
    rest = per[MAX_BROKERS:]
    if rest:
        summed = [dict(row) for row in rest[0]["per_qos"]]
        for b in rest[1:]:
            for total, row in zip(summed, b["per_qos"], strict=True):
                for k, v in row.items():
                    if k != "qos":
                        total[k] += v
        out["other"] = summed
    return out


class _LatencyCollector(Collector):
    """The step-latency histograms, counted in bulk: each snapshot's samples (an array per QoS
    and step) go into the buckets with one ``searchsorted`` (prometheus-client's ``Histogram``
    takes one ``observe`` per sample, a Python loop over its buckets each) and are served as a
    ``HistogramMetricFamily``, the library's type for figures kept elsewhere."""

    def __init__(self) -> None:
        self._bounds = np.array(LATENCY_BUCKETS)
        #: (qos, step) -> (count per bucket, the last one +Inf; sum of the values in seconds).
        self._series: dict[tuple[str, str], tuple[np.ndarray, float]] = {}
        self._lock = threading.Lock()

    def observe(self, qos: str, step: str, ms: Any) -> None:
        seconds = np.asarray(ms, dtype=np.float64) / 1000
        where = np.searchsorted(self._bounds, seconds, side="left")   # value <= bound
        add = np.bincount(where, minlength=len(self._bounds) + 1)
        with self._lock:
            counts, total = self._series.get((qos, step), (np.zeros_like(add), 0.0))
            self._series[(qos, step)] = (counts + add, total + float(seconds.sum()))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            series = dict(self._series)
        h = HistogramMetricFamily("qosinspect_handshake_step_seconds",
                                  "Latency of each step of the QoS handshakes",
                                  labels=["qos", "step"])
        names = [str(b) for b in LATENCY_BUCKETS] + ["+Inf"]   # as prometheus-client says them
        for (qos, step), (counts, total) in sorted(series.items()):
            cumulative = np.cumsum(counts).tolist()
            h.add_metric([qos, step], list(zip(names, cumulative, strict=True)), total)
        yield h


class MetricsExporter:
    """An HTTP endpoint serving ``/metrics``: :meth:`update` with every JSON object of the run,
    :meth:`observe` as the core's ``on_latency``; :meth:`close` stops the server."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 warn: Callable[[str], None] | None = None) -> None:
        #: Told once when clients begin to be summed as ``other``.
        self.warn = warn
        self._said_other = False
        self.registry = CollectorRegistry(auto_describe=True)
        self._snap = _SnapshotCollector()
        self.registry.register(self._snap)
        self._latency = _LatencyCollector()
        self.registry.register(self._latency)
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        self.host = host
        self.port = int(self._server.server_port)
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def update(self, item: dict[str, Any]) -> None:
        if item.get("type") == "snapshot":
            self._snap.snapshot = item
            clients = item.get("clients") or ()
            if (not self._said_other and self.warn is not None and clients
                    and clients[-1]["client_id"] is None):
                self._said_other = True
                self.warn(f"metrics: more than {len(clients) - 1} client ids; the others are "
                          "summed under client_id=\"other\" (--metrics-max-clients)")

    def observe(self, qos: int, step: str, ms: Any) -> None:
        """Step latencies (milliseconds, an array) of one QoS and step: the core's
        ``on_latency``."""
        self._latency.observe(str(qos), step, ms)

    def close(self) -> None:
        with self._lock:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
