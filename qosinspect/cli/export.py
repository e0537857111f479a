"""``qosinspect export CAPTURE -o DIR``: every table of the analysis as Parquet or CSV files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import main
from .capture_options import CaptureSource, capture_source, finish
from .csvtimes import iso_times

__all__ = ["export"]


@main.command()
@capture_source
@click.option("--output", "-o", "outdir", required=True,
              type=click.Path(file_okay=False, writable=True),
              help="Directory to write into (made if missing).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet",
              show_default=True, help="File format of the tables.")
def export(source: CaptureSource, outdir: str, fmt: str) -> None:
    """Write every table of the analysis of CAPTURE into DIR, one file each.

    packets, connections, sessions, exchanges, reconnects, deliveries, anomalies and
    tcp_retransmissions (.parquet keeps the dtypes; .csv has ISO 8601 UTC times with
    nanoseconds), plus report.json.
    Columns: docs/glossary.md.
    """
    analysis = source.analyze()
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, df in analysis.tables().items():
            path = out / f"{name}.{fmt}"
            if fmt == "parquet":
                df.to_parquet(path, index=False)
            else:
                iso_times(df).to_csv(path, index=False)
            click.echo(f"{path}  {len(df)} rows")
        (out / "report.json").write_text(json.dumps(analysis.report(), indent=2) + "\n",
                                         encoding="utf-8")
        click.echo(f"{out / 'report.json'}")
    except OSError as exc:
        raise click.ClickException(f"{outdir}: {exc}") from None
    finish(analysis)
