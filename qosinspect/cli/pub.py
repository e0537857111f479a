"""``qosinspect pub``: publish like mosquitto_pub, with the built-in client.

The connection options (``-h -p -V -i -I -k -c -x -u -P --will-* --cafile --cert --key
--insecure --ws -d --quiet``) are defined once here and shared with ``qosinspect sub``. Exit
status follows mosquitto's clients: 0 on success; the CONNACK code when the broker refuses the
connection; 27 on a timeout (``-W``); 1 for any other error, with one line on stderr.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
import threading
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from ..client.client import Client, PendingPublish, TapEvent
from ..client.errors import ConnectionLost, ConnectRefused
from ..client.websocket import WebSocketError
from ..errors import QosinspectError
from ..events import MqttPacketEvent
from ..mqtt.enums import Direction, PubAckReason
from ..mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Unsubscribe,
    Will,
    packet_type_of,
)
from ..mqtt.properties import Properties
from . import main

__all__ = ["EXIT_TIMEOUT", "connection_options", "describe_packet", "make_client", "pub",
           "run_client"]

#: libmosquitto's MOSQ_ERR_TIMEOUT, which mosquitto_sub returns for -W.
EXIT_TIMEOUT = 27
F = TypeVar("F", bound=Callable[..., Any])
_VERSIONS = {"mqttv31": 3, "31": 3, "3": 3, "mqttv311": 4, "311": 4, "4": 4, "mqttv5": 5,
             "5": 5}
_CONTEXT = {"help_option_names": ["--help"]}      # -h is the host, as in mosquitto's clients


def connection_options(func: F) -> F:
    """The options every client command shares (see the module docstring)."""
    options = [
        click.option("-h", "--host", default="localhost", show_default=True,
                     help="Broker host."),
        click.option("-p", "--port", type=click.IntRange(1, 65535), default=None,
                     help="Broker port (default 1883, 8883 with TLS, 8080 with --ws)."),
        click.option("-V", "--protocol-version", "version", default="mqttv311",
                     show_default=True, help="mqttv31, mqttv311 or mqttv5."),
        click.option("-i", "--id", "client_id", default=None, help="Client id."),
        click.option("-I", "--id-prefix", default=None,
                     help="Client id: this prefix followed by the process id."),
        click.option("-k", "--keepalive", type=click.IntRange(0, 65535), default=60,
                     show_default=True, help="Keep alive in seconds."),
        click.option("-c", "--disable-clean-session", "persistent", is_flag=True,
                     help="Keep the session (clean session 0 / clean start 0)."),
        click.option("-x", "--session-expiry", type=int, default=None,
                     help="MQTT 5 Session Expiry Interval in seconds (-1: never)."),
        click.option("-u", "--username", default=None),
        click.option("-P", "--pw", "password", default=None),
        click.option("--will-topic", default=None),
        click.option("--will-payload", default=None),
        click.option("--will-qos", type=click.IntRange(0, 2), default=0),
        click.option("--will-retain", is_flag=True),
        click.option("--cafile", type=click.Path(dir_okay=False), default=None,
                     help="CA certificates (PEM): connect with TLS."),
        click.option("--cert", type=click.Path(dir_okay=False), default=None,
                     help="Client certificate (PEM)."),
        click.option("--key", type=click.Path(dir_okay=False), default=None,
                     help="Client private key (PEM)."),
        click.option("--tls", "use_tls", is_flag=True,
                     help="Connect with TLS using the system's CA certificates."),
        click.option("--insecure", is_flag=True,
                     help="Do not check the server's host name against its certificate."),
        click.option("--ws", "websocket", is_flag=True, help="MQTT over WebSocket."),
        click.option("--ws-path", default="/mqtt", show_default=True),
        click.option("-W", "--timeout", type=float, default=None,
                     help="Give up after this many seconds (exit status 27)."),
        click.option("-d", "--debug", is_flag=True, help="Print every packet on stderr."),
        click.option("--quiet", is_flag=True, help="Do not print error messages."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def make_client(opts: dict[str, Any], *, id_prefix: str, reconnect: bool = False,
                properties: Properties | None = None) -> Client:
    """A :class:`Client` from the shared options; click.UsageError for a bad combination."""
    version = _VERSIONS.get(str(opts["version"]).lower())
    if version is None:
        raise click.UsageError(f"unknown protocol version {opts['version']!r} "
                               "(mqttv31, mqttv311 or mqttv5)")
    client_id = opts["client_id"]
    if opts["id_prefix"]:
        if client_id:
            raise click.UsageError("-i and -I cannot be used together")
        client_id = f"{opts['id_prefix']}{os.getpid()}"
    if client_id is None:
        if opts["persistent"]:
            raise click.UsageError("-c needs a client id (-i or -I)")
        client_id = f"{id_prefix}{os.getpid()}"
    expiry = opts["session_expiry"]
    if expiry is not None and version < 5:
        raise click.UsageError("-x (session expiry) exists only with -V mqttv5")
    if version >= 5:
        if expiry is None:
            expiry = 0xFFFFFFFF if opts["persistent"] else None
        elif expiry < 0:
            expiry = 0xFFFFFFFF
    will = None
    if opts["will_topic"]:
        will = Will(opts["will_topic"], (opts["will_payload"] or "").encode(), opts["will_qos"],
                    opts["will_retain"])
    elif opts["will_payload"] is not None:
        raise click.UsageError("--will-payload needs --will-topic")
    password = opts["password"]
    if password is not None and opts["username"] is None and version < 5:
        raise click.UsageError("-P needs -u before MQTT 5")
    client = Client(
        opts["host"], opts["port"], client_id=client_id, version=version,
        transport="websocket" if opts["websocket"] else "tcp",
        tls=True if opts["use_tls"] else None, ca_file=opts["cafile"], cert_file=opts["cert"],
        key_file=opts["key"], tls_insecure=opts["insecure"], ws_path=opts["ws_path"],
        username=opts["username"], password=password, will=will,
        clean_start=not opts["persistent"], session_expiry=expiry,
        keep_alive=opts["keepalive"], properties=properties, reconnect=reconnect)
    if opts["debug"]:
        client.tap = _debug_printer(client)
    return client


def _debug_printer(client: Client) -> Callable[[TapEvent], None]:
    def show(event: TapEvent) -> None:
        if isinstance(event, MqttPacketEvent):
            verb = "sending" if event.direction is Direction.C2B else "received"
            click.echo(f"Client {client.client_id or '(null)'} {verb} "
                       f"{describe_packet(event.packet)}", err=True)
    return show


def describe_packet(p: Packet) -> str:
    """One packet as mosquitto's clients print it with ``-d``."""
    name = packet_type_of(p).name
    if isinstance(p, Publish):
        return (f"PUBLISH (d{int(p.dup)}, q{p.qos}, r{int(p.retain)}, m{p.packet_id or 0}, "
                f"'{p.topic}', ... ({len(p.payload)} bytes))")
    if isinstance(p, ConnAck):
        return f"CONNACK ({int(p.reason_code)})"
    if isinstance(p, PubAck | PubComp):
        return f"{name} (Mid: {p.packet_id}, RC:{int(p.reason_code)})"
    if isinstance(p, PubRec):
        return f"PUBREC (Mid: {p.packet_id})"
    if isinstance(p, PubRel):
        return f"PUBREL (m{p.packet_id})"
    if isinstance(p, Subscribe):
        subs = ", ".join(f"Topic: {s.topic_filter}, QoS: {s.qos}" for s in p.subscriptions)
        return f"SUBSCRIBE (Mid: {p.packet_id}, {subs})"
    if isinstance(p, Unsubscribe):
        return f"UNSUBSCRIBE (Mid: {p.packet_id}, {', '.join(p.topic_filters)})"
    if isinstance(p, Disconnect) and p.reason_code:
        return f"DISCONNECT ({int(p.reason_code)})"
    if isinstance(p, Connect):
        return "CONNECT"
    return name


