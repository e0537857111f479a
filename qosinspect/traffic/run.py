"""One generator run: broker, fault proxy, capture, clients, timeline, ground truth.

The order of a run, and why:

1. The broker: the built-in one on 127.0.0.1 (a free port unless the scenario names one), or
   the external ``host:port``.
2. The fault proxy's front ports: one shared port (1883 when free, so Wireshark decodes the
   capture without "Decode As"), plus a port of its own for each client a ``cut`` refuses
   for a while (closing it must not turn the other clients away): the next ports up (1884 ...)
   when free, so a run's ports are predictable.
3. The capture starts (:mod:`.live`, filtered on the front ports) and is proven to capture
   before any client connects; without root the proxy writes a synthetic pcapng instead.
4. Subscribers connect and subscribe, then publishers connect; the clock of the scenario (t = 0)
   starts when all are ready; the packet rules of :mod:`.faults` are armed then.
5. Publishers send on their schedules for ``duration`` seconds while the timeline applies the
   time-driven faults; every client reconnects with a short back-off and resumes its session.
6. Drain: up to ``drain`` seconds for every QoS 1/2 flow to finish and every subscriber to get
   every QoS 1/2 message it expects; then every client disconnects cleanly.
7. Proxy, broker and capture stop (in that order, so the last FINs are captured), and the
   ground truth is written next to the capture.

A stop request (Ctrl-C in the CLI) ends publishing at once, skips the drain, and still goes
through 6-7: the capture and the ground truth of what happened so far are written, marked
``interrupted``. Everything started is stopped in ``finally`` blocks, whatever fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..broker.auth import Authenticator
from ..broker.engine import BrokerConfig
from ..broker.server import BrokerServer, Listener, ServerConfig
from ..client import Client
from ..client.errors import ClientError
from ..client.messages import Message, PublishResult
from ..client.reconnect import Backoff
from ..errors import QosinspectError
from ..events import Event
from ..mqtt.properties import NO_PROPERTIES, Properties
from .faults import NS, PacketRules
from .live import LiveCapture, choose_method
from .netns import NetnsLink, netem_args
from .payload import make_payload
from .pcapng import PcapngRecorder, convert_to_pcapng
from .proxy import FaultProxy
from .scenario import FaultSpec, PublisherGroup, Scenario, SubscriberGroup, TopicSpec
from .truth import GroundTruth, PublisherLog, SubscriberLog

__all__ = ["RunError", "RunOptions", "RunResult", "run_scenario", "truth_path_for"]

#: Reconnection back-off of the generator's clients: quick, so outages end when the fault does.
BACKOFF = Backoff(initial=0.1, maximum=0.5, factor=2.0, jitter=0.1)


class RunError(QosinspectError):
    """The run could not be set up (a port in use, a broker that does not answer, ...)."""


@dataclass
class RunOptions:
    capture: Path | None = None
    capture_method: str = "auto"
    interface: str = "lo"
    truth: Path | None = None
    #: Set to end the run early (Ctrl-C); the capture and truth are still written.
    stop: asyncio.Event | None = None
    #: Progress lines (stderr in the CLI); None for silence.
    log: Callable[[str], None] | None = None
    #: Taps for tests: the broker's, the proxy's (the clients' side), every client's.
    broker_tap: Callable[[Event], None] | None = None
    proxy_tap: Callable[[Event], None] | None = None
    client_tap: Callable[[Any], None] | None = None
    #: A link into a network namespace made by the caller (a test's
    #: :class:`~qosinspect.testing.tunlink.TunLink`): the proxy listens behind it, the clients
    #: cross it and the capture records on its host end; the caller closes it.
    link: NetnsLink | None = None


@dataclass
class RunResult:
    truth: dict[str, Any]
    truth_path: Path | None
    capture_path: Path | None
    capture_method: str | None
    interrupted: bool
    ports: list[int] = field(default_factory=list)
    #: The address the clients reached the broker at (the fault proxy's).
    host: str = "127.0.0.1"

    @property
    def same_broker(self) -> tuple[tuple[str, ...], ...]:
        """The proxy's front ports are one broker (every one forwards to it): the analysis'
        ``same_broker`` group, empty with a single port."""
        if len(self.ports) < 2:
            return ()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (tuple(f"{host}:{p}" for p in self.ports),)


def truth_path_for(capture: Path) -> Path:
    """``out.pcapng`` -> ``out.truth.json`` (the ground truth lives next to the capture)."""
    return capture.with_name(capture.name.rsplit(".", 1)[0] + ".truth.json")


def _tap_file(capture: Path) -> Path:
    """Where the proxy's recorder writes: the capture itself, or a temporary pcapng beside a
    ``.pcap`` target (converted when the run ends)."""
    if capture.suffix == ".pcap":
        return capture.with_name(f".{capture.name}.tap.pcapng")
    return capture


_Slot = tuple[float, int, int, float, str, TopicSpec]


@dataclass
class _Pub:
    client: Client
    group: PublisherGroup
    index: int
    log: PublisherLog
    pending: set[asyncio.Future[PublishResult]] = field(default_factory=set)
    not_sent: dict[int, int] = field(default_factory=dict)
    seq: int = 0


@dataclass
class _Sub:
    client: Client
    group: SubscriberGroup
    log: SubscriberLog
    worker: asyncio.Task[None] | None = None
    backlog: asyncio.Queue[Message] | None = None


class _Run:
    def __init__(self, scenario: Scenario, options: RunOptions) -> None:
        self.s = scenario
        self.o = options
        self.rules = PacketRules(scenario)
        self.broker: BrokerServer | None = None
        self.broker_port = 0
        self.proxy: FaultProxy | None = None
        self.capture: LiveCapture | None = None
        self.recorder: PcapngRecorder | None = None
        self.method: str | None = None
        self.front_ports: list[int] = []
        self.proxy_host = "127.0.0.1"
        self.netns: NetnsLink | None = None
        self.pubs: list[_Pub] = []
        self.subs: list[_Sub] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.t0_ns = 0
        self.t_end_ns = 0
        self.stop = options.stop or asyncio.Event()
        self.interrupted = False
        self.truth = GroundTruth(scenario={
            "name": scenario.name, "source": scenario.source,
            "description": scenario.description, "mqtt_version": scenario.mqtt_version,
            "duration": scenario.duration, "seed": scenario.seed})

    def say(self, text: str) -> None:
        if self.o.log is not None:
            self.o.log(text)

    # -- set-up -----------------------------------------------------------------------------

    async def start_broker(self, port: int | None = None) -> None:
        spec = self.s.broker
        if spec.kind == "external":
            self.broker_port = spec.port
            try:
                _r, w = await asyncio.wait_for(asyncio.open_connection(spec.host, spec.port), 5)
                w.close()
            except (OSError, TimeoutError) as exc:
                raise RunError(f"the external broker {spec.host}:{spec.port} does not accept "
                               f"connections: {exc}") from None
            return
        listener = Listener("127.0.0.1", spec.port if port is None else port,
                            websocket=spec.websocket)
        engine = BrokerConfig(max_inflight=spec.max_inflight,
                              max_queued_messages=spec.max_queued)
        cfg = ServerConfig(listeners=[listener], engine=engine)
        server = BrokerServer(cfg, auth=Authenticator(allow_anonymous=True),
                              tap=self.o.broker_tap)
        try:
            await server.start()
        except OSError as exc:
            await server.close()
            raise RunError(f"cannot start the built-in broker on port {listener.port}: "
                           f"{exc}") from None
        self.broker = server
        self.broker_port = server.port

    async def start_proxy(self) -> None:
        spec = self.s.broker
        recorder = None
        if self.method == "tap" and self.o.capture is not None:
            recorder = self.recorder = PcapngRecorder(
                _tap_file(self.o.capture), comment=f"scenario {self.s.name}")
        host = spec.host if spec.kind == "external" else "127.0.0.1"
        factory = None
        if self.o.link is not None:
            self.netns = self.o.link
            factory = self.netns.listening_socket
        elif any(f.kind == "netem" for f in self.s.faults):
            self.netns = NetnsLink().__enter__()      # closed in shutdown(), always
            factory = self.netns.listening_socket
        self.proxy_host = self.netns.ns_ip if self.netns else "127.0.0.1"
        self.proxy = FaultProxy((host, self.broker_port), self.rules,
                                host=self.proxy_host,
                                websocket=spec.websocket, tap=self.o.proxy_tap,
                                recorder=recorder, socket_factory=factory)
        front = self.s.front_port
        try:
            if front is None:      # 1883 when free: Wireshark then decodes without "Decode As"
                try:
                    await self.proxy.listen(1883)
                except OSError:
                    await self.proxy.listen(0)
            else:
                await self.proxy.listen(front)
            dedicated = sorted({c for f in self.s.faults if f.kind == "cut" and f.down_for > 0
                                for c in f.clients})
            base = self.proxy.port_for("")
            for k, cid in enumerate(dedicated):     # 1884, 1885 ... after 1883, when free
                try:
                    await self.proxy.listen(base + 1 + k if base < 65535 - k else 0, (cid,))
                except OSError:
                    await self.proxy.listen(0, (cid,))
        except OSError as exc:
            raise RunError(f"cannot open the front port {front}: {exc}") from None
        self.front_ports = self.proxy.ports

    def start_capture(self) -> None:
        if self.o.capture is None:
            self.method = None
            return
        self.method = choose_method(self.o.capture_method)

    def start_live_capture(self) -> None:
        if self.method in (None, "tap"):
            return
        assert self.proxy is not None and self.o.capture is not None and self.method
        interface = self.netns.host_if if self.netns is not None else self.o.interface
        self.capture = LiveCapture(self.o.capture, self.proxy.ports, method=self.method,
                                   interface=interface)
        self.capture.start()

    def _client(self, cid: str, group: PublisherGroup | SubscriberGroup,
                on_message: Callable[[Message], None] | None = None) -> Client:
        assert self.proxy is not None
        sess = group.session
        return Client(self.proxy.host, self.proxy.port_for(cid), client_id=cid,
                      version=self.s.mqtt_version,
                      transport="websocket" if self.s.broker.websocket else "tcp",
                      clean_start=sess.clean_start,
                      session_expiry=sess.session_expiry if self.s.mqtt_version == 5 else None,
                      receive_maximum=sess.receive_maximum or None,
                      keep_alive=sess.keep_alive, reconnect=BACKOFF, tap=self.o.client_tap,
                      on_message=on_message, connect_timeout=5.0, max_queued=100_000,
                      split_writes=sess.split_writes, rcvbuf=sess.rcvbuf)

    async def connect_clients(self) -> None:
        for group in self.s.subscribers:
            for cid in group.client_ids():
                log = SubscriberLog(cid, group.filters)
                sub = _Sub(None, group, log)  # type: ignore[arg-type]
                sub.client = self._client(cid, group, self._on_message(sub))
                self.subs.append(sub)
                await self._connect(sub.client, cid)
                if group.process_delay > 0:
                    sub.client.acks.hold("puback")
                    sub.client.acks.hold("pubrec")
                    sub.backlog = asyncio.Queue()
                    sub.worker = asyncio.get_running_loop().create_task(self._process(sub))
                codes = await sub.client.subscribe(list(group.filters))
                if any(c >= 0x80 for c in codes):
                    raise RunError(f"{cid}: the broker refused the subscription "
                                   f"{list(group.filters)} (codes {list(codes)})")
        index = 0
        for pgroup in self.s.publishers:
            for cid in pgroup.client_ids():
                pub = _Pub(self._client(cid, pgroup), pgroup, index, PublisherLog(cid, index))
                index += 1
                self.pubs.append(pub)
                await self._connect(pub.client, cid)

    async def _connect(self, client: Client, cid: str) -> None:
        try:
            await client.connect()
        except (QosinspectError, OSError, TimeoutError) as exc:
            raise RunError(f"{cid} could not connect through the proxy to the broker: "
                           f"{exc}") from None

    def _on_message(self, sub: _Sub) -> Callable[[Message], None]:
        def on_message(msg: Message) -> None:
            sub.log.record(msg.payload, msg.qos, msg.dup, msg.ts_ns)
            if sub.backlog is not None and msg.qos:
                sub.backlog.put_nowait(msg)
        return on_message

    async def _process(self, sub: _Sub) -> None:
        """A slow application: each message takes ``process_delay``; its ack waits for it."""
        assert sub.backlog is not None
        while True:
            msg = await sub.backlog.get()
            await asyncio.sleep(sub.group.process_delay)
            if msg.conn_id == sub.client.conn_id:     # held acks of a lost connection are gone
                with contextlib.suppress(QosinspectError):
                    await sub.client.release_acks("puback" if msg.qos == 1 else "pubrec",
                                                  msg.packet_id)

    # -- publishing ---------------------------------------------------------------------------

    def _schedule(self, pub: _Pub, rng: random.Random) -> list[_Slot]:
        """The first send of every topic of a publisher, as a heap of (time, order, k,
        offset, topic, spec); fixed and burst times are ``start + offset + k / rate``
        (computed, not accumulated, so a 10 s run at 10 Hz sends exactly 100)."""
        heap: list[_Slot] = []
        n = 0
        for tspec in pub.group.topics:
            names = tspec.topics_for(pub.log.client_id, pub.group.client_ids().index(
                pub.log.client_id))
            for i, topic in enumerate(names):
                if tspec.arrival == "poisson":
                    offset = rng.expovariate(tspec.rate)
                else:     # spread topics over one period, so they do not all fire at once
                    offset = i / (tspec.rate * len(names))
                heap.append((tspec.start + offset, n, 0, offset, topic, tspec))
                n += 1
        heapq.heapify(heap)
        return heap

    async def publish_loop(self, pub: _Pub) -> None:
        rng = random.Random(self.s.seed * 7919 + pub.index)
        heap = self._schedule(pub, rng)
        end = self.s.duration
        while heap:
            t, n, k, offset, topic, tspec = heap[0]
            stop = min(end, tspec.stop if tspec.stop is not None else end)
            if t >= stop:
                heapq.heappop(heap)
                continue
            delay = self.t0_ns + int(t * NS) - time.time_ns()
            if delay > 0:
                await asyncio.sleep(delay / NS)
            for _ in range(tspec.burst_size if tspec.arrival == "burst" else 1):
                self._publish_one(pub, topic, tspec, n)
            if tspec.arrival == "poisson":
                nxt = t + rng.expovariate(tspec.rate)
            else:
                nxt = tspec.start + offset + (k + 1) / tspec.rate
            heapq.heapreplace(heap, (nxt, n, k + 1, offset, topic, tspec))

    def _properties(self, tspec: TopicSpec, ordinal: int) -> Properties:
        """MQTT 5 message properties. A Topic Alias goes with its topic on every PUBLISH: the
        client resends queued messages on new connections, where an alias alone would mean
        nothing [MQTT-3.3.2-10]; aliases 1-10 fit every broker's usual maximum."""
        if self.s.mqtt_version != 5:
            return NO_PROPERTIES
        values: dict[str, Any] = {}
        if tspec.topic_alias:
            values["topic_alias"] = 1 + ordinal % 10
        if tspec.message_expiry:
            values["message_expiry_interval"] = tspec.message_expiry
        if tspec.content_type:
            values["content_type"] = tspec.content_type
        if tspec.user_properties:
            values["user_property"] = list(tspec.user_properties)
        return Properties.of(**values) if values else NO_PROPERTIES

    def _publish_one(self, pub: _Pub, topic: str, tspec: TopicSpec, ordinal: int) -> None:
        now = time.time_ns()
        seq = pub.seq
        payload = make_payload(tspec.payload_format, tspec.payload_size, pub.index, seq, now)
        try:
            handle = pub.client.publish_nowait(topic, payload, tspec.qos, tspec.retain,
                                               properties=self._properties(tspec, ordinal))
        except ClientError:           # QoS 0 while offline, or the outgoing queue is full
            pub.not_sent[tspec.qos] = pub.not_sent.get(tspec.qos, 0) + 1
            return
        pub.seq += 1
        pub.log.record_sent(seq, topic, tspec.qos, now)
        if tspec.qos:
            fut = handle.future
            pub.pending.add(fut)
            fut.add_done_callback(lambda f: self._publish_done(pub, tspec.qos, f))

    def _publish_done(self, pub: _Pub, qos: int, fut: asyncio.Future[PublishResult]) -> None:
        pub.pending.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            return
        res = fut.result()
        pub.log.record_result(qos, res.reason_code, res.sends, res.latency_ns)

    # -- faults -------------------------------------------------------------------------------

    async def timeline(self) -> None:
        timed: list[tuple[float, int, FaultSpec, bool]] = []
        for f in self.s.faults:
            if f.kind in ("cut", "blackhole", "restart_broker", "netem", "silence",
                          "stop_reading") and not (
                    f.kind == "cut" and f.after_packets is not None):
                timed.append((f.at, f.index, f, False))
                if f.kind == "netem" and f.duration is not None:
                    timed.append((f.at + f.duration, f.index, f, True))
        for at, _i, spec, ending in sorted(timed, key=lambda x: (x[0], x[1])):
            delay = self.t0_ns + int(at * NS) - time.time_ns()
            if delay > 0:
                await asyncio.sleep(delay / NS)
            self.say(f"t={at:g}s {spec.label}{' ends' if ending else ''}")
            assert self.proxy is not None
            if spec.kind == "netem":
                self.apply_netem(spec, ending)
            elif spec.kind == "cut":
                self.proxy.cut(spec)
            elif spec.kind == "blackhole":
                self.proxy.blackhole(spec, spec.duration or 0.0)
            elif spec.kind == "restart_broker":
                await self.restart_broker(spec)
            elif spec.kind in ("silence", "stop_reading"):
                self.silence(spec)

    def silence(self, spec: FaultSpec) -> None:
        """The ``silence`` fault: the clients named stop their keep-alive pings for a while;
        ``stop_reading``: they stop reading their sockets."""
        clients: list[tuple[str, Client]] = [(p.log.client_id, p.client) for p in self.pubs]
        clients += [(s.log.client_id, s.client) for s in self.subs]
        for cid, client in clients:
            if cid not in spec.clients:
                continue
            if spec.kind == "silence":
                client.silence(spec.duration or 0.0)
                what = "no PINGREQ"
            else:
                client.stop_reading(spec.duration or 0.0)
                what = "nothing read from the socket"
            self.rules.record(time.time_ns(), spec, spec.kind, client_id=cid,
                              detail=f"{what} for {spec.duration:g} s")

    def apply_netem(self, spec: FaultSpec, ending: bool) -> None:
        assert self.netns is not None and spec.netem is not None
        if ending:
            self.netns.clear()
            self.rules.record(time.time_ns(), spec, "netem_clear")
        else:
            self.netns.impair(spec.netem)
            self.rules.record(time.time_ns(), spec, "netem",
                              detail=" ".join(netem_args(spec.netem)[1:]))

    async def restart_broker(self, spec: FaultSpec) -> None:
        assert self.proxy is not None and self.broker is not None
        now = time.time_ns()
        self.rules.record(now, spec, "broker_stop", detail=f"down for {spec.down_for:g} s")
        self.proxy.refuse(None, spec.down_for + 0.05)
        await self.broker.close()
        await asyncio.sleep(spec.down_for)
        for attempt in range(40):
            try:
                await self.start_broker(self.broker_port)
                break
            except RunError as exc:
                if attempt == 39:      # its port was taken meanwhile: say so, never go on
                    raise RunError(f"the restarted broker cannot listen again: {exc}") from None
                await asyncio.sleep(0.05 * (attempt + 1))
        self.rules.record(time.time_ns(), spec, "broker_start")

    # -- the run ------------------------------------------------------------------------------

    async def drain(self) -> None:
        deadline = time.monotonic() + self.s.drain
        publishers = [p.log for p in self.pubs]
        wanted = []
        for sub in self.subs:
            exp = {(p.index, seq) for p in publishers for seq, topic, qos, _ in p.messages
                   if (sub.log.delivered_qos(topic, qos) or 0) > 0}
            wanted.append((sub, exp))
        while time.monotonic() < deadline and not self.stop.is_set():
            busy = any(p.pending for p in self.pubs) or any(
                not exp <= sub.log.copies.keys() for sub, exp in wanted)
            if not busy:
                break
            await asyncio.sleep(0.05)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), 0.3)    # QoS 0 stragglers

    async def execute(self) -> None:
        self.start_capture()
        await self.start_broker()
        await self.start_proxy()
        assert self.proxy is not None
        await asyncio.to_thread(self.start_live_capture)
        where = (f"built-in broker on 127.0.0.1:{self.broker_port}" if self.broker
                 else f"external broker {self.s.broker.host}:{self.broker_port}")
        self.say(f"{where}; clients connect to 127.0.0.1:{self.proxy.ports} (fault proxy)"
                 + (f"; capture: {self.method}" if self.method else ""))
        await self.connect_clients()
        self.t0_ns = self.rules.t0_ns = time.time_ns()
        loop = asyncio.get_running_loop()
        publishers = [loop.create_task(self.publish_loop(p)) for p in self.pubs]
        timeline = loop.create_task(self.timeline())
        self.tasks = [*publishers, timeline]
        self.say(f"publishing for {self.s.duration:g} s ({len(self.pubs)} publishers, "
                 f"{len(self.subs)} subscribers)")
        stopper: asyncio.Future[Any] = loop.create_task(self.stop.wait())
        pending: set[asyncio.Future[Any]] = set(publishers)
        while pending and not self.stop.is_set():
            done, pending = await asyncio.wait(pending | {stopper},
                                               return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopper)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    stopper.cancel()
                    raise task.exception()  # type: ignore[misc]
        self.interrupted = self.stop.is_set()
        self.t_end_ns = time.time_ns()
        if not self.interrupted:     # faults late in the run still happen
            await asyncio.wait([timeline, stopper], return_when=asyncio.FIRST_COMPLETED)
            self.interrupted = self.stop.is_set()
        stopper.cancel()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if not self.interrupted:
            self.say(f"publishing done; draining (at most {self.s.drain:g} s)")
            await self.drain()

    async def shutdown(self) -> None:
        """Stop everything that was started, in order, each step even if one before failed."""
        try:
            for task in self.tasks:
                task.cancel()
            for sub in self.subs:
                if sub.worker is not None:
                    sub.worker.cancel()
            clients = [s.client for s in self.subs] + [p.client for p in self.pubs]
            await asyncio.gather(*(c.disconnect(timeout=2.0) for c in clients),
                                 return_exceptions=True)
            if self.proxy is not None:
                # The clients' DISCONNECT and FIN are on their way: let the proxy read and
                # record them before it closes what is left (a busy machine is slow to).
                await self.proxy.drain(2.0)
                await self.proxy.close()
        finally:
            try:
                if self.broker is not None:
                    await self.broker.close()
                if self.capture is not None:
                    await asyncio.to_thread(self.capture.stop)
                    if self.capture.dropped:
                        self.say(f"warning: {self.method} says the kernel dropped "
                                 f"{self.capture.dropped} packets (the machine was too busy): "
                                 "the capture has gaps")
            finally:
                if self.netns is not None and self.netns is not self.o.link:
                    # after the capture: it records on the veth pair
                    self.netns.clear()
                    self.netns.close()
                if self.recorder is not None:
                    self.recorder.close()
                    if self.recorder.path != self.o.capture and self.o.capture is not None:
                        convert_to_pcapng(self.recorder.path, self.o.capture)   # .pcap asked
                        self.recorder.path.unlink()

    def ground_truth(self) -> GroundTruth:
        t = self.truth
        t.publishers = [p.log for p in self.pubs]
        t.subscribers = [s.log for s in self.subs]
        t.faults = list(self.rules.records)
        t.timeline = [{k: v for k, v in f.__dict__.items() if v not in (None, (), "")}
                      | {"clients": list(f.clients)} for f in self.s.faults]
        for entry in t.timeline:
            if entry.get("netem") is not None:
                entry["netem"] = dict(entry["netem"].__dict__)
        holders: list[_Pub | _Sub] = [*self.pubs, *self.subs]
        for holder in holders:
            client = holder.client
            cid = client.options.client_id
            group = holder.group
            info: dict[str, Any] = {
                "front_port": self.proxy.port_for(cid) if self.proxy else None,
                "clean_start": group.session.clean_start, "keep_alive": group.session.keep_alive,
                "reconnects": [{"t": round((r.ts_ns - self.t0_ns) / NS, 3),
                                "t_lost": round((r.t_lost_ns - self.t0_ns) / NS, 3),
                                "gap_s": round(r.gap_s, 3), "cause": r.cause,
                                "session_present": r.session_present, "attempts": r.attempts,
                                "resent_publish": r.resent_publish,
                                "resent_pubrel": r.resent_pubrel, "lost": r.lost}
                               for r in client.reconnect_history]}
            if self.s.mqtt_version == 5:
                info["session_expiry"] = group.session.session_expiry
            if isinstance(holder, _Pub) and holder.not_sent:
                info["not_sent"] = {str(q): n for q, n in sorted(holder.not_sent.items())}
            t.sessions[cid] = info
        broker = self.s.broker
        t.run = {
            "started": datetime.fromtimestamp(self.t0_ns / NS, UTC).isoformat()
            if self.t0_ns else None,
            "t0_ns": self.t0_ns,
            "published_for_s": round((self.t_end_ns - self.t0_ns) / NS, 3) if self.t0_ns else 0,
            "interrupted": self.interrupted,
            "broker": {"kind": broker.kind, "address": f"{broker.host}:{self.broker_port}",
                       "websocket": broker.websocket},
            "front_ports": self.front_ports,
            "proxy_connections": self.proxy.connections if self.proxy else 0,
            "capture": None if self.o.capture is None else {
                "path": str(self.o.capture), "method": self.method,
                "filter": self.capture.filter if self.capture else None,
                "interface": self.o.interface if self.capture else None,
                "frames": (self.capture.packets if self.capture else
                           self.recorder.frames if self.recorder else None),
                "dropped": self.capture.dropped if self.capture else 0},
        }
        return t


async def run_scenario(scenario: Scenario, options: RunOptions | None = None) -> RunResult:
    """Run ``scenario`` (see the module docstring); returns the ground truth and paths."""
    options = options or RunOptions()
    run = _Run(scenario, options)
    try:
        await run.execute()
    except asyncio.CancelledError:
        run.interrupted = True
        raise
    finally:
        with contextlib.suppress(Exception):
            run.t_end_ns = run.t_end_ns or time.time_ns()
        await asyncio.shield(run.shutdown())
    truth = run.ground_truth()
    path = options.truth
    if path is None and options.capture is not None:
        path = truth_path_for(options.capture)
    data = truth.write(path) if path is not None else truth.to_json()
    return RunResult(data, path, options.capture, run.method, run.interrupted,
                     run.front_ports, run.proxy_host)
