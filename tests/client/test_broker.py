"""Our client against our own broker (qosinspect.broker.server.BrokerServer, in the same event
loop, on free 127.0.0.1 ports): the same basics as against mosquitto, plus what our broker
announces in MQTT 5 (Server Keep Alive, assigned client ids, session takeover)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from qosinspect.broker.auth import Authenticator
from qosinspect.broker.engine import BrokerConfig
from qosinspect.broker.server import BrokerServer, Listener, ServerConfig, tls_context
from qosinspect.client import Backoff, Client, ConnectionLost
from qosinspect.mqtt.enums import Direction
from qosinspect.mqtt.packets import PingReq, Publish, PubRel, Will
from qosinspect.testing.certs import Certs

from ._util import Recorder, run, take, unique_topic, until

C2B, B2C = Direction.C2B, Direction.B2C


def cid(name: str) -> str:
    return f"qi-{name}-{uuid.uuid4().hex[:6]}"


@asynccontextmanager
async def our_broker(*, certs: Certs | None = None, tap: Any = None,
                     **engine: Any) -> AsyncIterator[BrokerServer]:
    listeners = [Listener("127.0.0.1", 0), Listener("127.0.0.1", 0, websocket=True)]
    if certs is not None:
        for websocket in (False, True):
            listeners.append(Listener("127.0.0.1", 0, tls=tls_context(
                str(certs.server_cert), str(certs.server_key), cafile=str(certs.ca),
                require_certificate=True), websocket=websocket))
    config = ServerConfig(listeners=listeners, engine=BrokerConfig(**engine))
    server = BrokerServer(config, auth=Authenticator(allow_anonymous=True), tap=tap)
    async with server:
        yield server


def port_of(server: BrokerServer, index: int) -> int:
    return server.addresses[index][1]


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
@pytest.mark.parametrize("version", [3, 4, 5])
def test_every_qos_in_each_version(version: int, transport: str) -> None:
    """QoS 0/1/2 both ways [MQTT-4.3.2-1] [MQTT-4.3.3-1]; received QoS 1/2 acknowledged
    [MQTT-4.3.2-4] [MQTT-4.3.3-8]."""
    async def main() -> None:
        async with our_broker() as server:
            port = port_of(server, 0 if transport == "tcp" else 1)
            topic = unique_topic("ours")
            async with Client("127.0.0.1", port, client_id=cid("s"), version=version,
                              transport=transport) as sub, \
                    Client("127.0.0.1", port, client_id=cid("p"), version=version,
                           transport=transport) as pub:
                assert await sub.subscribe(f"{topic}/#", 2) == (2,)
                results = [await pub.publish(f"{topic}/{q}", bytes([q]) * 3, q)
                           for q in (0, 1, 2)]
                assert all(r.ok for r in results)
                got = await take(sub, 3)
            assert [(m.qos, m.payload, m.dup) for m in got] == [
                (q, bytes([q]) * 3, False) for q in (0, 1, 2)]

    run(main())


def test_retained_will_and_wildcards() -> None:
    """Retained to new subscribers [MQTT-3.3.1-9], cleared by an empty payload
    [MQTT-3.3.1-6]; the will of a lost connection [MQTT-3.1.2-8]; '+' and '#'."""
    async def main() -> None:
        async with our_broker() as server:
            base = unique_topic("mix")
            async with Client("127.0.0.1", server.port, client_id=cid("p"), version=5) as pub:
                await pub.publish(f"{base}/r/a", "kept", 1, retain=True)
                await pub.publish(f"{base}/r/b", "gone", 1, retain=True)
                await pub.publish(f"{base}/r/b", b"", 1, retain=True)
                async with Client("127.0.0.1", server.port, client_id=cid("s"),
                                  version=5) as sub:
                    await sub.subscribe([(f"{base}/r/+", 1), (f"{base}/will/#", 1)])
                    [kept] = await take(sub, 1)
                    assert (kept.topic, kept.payload, kept.retain) == (f"{base}/r/a",
                                                                       b"kept", True)
                    rude = Client("127.0.0.1", server.port, client_id=cid("rude"),
                                  version=5, will=Will(f"{base}/will/x", b"bye", 1))
                    await rude.connect()
                    rude.drop_connection()
                    [will] = await take(sub, 1)
                    assert (will.topic, will.payload) == (f"{base}/will/x", b"bye")
                    await rude.disconnect()

    run(main())


@pytest.mark.parametrize("version", [4, 5])
def test_redelivery_with_dup_after_reconnect(version: int) -> None:
    """Our broker resends the unacknowledged PUBLISH with DUP=1 and the same id when the
    session resumes [MQTT-4.4.0-1] [MQTT-3.3.1-1]; the reconnection is reported."""
    async def main() -> None:
        async with our_broker() as server:
            topic = unique_topic("dup")
            sub = Client("127.0.0.1", server.port, client_id=cid("dup"), version=version,
                         clean_start=False, session_expiry=600 if version == 5 else None,
                         reconnect=Backoff(0.05, 0.5))
            await sub.connect()
            await sub.subscribe(topic, 1)
            sub.acks.hold("puback")
            async with Client("127.0.0.1", server.port, client_id=cid("p"),
                              version=version) as pub:
                await pub.publish(topic, "m", 1)
            [first] = await take(sub, 1)
            sub.acks.auto()
            sub.drop_connection()
            [again] = await take(sub, 1)
            assert (again.dup, again.packet_id) == (True, first.packet_id)
            events = []
            async with asyncio.timeout(2):
                async for event in sub.reconnections():
                    events.append(event)
                    break
            assert events[0].session_present and events[0].gap_ns > 0
            await sub.disconnect()

    run(main())


def test_held_pubrel_resent_and_exactly_once() -> None:
    """Our PUBREL held and the connection lost: resent on reconnection [MQTT-4.4.0-1], the
    broker completes the flow and the subscriber gets the message once."""
    async def main() -> None:
        async with our_broker() as server:
            topic = unique_topic("rel")
            async with Client("127.0.0.1", server.port, client_id=cid("s")) as sub:
                await sub.subscribe(topic, 2)
                tap = Recorder()
                pub = Client("127.0.0.1", server.port, client_id=cid("rel"),
                             clean_start=False, reconnect=Backoff(0.05, 0.5), tap=tap)
                await pub.connect()
                pub.acks.hold("pubrel", count=1)
                pending = pub.publish_nowait(topic, "once", 2)
                await until(lambda: pub.acks.held, what="PUBREL held")
                pub.drop_connection()
                result = await asyncio.wait_for(pending.future, 5)
                assert tap.packets(C2B, PubRel) == [PubRel(result.packet_id)]
                await pub.publish(topic, "twice?", 2)
                got = await take(sub, 2)
                assert [m.payload for m in got] == [b"once", b"twice?"]
                await pub.disconnect()

    run(main())


def test_server_keep_alive_replaces_ours() -> None:
    """[MQTT-3.2.2-21]: the client uses the Server Keep Alive of CONNACK for its PINGREQs."""
    async def main() -> None:
        async with our_broker(max_keepalive=1) as server:
            tap = Recorder()
            async with Client("127.0.0.1", server.port, client_id=cid("ka"), version=5,
                              keep_alive=60, tap=tap) as c:
                assert c.connack is not None and c.connack.properties.server_keep_alive == 1
                await until(lambda: tap.packets(C2B, PingReq), 4, "PINGREQ")
                assert c.connected

    run(main())


def test_assigned_client_identifier_is_kept() -> None:
    """[MQTT-3.2.2-16]: an empty client id gets one assigned, used from then on."""
    async def main() -> None:
        async with our_broker() as server:
            c = Client("127.0.0.1", server.port, version=5, session_expiry=60)
            await c.connect()
            assigned = c.client_id
            assert assigned
            await c.disconnect()
            await c.connect()
            assert c.client_id == assigned and c.session_present
            await c.disconnect()

    run(main())


def test_session_takeover_ends_the_old_client_with_the_reason() -> None:
    """The same client id connecting again takes the session over; the old connection gets
    DISCONNECT 0x8E [MQTT-3.1.4-3], which ends its messages() with ConnectionLost."""
    async def main() -> None:
        async with our_broker() as server:
            name = cid("same")
            old = Client("127.0.0.1", server.port, client_id=name, version=5)
            await old.connect()
            async with Client("127.0.0.1", server.port, client_id=name, version=5):
                with pytest.raises(ConnectionLost, match="session taken over"):
                    async with asyncio.timeout(3):
                        async for _ in old.messages():
                            pass

    run(main())


def test_receive_maximum_limits_what_the_broker_sends() -> None:
    """Our Receive Maximum (2) bounds the broker's unacknowledged QoS 1 PUBLISH to us
    [MQTT-4.9.0-2]; releasing the held PUBACKs lets the rest through, in order."""
    async def main() -> None:
        broker_tap = Recorder()
        async with our_broker(tap=broker_tap) as server:
            topic = unique_topic("rm")
            sub = Client("127.0.0.1", server.port, client_id=cid("rm"), version=5,
                         receive_maximum=2)
            await sub.connect()
            await sub.subscribe(topic, 1)
            sub.acks.hold("puback")
            async with Client("127.0.0.1", server.port, client_id=cid("p"), version=5) as pub:
                for i in range(5):
                    await pub.publish(topic, str(i), 1)
            first = await take(sub, 2)
            await asyncio.sleep(0.05)
            to_sub = [e for e in broker_tap if getattr(e, "direction", None) == B2C
                      and isinstance(e.packet, Publish) and e.packet.topic == topic]
            assert len(to_sub) == 2
            released = 0
            rest: list[Any] = []
            while len(first) + len(rest) < 5:
                released += await sub.release_acks("puback")
                rest += await take(sub, 1)
            await until(lambda: sub.acks.held, what="last PUBACK held")
            released += await sub.release_acks()
            assert [m.payload for m in first + rest] == [b"0", b"1", b"2", b"3", b"4"]
            assert released == 5
            await sub.disconnect()

    run(main())


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
def test_tls_listener_with_client_certificate(certs: Certs, transport: str) -> None:
    """MQTT over TLS, and over WebSocket over TLS, with a client certificate."""
    async def main() -> None:
        async with our_broker(certs=certs) as server:
            tap = Recorder()
            port = port_of(server, 2 if transport == "tcp" else 3)
            async with Client("127.0.0.1", port, client_id=cid("tls"), transport=transport,
                              ca_file=str(certs.ca), cert_file=str(certs.client_cert),
                              key_file=str(certs.client_key), tap=tap) as c:
                topic = unique_topic("tls")
                await c.subscribe(topic, 1)
                await c.publish(topic, "over tls", 1)
                [m] = await take(c, 1)
            assert m.payload == b"over tls"
            assert tap[0].conn.transport == ("tls" if transport == "tcp" else "websocket")

    run(main())
