"""``qosinspect report CAPTURE``: per QoS level, what completed, how fast, what was re-sent,
duplicated or lost, and what happened around reconnections (:mod:`qosinspect.report.text`;
``--format html``: one self-contained page, :mod:`qosinspect.report.html`)."""

from __future__ import annotations

import click

from . import main
from .capture_options import CaptureSource, capture_source, finish
from .output_options import format_option, output_file, writing

__all__ = ["report"]


@main.command()
@capture_source
@format_option("table", "markdown", "json", "html")
@output_file
@click.option("--no-audit", is_flag=True,
              help="html: leave the audit's findings out (the audit reads the capture again).")
def report(source: CaptureSource, fmt: str, output: str | None, no_audit: bool) -> None:
    """Report the QoS of every MQTT exchange in CAPTURE (pcap or pcapng).

    Per QoS level: publishes, completed, incomplete (QoS 2 by the last step reached),
    MQTT re-sends, DUP flags, duplicates delivered, latency p50/p90/p99/max per step; then
    connections, reconnections, TCP retransmissions and anomalies, each with the command that
    lists the details. --format html -o FILE writes one page that opens offline: the same
    report with zoomable plots, the audit's findings, a sortable table of the exchanges and
    ladder diagrams.
    """
    if fmt == "html":
        from ..report.html import write_html

        analysis = source.analyze()
        audit = None if no_audit else source.audit()
        with writing(output):
            write_html(analysis, output, capture=source.command_args(), audit=audit)
    else:
        from ..report.text import write_report
        from .heap import steady_heap

        steady_heap()
        analysis = source.analyze(detail=False)
        with writing(output):
            write_report(analysis, fmt, output, capture=source.command_args())
    finish(analysis)
