"""Scenarios: what a generator run does, read from TOML and checked field by field.

A scenario names the broker (the built-in one, started by the run, or an external ``host:port``),
the MQTT version, groups of publishers and subscribers, the topics each publisher group sends to
(QoS, rate, arrival process, payload), how long to publish, and a timeline of faults. Every value
is checked here, before anything starts, and a wrong one raises :class:`~qosinspect.ConfigError`
naming the field as a dotted path (``publishers[0].topics[1].qos``) and the file, so a user never
meets a traceback or a run that fails half way for a typo.

The format, with every key and its default, is documented in ``scenarios/README.md``; the
smallest useful file is::

    duration = 5
    [[publishers]]
    name = "pub"
    [[publishers.topics]]
    topic = "demo/t{i}"
    count = 10
    qos = 1
    rate = 10
    [[subscribers]]
    name = "sub"
    filters = ["demo/#"]

Times are seconds (floats) from the moment publishing starts; rates are messages per second per
topic. Client ids are the group ``name`` when ``count`` is 1, else ``name-0``, ``name-1``, ...
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..mqtt.enums import PacketType
from ..mqtt.topics import validate_topic_filter, validate_topic_name
from .fields import Table as _Table

__all__ = [
    "ACK_TYPES",
    "FAULT_KINDS",
    "BrokerSpec",
    "ClientSpec",
    "FaultSpec",
    "NetemSpec",
    "PublisherGroup",
    "Scenario",
    "SubscriberGroup",
    "TopicSpec",
    "load_scenario_file",
    "parse_scenario",
]

FAULT_KINDS = ("cut", "blackhole", "delay", "drop", "duplicate", "hold_acks", "restart_broker",
               "netem", "silence", "stop_reading")
ACK_TYPES = ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP")
_VERSIONS = {3: 3, 4: 4, 5: 5, "3": 3, "3.1": 3, "4": 4, "3.1.1": 4, "5": 5, "5.0": 5}
_ARRIVALS = ("fixed", "poisson", "burst")
_PAYLOAD_FORMATS = ("text", "binary")
_DIRECTIONS = ("c2b", "b2c", "both")
_MAX_CLIENTS = 1000
_MAX_TOPICS = 10_000
_MAX_RATE = 100_000.0
_MAX_PAYLOAD = 256 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    """One line of traffic a publisher sends: a topic (template) at a QoS and rate.

    ``topic`` may hold ``{i}`` (0 .. count-1), ``{client}`` (the publishing client id) and ``{n}``
    (the publisher's index in its group). ``arrival`` is ``fixed`` (evenly spaced), ``poisson``
    (exponential gaps with mean 1/rate) or ``burst`` (``burst_size`` messages back to back,
    ``rate`` bursts per second).
    """

    topic: str
    count: int = 1
    qos: int = 0
    rate: float = 1.0
    arrival: str = "fixed"
    burst_size: int = 1
    payload_size: int = 64
    payload_format: str = "text"
    retain: bool = False
    start: float = 0.0
    stop: float | None = None
    #: MQTT 5: a Topic Alias property with the topic on every PUBLISH (the short form, an
    #: empty topic, needs alias state in the client, which it does not keep).
    topic_alias: bool = False
    #: MQTT 5: Message Expiry Interval in seconds, 0 for none.
    message_expiry: int = 0
    #: MQTT 5: Content Type and User Properties carried by every message.
    content_type: str = ""
    user_properties: tuple[tuple[str, str], ...] = ()

    def topics_for(self, client_id: str, index: int) -> list[str]:
        """The concrete topic names this entry gives one publisher."""
        return [self.topic.format(i=i, client=client_id, n=index) for i in range(self.count)]


@dataclass(frozen=True)
class ClientSpec:
    """Session settings shared by the clients of a group."""

    clean_start: bool = True
    keep_alive: int = 60
    #: MQTT 5 Session Expiry Interval (seconds); MQTT 3.1.x has only ``clean_start``.
    session_expiry: int = 0
    #: Write each packet in two send() calls with TCP_NODELAY off: Nagle's algorithm meets the
    #: broker's delayed ACK (issue 16's ``nagle_delayed_ack`` reproduction).
    split_writes: bool = False
    #: SO_RCVBUF of the clients' sockets in bytes (0: the system's), as on a small device.
    rcvbuf: int = 0
    #: MQTT 5 Receive Maximum announced in CONNECT (0: none, 65,535): the QoS 1/2 messages
    #: the broker may leave unacknowledged towards the client (issue 16's ``receive_maximum``).
    receive_maximum: int = 0


@dataclass(frozen=True)
class PublisherGroup:
    name: str
    count: int = 1
    session: ClientSpec = field(default_factory=ClientSpec)
    topics: tuple[TopicSpec, ...] = ()

    def client_ids(self) -> list[str]:
        return _ids(self.name, self.count)


@dataclass(frozen=True)
class SubscriberGroup:
    """Subscribers: ``filters`` with the subscription QoS, and how fast they process messages.

    ``process_delay`` (seconds per message) makes a slow consumer: each acknowledgement is sent
    only once the previous messages were processed, as a single-threaded application would.
    """

    name: str
    count: int = 1
    session: ClientSpec = field(default_factory=ClientSpec)
    filters: tuple[tuple[str, int], ...] = ()
    process_delay: float = 0.0

    def client_ids(self) -> list[str]:
        return _ids(self.name, self.count)


@dataclass(frozen=True)
class BrokerSpec:
    """``builtin`` (started by the run; ``port`` 0 picks a free one) or ``external``."""

    kind: str = "builtin"
    host: str = "127.0.0.1"
    port: int = 0
    #: Clients speak MQTT over WebSocket (the built-in broker gets a WebSocket listener).
    websocket: bool = False
    #: Built-in broker: outbound in-flight window and per-session queue limit.
    max_inflight: int = 20
    max_queued: int = 1000


@dataclass(frozen=True)
class NetemSpec:
    """Real impairment with ``tc netem`` (root only): loss and reordering as fractions."""

    loss: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    reorder: float = 0.0
    duplicate: float = 0.0


@dataclass(frozen=True)
class FaultSpec:
    """One fault of the timeline; which fields matter depends on ``kind``.

    - ``cut``: close the client's connection with ``how`` (``fin`` or ``rst``) at ``at`` or after
      ``after_packets`` packets (of ``packet_type`` in ``direction`` when given); new connections
      are refused for ``down_for`` seconds.
    - ``blackhole``: nothing passes either way for ``duration`` seconds, then everything held
      goes through (TCP would deliver it late, not lose it); a peer that gives up first closes.
    - ``delay``: every packet in ``direction`` waits ``delay`` plus a uniform ``jitter`` (order
      kept, as TCP keeps it) for ``duration`` seconds.
    - ``drop`` / ``duplicate``: packets of ``packet_type`` in ``direction``; ``count`` at most,
      every ``every``-th one, or each with ``probability``.
    - ``hold_acks``: PUBACK/PUBREC/PUBREL/PUBCOMP (``packet_types``) in ``direction`` are held for
      ``duration`` seconds, then released in order.
    - ``restart_broker``: the built-in broker stops, and starts again ``down_for`` seconds later.
    - ``netem``: real loss/delay/reordering on the clients' link (root; a network namespace).
    - ``silence``: the clients send no PINGREQ for ``duration`` seconds (a blocked application
      loop): past 1.5 x its keep alive the broker drops one, and it reconnects.
    - ``stop_reading``: the clients read nothing from their sockets for ``duration`` seconds:
      their receive windows fill and go to zero while the broker still has messages for them.
    """

    kind: str
    index: int = 0
    clients: tuple[str, ...] = ()
    at: float = 0.0
    duration: float | None = None
    after_packets: int | None = None
    how: str = "rst"
    down_for: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    packet_types: tuple[str, ...] = ()
    direction: str = "both"
    count: int | None = None
    every: int = 1
    probability: float = 1.0
    netem: NetemSpec | None = None

    @property
    def label(self) -> str:
        who = f" {','.join(self.clients)}" if self.clients else ""
        return f"faults[{self.index}] {self.kind}{who}"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    mqtt_version: int = 4
    duration: float = 10.0
    drain: float = 5.0
    seed: int = 1
    broker: BrokerSpec = field(default_factory=BrokerSpec)
    #: The port clients connect to (the fault proxy's front): None for 1883 when it is free
    #: (else any free port), 0 for any free port.
    front_port: int | None = None
    publishers: tuple[PublisherGroup, ...] = ()
    subscribers: tuple[SubscriberGroup, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    source: str = ""

    def all_client_ids(self) -> list[str]:
        groups: list[PublisherGroup | SubscriberGroup] = [*self.subscribers, *self.publishers]
        return [cid for g in groups for cid in g.client_ids()]


def _ids(name: str, count: int) -> list[str]:
    return [name] if count == 1 else [f"{name}-{i}" for i in range(count)]


# -- parsing -----------------------------------------------------------------------------------


def load_scenario_file(path: str | Path) -> Scenario:
    """Read and check a scenario file; any problem is a ConfigError naming file and field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the scenario file: {exc}", path=str(p)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(p)) from None
    return parse_scenario(data, path=str(p), default_name=p.stem)


def parse_scenario(data: Mapping[str, Any], *, path: str | None = None,
                   default_name: str = "scenario") -> Scenario:
    """Build a :class:`Scenario` from parsed TOML, checking every field."""
    top = _Table(data, "", path)
    version_raw = top.raw("mqtt_version")
    version = 4 if version_raw is None else _VERSIONS.get(version_raw)
    if version is None or isinstance(version_raw, bool | float):
        raise top.error("must be 3 (3.1), 4 (3.1.1) or 5", "mqtt_version")
    broker = _broker(top.table("broker"))
    publishers = tuple(_publisher(t, version) for t in top.tables("publishers"))
    subscribers = tuple(_subscriber(t, version) for t in top.tables("subscribers"))
    scenario = Scenario(
        name=top.string("name", default_name),
        description=top.string("description", ""),
        mqtt_version=version,
        duration=top.number("duration", 10.0, positive=True, high=24 * 3600),
        drain=top.number("drain", 5.0, low=0, high=3600),
        seed=top.integer("seed", 1),
        broker=broker,
        front_port=top.integer("front_port", low=0, high=65535) if top.has("front_port")
        else None,
        publishers=publishers,
        subscribers=subscribers,
        source=path or "",
    )
    faults = tuple(_fault(t, i, scenario) for i, t in enumerate(top.tables("faults")))
    top.finish()
    scenario = Scenario(**{**scenario.__dict__, "faults": faults})
    _check_whole(scenario, top)
    return scenario


def _broker(t: _Table) -> BrokerSpec:
    kind = t.string("kind", "builtin", choices=("builtin", "external"))
    address = t.raw("address")
    host, port = "127.0.0.1", 0
    if address is not None:
        if kind != "external":
            raise t.error("is only used with kind = \"external\"", "address")
        host, port = parse_address(address, field=t.name("address"), path=t.path)
    elif kind == "external":
        raise t.error("is required with kind = \"external\" (host:port)", "address")
    if kind == "builtin":
        port = t.integer("port", 0, low=0, high=65535)
    spec = BrokerSpec(kind=kind, host=host, port=port,
                      websocket=t.boolean("websocket", False),
                      max_inflight=t.integer("max_inflight", 20, low=1, high=65535),
                      max_queued=t.integer("max_queued", 1000, low=1, high=10_000_000))
    t.finish()
    return spec


def parse_address(value: Any, *, field: str = "broker", path: str | None = None
                  ) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port); only local addresses."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"must be host:port, not {value!r}", field=field, path=path)
    host, _, port_s = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ConfigError(f"port must be 1-65535 in {value!r}", field=field, path=path)
    if host in ("localhost", ""):
        host = "127.0.0.1"
    if not (host.startswith("127.") or host == "::1"):
        raise ConfigError(f"only local brokers (127.0.0.1 or ::1) are allowed, not {host!r}",
                          field=field, path=path)
    return host, int(port_s)


