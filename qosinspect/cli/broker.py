"""``qosinspect broker`` and ``qosinspect passwd``: run the built-in broker, manage users.

Options override the TOML ``--config`` file (see :mod:`qosinspect.broker.config` for its keys).
The broker runs in the foreground, logs ``ready`` on stderr once every listener is listening,
and exits with status 0 on SIGTERM or SIGINT after closing its connections and store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from ..broker.auth import PasswordFile
from ..broker.config import QUEUE_FULL_POLICIES, build, load_toml
from ..broker.server import BrokerServer
from ..errors import ConfigError, QosinspectError
from . import main
from .watch import metrics_options, parse_metrics, record_options

if TYPE_CHECKING:
    from ..live.tap import TapWatch

__all__ = ["broker", "passwd"]

log = logging.getLogger("qosinspect.broker")


async def _serve(server: BrokerServer, notes: list[str], watch: TapWatch | None = None,
                 interval_s: float = 1.0) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.warning("qosinspect broker ready, listening on %s", server.describe())
    for note in notes:          # after the ready line, which scripts wait for as the first
        log.warning("%s", note)
    ticker = asyncio.create_task(watch.ticker(interval_s)) if watch is not None else None
    await stop.wait()
    stats = ", ".join(f"{k} {v}" for k, v in vars(server.stats).items())
    log.warning("qosinspect broker stopping (%s)", stats)
    await server.close()
    if ticker is not None:
        ticker.cancel()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@main.command()
@click.option("--host", "hosts", multiple=True,
              help="Address to listen on (default 127.0.0.1; repeat for several, e.g. ::1).")
@click.option("--port", "-p", type=int, default=None, help="TCP port (default 1883; 0: any).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML configuration file (the options below override it).")
@click.option("--allow-anonymous/--no-allow-anonymous", default=None,
              help="Accept clients without a user name (default: no).")
@click.option("--password-file", type=click.Path(dir_okay=False), default=None,
              help="user:hash lines (qosinspect passwd or mosquitto_passwd).")
@click.option("--acl-file", type=click.Path(dir_okay=False), default=None,
              help="Access control list in mosquitto's acl_file format.")
@click.option("--max-keepalive", type=int, default=None,
              help="Cap on keep alive: MQTT 5 clients get Server Keep Alive, 3.1.x are refused.")
@click.option("--persistence", type=click.Path(dir_okay=False), default=None,
              help="SQLite file: sessions, queues and retained messages survive a restart.")
@click.option("--verbose", "-v", is_flag=True, default=None, help="Log every packet.")
@click.option("--tls-port", type=int, default=None, help="Add a TLS listener on this port.")
@click.option("--ws-port", type=int, default=None,
              help="Add a WebSocket listener on this port (over TLS with --certfile).")
@click.option("--certfile", type=click.Path(dir_okay=False), default=None,
              help="Server certificate (PEM) for --tls-port / --ws-port.")
@click.option("--keyfile", type=click.Path(dir_okay=False), default=None,
              help="Private key (PEM) of --certfile.")
@click.option("--cafile", type=click.Path(dir_okay=False), default=None,
              help="CA that signs client certificates (they are verified when given).")
@click.option("--require-certificate", is_flag=True, default=False,
              help="TLS clients must present a certificate signed by --cafile.")
@click.option("--use-identity-as-username", is_flag=True, default=False,
              help="A client certificate's common name is the user name (no password).")
@click.option("--max-connections", type=int, default=None)
@click.option("--max-packet-size", type=int, default=None, help="Bytes (default 1 MiB).")
@click.option("--max-inflight", type=int, default=None,
              help="Outbound QoS 1/2 window without a client Receive Maximum (default 20).")
@click.option("--max-queued-messages", type=int, default=None,
              help="Queue of one online subscriber, in messages (default 1000).")
@click.option("--max-queued-bytes", type=int, default=None,
              help="The same in bytes of topic and payload (default 32 MiB).")
@click.option("--queue-full-policy", type=click.Choice(QUEUE_FULL_POLICIES), default=None,
              help="A slow subscriber's full queue: disconnect it (0x97, default) or drop "
                   "its oldest QoS 1/2 messages (counted). One that keeps up pauses "
                   "publishers instead.")
@click.option("--slow-subscriber-timeout", type=float, default=None,
              help="A subscriber that acknowledged nothing for this long is slow: it pauses "
                   "no publisher (default 5 s).")
@click.option("--sys-interval", type=float, default=None,
              help="Seconds between $SYS/broker/... publications (default 10; 0: none).")
@click.option("--outgoing-topic-aliases", type=int, default=None,
              help="Topic aliases the broker sets towards MQTT 5 clients that allow them "
                   "(default 10; 0: off).")
@click.option("--max-offline-messages", type=int, default=None,
              help="Per offline session; past it the oldest is dropped (default 100000).")
@click.option("--connect-timeout", type=float, default=None,
              help="Seconds a new connection has to send CONNECT (default 10).")
@click.option("--deny-subscribe-code", type=click.Choice(["0x80", "0x87"]), default=None,
              help="MQTT 5 SUBACK code for a denied topic filter (default 0x87).")
@click.option("--max-protocol-version", type=click.Choice(["3", "4", "5"]), default=None,
              help="The newest MQTT version accepted (4: a 3.1.1-only broker, which answers "
                   "an MQTT 5 CONNECT with a 3.1.1 CONNACK, code 1). Default 5.")
@click.option("--watch", "watch", is_flag=True,
              help="Watch QoS live from the broker's own traffic (as 'qosinspect watch'): JSON "
                   "lines on standard output, the report when the broker stops.")
@click.option("--watch-report", type=click.Path(dir_okay=False), default=None,
              help="With --watch: write the final report to this file (else standard output).")
@click.option("--report-format", type=click.Choice(["table", "markdown", "json"]),
              default="table", show_default=True, help="With --watch: the report's format.")
@click.option("--stall-ms", type=click.IntRange(1), default=5000, show_default=True,
              help="With --watch: a handshake open longer than this is a notable event.")
@metrics_options
@record_options
def broker(hosts: tuple[str, ...], port: int | None, config_file: str | None,
           allow_anonymous: bool | None, password_file: str | None, acl_file: str | None,
           max_keepalive: int | None, persistence: str | None, verbose: bool | None,
           tls_port: int | None, ws_port: int | None, certfile: str | None,
           keyfile: str | None, cafile: str | None, require_certificate: bool,
           use_identity_as_username: bool, max_connections: int | None,
           max_packet_size: int | None, max_inflight: int | None,
           max_queued_messages: int | None, max_queued_bytes: int | None,
           queue_full_policy: str | None, slow_subscriber_timeout: float | None,
           sys_interval: float | None, outgoing_topic_aliases: int | None,
           max_offline_messages: int | None,
           connect_timeout: float | None, deny_subscribe_code: str | None,
           max_protocol_version: str | None, watch: bool, watch_report: str | None,
           report_format: str, stall_ms: int, metrics: str | None, client_label: bool,
           max_clients: int, record_dir: str | None, record_seconds: float,
           record_max_mb: float) -> None:
    """Run the built-in MQTT broker (3.1, 3.1.1, 5.0) in the foreground.

    It listens on 127.0.0.1:1883 unless told otherwise, logs "ready" once listening, and
    stops cleanly on SIGTERM or Ctrl-C.
    """
    if (metrics is not None or record_dir is not None or client_label) and not watch:
        raise click.UsageError("--metrics, --metrics-client-label and --record-dir need "
                               "--watch")
    listen = parse_metrics(metrics)
    try:
        opts: dict[str, Any] = load_toml(config_file) if config_file else {}
        given: dict[str, Any] = {
            "host": list(hosts) or None, "port": port, "allow_anonymous": allow_anonymous,
            "password_file": password_file, "acl_file": acl_file,
            "max_keepalive": max_keepalive, "persistence": persistence, "verbose": verbose,
            "max_connections": max_connections, "max_packet_size": max_packet_size,
            "max_inflight": max_inflight, "max_queued_messages": max_queued_messages,
            "max_offline_messages": max_offline_messages, "connect_timeout": connect_timeout,
            "max_queued_bytes": max_queued_bytes, "queue_full_policy": queue_full_policy,
            "slow_subscriber_timeout": slow_subscriber_timeout, "sys_interval": sys_interval,
            "outgoing_topic_aliases": outgoing_topic_aliases,
            "deny_subscribe_code": int(deny_subscribe_code, 16) if deny_subscribe_code
            else None,
            "max_protocol_version": int(max_protocol_version) if max_protocol_version else None,
        }
        opts.update({k: v for k, v in given.items() if v is not None})
        extra = opts.setdefault("listener", [])
        host = (list(hosts) or ["127.0.0.1"])[0]
        tls = {"certfile": certfile, "keyfile": keyfile, "cafile": cafile,
               "require_certificate": require_certificate,
               "use_identity_as_username": use_identity_as_username}
        if tls_port is not None:
            if not certfile:
                raise ConfigError("--tls-port needs --certfile (and --keyfile)",
                                  field="tls_port")
            extra.append({"host": host, "port": tls_port, **tls})
        if ws_port is not None:
            extra.append({"host": host, "port": ws_port, "websocket": True,
                          **(tls if certfile else {})})
        cfg, auth, loud = build(opts)
        logging.basicConfig(level=logging.INFO if loud else logging.WARNING,
                            format="%(asctime)s %(message)s", stream=sys.stderr)
        notes = []
        if not auth.allow_anonymous and auth.passwords is None and not any(
                lst.use_identity_as_username for lst in cfg.listeners):
            # mosquitto 2.0 with no configuration accepts local clients; this broker keeps
            # anonymous access off unless asked, so say at once that nobody can connect.
            notes.append("warning: anonymous access is off and there is no password file: "
                         "every client will be refused (not authorised); give "
                         "--allow-anonymous or --password-file FILE")
        with contextlib.ExitStack() as outputs:     # the metrics endpoint, until the end
            tap = _tap_watch(outputs, stall_ms, listen, max_clients if client_label else 0,
                             record_dir, record_seconds, record_max_mb) if watch else None
            server = BrokerServer(cfg, auth=auth, verbose=loud,
                                  tap=tap.feed if tap is not None else None)
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                runner.run(_serve(server, notes, tap))
            if tap is not None:
                from ..report.text import write_report

                write_report(tap.finish(), report_format, watch_report, capture=tap.name)
    except (QosinspectError, OSError, ssl.SSLError) as exc:
        raise click.ClickException(str(exc)) from None


def _tap_watch(stack: contextlib.ExitStack, stall_ms: int, metrics: tuple[str, int] | None,
               max_clients: int, record_dir: str | None, record_seconds: float,
               record_max_mb: float) -> TapWatch:
    """``--watch``: the live core on the broker's tap, JSON lines on standard output (and the
    ``/metrics`` endpoint with ``--metrics``, per-client counters for the first
    ``max_clients`` client ids with ``--metrics-client-label``, the flight recorder with
    ``--record-dir``), as ``qosinspect watch`` has them."""
    from ..live.app import fan_out, open_outputs, say
    from ..live.core import LiveCore
    from ..live.tap import TapFrames, TapWatch
    from .heap import steady_heap

    steady_heap()       # as watch: a broker's watch runs for days
    sinks, on_latency, url = open_outputs(stack, sys.stdout, metrics=metrics, warn=say)
    emit = fan_out(sinks, url)
    tap = TapWatch(LiveCore(stall_ms=stall_ms, on_latency=on_latency,
                            max_clients=max_clients), emit)
    if record_dir is not None:
        from ..live.recorder import FlightRecorder

        recorder = FlightRecorder(record_dir, emit, seconds=record_seconds,
                                  max_mb=record_max_mb)
        sinks.append(recorder.update)
        tap.on_event = TapFrames(recorder)
        stack.callback(recorder.close)      # after the report: the windows still pending
    tap.emit({"type": "start", "source": tap.name})
    return tap


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("user")
@click.option("--password", default=None, help="The password (prompted for if omitted).")
@click.option("--delete", "-D", is_flag=True, help="Remove USER instead.")
def passwd(file: str, user: str, password: str | None, delete: bool) -> None:
    """Add or update USER in password FILE (salted PBKDF2-SHA512, mosquitto compatible)."""
    try:
        pw = PasswordFile.load(file, must_exist=delete)
        if delete:
            if not pw.delete(user):
                raise ConfigError(f"no user {user!r}", path=file)
        else:
            if password is None:
                password = click.prompt(f"Password for {user}", hide_input=True)
            pw.set(user, password)
        pw.save(file)
    except (QosinspectError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
