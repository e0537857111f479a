"""``qosinspect flows CAPTURE``: one row per exchange (a PUBLISH and its acknowledgements)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..analysis.records import OUTCOMES
from . import main
from .capture_options import CaptureSource, capture_source, finish
from .csvtimes import iso_times

__all__ = ["FLOW_COLUMNS", "flows"]

#: The columns of ``flows`` (``conn`` is the exchanges table's ``conn_id``).
FLOW_COLUMNS = ("ex_id", "client_id", "conn", "direction", "qos", "packet_id", "generation",
                "topic", "t_publish", "n_publish", "dup_seen", "t_puback", "t_pubrec",
                "t_pubrel", "n_pubrel", "t_pubcomp", "last_step", "retransmissions", "outcome",
                "latency_ms")


@main.command()
@capture_source
@click.option("--qos", type=click.Choice(["0", "1", "2"]), default=None, help="Only this QoS.")
@click.option("--client", default=None,
              help="Only exchanges of this client id (or session key, e.g. conn:3 for a "
                   "connection whose CONNECT was not captured).")
@click.option("--outcome", type=click.Choice([o for o in OUTCOMES if o != "open"]),
              default=None, help="Only exchanges with this outcome.")
@click.option("--direction", type=click.Choice(["c2b", "b2c"]), default=None,
              help="Only exchanges the client (c2b) or the broker (b2c) sent.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet"]),
              default="table", show_default=True, help="Output format.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to FILE instead of standard output (needed for parquet).")
def flows(source: CaptureSource, qos: str | None, client: str | None, outcome: str | None,
          direction: str | None, fmt: str, output: str | None) -> None:
    """List the QoS exchanges of CAPTURE, one row each, with the time and count of every step.

    Columns: ex_id, client_id, conn, direction (of the PUBLISH), qos, packet_id, generation,
    topic, t_publish, n_publish, dup_seen, t_puback, t_pubrec, t_pubrel, n_pubrel, t_pubcomp,
    last_step, retransmissions, outcome, latency_ms. All columns: qosinspect export.
    """
    if fmt == "parquet" and output is None:
        raise click.UsageError("--format parquet needs --output FILE")
    analysis = source.analyze(packets=False, deliveries=False)
    from ..analysis.tables import exchanges_frame

    needed = {"client_id", "session", "conn_id", "qos", "outcome", "direction"} | set(FLOW_COLUMNS)
    ex = exchanges_frame(analysis.result, sorted(needed - {"conn"}))
    if qos is not None:
        ex = ex[ex["qos"] == int(qos)]
    if client is not None:
        # the client id, or the session key ladder and report name a connection without
        # CONNECT by (conn:N)
        ex = ex[(ex["client_id"] == client) | (ex["session"] == client)]
    if outcome is not None:
        ex = ex[ex["outcome"] == outcome]
    if direction is not None:
        ex = ex[ex["direction"] == direction]
    df = ex.rename(columns={"conn_id": "conn"})[list(FLOW_COLUMNS)].reset_index(drop=True)
    try:
        if fmt == "parquet":
            df.to_parquet(output, index=False)
        elif fmt == "csv":
            iso_times(df).to_csv(output if output else sys.stdout, index=False)
        elif fmt == "json":
            _write(json.dumps(_records(df), indent=1) + "\n", output)
        else:
            import pandas as pd

            from ..report.text import format_table

            shown = df.copy()
            times = ("t_publish", "t_puback", "t_pubrec", "t_pubrel", "t_pubcomp")
            days = {d for c in times for d in df[c].dt.date.dropna()}
            # UTC, marked Z as in ISO 8601; the time of day when the exchanges fit in one day,
            # else the date too
            form = "%H:%M:%S.%fZ" if len(days) <= 1 else "%Y-%m-%dT%H:%M:%S.%fZ"
            for col in times:
                shown[col] = shown[col].dt.strftime(form)
            # missing: None, NaN, NaT and pd.NA (the packet id of a QoS 0 exchange)
            rows = [[None if pd.isna(v) else v for v in r]
                    for r in shown.astype(object).itertuples(index=False)]
            _write(format_table(list(df.columns), rows) + f"\n{len(df)} exchanges\n", output)
    except BrokenPipeError:
        raise                       # the reader went away (| head): main() ends quietly
    except OSError as exc:
        raise click.ClickException(f"{output}: {exc}") from None
    finish(analysis)


def _records(df: Any) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: times in ISO 8601 with nanoseconds, missing values null."""
    import pandas as pd

    out = []
    for row in df.to_dict("records"):
        rec: dict[str, Any] = {}
        for k, v in row.items():
            if v is None or v is pd.NaT or (not isinstance(v, str) and pd.isna(v)):
                rec[str(k)] = None
            elif isinstance(v, pd.Timestamp):
                rec[str(k)] = v.isoformat().replace("+00:00", "Z")
            elif hasattr(v, "item"):
                rec[str(k)] = v.item()  # numpy scalar
            else:
                rec[str(k)] = v
        out.append(rec)
    return out


def _write(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
