"""``qosinspect ladder CAPTURE``: a text sequence diagram of one client's or connection's
packets, like Wireshark's flow graph, with re-sends, gaps and TCP retransmissions marked."""

from __future__ import annotations

import click

from . import main
from .capture_options import (
    CaptureSource,
    capture_source,
    check_window,
    client_or_conn,
    finish,
    resolve_window,
    time_window,
)

__all__ = ["ladder"]


@main.command()
@capture_source
@client_or_conn
@time_window
def ladder(source: CaptureSource, client: str | None, conn: int | None, since: str | None,
           until: str | None) -> None:
    """Draw the packets between a client and the broker as a ladder (sequence) diagram.

    Give --client ID (every connection of that client, in order, with the reconnections) or
    --conn N. Re-sent packets are marked [resend]; stream gaps, malformed bytes and TCP
    retransmissions appear as '~~' lines; connection opens and ends as '==' lines.
    """
    if (client is None) == (conn is None):
        raise click.UsageError("give exactly one of --client ID or --conn N")
    check_window(since, until)
    from ..report.text import ladder_lines

    analysis = source.analyze(deliveries=False)
    since_ns, until_ns = resolve_window(since, until, analysis.result.t_first)
    try:
        lines = ladder_lines(analysis, client=client, conn=conn, since_ns=since_ns,
                             until_ns=until_ns)
    except LookupError as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    click.echo("\n".join(lines))
    finish(analysis)
