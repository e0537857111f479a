"""The built-in MQTT broker: a pure engine (:mod:`.engine`) driven by asyncio (:mod:`.server`)."""

from .auth import AccessControl, Authenticator, PasswordFile, hash_password, verify_password
from .engine import BrokerConfig, BrokerEngine
from .server import BrokerServer, Listener, ServerConfig

__all__ = [
    "AccessControl",
    "Authenticator",
    "BrokerConfig",
    "BrokerEngine",
    "BrokerServer",
    "Listener",
    "PasswordFile",
    "ServerConfig",
    "hash_password",
    "verify_password",
]
