"""``qosinspect export CAPTURE -o DIR``: every table of the analysis as Parquet or CSV files,
written by the output layer, and the report as JSON."""

from __future__ import annotations

from pathlib import Path

import click

from . import main
from .capture_options import CaptureSource, capture_source, finish
from .output_options import format_option, writing

__all__ = ["export"]


@main.command()
@capture_source
@click.option("--output", "-o", "outdir", required=True,
              type=click.Path(file_okay=False, writable=True),
              help="Directory to write into (made if missing).")
@format_option("parquet", "csv", default="parquet", help="File format of the tables.")
def export(source: CaptureSource, outdir: str, fmt: str) -> None:
    """Write every table of the analysis of CAPTURE into DIR, one file each.

    packets, connections, sessions, exchanges, reconnects, deliveries, anomalies and
    tcp_retransmissions (.parquet keeps the dtypes; .csv has ISO 8601 UTC times with
    nanoseconds), plus report.json.
    Columns: docs/glossary.md.
    """
    from ..report.output import write_document, write_table

    analysis = source.analyze()
    out = Path(outdir)
    with writing(outdir):
        out.mkdir(parents=True, exist_ok=True)
        for name, df in analysis.tables().items():
            write_table(df, fmt, out / f"{name}.{fmt}")
            click.echo(f"{out / f'{name}.{fmt}'}  {len(df)} rows")
        write_document(analysis.report(), "json", out / "report.json")
        click.echo(f"{out / 'report.json'}")
    finish(analysis)