def run_client(coro: Coroutine[Any, Any, int], *, quiet: bool, timeout: float | None) -> int:
    """Run one command's coroutine; turn every expected failure into a message and a status."""
    def error(text: str) -> None:
        if not quiet:
            click.echo(text, err=True)

    async def bounded() -> int:
        if timeout is None:
            return await coro
        async with asyncio.timeout(timeout):
            return await coro

    try:
        return asyncio.run(bounded())
    except KeyboardInterrupt:
        return 0
    except TimeoutError:
        error("Timed out")
        return EXIT_TIMEOUT
    except ConnectRefused as exc:
        error(f"Connection error: {exc}.")
        return exc.reason_code or 1
    except ConnectionRefusedError:
        error("Error: Connection refused")
        return 1
    except socket.gaierror as exc:
        error(f"Error: Unable to connect (lookup error: {exc.strerror}).")
        return 1
    except ssl.SSLError as exc:
        error(f"Error: TLS: {exc.reason or exc}")
        return 1
    except OSError as exc:
        error(f"Error: {exc.strerror or exc}")
        return 1
    except WebSocketError as exc:
        error(f"Error: WebSocket: {exc}")
        return 1
    except ConnectionLost as exc:
        error(f"Error: connection lost: {exc.cause}")
        return 1
    except QosinspectError as exc:
        error(f"Error: {exc}")
        return 1


