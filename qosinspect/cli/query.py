"""``qosinspect query DATASET "SQL"``: DuckDB over a batch dataset's Parquet files, each table
under its own name (:mod:`qosinspect.dataset.query`), written by the output layer."""

from __future__ import annotations

import click

from . import main
from .output_options import format_option, output_file, writing

__all__ = ["query"]


@main.command()
@click.argument("dataset", type=click.Path(file_okay=False))
@click.argument("sql")
@format_option("table", "markdown", "csv", "json", "jsonl", "parquet", default="table",
               help="Output format of the result.")
@output_file
def query(dataset: str, sql: str, fmt: str, output: str | None) -> None:
    """Run SQL over DATASET (made by qosinspect batch) and print the result.

    Each table is a view under its own name: exchanges, connections, sessions, reconnects,
    deliveries, anomalies, tcp_retransmissions, undecoded_streams, summary, packets (when
    written), captures and failures; tags are tag_NAME columns. Durations (latency_*) are
    nanoseconds, latency_ms milliseconds. Five worked queries: docs/batch.md.
    """
    from ..dataset.query import QueryError
    from ..dataset.query import query as run_query
    from ..report.output import write_table

    try:
        df = run_query(dataset, sql)
    except (QueryError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    with writing(output):
        write_table(df, fmt, output, footer=f"{len(df)} rows")
