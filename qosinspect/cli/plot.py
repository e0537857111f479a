"""``qosinspect plot CAPTURE -o DIR``: PNG figures of the analysis (:mod:`..report.plots`)."""

from __future__ import annotations

import click

from . import main
from .capture_options import (
    CaptureSource,
    capture_source,
    check_window,
    finish,
    resolve_window,
    time_window,
)

__all__ = ["plot"]


@main.command()
@capture_source
@click.option("--output", "-o", "outdir", required=True,
              type=click.Path(file_okay=False, writable=True),
              help="Directory to write the PNG files into (made if missing).")
@click.option("--client", default=None,
              help="Client of the ladder diagram (default: the one with the most re-sends).")
@time_window
@click.option("--dpi", type=click.IntRange(30, 600), default=110, show_default=True)
def plot(source: CaptureSource, outdir: str, client: str | None, since: str | None,
         until: str | None, dpi: int) -> None:
    """Draw the analysis of CAPTURE as PNG files in DIR.

    latency.png (latency distribution per QoS and per step), timeline.png (connections and
    reconnections per client, re-sends and TCP retransmissions marked), inflight.png (open
    exchanges over time) and ladder.png (a ladder diagram of one client in the --since/--until
    window).
    """
    check_window(since, until)
    from ..report.plots import save_all

    analysis = source.analyze(deliveries=False)
    since_ns, until_ns = resolve_window(since, until, analysis.result.t_first)
    try:
        paths = save_all(analysis, outdir, client=client, since_ns=since_ns,
                         until_ns=until_ns, dpi=dpi)
    except LookupError as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    except OSError as exc:
        raise click.ClickException(f"{outdir}: {exc}") from None
    for p in paths:
        click.echo(str(p))
    finish(analysis)
