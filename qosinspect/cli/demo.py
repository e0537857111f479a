"""``qosinspect demo``: the interim demo, decoding a capture shipped in ``captures/``.

Interim: until the traffic generator can run a broker and clients on the spot, the demo shows
the decoder on a capture recorded from real peers (mosquitto 2.0.11 and raw-socket clients, see
``captures/README.md``): a persistent subscriber leaves QoS 1 and 2 messages unacknowledged,
drops its connection, comes back, and mosquitto redelivers them with DUP=1 and resends a PUBREL.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from ..capture import iter_events
from ..capture.lines import formatter
from ..errors import QosinspectError
from ..events import ConnectionOpened, MqttPacketEvent
from ..mqtt.packets import Connect, Publish
from . import main

__all__ = ["DEMO_CAPTURE", "demo"]

#: The capture the interim demo decodes (in the project checkout).
DEMO_CAPTURE = Path(__file__).resolve().parents[2] / "captures" / "mosquitto-redelivery.pcap"


@main.command()
@click.option("--capture", "path", type=click.Path(dir_okay=False), default=None,
              help=f"Decode this capture instead of {DEMO_CAPTURE.name}.")
def demo(path: str | None) -> None:
    """Interim demo: decode a capture shipped in captures/ and summarise it per packet."""
    capture = Path(path) if path else DEMO_CAPTURE
    if not capture.exists():
        raise click.ClickException(f"{capture}: not found (the interim demo decodes a capture "
                                   "from the project checkout's captures/ folder)")
    click.echo("qosinspect demo -- INTERIM: this decodes a capture shipped in captures/; the "
               "full demo\n(its own broker and clients, then the QoS report) comes with the "
               "traffic generator.\n")
    click.echo(f"{capture.name}: one line per MQTT packet (frame, time, sender -> receiver, "
               "direction, version, packet)\n")
    table = formatter("table")
    types: Counter[str] = Counter()
    redelivered = 0
    clients: dict[int, str] = {}
    connections = 0
    try:
        for ev in iter_events(capture):
            if type(ev) is ConnectionOpened:
                connections += 1
            line = table(ev)
            if line is not None:
                click.echo(line, nl=False)
            if type(ev) is MqttPacketEvent:
                p = ev.packet
                types[p.packet_type.name] += 1
                if isinstance(p, Connect):
                    clients[ev.conn.conn_id] = p.client_id
                elif isinstance(p, Publish) and p.dup:
                    redelivered += 1
    except QosinspectError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("")
    click.echo(f"{sum(types.values())} MQTT packets on {connections} connections "
               f"(clients: {', '.join(sorted(set(clients.values())))})")
    click.echo("by type: " + ", ".join(f"{k} {v}" for k, v in sorted(types.items())))
    click.echo(f"PUBLISH resent with DUP=1: {redelivered} (QoS 1/2 redelivery after the "
               "subscriber reconnected with session present)")
    click.echo("\nTry: qosinspect decode --format jsonl captures/mosquitto-redelivery.pcap")