def _session(t: _Table, default_clean: bool, version: int) -> ClientSpec:
    clean = t.boolean("clean_start", default_clean)
    expiry_default = 0 if clean else 3600
    receive_maximum = t.integer("receive_maximum", 0, low=0, high=0xFFFF)
    if receive_maximum and version != 5:
        raise t.error("needs mqtt_version = 5 (properties do not exist before MQTT 5)",
                      "receive_maximum")
    return ClientSpec(clean_start=clean, receive_maximum=receive_maximum,
                      keep_alive=t.integer("keep_alive", 60, low=0, high=65535),
                      session_expiry=t.integer("session_expiry", expiry_default, low=0,
                                               high=0xFFFFFFFF),
                      split_writes=t.boolean("split_writes", False),
                      rcvbuf=t.integer("rcvbuf", 0, low=0, high=1 << 30))


def _group_name(t: _Table) -> tuple[str, int]:
    name = t.string("name")
    if not name or any(c in name for c in "+#/\0") or len(name) > 200:
        raise t.error(f"must be a non-empty client id without '+', '#', '/' ({name!r})", "name")
    return name, t.integer("count", 1, low=1, high=_MAX_CLIENTS)


def _publisher(t: _Table, version: int) -> PublisherGroup:
    name, count = _group_name(t)
    session = _session(t, True, version)
    topics = tuple(_topic(tt, version) for tt in t.tables("topics"))
    if not topics:
        raise t.error("needs at least one [[publishers.topics]] entry", "topics")
    t.finish()
    return PublisherGroup(name, count, session, topics)


