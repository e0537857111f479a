"""``qosinspect sub``: subscribe and print messages like mosquitto_sub, with the built-in client.

Like mosquitto_sub it reconnects after a lost connection (resuming the session with ``-c``),
stops after ``-C`` messages or ``-W`` seconds (exit status 27), and prints the payload, or
``topic payload`` with ``-v``, or a ``-F`` format. ``-F`` knows mosquitto's ``%t %p %q %r %m
%l %x %X %I %U %C %R %E %%`` and ``\\n \\t \\\\``, plus ``%d``, the DUP flag (0/1), which
matters when watching redelivery.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from ..client.client import Client, Message
from ..mqtt.topics import topic_matches
from . import main
from .pub import _CONTEXT, connection_options, make_client, run_client

__all__ = ["format_message", "sub"]


def format_message(fmt: str, m: Message) -> bytes:
    """A message printed with a mosquitto_sub ``-F`` format (see the module docstring)."""
    out = bytearray()
    i = 0
    n = len(fmt)
    while i < n:
        ch = fmt[i]
        if ch in "%\\" and i + 1 < n:
            code = fmt[i + 1]
            i += 2
            if ch == "\\":
                out += {"n": b"\n", "t": b"\t", "\\": b"\\", "0": b"\0"}.get(
                    code, ("\\" + code).encode())
                continue
            out += _field(code, m)
            continue
        out += ch.encode()
        i += 1
    return bytes(out)


def _field(code: str, m: Message) -> bytes:
    props = m.properties
    simple: dict[str, object] = {
        "t": m.topic, "q": m.qos, "r": int(m.retain), "d": int(m.dup),
        "m": m.packet_id or 0, "l": len(m.payload), "%": "%",
        "C": props.content_type or "", "R": props.response_topic or "",
        "E": props.message_expiry_interval if props.message_expiry_interval is not None else "",
    }
    if code in simple:
        return str(simple[code]).encode()
    if code == "p":
        return m.payload
    if code == "x":
        return m.payload.hex().encode()
    if code == "X":
        return m.payload.hex().upper().encode()
    if code == "U":
        return f"{m.ts_ns // 1_000_000_000}.{m.ts_ns % 1_000_000_000:09d}".encode()
    if code == "I":
        # as mosquitto_sub prints it: local time, offset without a colon (+0100)
        stamp = dt.datetime.fromtimestamp(m.ts_ns // 1_000_000_000, dt.UTC).astimezone()
        return stamp.strftime("%Y-%m-%dT%H:%M:%S%z").encode()
    return ("%" + code).encode()


@main.command(context_settings=_CONTEXT)
@connection_options
@click.option("-t", "--topic", "topics", multiple=True, required=True,
              help="Topic filter to subscribe to (repeatable).")
@click.option("-T", "--filter-out", "filter_out", multiple=True,
              help="Do not print messages matching this filter (repeatable).")
@click.option("-q", "--qos", type=click.IntRange(0, 2), default=0, show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Print 'topic payload'.")
@click.option("-C", "--count", type=click.IntRange(1), default=None,
              help="Exit after this many messages.")
@click.option("-R", "--no-retained", is_flag=True, help="Skip retained (stale) messages.")
@click.option("--retained-only", is_flag=True,
              help="Print retained messages only; exit at the first live one.")
@click.option("-N", "--no-newline", is_flag=True, help="No end of line after each message.")
@click.option("-E", "--exit-after-subscribe", is_flag=True,
              help="Exit once the subscriptions are acknowledged.")
@click.option("-F", "--format", "fmt", default=None, help="Output format (codes above).")
@click.option("--no-local", is_flag=True, help="MQTT 5: not my own messages.")
@click.pass_context
def sub(ctx: click.Context, /, **opts: Any) -> None:
    """Subscribe and print messages (like mosquitto_sub; -h is the host, --help the help).

    Reconnects after a lost connection (resuming the session with -c).

    \b
    -F codes: %t topic, %p payload, %q QoS, %r retain flag, %d DUP flag, %m packet id,
    %l payload length, %x / %X payload in hex, %I ISO 8601 time, %U Unix time (s.ns),
    %C content type, %R response topic, %E message expiry, %% a percent sign;
    escapes \\n \\t \\\\.
    """
    client = make_client(opts, id_prefix="qosinspect_sub_", reconnect=True)
    if opts["no_local"] and client.options.version < 5:
        raise click.UsageError("--no-local exists only with -V mqttv5")
    ctx.exit(run_client(_subscribe(client, opts), quiet=opts["quiet"], timeout=opts["timeout"]))


async def _subscribe(client: Client, opts: dict[str, Any]) -> int:
    await client.connect()
    try:
        codes = await client.subscribe(list(opts["topics"]), opts["qos"],
                                       no_local=opts["no_local"])
        denied = [t for t, c in zip(opts["topics"], codes, strict=True) if c >= 0x80]
        if denied and len(denied) == len(codes):
            if not opts["quiet"]:
                click.echo("All subscription requests were denied.", err=True)
            return 1
        for topic in denied:
            if not opts["quiet"]:
                click.echo(f"Warning: subscription to {topic} was denied.", err=True)
        if opts["exit_after_subscribe"]:
            return 0
        seen = 0
        async for message in client.messages():
            if any(topic_matches(f, message.topic) for f in opts["filter_out"]):
                continue
            if opts["retained_only"] and not message.retain:
                break
            if opts["no_retained"] and message.retain:
                continue
            click.echo(_render(message, opts), nl=not opts["no_newline"])
            seen += 1
            if opts["count"] is not None and seen >= opts["count"]:
                break
        return 0
    finally:
        await client.disconnect()


def _render(message: Message, opts: dict[str, Any]) -> bytes:
    if opts["fmt"] is not None:
        return format_message(opts["fmt"], message)
    if opts["verbose"]:
        return message.topic.encode() + b" " + message.payload
    return message.payload
