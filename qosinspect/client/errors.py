"""What the client raises, all under :class:`qosinspect.errors.QosinspectError`::

    ClientError
    ├── ConnectRefused      the broker answered CONNACK with a failure code (``reason_code``)
    ├── ConnectionLost      the network connection ended (``cause`` says how)
    │   └── SessionLost     a flow in progress was discarded: the broker did not resume the
    │                       session, so the message may or may not have been delivered
    ├── NotConnected        the call needs a live connection (QoS 0 publish, subscribe)
    └── ClientClosed        the client was closed by the application

The CLI turns each into one line of text and an exit status like mosquitto_pub's.
"""

from __future__ import annotations

from ..errors import QosinspectError
from ..mqtt.enums import ConnAckReturnCode, ConnectReason

__all__ = [
    "ClientClosed",
    "ClientError",
    "ConnectRefused",
    "ConnectionLost",
    "NotConnected",
    "SessionLost",
    "connack_text",
]

_V3_TEXT = {
    1: "Connection Refused: unacceptable protocol version",
    2: "Connection Refused: identifier rejected",
    3: "Connection Refused: broker unavailable",
    4: "Connection Refused: bad user name or password",
    5: "Connection Refused: not authorised",
}


def connack_text(reason_code: int, version: int) -> str:
    """The wording mosquitto's clients print for a refused CONNACK."""
    if version < 5:
        return _V3_TEXT.get(reason_code, f"Connection Refused: unknown reason {reason_code}")
    try:
        name = ConnectReason(reason_code).name
    except ValueError:
        return f"unknown reason code {reason_code:#04x}"
    return name.replace("_", " ").capitalize()


class ClientError(QosinspectError):
    """Base of the client's errors."""


class ConnectRefused(ClientError):
    """CONNACK with a failure code: ``reason_code`` is the 3.1.x return code or the MQTT 5
    reason code, as sent."""

    def __init__(self, reason_code: int, version: int, reason_string: str | None = None) -> None:
        self.reason_code = int(reason_code)
        self.version = version
        self.reason_string = reason_string
        text = connack_text(self.reason_code, version)
        if reason_string:
            text += f" ({reason_string})"
        super().__init__(text)

    @property
    def code_name(self) -> str:
        enum = ConnectReason if self.version >= 5 else ConnAckReturnCode
        try:
            return enum(self.reason_code).name
        except ValueError:
            return str(self.reason_code)


class ConnectionLost(ClientError):
    """The network connection ended; ``cause`` describes how."""

    def __init__(self, cause: str) -> None:
        self.cause = cause
        super().__init__(cause)


class SessionLost(ConnectionLost):
    """The broker did not resume the session, so a flow in progress was discarded
    [MQTT-3.2.2-5]: its message may or may not have reached the broker."""


class NotConnected(ClientError):
    """The operation needs a live connection."""


class ClientClosed(ClientError):
    """The client was closed by the application."""
