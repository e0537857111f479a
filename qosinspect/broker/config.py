"""Broker settings from a TOML file and command-line options, checked and turned into objects.

Keys (the long option names with ``_``; the command line overrides the file)::

    host = "127.0.0.1"            # or a list: ["127.0.0.1", "::1"]
    port = 1883                   # one TCP listener per host (0: any free port)
    allow_anonymous = false
    password_file = "passwd"      # mosquitto_passwd / qosinspect passwd format
    acl_file = "acl"              # mosquitto acl_file format
    max_keepalive = 0             # 0: no cap
    persistence = "broker.db"     # SQLite file
    verbose = false
    max_connections = 10000
    max_packet_size = 1048576
    max_inflight = 20             # outbound window without a client Receive Maximum
    receive_maximum = 100         # inbound QoS 2 window announced to MQTT 5 clients
    max_queued_messages = 1000    # per online subscriber: its queue is full past it
    max_queued_bytes = 33554432   # the same in bytes of topic and payload
    queue_full_policy = "disconnect"  # or "drop-oldest": for a slow subscriber's full queue
    max_offline_messages = 100000 # per offline session (oldest dropped past it)
    connect_timeout = 10.0
    topic_alias_maximum = 10      # aliases clients may set towards the broker
    outgoing_topic_aliases = 10   # aliases the broker sets towards MQTT 5 clients (0: off)
    sys_interval = 10.0           # seconds between $SYS publications (0: none)
    deny_subscribe_code = 0x87    # MQTT 5 SUBACK code for a denied filter (0x80 or 0x87)
    slow_subscriber_timeout = 5.0 # a full subscriber pauses publishers this long at most
    max_protocol_version = 5      # 4: a 3.1.1-only broker (CONNACK code 1 to MQTT 5 clients)
    max_sessions = 100000

    [[listener]]                  # more listeners
    host = "::1"
    port = 8883
    certfile = "server.crt"       # TLS when set
    keyfile = "server.key"
    cafile = "ca.crt"             # client certificates signed by it are verified
    require_certificate = true
    use_identity_as_username = false
    websocket = false

Relative file names in the file are taken from the file's folder.
"""

from __future__ import annotations

import ssl
import tomllib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .auth import AccessControl, Authenticator, PasswordFile
from .engine import BrokerConfig
from .server import Listener, ServerConfig, tls_context

__all__ = ["OPTION_KEYS", "QUEUE_FULL_POLICIES", "build", "load_toml"]

#: What ``queue_full_policy`` may say (see :mod:`.backpressure`).
QUEUE_FULL_POLICIES = ("disconnect", "drop-oldest")

_LISTENER_KEYS = {"host", "port", "certfile", "keyfile", "cafile", "require_certificate",
                  "use_identity_as_username", "websocket"}
_PATH_KEYS = {"password_file", "acl_file", "persistence", "certfile", "keyfile", "cafile"}
_ENGINE_KEYS = {"max_keepalive": "max_keepalive", "max_inflight": "max_inflight",
                "receive_maximum": "receive_maximum",
                "max_queued_messages": "max_queued_messages",
                "max_queued_bytes": "max_queued_bytes",
                "queue_full_policy": "queue_full_policy",
                "outgoing_topic_aliases": "outgoing_topic_aliases",
                "sys_interval": "sys_interval",
                "max_offline_messages": "max_offline_messages",
                "topic_alias_maximum": "topic_alias_maximum",
                "deny_subscribe_code": "deny_subscribe_code_v5",
                "max_packet_size": "max_packet_size", "connect_timeout": "connect_timeout",
                "max_sessions": "max_sessions",
                "slow_subscriber_timeout": "slow_subscriber_timeout",
                "max_protocol_version": "max_protocol_version"}
#: Every top-level key a configuration may hold.
OPTION_KEYS = frozenset({"host", "port", "allow_anonymous", "password_file", "acl_file",
                         "persistence", "verbose", "max_connections", "listener",
                         *_ENGINE_KEYS})


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read and check a TOML configuration; relative paths become relative to its folder."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(exc), path=str(path)) from None
    unknown = set(data) - OPTION_KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}; known: "
                          f"{', '.join(sorted(OPTION_KEYS))}", path=str(path))
    base = path.parent
    for key in _PATH_KEYS & set(data):
        data[key] = str(base / data[key])
    listeners = data.get("listener", [])
    if not isinstance(listeners, list):
        raise ConfigError("[[listener]] must be an array of tables", field="listener",
                          path=str(path))
    for i, table in enumerate(listeners):
        if not isinstance(table, dict):
            raise ConfigError("must be a table", field=f"listener[{i}]", path=str(path))
        bad = set(table) - _LISTENER_KEYS
        if bad:
            raise ConfigError(f"unknown key(s) {', '.join(sorted(bad))}",
                              field=f"listener[{i}]", path=str(path))
        for key in _PATH_KEYS & set(table):
            table[key] = str(base / table[key])
    return data


