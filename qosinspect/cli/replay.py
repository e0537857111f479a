"""``qosinspect replay CAPTURE --broker HOST:PORT``: publish a capture's messages again.

The work is :mod:`qosinspect.traffic.replay`; this module parses options, runs the event loop
with Ctrl-C wired to a clean stop, prints what the broker acknowledged, and turns bad input into
a message and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import click

from ..errors import QosinspectError
from . import main
from .capture_options import MQTT_VERSIONS

__all__ = ["replay"]



@main.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--broker", required=True, metavar="HOST:PORT",
              help="The broker to publish to (local addresses only).")
@click.option("--speed", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Time scale: 2 replays twice as fast; 0 as fast as possible (the order is "
                   "then kept per client only).")
@click.option("--client", "clients", multiple=True, metavar="ID",
              help="Replay only this original client id (repeatable).")
@click.option("--topic", "topics", multiple=True, metavar="FILTER",
              help="Replay only messages matching this topic filter (repeatable).")
@click.option("--same-ids", is_flag=True,
              help="Use the original client ids and session settings (default: replay-ID, "
                   "clean sessions).")
@click.option("--port", "-p", "ports", type=click.IntRange(1, 65535), multiple=True,
              help="Another TCP port MQTT runs on in the capture (1883 always is).")
@click.option("--mqtt-version", type=click.Choice(sorted(MQTT_VERSIONS)), default=None,
              help="Publish with this MQTT version (default: each client's original one).")
@click.option("--timeout", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Seconds to wait for the last acknowledgements.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
def replay(capture: str, broker: str, speed: float, clients: tuple[str, ...],
           topics: tuple[str, ...], same_ids: bool, ports: tuple[int, ...],
           mqtt_version: str | None, timeout: float, fmt: str) -> None:
    """Re-publish the PUBLISH messages CAPTURE's clients sent, to the broker at HOST:PORT.

    Topics, payloads, QoS, retain and (MQTT 5) properties as captured, with the original
    timing scaled by --speed; a message resent by its client (same packet id) is sent once.
    Prints, per client and QoS, what the broker completed, refused (with reason codes) or left
    unanswered.
    """
    from ..mqtt.topics import validate_topic_filter
    from ..traffic.replay import format_replay, load_plan
    from ..traffic.scenario import parse_address

    try:
        host, port = parse_address(broker, field="--broker")
        for f in topics:
            validate_topic_filter(f)
        plan = load_plan(capture, clients=clients, topics=topics,
                         ports=tuple(sorted({1883, *ports})),
                         version=MQTT_VERSIONS[mqtt_version] if mqtt_version else None)
        if not plan.messages:
            raise click.ClickException(f"{capture}: no PUBLISH from a client to replay"
                                       + (" (after --client/--topic)" if clients or topics
                                          else ""))
        summary = asyncio.run(_run(plan, host, port, speed, same_ids, timeout))
    except (QosinspectError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(summary, indent=1) if fmt == "json" else format_replay(summary))
    if summary["interrupted"]:
        sys.exit(130)


async def _run(plan: Any, host: str, port: int, speed: float, same_ids: bool,
               timeout: float) -> Any:
    from ..traffic.replay import replay as do_replay

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        return await do_replay(plan, host, port, speed=speed, same_ids=same_ids,
                               timeout=timeout, stop=stop)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
