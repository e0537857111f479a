"""``qosinspect report CAPTURE``: per QoS level, what completed, how fast, what was re-sent,
duplicated or lost, and what happened around reconnections (:mod:`qosinspect.report.text`)."""

from __future__ import annotations

from . import main
from .capture_options import CaptureSource, capture_source, finish
from .output_options import format_option

__all__ = ["report"]


@main.command()
@capture_source
@format_option("table", "markdown", "json")
def report(source: CaptureSource, fmt: str) -> None:
    """Report the QoS of every MQTT exchange in CAPTURE (pcap or pcapng).

    Per QoS level: publishes, completed, incomplete (QoS 2 by the last step reached),
    MQTT re-sends, DUP flags, duplicates delivered, latency p50/p90/p99/max per step; then
    connections, reconnections, TCP retransmissions and anomalies, each with the command that
    lists the details.
    """
    from ..report.text import write_report

    analysis = source.analyze(detail=False)
    write_report(analysis, fmt, capture=source.command_args())
    finish(analysis)