def _topic(t: _Table, version: int) -> TopicSpec:
    topic = t.string("topic")
    try:
        sample = topic.format(i=0, client="c", n=0)
    except (KeyError, IndexError, ValueError) as exc:
        raise t.error(f"bad template {topic!r}: only {{i}}, {{client}} and {{n}} may be used "
                      f"({exc})", "topic") from None
    try:
        validate_topic_name(sample)
    except Exception as exc:
        raise t.error(f"{topic!r} is not a valid topic name: {exc}", "topic") from None
    count = t.integer("count", 1, low=1, high=_MAX_TOPICS)
    if count > 1 and "{i}" not in topic:
        raise t.error("must contain {i} when count > 1 (each topic needs its own name)", "topic")
    fmt = t.string("payload_format", "text", choices=_PAYLOAD_FORMATS)
    from .payload import min_payload_size
    size = t.integer("payload_size", 64, low=min_payload_size(fmt), high=_MAX_PAYLOAD)
    alias = t.boolean("topic_alias", False)
    expiry = t.integer("message_expiry", 0, low=0, high=0xFFFFFFFF)
    content_type = t.string("content_type", "")
    props_raw = t.raw("user_properties") or {}
    if not isinstance(props_raw, Mapping) or not all(isinstance(v, str)
                                                     for v in props_raw.values()):
        raise t.error("must be a table of string values", "user_properties")
    user_props = tuple((str(k), str(v)) for k, v in props_raw.items())
    if version != 5:
        for key, used in (("topic_alias", alias), ("message_expiry", expiry),
                          ("content_type", content_type), ("user_properties", user_props)):
            if used:
                raise t.error("needs mqtt_version = 5 (properties do not exist before MQTT 5)",
                              key)
    start = t.number("start", 0.0, low=0)
    stop = t.optional_number("stop", low=0)
    if stop is not None and stop <= start:
        raise t.error(f"must be after start ({start})", "stop")
    spec = TopicSpec(
        topic=topic, count=count, qos=t.integer("qos", 0, low=0, high=2),
        rate=t.number("rate", 1.0, positive=True, high=_MAX_RATE),
        arrival=t.string("arrival", "fixed", choices=_ARRIVALS),
        burst_size=t.integer("burst_size", 1, low=1, high=100_000),
        payload_size=size, payload_format=fmt, retain=t.boolean("retain", False),
        start=start, stop=stop, topic_alias=alias, message_expiry=expiry,
        content_type=content_type, user_properties=user_props)
    if spec.burst_size > 1 and spec.arrival != "burst":
        raise t.error("is only used with arrival = \"burst\"", "burst_size")
    t.finish()
    return spec


