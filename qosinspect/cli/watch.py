"""``qosinspect watch``: QoS handshakes as they happen, from a pipe, a growing file or an interface.

A shell over :mod:`qosinspect.live`: the source (:mod:`~qosinspect.live.sources`), the core
(:class:`~qosinspect.live.core.LiveCore`), the loop (:class:`~qosinspect.live.run.Watch`) and the
report of :mod:`qosinspect.report.text` at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import QosinspectError
from . import main
from .capture_options import MQTT_VERSIONS, CaptureSource

__all__ = ["metrics_options", "record_options", "watch"]


def record_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The flight recorder's options (``watch`` and ``broker --watch``)."""
    f = click.option("--record-max-mb", type=click.FloatRange(0.1), default=100.0,
                     show_default=True,
                     help="Disk the recorder may use (its oldest files are removed past it)."
                     )(f)
    f = click.option("--record-seconds", type=click.FloatRange(0.1), default=30.0,
                     show_default=True, help="Seconds of packets kept before each event.")(f)
    return click.option("--record-dir", type=click.Path(file_okay=False), default=None,
                        help="Flight recorder: write a pcapng of the packets around each "
                             "reconnection, anomaly and stall into this directory.")(f)


def metrics_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The Prometheus endpoint's options (``watch`` and ``broker --watch``): ``metrics``,
    ``client_label``, ``max_clients``."""
    f = click.option("--metrics-max-clients", "max_clients", type=click.IntRange(1),
                     default=50, show_default=True,
                     help="Client ids with a label of their own (the first seen); the others "
                          "are summed as client_id=\"other\".")(f)
    f = click.option("--metrics-client-label", "client_label", is_flag=True,
                     help="Per-client counters (qosinspect_client_*, label client_id) on the "
                          "metrics and in the snapshots; bounded by --metrics-max-clients.")(f)
    return click.option("--metrics", default=None, metavar="HOST:PORT",
                        help="Serve OpenMetrics for Prometheus at http://HOST:PORT/metrics "
                             "while it runs.")(f)


def parse_metrics(metrics: str | None) -> tuple[str, int] | None:
    """``--metrics HOST:PORT`` as (host, port), or a usage error saying what is wrong."""
    if metrics is None:
        return None
    from ..live.metrics import parse_listen

    try:
        return parse_listen(metrics)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--metrics") from None


@main.command()
@click.argument("source", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--follow", "-f", "follow", type=click.Path(dir_okay=False), default=None,
              metavar="FILE", help="Read FILE as it is being written (like tail -f).")
@click.option("--interface", "-i", "interface", default=None, metavar="IFACE",
              help="Capture on IFACE with dumpcap (tcpdump when dumpcap is missing).")
@click.option("--tool", type=click.Choice(["auto", "dumpcap", "tcpdump"]), default="auto",
              show_default=True, help="The capture tool for --interface.")
@click.option("--port", "-p", "ports", type=click.IntRange(1, 65535), multiple=True,
              help="Another TCP port MQTT runs on (1883 always is); repeatable. With "
                   "--interface, the capture filter.")
@click.option("--no-detect", is_flag=True,
              help="Do not look for MQTT on other ports.")
@click.option("--mqtt-version", type=click.Choice(list(MQTT_VERSIONS)), default="4",
              show_default=True, help="Version of connections whose CONNECT was not seen.")
@click.option("--format", "fmt", type=click.Choice(["dashboard", "jsonl"]), default=None,
              help="dashboard: a terminal view redrawn about once a second (the default on a "
                   "terminal); jsonl: one JSON object per interval (snapshot) and per notable "
                   "event (reconnection, anomaly, stall), the default otherwise.")
@click.option("--interval", type=click.FloatRange(0.05), default=1.0, show_default=True,
              help="Seconds between snapshots.")
@click.option("--stall-ms", type=click.IntRange(1), default=5000, show_default=True,
              help="A handshake open longer than this is a notable event (stall).")
@click.option("--duration", type=click.FloatRange(0), default=None,
              help="Stop after this many seconds (else at the end of the input or Ctrl-C).")
@click.option("--report-format", type=click.Choice(["table", "markdown", "json"]),
              default="table", show_default=True,
              help="The final report's format (json: exactly 'report --format json').")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write the final report to this file instead of standard output.")
@click.option("--write", "-w", "write", type=click.Path(dir_okay=False), default=None,
              metavar="FILE.pcapng", help="Keep what was captured in this pcapng.")
@record_options
@metrics_options
def watch(source: str | None, follow: str | None, interface: str | None, tool: str,
          ports: tuple[int, ...], no_detect: bool, mqtt_version: str, fmt: str | None,
          interval: float, stall_ms: int, duration: float | None, report_format: str,
          report_path: str | None, write: str | None, record_dir: str | None,
          record_seconds: float, record_max_mb: float, metrics: str | None,
          client_label: bool, max_clients: int) -> None:
    """Watch MQTT QoS live: SOURCE ('-' for a pipe, e.g. tcpdump -w - | qosinspect watch -),
    --follow FILE or --interface IFACE.

    Per QoS: messages, completed and open handshakes, re-sends, DUPs, p50/p99 per step over the
    last 10 s and since start; reconnections as they happen; anomalies; capture drops. At the
    end (of the input, --duration or Ctrl-C) the report of everything seen, as 'qosinspect
    report' prints it.
    """
    from ..live.app import run_watch
    from ..live.sources import InterfaceSource, PacketSource, StreamSource
    from ..report.text import write_report
    from .heap import steady_heap

    given = [x for x in (source, follow, interface) if x is not None]
    if len(given) != 1:
        raise click.UsageError("give one source: SOURCE ('-' for standard input), --follow "
                               "FILE or --interface IFACE")
    listen = parse_metrics(metrics)
    steady_heap()       # a watch runs for days: its memory must not grow with them
    options: dict[str, Any] = {"ports": ports, "detect_any_port": not no_detect,
                               "mqtt_version": MQTT_VERSIONS[mqtt_version], "write": write}
    if fmt is None:
        fmt = "dashboard" if sys.stdout.isatty() else "jsonl"
    try:
        src: PacketSource
        if interface is not None:
            src = InterfaceSource(interface, tool=tool, **options)
        else:
            src = StreamSource(follow if follow is not None else str(source),
                               follow=follow is not None, **options)
        analysis = run_watch(src, sys.stdout, fmt=fmt, interval_s=interval,
                             stall_ms=stall_ms, duration_s=duration, metrics=listen,
                             report_source=write, record_dir=record_dir,
                             record_seconds=record_seconds, record_max_mb=record_max_mb,
                             max_clients=max_clients if client_label else 0)
        named = CaptureSource(write or src.name, src.ports, not no_detect,
                              MQTT_VERSIONS[mqtt_version], "native")
        write_report(analysis, report_format, report_path, capture=named.command_args())
    except BrokenPipeError:
        raise
    except (QosinspectError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if analysis.capture_error is not None:
        click.echo(f"Error: {analysis.capture_error} (the report covers what was read before "
                   "it)", err=True)
        raise SystemExit(1)
