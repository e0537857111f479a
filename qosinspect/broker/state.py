"""What the broker engine holds: its limits, its counters, sessions and connections.

Plain data, no behaviour (that is :mod:`.engine`): a :class:`BrokerSession` per client id, which
outlives network connections while it has not expired, and a :class:`ClientConn` per network
connection, whose ``outbox`` the driver empties and sends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..mqtt.packets import Packet, Will
from ..mqtt.session import Session
from .aliases import TopicAliases

__all__ = ["NEVER", "NS", "BrokerConfig", "BrokerSession", "BrokerStats", "ClientConn",
           "SubOptions"]

NS = 1_000_000_000
#: Session Expiry Interval meaning "never" (and a 3.1.x clean session 0).
NEVER = 0xFFFFFFFF


@dataclass
class BrokerConfig:
    """Limits and switches of the engine (the server adds listener settings)."""

    max_keepalive: int = 0              # 0: no cap
    max_inflight: int = 20              # outbound window when the client sets no Receive Maximum
    receive_maximum: int = 100          # inbound QoS 2 flows an MQTT 5 client may keep open
    max_queued_messages: int = 1000     # per online subscriber: its queue is full past it
    max_queued_bytes: int = 32 * 1024 * 1024  # the same in bytes (topic + payload)
    max_offline_messages: int = 100_000  # per session; past it the oldest is dropped (counted)
    topic_alias_maximum: int = 10       # aliases a client may set towards the broker
    #: Aliases the broker sets towards an MQTT 5 client that allows them (a per-connection LRU,
    #: bounded by the client's Topic Alias Maximum too); 0 turns server topic aliases off.
    outgoing_topic_aliases: int = 10
    deny_subscribe_code_v5: int = 0x87  # or 0x80
    max_sessions: int = 100_000
    max_packet_size: int = 1024 * 1024  # incoming; announced to MQTT 5 clients
    connect_timeout: float = 10.0       # seconds from TCP accept to CONNECT
    max_subscriptions: int = 10_000     # per session
    max_retained: int = 100_000         # retained topics; past it new ones are not retained
    #: Seconds between two publications of the $SYS tree (:mod:`.sysinfo`); 0: none.
    sys_interval: float = 10.0
    #: Retained messages a wildcard subscription is sent per turn of the event loop, so that a
    #: large retained set does not hold up other clients.
    retained_batch: int = 256
    #: A subscriber that has acknowledged nothing for this long (on its connection) is slow:
    #: it pauses no publisher and ``queue_full_policy`` applies to its full queue.
    slow_subscriber_timeout: float = 5.0
    #: What happens to a slow subscriber's full queue: "disconnect" (0x97; a persistent session
    #: queues offline, capped by max_offline_messages) or "drop-oldest" (counted).
    queue_full_policy: str = "disconnect"
    #: The newest MQTT version accepted: 4 makes a 3.1.1-only broker, which answers an MQTT 5
    #: CONNECT as 3.1.1 says, a 2-byte CONNACK with return code 1 (unacceptable protocol
    #: version) and a close [MQTT-3.1.2-2].
    max_protocol_version: int = 5


@dataclass(frozen=True, slots=True)
class SubOptions:
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    sub_id: int | None = None


@dataclass
class BrokerStats:
    """Counters a user checks after a run (never reset)."""

    messages_received: int = 0      # PUBLISH accepted from clients (and wills)
    messages_routed: int = 0        # copies handed to sessions
    dropped_qos0: int = 0           # QoS 0 copies not sent: congested or offline subscriber
    dropped_too_large: int = 0      # larger than the subscriber's Maximum Packet Size
    denied_publish: int = 0         # PUBLISH the ACL did not allow
    retained_refused: int = 0       # retained messages over max_retained
    connections_refused: int = 0    # CONNECT refused (auth, limits, bad client id)
    connects: int = 0               # CONNECT accepted
    publishers_paused: int = 0      # times a publisher was paused by a full subscriber queue
    slow_subscribers_closed: int = 0  # subscribers disconnected for making no progress
    dropped_queue_full: int = 0     # QoS 1/2 dropped, oldest first, from a slow one's full queue
    denied_delivery: int = 0        # copies the read ACL kept from a subscriber (resends too)
    messages_sent: int = 0          # PUBLISH packets sent to clients (resends included)
    redelivered: list[int] = field(default_factory=lambda: [0, 0, 0])  # DUP resends per QoS


@dataclass(eq=False)
class BrokerSession:
    """The broker's state for one client id; outlives connections while it has not expired."""

    client_id: str
    state: Session
    subs: dict[str, SubOptions] = field(default_factory=dict)
    conn: ClientConn | None = None
    expiry_s: int = 0
    disconnected_ns: int | None = None
    version: int = 4
    max_packet_size: int | None = None
    #: The user the session belongs to (None: anonymous); it is stored with the session and
    #: every delivery, offline queueing included, is checked against this user's read rights.
    username: str | None = None
    #: Publishers not read from until this session's queue drains.
    blockers: set[ClientConn] = field(default_factory=set)
    #: Times a publisher was paused for this session (a slow subscriber's stays 0).
    paused_publishers: int = 0

    @property
    def persistent(self) -> bool:
        return self.expiry_s > 0


@dataclass(eq=False)
class ClientConn:
    """One network connection as the engine sees it; ``outbox`` is drained by the server."""

    conn_id: int
    opened_ns: int = 0
    version: int = 4
    connected: bool = False
    client_id: str = ""
    username: str | None = None
    keep_alive: int = 0
    last_rx_ns: int = 0
    will: Will | None = None
    session: BrokerSession | None = None
    outbox: list[Packet] = field(default_factory=list)
    close_reason: int | None = None
    closed: bool = False
    congested: bool = False           # set by the server when its write buffer is full
    #: When it last acknowledged a message on this connection (None: not yet); see
    #: :mod:`.backpressure` for what that decides.
    last_ack_ns: int | None = None
    #: Wildcard subscriptions still being sent their retained messages (RetainedCursor).
    retained_cursors: deque[Any] = field(default_factory=deque)
    #: Topic aliases the broker sets towards this client (MQTT 5), or None.
    aliases: TopicAliases | None = None
    blocked_on: set[BrokerSession] = field(default_factory=set)
    dropped_qos0: int = 0
    #: The user name a TLS client certificate gave (``use_identity_as_username``).
    cert_username: str | None = None
    #: The client ended the connection with DISCONNECT (so the close is the client's doing).
    client_disconnected: bool = False
    #: Whatever the driver attaches (the server keeps its transport state here).
    driver: Any = None
