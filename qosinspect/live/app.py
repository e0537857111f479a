"""One ``watch`` run put together: the core, its outputs (JSON lines or the dashboard, and the
Prometheus endpoint) and the loop, so the command stays a shell of option parsing. The outputs
serve ``broker --watch`` too (:func:`open_outputs`).

Every JSON object of the run goes to every output; the metrics endpoint also gets each step's
latency. Everything opened here is closed here, whatever happens.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import IO, Any

from ..analysis.api import Analysis
from ..report.output import document_text
from .core import LiveCore
from .run import Watch
from .sources import PacketSource

__all__ = ["OUTPUT_FORMATS", "fan_out", "open_outputs", "run_watch", "say"]

#: ``--format`` of watch.
OUTPUT_FORMATS = ("dashboard", "jsonl")


def open_outputs(stack: contextlib.ExitStack, out: IO[str], *, fmt: str = "jsonl",
                 metrics: tuple[str, int] | None = None,
                 warn: Callable[[str], None] | None = None
                 ) -> tuple[list[Callable[[dict[str, Any]], None]],
                            Callable[[int, str, Any], None] | None, str | None]:
    """The outputs of a run, closed with ``stack``: the sinks every JSON object goes to
    (``jsonl`` lines to ``out`` or the ``dashboard``, and the ``/metrics`` endpoint), the
    core's ``on_latency`` (the endpoint's histograms) and the endpoint's URL. ``warn`` gets
    what the endpoint has to say once (clients summed as ``other``)."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(OUTPUT_FORMATS)}, not {fmt!r}")
    sinks: list[Callable[[dict[str, Any]], None]] = []
    on_latency = None
    metrics_url = None
    if metrics is not None:
        from .metrics import MetricsExporter

        exporter = MetricsExporter(*metrics, warn=warn)
        stack.callback(exporter.close)
        sinks.append(exporter.update)
        on_latency = exporter.observe
        metrics_url = exporter.url
    if fmt == "dashboard":
        from .dashboard import Dashboard, live_display

        dashboard = Dashboard()
        sinks.append(dashboard.update)
        stack.enter_context(live_display(dashboard))
    else:
        def write(item: dict[str, Any]) -> None:
            out.write(document_text(item, "jsonl"))
            out.flush()

        sinks.append(write)
    return sinks, on_latency, metrics_url


def say(message: str) -> None:
    """What an output has to say once (``warn`` of :func:`open_outputs`): on stderr, as a
    line of its own, so standard output keeps only JSON lines."""
    print(message, file=sys.stderr)


def fan_out(sinks: list[Callable[[dict[str, Any]], None]], metrics_url: str | None
            ) -> Callable[[dict[str, Any]], None]:
    """One ``emit`` for every sink; the ``start`` object names the metrics endpoint."""
    def emit(item: dict[str, Any]) -> None:
        if metrics_url is not None and item.get("type") == "start":
            item = {**item, "metrics": metrics_url}
        for sink in sinks:
            sink(item)

    return emit


def run_watch(source: PacketSource, out: IO[str], *, fmt: str = "jsonl",
              interval_s: float = 1.0, stall_ms: int = 5000, duration_s: float | None = None,
              metrics: tuple[str, int] | None = None, report_source: str | None = None,
              record_dir: str | None = None, record_seconds: float = 30.0,
              record_max_mb: float = 100.0, max_clients: int = 0) -> Analysis:
    """Watch ``source`` until its end, ``duration_s`` or Ctrl-C; returns the analysis of it all
    (the final report's). ``fmt``: ``jsonl`` lines to ``out`` or the ``dashboard``;
    ``metrics``: (host, port) of a ``/metrics`` endpoint to serve while it runs;
    ``record_dir``: the flight recorder's directory (:mod:`.recorder`); ``max_clients``: the
    client ids with counters of their own in the snapshots and the endpoint (0: none)."""
    with contextlib.ExitStack() as stack:
        sinks, on_latency, metrics_url = open_outputs(stack, out, fmt=fmt, metrics=metrics,
                                                      warn=say)
        emit = fan_out(sinks, metrics_url)
        recorder = None
        if record_dir is not None:
            from .recorder import FlightRecorder

            recorder = FlightRecorder(record_dir, emit, seconds=record_seconds,
                                      max_mb=record_max_mb)
            sinks.append(recorder.update)
            source.on_frame = recorder.frame
        core = LiveCore(interval_ms=round(interval_s * 1000), stall_ms=stall_ms,
                        on_latency=on_latency, max_clients=max_clients)
        analysis = Watch(source, core, emit, duration_s=duration_s,
                         report_source=report_source,
                         on_event=recorder.event if recorder is not None else None).run()
        if recorder is not None:
            recorder.close()
        return analysis