def _typed(opts: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = opts.get(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"expected {kind.__name__}, got {value!r}", field=key)
    return value


def _listener(table: dict[str, Any], where: str) -> Listener:
    try:
        tls: ssl.SSLContext | None = None
        if table.get("certfile"):
            tls = tls_context(str(table["certfile"]), table.get("keyfile"),
                              cafile=table.get("cafile"),
                              require_certificate=bool(table.get("require_certificate", False)))
        elif table.get("keyfile") or table.get("cafile"):
            raise ConfigError("keyfile/cafile need a certfile", field=where)
        port = table.get("port", 1883)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be 0..65535, not {port!r}", field=f"{where}.port")
        return Listener(str(table.get("host", "127.0.0.1")), port, tls,
                        bool(table.get("websocket", False)),
                        bool(table.get("use_identity_as_username", False)))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS files: {exc}", field=where) from None


def build(opts: dict[str, Any]) -> tuple[ServerConfig, Authenticator, bool]:
    """``(ServerConfig, Authenticator, verbose)`` from merged options (file, then CLI)."""
    listeners: list[Listener] = []
    hosts = opts.get("host", "127.0.0.1")
    hosts = [hosts] if isinstance(hosts, str) else list(hosts)
    port = _typed(opts, "port", int, 1883)
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be 0..65535, not {port}", field="port")
    if "port" in opts or "host" in opts or not opts.get("listener"):
        listeners.extend(Listener(str(h), port) for h in hosts)
    for i, table in enumerate(opts.get("listener", [])):
        listeners.append(_listener(table, f"listener[{i}]"))
    engine = BrokerConfig()
    for key, attr in _ENGINE_KEYS.items():
        if key in opts:
            default = getattr(engine, attr)
            setattr(engine, attr, _typed(opts, key, type(default), default))
    if engine.queue_full_policy not in QUEUE_FULL_POLICIES:
        raise ConfigError(f"must be one of {', '.join(QUEUE_FULL_POLICIES)}",
                          field="queue_full_policy")
    if engine.sys_interval < 0 or engine.slow_subscriber_timeout <= 0:
        raise ConfigError("sys_interval must be >= 0 and slow_subscriber_timeout > 0",
                          field="sys_interval" if engine.sys_interval < 0
                          else "slow_subscriber_timeout")
    if not 0 <= engine.outgoing_topic_aliases <= 65535:
        raise ConfigError("must be 0..65535", field="outgoing_topic_aliases")
    if engine.deny_subscribe_code_v5 not in (0x80, 0x87):
        raise ConfigError("must be 0x80 (128) or 0x87 (135)", field="deny_subscribe_code")
    for key in ("max_inflight", "receive_maximum", "max_queued_messages", "max_queued_bytes",
                "max_offline_messages", "max_packet_size"):
        value = getattr(engine, _ENGINE_KEYS[key])
        if value < 1:
            raise ConfigError(f"must be at least 1, not {value}", field=key)
    if engine.max_protocol_version not in (3, 4, 5):
        raise ConfigError("must be 3, 4 or 5", field="max_protocol_version")
    if not 0 <= engine.max_keepalive <= 65535:
        raise ConfigError("must be 0..65535", field="max_keepalive")
    engine.receive_maximum = min(engine.receive_maximum, 65535)
    passwords = PasswordFile.load(opts["password_file"], must_exist=True) \
        if opts.get("password_file") else None
    acl = AccessControl.load(opts["acl_file"]) if opts.get("acl_file") else None
    auth = Authenticator(bool(opts.get("allow_anonymous", False)), passwords, acl)
    cfg = ServerConfig(listeners=listeners, engine=engine,
                       max_connections=_typed(opts, "max_connections", int, 10_000),
                       persistence=opts.get("persistence") or None)
    return cfg, auth, bool(opts.get("verbose", False))