def message_properties(opts: dict[str, Any]) -> Properties | None:
    """PUBLISH properties from --user-property, --content-type, ... (MQTT 5 only)."""
    values = {"user_property": list(opts["user_property"]) or None,
              "content_type": opts["content_type"], "response_topic": opts["response_topic"],
              "correlation_data": opts["correlation_data"].encode()
              if opts["correlation_data"] is not None else None,
              "message_expiry_interval": opts["message_expiry"]}
    if not any(v is not None for v in values.values()):
        return None
    if _VERSIONS.get(str(opts["version"]).lower()) != 5:
        raise click.UsageError("message properties exist only with -V mqttv5")
    return Properties.of(**values)


@main.command(context_settings=_CONTEXT)
@connection_options
@click.option("-t", "--topic", required=True, help="Topic to publish to.")
@click.option("-m", "--message", default=None, help="Payload.")
@click.option("-f", "--file", "file", type=click.Path(dir_okay=False), default=None,
              help="Send the contents of a file.")
@click.option("-l", "--stdin-line", "lines", is_flag=True,
              help="Send each line of stdin as a message.")
@click.option("-s", "--stdin-file", "whole_stdin", is_flag=True,
              help="Send all of stdin as one message.")
@click.option("-n", "--null-message", "null", is_flag=True, help="Send an empty message.")
@click.option("-q", "--qos", type=click.IntRange(0, 2), default=0, show_default=True)
@click.option("-r", "--retain", is_flag=True, help="Retain the message.")
@click.option("--repeat", type=click.IntRange(1), default=1, help="Publish N times.")
@click.option("--repeat-delay", type=float, default=0.0, help="Seconds between repeats.")
@click.option("-M", "--max-inflight", type=click.IntRange(1, 65535), default=20,
              show_default=True, help="QoS 1/2 messages in flight at once with -l.")
@click.option("--user-property", nargs=2, multiple=True, help="MQTT 5: KEY VALUE.")
@click.option("--content-type", default=None, help="MQTT 5 Content Type.")
@click.option("--response-topic", default=None, help="MQTT 5 Response Topic.")
@click.option("--correlation-data", default=None, help="MQTT 5 Correlation Data.")
@click.option("--message-expiry", type=click.IntRange(0, 0xFFFFFFFF), default=None,
              help="MQTT 5 Message Expiry Interval (seconds).")