def _subscriber(t: _Table, version: int) -> SubscriberGroup:
    name, count = _group_name(t)
    session = _session(t, True, version)
    default_qos = t.integer("qos", 2, low=0, high=2)
    filters: list[tuple[str, int]] = []
    raw = t.raw("filters")
    if not isinstance(raw, list) or not raw:
        raise t.error("must be a non-empty list of topic filters (strings, or tables "
                      "{filter = \"a/#\", qos = 1})", "filters")
    for i, item in enumerate(raw):
        where = f"{t.name('filters')}[{i}]"
        if isinstance(item, str):
            flt, qos = item, default_qos
        else:
            ft = _Table(item, where, t.path)
            flt, qos = ft.string("filter"), ft.integer("qos", default_qos, low=0, high=2)
            ft.finish()
        try:
            validate_topic_filter(flt)
        except Exception as exc:
            raise ConfigError(f"{flt!r} is not a valid topic filter: {exc}", field=where,
                              path=t.path) from None
        filters.append((flt, qos))
    group = SubscriberGroup(name, count, session, tuple(filters),
                            t.number("process_delay", 0.0, low=0, high=60))
    t.finish()
    return group


def _packet_types(t: _Table, key: str) -> tuple[str, ...]:
    names = tuple(n.upper() for n in t.strings(key))
    for n in names:
        if n not in PacketType.__members__ or n == "RESERVED":
            raise t.error(f"{n!r} is not an MQTT packet type (PUBLISH, PUBACK, ...)", key)
    return names


