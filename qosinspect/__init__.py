"""qosinspect: what MQTT's Quality of Service does on the wire.

``import qosinspect`` stays light: the codec and boundary types load at once (standard library
only); the analysis (pandas) and plots (matplotlib) load only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    CaptureError,
    ConfigError,
    MalformedPacket,
    MQTTError,
    ProtocolError,
    QosinspectError,
)
from .events import (
    Anomaly,
    ConnectionClosed,
    ConnectionInfo,
    ConnectionOpened,
    Endpoint,
    MqttPacketEvent,
    StreamGap,
    TcpRetransmission,
)

if TYPE_CHECKING:
    from .analysis.api import Analysis, analyze, analyze_capture
    from .client import Client

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "Anomaly",
    "CaptureError",
    "Client",
    "ConfigError",
    "ConnectionClosed",
    "ConnectionInfo",
    "ConnectionOpened",
    "Endpoint",
    "MQTTError",
    "MalformedPacket",
    "MqttPacketEvent",
    "ProtocolError",
    "QosinspectError",
    "StreamGap",
    "TcpRetransmission",
    "__version__",
    "analyze",
    "analyze_capture",
]

#: Names loaded on first use (they import pandas), and the module that has them.
_LAZY = {"Analysis": "qosinspect.analysis.api", "analyze": "qosinspect.analysis.api",
         "analyze_capture": "qosinspect.analysis.api", "Client": "qosinspect.client"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qosinspect' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