@click.pass_context
def pub(ctx: click.Context, /, **opts: Any) -> None:
    """Publish a message (like mosquitto_pub; -h is the host, --help the help)."""
    sources = [n for n in ("message", "file") if opts[n] is not None]
    sources += [n for n in ("lines", "whole_stdin", "null") if opts[n]]
    if len(sources) != 1:
        raise click.UsageError("give exactly one message source: -m, -f, -l, -s or -n")
    props = message_properties(opts)
    client = make_client(opts, id_prefix="qosinspect_pub_")
    payloads: list[bytes] | None = None
    if opts["message"] is not None:
        payloads = [opts["message"].encode()]
    elif opts["null"]:
        payloads = [b""]
    elif opts["file"] is not None:
        try:
            with open(opts["file"], "rb") as fh:
                payloads = [fh.read()]
        except OSError as exc:
            raise click.ClickException(f"unable to read {opts['file']}: {exc.strerror}") \
                from None
    elif opts["whole_stdin"]:
        payloads = [sys.stdin.buffer.read()]
    coro = _publish(client, opts, payloads, props)
    ctx.exit(run_client(coro, quiet=opts["quiet"], timeout=opts["timeout"]))


async def _publish(client: Client, opts: dict[str, Any], payloads: list[bytes] | None,
                   props: Properties | None) -> int:
    await client.connect()
    try:
        topic, qos, retain = opts["topic"], opts["qos"], opts["retain"]
        failures = 0
        if payloads is None:
            failures = await _publish_lines(client, topic, qos, retain, props,
                                            opts["max_inflight"], opts["quiet"])
        else:
            for i in range(opts["repeat"]):
                if i and opts["repeat_delay"]:
                    await asyncio.sleep(opts["repeat_delay"])
                for payload in payloads:
                    result = await client.publish(topic, payload, qos, retain, properties=props)
                    failures += _report(result.reason_code, result.packet_id, opts["quiet"])
        return 1 if failures else 0
    finally:
        await client.disconnect()


async def _publish_lines(client: Client, topic: str, qos: int, retain: bool,
                         props: Properties | None, window: int, quiet: bool) -> int:
    """-l: one message per line of stdin, at most ``window`` QoS 1/2 flows unfinished."""
    lines = _stdin_lines(asyncio.get_running_loop())
    pending: deque[PendingPublish] = deque()
    failures = 0
    while (line := await lines.get()) is not None:
        pending.append(client.publish_nowait(topic, line.rstrip(b"\r\n"), qos, retain,
                                             properties=props))
        while len(pending) >= window or (pending and pending[0].done()):
            result = await pending.popleft()
            failures += _report(result.reason_code, result.packet_id, quiet)
    while pending:
        result = await pending.popleft()
        failures += _report(result.reason_code, result.packet_id, quiet)
    return failures


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[bytes | None]:
    """Lines of stdin read by a daemon thread (a blocked read never holds up the exit), with
    backpressure: the thread waits while 100 lines are unread. None marks the end."""
    stdin = sys.stdin.buffer
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(100)

    def reader() -> None:
        try:
            for line in iter(stdin.readline, b""):
                asyncio.run_coroutine_threadsafe(queue.put(line), loop).result()
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()
        except (RuntimeError, ValueError, OSError):
            return                  # the loop or stdin closed first: nothing left to do

    threading.Thread(target=reader, name="qosinspect-pub-stdin", daemon=True).start()
    return queue


def _report(reason_code: int, packet_id: int | None, quiet: bool) -> int:
    if reason_code < 0x80:
        return 0
    if not quiet:
        try:
            name = PubAckReason(reason_code).name.lower().replace("_", " ")
        except ValueError:
            name = "unknown reason"
        click.echo(f"Warning: Publish {packet_id} failed: {name} ({reason_code:#04x}).",
                   err=True)
    return 1

