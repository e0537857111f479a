"""``qosinspect flows CAPTURE``: one row per exchange (a PUBLISH and its acknowledgements);
the rows are :func:`qosinspect.report.flows.flows_frame`, written by the output layer."""

from __future__ import annotations

import click

from ..analysis.records import OUTCOMES
from . import main
from .capture_options import CaptureSource, capture_source, finish
from .output_options import format_option, output_file, writing

__all__ = ["flows"]


@main.command()
@capture_source
@click.option("--qos", type=click.Choice(["0", "1", "2"]), default=None, help="Only this QoS.")
@click.option("--client", default=None,
              help="Only exchanges of this client id (or session key, e.g. conn:3 for a "
                   "connection whose CONNECT was not captured).")
@click.option("--outcome", type=click.Choice(["incomplete", *(o for o in OUTCOMES if o != "open")]),
              default=None, help="Only exchanges with this outcome; incomplete: every one the "
                                 "report counts as incomplete (open_at_end, abandoned, evicted).")
@click.option("--direction", type=click.Choice(["c2b", "b2c"]), default=None,
              help="Only exchanges the client (c2b) or the broker (b2c) sent.")
@format_option("table", "csv", "json", "jsonl", "parquet")
@output_file
def flows(source: CaptureSource, qos: str | None, client: str | None, outcome: str | None,
          direction: str | None, fmt: str, output: str | None) -> None:
    """List the QoS exchanges of CAPTURE, one row each, with the time and count of every step.

    Columns: ex_id, client_id, conn, direction (of the PUBLISH), qos, packet_id, generation,
    topic, t_publish, n_publish, dup_seen, t_puback, t_pubrec, t_pubrel, n_pubrel, t_pubcomp,
    last_step, retransmissions, outcome, latency_ms; times in ISO 8601, UTC, to the
    nanosecond. All columns: qosinspect export.
    """
    from ..report.flows import flows_frame
    from ..report.output import write_table

    analysis = source.analyze(packets=False, deliveries=False)
    df = flows_frame(analysis, qos=None if qos is None else int(qos), client=client,
                     outcome=outcome, direction=direction)
    with writing(output):
        write_table(df, fmt, output, footer=f"{len(df)} exchanges")
    finish(analysis)
