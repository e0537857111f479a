"""The built-in MQTT client: an asyncio driver (:mod:`.client`) around a sans-I/O client protocol
(:mod:`.protocol`) and the session machines of :mod:`qosinspect.mqtt`."""

from .acks import AckAction, AckControl
from .client import Client, Message, PendingPublish, PublishResult, Tap
from .errors import (
    ClientClosed,
    ClientError,
    ConnectionLost,
    ConnectRefused,
    NotConnected,
    SessionLost,
)
from .protocol import ClientProtocol, ConnectOptions
from .reconnect import Backoff, ReconnectEvent
from .sync import BlockingClient
from .transport import TransportOptions, make_ssl_context

__all__ = [
    "AckAction",
    "AckControl",
    "Backoff",
    "BlockingClient",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientProtocol",
    "ConnectOptions",
    "ConnectRefused",
    "ConnectionLost",
    "Message",
    "NotConnected",
    "PendingPublish",
    "PublishResult",
    "ReconnectEvent",
    "SessionLost",
    "Tap",
    "TransportOptions",
    "make_ssl_context",
]
