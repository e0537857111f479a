"""``qosinspect broker`` and ``qosinspect passwd``: run the built-in broker, add users.

Options override the TOML ``--config`` file, whose keys are the long option names
(``port``, ``host``, ``allow_anonymous``, ``password_file``, ``acl_file``, ``max_keepalive``,
``verbose``) plus ``[[listener]]`` tables (``host``, ``port``, ``certfile``, ``keyfile``,
``cafile``, ``require_certificate``, ``websocket``) for several listeners.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import ssl
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..broker.auth import AccessControl, Authenticator, PasswordFile
from ..broker.engine import BrokerConfig
from ..broker.server import BrokerServer, Listener, ServerConfig
from ..errors import ConfigError, QosinspectError
from . import main

__all__ = ["broker", "passwd"]


def _tls(table: dict[str, Any]) -> ssl.SSLContext | None:
    if not table.get("certfile"):
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(table["certfile"], table.get("keyfile"))
    if table.get("cafile"):
        ctx.load_verify_locations(table["cafile"])
        ctx.verify_mode = (ssl.CERT_REQUIRED if table.get("require_certificate", True)
                           else ssl.CERT_OPTIONAL)
    return ctx


def build_server(opts: dict[str, Any]) -> BrokerServer:
    """A BrokerServer from merged options (config file, then command line)."""
    listeners = [Listener(t.get("host", "127.0.0.1"), int(t.get("port", 1883)), _tls(t),
                          bool(t.get("websocket", False))) for t in opts.get("listener", [])]
    if not listeners or opts.get("port_given"):
        listeners.insert(0, Listener(opts.get("host", "127.0.0.1"), int(opts.get("port", 1883))))
    engine = BrokerConfig(max_keepalive=int(opts.get("max_keepalive", 65535)))
    passwords = PasswordFile.load(opts["password_file"]) if opts.get("password_file") else None
    acl = AccessControl.load(opts["acl_file"]) if opts.get("acl_file") else None
    auth = Authenticator(bool(opts.get("allow_anonymous", False)), passwords, acl)
    cfg = ServerConfig(listeners=listeners, engine=engine)
    for key in ("max_connections", "max_packet_size", "connect_timeout"):
        if key in opts:
            setattr(cfg, key, opts[key])
    return BrokerServer(cfg, auth=auth, verbose=bool(opts.get("verbose")))


async def _serve(server: BrokerServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    where = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in server.addresses)
    logging.getLogger("qosinspect.broker").warning("qosinspect broker ready, listening on %s",
                                                   where)
    await stop.wait()
    await server.close()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", "-p", type=int, default=None, help="TCP port (default 1883; 0: any).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="TOML configuration file.")
@click.option("--allow-anonymous/--no-allow-anonymous", default=None,
              help="Accept clients without a user name.")
@click.option("--password-file", type=click.Path(dir_okay=False), default=None)
@click.option("--acl-file", type=click.Path(dir_okay=False), default=None)
@click.option("--max-keepalive", type=int, default=None,
              help="Cap on keep alive; MQTT 5 clients get Server Keep Alive.")
@click.option("--persistence", type=click.Path(dir_okay=False), default=None,
              help="SQLite file for sessions and retained messages (not implemented yet).")
@click.option("--verbose", "-v", is_flag=True, default=None, help="Log every packet.")
def broker(host: str | None, port: int | None, config_file: str | None,
           allow_anonymous: bool | None, password_file: str | None, acl_file: str | None,
           max_keepalive: int | None, persistence: str | None, verbose: bool | None) -> None:
    """Run the built-in MQTT broker in the foreground (SIGTERM/SIGINT stop it)."""
    opts: dict[str, Any] = {}
    try:
        if config_file:
            try:
                opts.update(tomllib.loads(Path(config_file).read_text(encoding="utf-8")))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(str(exc), path=config_file) from None
        given = {"host": host, "port": port, "allow_anonymous": allow_anonymous,
                 "password_file": password_file, "acl_file": acl_file,
                 "max_keepalive": max_keepalive, "verbose": verbose}
        opts.update({k: v for k, v in given.items() if v is not None})
        opts["port_given"] = port is not None or host is not None or "port" in opts
        if persistence:
            raise ConfigError("--persistence is not implemented yet", field="persistence")
        logging.basicConfig(level=logging.INFO if opts.get("verbose") else logging.WARNING,
                            format="%(asctime)s %(message)s", stream=sys.stderr)
        server = build_server(opts)
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(_serve(server))
    except (QosinspectError, OSError, ssl.SSLError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("user")
@click.option("--password", default=None, help="The password (prompted for if omitted).")
def passwd(file: str, user: str, password: str | None) -> None:
    """Add or update USER in password FILE (salted PBKDF2-SHA512, mosquitto compatible)."""
    if password is None:
        password = getpass.getpass(f"Password for {user}: ")
    try:
        pw = PasswordFile.load(file)
        pw.set(user, password)
        pw.save(file)
    except QosinspectError as exc:
        raise click.ClickException(str(exc)) from None
