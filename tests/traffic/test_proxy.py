"""The fault proxy against the built-in broker, with scripted peers: each fault does exactly
what it says to exactly the packets it names, and the proxy's log says so."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from qosinspect.broker.auth import Authenticator
from qosinspect.broker.server import BrokerServer, Listener, ServerConfig
from qosinspect.events import ConnectionClosed, Event, MqttPacketEvent
from qosinspect.mqtt.enums import Direction
from qosinspect.mqtt.packets import Disconnect, PubAck, Publish, PubRec, PubRel
from qosinspect.traffic.faults import PacketRules
from qosinspect.traffic.pcapng import PcapngRecorder
from qosinspect.traffic.proxy import FaultProxy
from qosinspect.traffic.scenario import parse_scenario

from .peer import ScriptedPeer

Body = Callable[[FaultProxy, PacketRules], Awaitable[None]]


def _scenario(*faults: dict[str, Any]) -> Any:
    return parse_scenario({
        "duration": 60,
        "publishers": [{"name": "pub", "topics": [{"topic": "t", "qos": 1}]}],
        "subscribers": [{"name": "sub", "filters": ["t"]}],
        "faults": list(faults)})


def run_with_proxy(body: Body, *faults: dict[str, Any], tap: list[Event] | None = None,
                   recorder: PcapngRecorder | None = None,
                   dedicated: tuple[str, ...] = ()) -> PacketRules:
    rules = PacketRules(_scenario(*faults))

    async def main() -> None:
        cfg = ServerConfig(listeners=[Listener("127.0.0.1", 0)])
        async with BrokerServer(cfg, auth=Authenticator(allow_anonymous=True)) as broker:
            proxy = FaultProxy(("127.0.0.1", broker.port), rules,
                               tap=tap.append if tap is not None else None, recorder=recorder)
            await proxy.listen(0)
            if dedicated:
                await proxy.listen(0, dedicated)
            rules.t0_ns = time.time_ns()
            try:
                await asyncio.wait_for(body(proxy, rules), 20)
            finally:
                await proxy.close()

    asyncio.run(main())
    return rules


def _pub(pid: int, payload: bytes = b"x") -> Publish:
    return Publish("t", payload, 1, packet_id=pid)


def test_passthrough_relays_every_packet_and_taps_the_client_side(tmp_path: Path) -> None:
    events: list[Event] = []
    recorder = PcapngRecorder(tmp_path / "run.pcapng")

    async def body(proxy: FaultProxy, rules: PacketRules) -> None:
        sub = await ScriptedPeer.connect(proxy.port_for("sub"), "sub", subscribe="t", qos=1)
        pub = await ScriptedPeer.connect(proxy.port_for("pub"), "pub")
        pub.send(_pub(1, b"hello"))
        await pub.expect("PubAck")
        got = await sub.expect("Publish")
        assert isinstance(got, Publish) and got.payload == b"hello"
        sub.send(PubAck(got.packet_id or 0))
        pub.send(Disconnect())
        sub.send(Disconnect())
        await pub.close()
        await sub.close()
        await asyncio.sleep(0.2)

    rules = run_with_proxy(body, tap=events, recorder=recorder)
    recorder.close()
    assert rules.records == []
    packets = [(e.direction, type(e.packet).__name__) for e in events
               if isinstance(e, MqttPacketEvent) and e.packet.__class__ is not Disconnect]
    assert (Direction.C2B, "Publish") in packets and (Direction.B2C, "PubAck") in packets
    closes = [e for e in events if isinstance(e, ConnectionClosed)]
    assert len(closes) == 2 and all(c.closed_by is Direction.C2B for c in closes)
    assert (tmp_path / "run.pcapng").stat().st_size > 500


def test_drain_waits_for_the_clients_to_close_and_records_their_last_packets() -> None:
    """What the run does at its end: the clients send DISCONNECT and close, and the proxy
    (which reads on its own schedule) has read, relayed and recorded it all once drain()
    returns True; a client that stays is left to close() after the timeout."""
    events: list[Event] = []

    async def body(proxy: FaultProxy, rules: PacketRules) -> None:
        leaving = await ScriptedPeer.connect(proxy.port_for("pub"), "pub")
        staying = await ScriptedPeer.connect(proxy.port_for("sub"), "sub")
        leaving.send(Disconnect())
        await leaving.close()
        assert not await proxy.drain(0.3)              # "sub" is still connected
        staying.send(Disconnect())
        await staying.close()
        assert await proxy.drain(10.0)
        # Both DISCONNECTs and both ends are recorded before close() could cut anything.
        assert sum(isinstance(e, MqttPacketEvent) and isinstance(e.packet, Disconnect)
                   for e in events) == 2
        assert sum(isinstance(e, ConnectionClosed) for e in events) == 2

    run_with_proxy(body, tap=events)
    closes = [e for e in events if isinstance(e, ConnectionClosed)]
    assert [c.closed_by for c in closes] == [Direction.C2B, Direction.C2B]


def test_drop_removes_exactly_the_named_packets() -> None:
    async def body(proxy: FaultProxy, rules: PacketRules) -> None:
        pub = await ScriptedPeer.connect(proxy.port_for("pub"), "pub")
        pub.send(_pub(1), _pub(2), _pub(3))
        acks = await pub.collect()
        assert [a.packet_id for a in acks if isinstance(a, PubAck)] == [2, 3]
        await pub.close()

    rules = run_with_proxy(body, {"kind": "drop", "client": "pub", "packet_type": "PUBACK",
                                  "direction": "b2c", "count": 1})
    assert [(r.action, r.packet_type, r.packet_id, r.direction) for r in rules.records] == [
        ("drop", "PUBACK", 1, "b2c")]


def test_duplicate_sends_the_packet_twice() -> None:
    async def body(proxy: FaultProxy, rules: PacketRules) -> None:
        sub = await ScriptedPeer.connect(proxy.port_for("sub"), "sub", subscribe="t", qos=1)
        pub = await ScriptedPeer.connect(proxy.port_for("pub"), "pub")
        pub.send(_pub(7, b"once"))
        acks = await pub.collect()
        # The broker got the PUBLISH twice and acknowledged each [MQTT-4.3.2-2] ...
        assert [a.packet_id for a in acks if isinstance(a, PubAck)] == [7, 7]
        # ... and, at QoS 1, forwarded both (at-least-once allows the duplicate).
        got = [p for p in await sub.collect() if isinstance(p, Publish)]
        assert [p.payload for p in got] == [b"once", b"once"]
        await pub.close()
        await sub.close()

    rules = run_with_proxy(body, {"kind": "duplicate", "client": "pub",
                                  "packet_type": "PUBLISH", "direction": "c2b", "count": 1})
    assert [(r.action, r.packet_type, r.packet_id) for r in rules.records] == [
        ("duplicate", "PUBLISH", 7)]


def test_hold_acks_releases_them_in_order_when_the_hold_ends() -> None:
    async def body(proxy: FaultProxy, rules: PacketRules) -> None:
        pub = await ScriptedPeer.connect(proxy.port_for("pub"), "pub")
        pub.send(_pub(1), _pub(2), Publish("t", b"q2", 2, packet_id=3))
        early = await pub.collect(0.15)
        assert early == []                        # all three acks are held
        later = await pub.collect(1.0)
        assert [(type(p).__name__, getattr(p, "packet_id", None)) for p in later] == [
            ("PubAck", 1), ("PubAck", 2), ("PubRec", 3)]
        pub.send(PubRel(3))
        assert isinstance(await pub.read(), type(None)) is False
        await pub.close()

    rules = run_with_proxy(body, {"kind": "hold_acks", "client": "pub", "duration": 0.5,
                                  "direction": "b2c"})
    actions = [(r.action, r.packet_type, r.packet_id) for r in rules.records]
    assert actions[:3] == [("hold", "PUBACK", 1), ("hold", "PUBACK", 2), ("hold", "PUBREC", 3)]
    assert sorted(actions[3:6]) == [("release", "PUBACK", 1), ("release", "PUBACK", 2),
                                    ("release", "PUBREC", 3)]
    hold_end = next(r.ts_ns for r in rules.records if r.action == "release")
    assert hold_end >= rules.t0_ns + 500_000_000 - 1_000_000  # type: ignore[operator]


def test_cut_after_packets_resets_and_refuses_reconnection_for_a_while() -> None:
    async def body(proxy: FaultProxy, rules: PacketRules) -> None:
        port = proxy.port_for("sub")
        assert port != proxy.port_for("pub")       # its own front port, closable alone
        sub = await ScriptedPeer.connect(port, "sub", subscribe="t", qos=1)
        pub = await ScriptedPeer.connect(proxy.port_for("pub"), "pub")
        pub.send(*(_pub(i) for i in range(1, 4)))
        got = [p for p in await sub.collect() if isinstance(p, Publish)]
        assert len(got) == 2                       # cut right after the second one
        try:
            await asyncio.open_connection("127.0.0.1", port)
            refused = False
        except ConnectionRefusedError:
            refused = True
        assert refused
        await asyncio.sleep(0.8)
        again = await ScriptedPeer.connect(port, "sub")
        await again.close()
        await pub.close()

    events: list[Event] = []
    rules = run_with_proxy(body, {"kind": "cut", "client": "sub", "after_packets": 2,
                                  "packet_type": "PUBLISH", "direction": "b2c",
                                  "how": "rst", "down_for": 0.5},
                           tap=events, dedicated=("sub",))
    assert [r.action for r in rules.records] == ["cut_rst", "refuse"]
    assert rules.records[0].packet_id == 2
    rst = [e for e in events if isinstance(e, ConnectionClosed) and e.how == "rst"]
    assert len(rst) == 1 and rst[0].closed_by is Direction.B2C


def test_blackhole_delivers_late_in_order_not_lost() -> None:
    async def body(proxy: FaultProxy, rules: PacketRules) -> None:
        pub = await ScriptedPeer.connect(proxy.port_for("pub"), "pub")
        spec = rules.specs[0]
        proxy.blackhole(spec, 0.4)
        pub.send(*(_pub(i) for i in range(1, 6)))
        assert await pub.collect(0.15) == []
        later = await pub.collect(1.0)
        assert [p.packet_id for p in later if isinstance(p, PubAck)] == [1, 2, 3, 4, 5]
        await pub.close()

    rules = run_with_proxy(body, {"kind": "blackhole", "client": "pub", "at": 30,
                                  "duration": 0.4})
    assert [r.action for r in rules.records] == ["blackhole"]


def test_delay_keeps_order_and_cut_fin_closes_gracefully() -> None:
    async def body(proxy: FaultProxy, rules: PacketRules) -> None:
        pub = await ScriptedPeer.connect(proxy.port_for("pub"), "pub")
        pub.send(*(Publish("t", b"%d" % i, 2, packet_id=i) for i in range(1, 21)))
        recs = [p.packet_id for p in await pub.collect(0.5) if isinstance(p, PubRec)]
        assert recs == list(range(1, 21))
        proxy.cut(rules.specs[1], "fin")
        assert await pub.read(1.0) is None        # the broker side closed (FIN)
        await pub.close()

    events: list[Event] = []
    rules = run_with_proxy(body, {"kind": "delay", "client": "pub", "delay": 0.01,
                                  "jitter": 0.02, "direction": "c2b"},
                           {"kind": "cut", "client": "pub", "at": 50, "how": "fin"},
                           tap=events)
    closes = [e for e in events if isinstance(e, ConnectionClosed)]
    assert [(c.how, c.closed_by) for c in closes] == [("fin", Direction.B2C)]
    assert [r.action for r in rules.records if r.action != "delay"] == ["cut_fin"]
    # Each packet the publisher sent was delayed by 10 ms plus a jitter of up to 20 ms, and
    # the log names it with the delay drawn for it.
    delayed = [r for r in rules.records if r.action == "delay"]
    assert [r.packet_id for r in delayed if r.packet_type == "PUBLISH"] == list(range(1, 21))
    assert {(r.client_id, r.direction) for r in delayed} == {("pub", "c2b")}
    assert all(10 <= float(r.detail.removesuffix(" ms")) <= 30 for r in delayed)
