"""The built-in MQTT broker: a pure engine (:mod:`.engine`) driven by asyncio (:mod:`.server`).

``BrokerServer`` runs inside a running asyncio loop (``async with``), ``BrokerThread`` runs one
in a background thread; ``SqliteStore`` persists sessions and retained messages; the tap
(see :mod:`.server`) emits every packet as a :class:`~qosinspect.events.MqttPacketEvent`.
"""

from .auth import AccessControl, Authenticator, PasswordFile, hash_password, verify_password
from .engine import BrokerConfig, BrokerEngine, BrokerStats
from .server import BrokerServer, Listener, ServerConfig, Tap, tls_context
from .store import SqliteStore
from .thread import BrokerThread

__all__ = [
    "AccessControl",
    "Authenticator",
    "BrokerConfig",
    "BrokerEngine",
    "BrokerServer",
    "BrokerStats",
    "BrokerThread",
    "Listener",
    "PasswordFile",
    "ServerConfig",
    "SqliteStore",
    "Tap",
    "hash_password",
    "tls_context",
    "verify_password",
]