def _fault(t: _Table, index: int, scenario: Scenario) -> FaultSpec:
    kind = t.string("kind", choices=FAULT_KINDS)
    known = set(scenario.all_client_ids())
    all_groups: list[PublisherGroup | SubscriberGroup] = [*scenario.publishers,
                                                          *scenario.subscribers]
    groups = {g.name: g.client_ids() for g in all_groups}
    clients: list[str] = []
    for name in t.strings("client") + t.strings("clients"):
        if name in groups:
            clients.extend(groups[name])
        elif name in known:
            clients.append(name)
        else:
            close = difflib.get_close_matches(name, sorted(known | set(groups)), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise t.error(f"no client or group named {name!r}{hint}",
                          "clients" if t.has("clients") else "client")
    per_client = kind not in ("restart_broker", "netem")
    if per_client and not clients:
        raise t.error(f"a {kind} fault needs the client (or group) it applies to", "client")
    if not per_client and clients:
        raise t.error(f"a {kind} fault applies to the whole run, not to a client", "client")
    at = t.number("at", 0.0, low=0, high=24 * 3600)
    duration = t.optional_number("duration", positive=True, high=24 * 3600)
    after = t.raw("after_packets")
    if after is not None:
        after = t.integer("after_packets", low=1)
    direction = t.string("direction", "both", choices=_DIRECTIONS)
    types = _packet_types(t, "packet_type") + _packet_types(t, "packet_types")
    netem = NetemSpec(loss=t.number("loss", 0.0, low=0, high=1),
                      delay=t.number("delay", 0.0, low=0, high=60),
                      jitter=t.number("jitter", 0.0, low=0, high=60),
                      reorder=t.number("reorder", 0.0, low=0, high=1),
                      duplicate=t.number("duplicate", 0.0, low=0, high=1))
    spec = FaultSpec(kind=kind, index=index, clients=tuple(dict.fromkeys(clients)), at=at,
                     duration=duration, after_packets=after,
                     how=t.string("how", "rst", choices=("fin", "rst")),
                     down_for=t.number("down_for", 0.0, low=0, high=3600),
                     delay=netem.delay, jitter=netem.jitter,
                     packet_types=types, direction=direction,
                     count=t.integer("count", low=1) if t.has("count") else None,
                     every=t.integer("every", 1, low=1),
                     probability=t.number("probability", 1.0, low=0, high=1),
                     netem=netem if kind == "netem" else None)
    used = _KIND_KEYS[kind]
    for key in _FAULT_OPTIONAL:
        if t.has(key) and key not in used:
            raise t.error(f"is not used by a {kind} fault (it uses: {', '.join(sorted(used))})",
                          key)
    _check_fault(t, spec, scenario)
    t.finish()
    return spec


_FAULT_OPTIONAL = ("duration", "after_packets", "how", "down_for", "delay", "jitter",
                   "packet_type", "packet_types", "direction", "count", "every", "probability",
                   "loss", "reorder", "duplicate")
_KIND_KEYS: dict[str, frozenset[str]] = {
    "cut": frozenset({"after_packets", "how", "down_for", "packet_type", "packet_types",
                      "direction"}),
    "blackhole": frozenset({"duration"}),
    "delay": frozenset({"duration", "delay", "jitter", "direction"}),
    "drop": frozenset({"duration", "packet_type", "packet_types", "direction", "count",
                       "every", "probability"}),
    "duplicate": frozenset({"duration", "packet_type", "packet_types", "direction", "count",
                            "every", "probability"}),
    "hold_acks": frozenset({"duration", "packet_type", "packet_types", "direction"}),
    "restart_broker": frozenset({"down_for"}),
    "netem": frozenset({"duration", "delay", "jitter", "loss", "reorder", "duplicate"}),
    "silence": frozenset({"duration"}),
    "stop_reading": frozenset({"duration"}),
}


def _check_fault(t: _Table, spec: FaultSpec, scenario: Scenario) -> None:
    kind = spec.kind
    if kind in ("blackhole", "hold_acks", "silence", "stop_reading") and spec.duration is None:
        raise t.error(f"a {kind} fault needs a duration (seconds)", "duration")
    if kind in ("drop", "duplicate") and not spec.packet_types:
        raise t.error(f"a {kind} fault needs the packet type(s) it applies to", "packet_type")
    if kind == "hold_acks":
        bad = [n for n in spec.packet_types if n not in ACK_TYPES]
        if bad:
            raise t.error(f"only acknowledgements can be held ({', '.join(ACK_TYPES)}), not "
                          f"{bad[0]}", "packet_types" if t.has("packet_types") else "packet_type")
    if kind == "delay" and spec.delay == 0 and spec.jitter == 0:
        raise t.error("a delay fault needs delay or jitter (seconds)", "delay")
    if kind == "cut" and spec.after_packets is None and spec.packet_types:
        raise t.error("is only used with after_packets",
                      "packet_types" if t.has("packet_types") else "packet_type")
    if kind == "restart_broker" and scenario.broker.kind != "builtin":
        raise t.error("only the built-in broker can be restarted by the run", "kind")
    if kind == "netem" and spec.netem is not None and not any(
            (spec.netem.loss, spec.netem.delay, spec.netem.jitter, spec.netem.reorder,
             spec.netem.duplicate)):
        raise t.error("a netem fault needs loss, delay, jitter, reorder or duplicate", "loss")
    if kind == "netem" and spec.netem is not None and spec.netem.reorder and not spec.delay:
        raise t.error("netem reorders only delayed packets: give a delay too", "reorder")
    if scenario.broker.websocket and kind in ("drop", "duplicate", "hold_acks"):
        raise t.error(f"a {kind} fault needs MQTT framing, which the proxy does not do over "
                      "WebSocket (cut, blackhole and delay work)", "kind")
    if spec.at > scenario.duration:
        raise t.error(f"is after the end of publishing (duration = {scenario.duration})", "at")


def _check_whole(s: Scenario, top: _Table) -> None:
    if not s.publishers and not s.subscribers:
        raise top.error("a scenario needs at least one [[publishers]] or [[subscribers]] group",
                        "publishers")
    seen: dict[str, str] = {}
    named: list[tuple[str, int, PublisherGroup | SubscriberGroup]] = [
        *(("publishers", i, g) for i, g in enumerate(s.publishers)),
        *(("subscribers", i, g) for i, g in enumerate(s.subscribers))]
    for kind, i, g in named:
        for cid in g.client_ids():
            if cid in seen:
                raise top.error(f"client id {cid!r} is also used by {seen[cid]}",
                                f"{kind}[{i}].name")
            seen[cid] = f"{kind}[{i}]"
    if len(seen) > _MAX_CLIENTS:
        raise top.error(f"{len(seen)} clients: at most {_MAX_CLIENTS}", "publishers")
    total_rate = sum(tp.rate * tp.count * tp.burst_size * g.count
                     for g in s.publishers for tp in g.topics)
    if total_rate > _MAX_RATE:
        raise top.error(f"{total_rate:.0f} messages/s in all: at most {_MAX_RATE:.0f}",
                        "publishers")
