"""qosinspect: what MQTT's Quality of Service does on the wire.

``import qosinspect`` stays light: the codec and boundary types load at once (standard library
only); the analysis (pandas) and plots (matplotlib) load only when asked for.
"""

from __future__ import annotations

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

__version__ = "0.1.0"

__all__ = [
    "Anomaly",
    "CaptureError",
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
]
