"""Our client against a real mosquitto (started by the tests on a free 127.0.0.1 port).

Every QoS in MQTT 3.1, 3.1.1 and 5.0 over TCP and WebSocket, retained messages, wills,
wildcards, MQTT 5 properties, keep-alive, refused connections, TLS with a client certificate,
and the redelivery rules across reconnections, each with the statement that decides it.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest

from qosinspect.client import Backoff, Client, ConnectRefused, SessionLost
from qosinspect.mqtt.enums import Direction
from qosinspect.mqtt.packets import (
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Will,
)
from qosinspect.mqtt.properties import Properties
from qosinspect.testing.certs import Certs
from qosinspect.testing.mosquitto import Mosquitto
from qosinspect.testing.tools import require_tool

from ._util import Proxy, Recorder, run, take, unique_topic, until

pytestmark = pytest.mark.tools
C2B, B2C = Direction.C2B, Direction.B2C


def cid(name: str) -> str:
    return f"qi-{name}-{uuid.uuid4().hex[:6]}"


@pytest.mark.parametrize("transport", ["tcp", "websocket"])
@pytest.mark.parametrize("version", [3, 4, 5])
def test_every_qos_in_each_version(mosquitto: Mosquitto, version: int, transport: str) -> None:
    """QoS 0, 1 and 2 both ways. QoS 1: PUBLISH then PUBACK [MQTT-4.3.2-1] [MQTT-4.3.2-3];
    QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP [MQTT-4.3.3-1] [MQTT-4.3.3-3] [MQTT-4.3.3-5]; the
    subscriber acknowledges what it receives [MQTT-4.3.2-4] [MQTT-4.3.3-8] [MQTT-4.3.3-11]."""
    port = mosquitto.port if transport == "tcp" else mosquitto.ws_port
    topic = unique_topic(f"qos-v{version}-{transport}")

    async def main() -> None:
        pub_tap, sub_tap = Recorder(), Recorder()
        async with Client("127.0.0.1", port, client_id=cid("sub"), version=version,
                          transport=transport, tap=sub_tap) as sub, \
                Client("127.0.0.1", port, client_id=cid("pub"), version=version,
                       transport=transport, tap=pub_tap) as pub:
            assert await sub.subscribe(f"{topic}/#", 2) == (2,)
            results = [await pub.publish(f"{topic}/q{q}", f"m{q}", q) for q in (0, 1, 2)]
            assert [r.reason_code for r in results] == [0, 0, 0]
            assert results[0].packet_id is None
            assert results[1].packet_id and results[2].packet_id
            got = await take(sub, 3)
            await until(lambda: sub_tap.packets(C2B, PubComp), what="PUBCOMP from the sub")
        assert [(m.topic, m.payload, m.qos, m.dup, m.retain) for m in got] == [
            (f"{topic}/q{q}", f"m{q}".encode(), q, False, False) for q in (0, 1, 2)]
        assert got[0].packet_id is None and got[1].packet_id and got[2].packet_id
        pid = results[2].packet_id
        flow = [(type(p).__name__, d) for d in (C2B, B2C)
                for p in pub_tap.packets(d) if getattr(p, "packet_id", None) == pid
                and not isinstance(p, PubAck)]
        assert sorted(flow) == sorted([("Publish", C2B), ("PubRec", B2C), ("PubRel", C2B),
                                       ("PubComp", B2C)])
        assert sub_tap.packets(C2B, PubAck) == [PubAck(got[1].packet_id)]
        assert sub_tap.packets(C2B, PubRec) == [PubRec(got[2].packet_id)]
        assert sub_tap.packets(C2B, PubComp) == [PubComp(got[2].packet_id)]

    run(main())


@pytest.mark.parametrize("version", [4, 5])
def test_retained_set_replace_and_clear(mosquitto: Mosquitto, version: int) -> None:
    """A retained message is sent with RETAIN=1 to new subscribers [MQTT-3.3.1-9], a new one
    replaces it [MQTT-3.3.1-5], an empty payload clears it [MQTT-3.3.1-6]."""
    topic = unique_topic("retained")

    async def main() -> None:
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("p"),
                          version=version) as pub:
            await pub.publish(topic, "first", 1, retain=True)
            await pub.publish(topic, "second", 1, retain=True)
            async with Client("127.0.0.1", mosquitto.port, client_id=cid("s"),
                              version=version) as sub:
                await sub.subscribe(topic, 1)
                [m] = await take(sub, 1)
                assert (m.payload, m.retain) == (b"second", True)
                await pub.publish(topic, "live", 1)
                [live] = await take(sub, 1)
                assert (live.payload, live.retain) == (b"live", False)
            await pub.publish(topic, b"", 1, retain=True)
            async with Client("127.0.0.1", mosquitto.port, client_id=cid("s2"),
                              version=version) as sub:
                await sub.subscribe(topic, 1)
                await pub.publish(topic, "marker", 1)
                [m] = await take(sub, 1)
                assert (m.payload, m.retain) == (b"marker", False)

    run(main())


@pytest.mark.parametrize("version", [3, 4, 5])
def test_will_is_published_on_a_lost_connection_not_after_disconnect(
        mosquitto: Mosquitto, version: int) -> None:
    """The will goes out when the connection ends without DISCONNECT [MQTT-3.1.2-8] and is
    discarded after a normal DISCONNECT [MQTT-3.1.2-10]."""
    topic = unique_topic("will")

    async def main() -> None:
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("w"),
                          version=version) as watcher:
            await watcher.subscribe(f"{topic}/#", 1)
            polite = Client("127.0.0.1", mosquitto.port, client_id=cid("polite"),
                            version=version, will=Will(f"{topic}/polite", b"gone", 1))
            await polite.connect()
            await polite.disconnect()
            rude = Client("127.0.0.1", mosquitto.port, client_id=cid("rude"), version=version,
                          will=Will(f"{topic}/rude", b"lost", 1, False))
            await rude.connect()
            rude.drop_connection()
            [m] = await take(watcher, 1)
            assert (m.topic, m.payload, m.qos) == (f"{topic}/rude", b"lost", 1)
            await rude.disconnect()
            await watcher.publish(f"{topic}/marker", "end", 1)
            [marker] = await take(watcher, 1)
            assert marker.topic == f"{topic}/marker"     # the polite will never came

    run(main())


def test_wildcards(mosquitto: Mosquitto) -> None:
    """'+' matches one level, '#' the rest including the parent [MQTT-4.7.1-2] [MQTT-4.7.1-3]."""
    base = unique_topic("wild")
    names = ["a/x", "b/x", "a/y", "a", "a/b/c", "c/d/x"]

    async def main() -> None:
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("plus")) as plus, \
                Client("127.0.0.1", mosquitto.port, client_id=cid("hash")) as hash_, \
                Client("127.0.0.1", mosquitto.port, client_id=cid("pub")) as pub:
            assert await plus.subscribe(f"{base}/+/x", 1) == (1,)
            assert await hash_.subscribe(f"{base}/a/#", 1) == (1,)
            for name in names:
                await pub.publish(f"{base}/{name}", name, 1)
            await pub.publish(f"{base}/a/end", "end", 1)
            await pub.publish(f"{base}/end/x", "end", 1)
            got_plus = [m.topic[len(base) + 1:] for m in await take(plus, 3)]
            got_hash = [m.topic[len(base) + 1:] for m in await take(hash_, 4)]
        assert got_plus == ["a/x", "b/x", "end/x"]
        assert got_hash == ["a/x", "a/y", "a", "a/b/c"]

    run(main())


def test_mqtt5_properties_round_trip(mosquitto: Mosquitto) -> None:
    """PUBLISH properties reach the subscriber; the broker lowers Message Expiry by the time
    the message waited (MQTT 5 3.3.2.3.3), here a little or not at all."""
    topic = unique_topic("props")
    props = Properties.of(content_type="text/plain", response_topic=f"{topic}/reply",
                          correlation_data=b"\x01\x02", payload_format_indicator=1,
                          user_property=[("k", "v"), ("k", "w")], message_expiry_interval=60)

    async def main() -> None:
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("s"), version=5) as sub, \
                Client("127.0.0.1", mosquitto.port, client_id=cid("p"), version=5) as pub:
            await sub.subscribe(topic, 1)
            result = await pub.publish(topic, "hi", 1, properties=props)
            assert result.reason_code == 0
            [m] = await take(sub, 1)
        p = m.properties
        assert (p.content_type, p.response_topic, p.correlation_data,
                p.payload_format_indicator) == ("text/plain", f"{topic}/reply", b"\x01\x02", 1)
        assert p.user_properties == [("k", "v"), ("k", "w")]
        assert p.message_expiry_interval is not None and 58 <= p.message_expiry_interval <= 60

    run(main())


def test_mqtt5_puback_reports_no_matching_subscribers(mosquitto: Mosquitto) -> None:
    """The acknowledgement's reason code is returned to the caller: mosquitto 2.0 says 0x10
    (no matching subscribers) in PUBACK, and 0 in PUBREC."""
    async def main() -> None:
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("p"), version=5) as pub:
            r1 = await pub.publish(unique_topic("nobody"), "x", 1)
            r2 = await pub.publish(unique_topic("nobody"), "x", 2)
        assert (r1.reason_code, r2.reason_code) == (0x10, 0) and r1.ok and r2.ok
        assert r2.pubrec_reason_code == 0 and r1.pubrec_reason_code is None

    run(main())


def test_keep_alive_pingreq_and_pingresp(mosquitto: Mosquitto) -> None:
    """3.1.1 [MQTT-3.1.2-23]: with nothing else to send, the client sends PINGREQ within the
    keep alive; mosquitto answers PINGRESP and the connection lives on."""
    async def main() -> None:
        tap = Recorder()
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("ka"), keep_alive=1,
                          tap=tap) as c:
            await until(lambda: len(tap.packets(B2C, PingResp)) >= 2, 6, "two PINGRESP")
            assert c.connected
        assert len(tap.packets(C2B, PingReq)) >= 2

    run(main())


@pytest.mark.parametrize("version, code", [(4, 5), (5, 0x87)])
def test_refused_connection_raises_with_the_connack_code(version: int, code: int) -> None:
    with Mosquitto("allow_anonymous false").running() as broker:
        async def main() -> None:
            client = Client("127.0.0.1", broker.port, client_id=cid("r"), version=version)
            with pytest.raises(ConnectRefused) as info:
                await client.connect()
            assert info.value.reason_code == code
            assert "not auth" in str(info.value).lower()
            assert not client.connected

        run(main())


def test_tls_with_ca_file_and_client_certificate(certs: Certs) -> None:
    """TLS: the client checks mosquitto's certificate against the CA file and presents its
    own; without it mosquitto (require_certificate) refuses the handshake."""
    with Mosquitto(tls=certs).running() as broker:
        async def main() -> None:
            tap = Recorder()
            async with Client("127.0.0.1", broker.port, client_id=cid("tls"), version=5,
                              ca_file=str(certs.ca), cert_file=str(certs.client_cert),
                              key_file=str(certs.client_key), tap=tap) as c:
                topic = unique_topic("tls")
                await c.subscribe(topic, 2)
                assert (await c.publish(topic, "secret", 2)).reason_code == 0
                [m] = await take(c, 1)
                assert m.payload == b"secret"
            assert tap[0].conn.transport == "tls"
            anonymous = Client("127.0.0.1", broker.port, client_id=cid("x"),
                               ca_file=str(certs.ca), connect_timeout=3)
            with pytest.raises(Exception) as info:     # ssl.SSLError, reset or closed
                await anonymous.connect()
            assert not isinstance(info.value, AssertionError)

        run(main())


# -- redelivery across reconnections -------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_broker_redelivers_unacknowledged_qos1_with_dup(mosquitto: Mosquitto,
                                                        version: int) -> None:
    """Hold our PUBACK, lose the connection, reconnect with the session kept: mosquitto resends
    the PUBLISH with DUP=1 [MQTT-3.3.1-1] and the same packet id [MQTT-4.4.0-1]."""
    topic = unique_topic("redeliver1")

    async def main() -> None:
        events: list[object] = []
        sub = Client("127.0.0.1", mosquitto.port, client_id=cid("dup1"), version=version,
                     clean_start=False, session_expiry=300 if version == 5 else None,
                     reconnect=Backoff(0.05, 0.5), on_reconnect=events.append)
        await sub.connect()
        await sub.subscribe(topic, 1)
        sub.acks.hold("puback")
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("p"),
                          version=version) as pub:
            await pub.publish(topic, "once", 1)
        [first] = await take(sub, 1)
        assert not first.dup and [h.packet for h in sub.acks.held] == [PubAck(first.packet_id)]
        sub.acks.auto()
        sub.drop_connection()
        [again] = await take(sub, 1)
        assert (again.dup, again.packet_id, again.payload) == (True, first.packet_id, b"once")
        assert again.conn_id == first.conn_id + 1
        [event] = events
        assert event.session_present and event.cause == "dropped by the application"  # type: ignore[attr-defined]
        await sub.disconnect()

    run(main())


def test_broker_redelivers_qos2_publish_and_pubrel(mosquitto: Mosquitto) -> None:
    """QoS 2 inbound: holding PUBREC makes mosquitto resend the PUBLISH with DUP=1, which our
    receiver acknowledges without delivering it twice [MQTT-4.3.3-10]; holding PUBCOMP makes it
    resend the PUBREL [MQTT-4.4.0-1], answered with PUBCOMP [MQTT-4.3.3-11]."""
    topic = unique_topic("redeliver2")

    async def main() -> None:
        tap = Recorder()
        sub = Client("127.0.0.1", mosquitto.port, client_id=cid("dup2"), clean_start=False,
                     reconnect=Backoff(0.05, 0.5), tap=tap)
        await sub.connect()
        await sub.subscribe(topic, 2)
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("p")) as pub:
            sub.acks.hold("pubrec", count=1)
            await pub.publish_nowait(topic, "a", 2)
            [a] = await take(sub, 1)
            sub.drop_connection()
            await until(lambda: len(tap.packets(B2C, PubRel)) == 1, what="PUBREL of a")
            resent = [p for p in tap.packets(B2C, Publish) if p.packet_id == a.packet_id]
            assert [p.dup for p in resent] == [False, True]
            sub.acks.hold("pubcomp", count=1)
            await pub.publish(topic, "b", 2)
            [b] = await take(sub, 1)
            await until(lambda: sub.acks.held, what="held PUBCOMP")
            sub.drop_connection()
            await until(lambda: [p.packet_id for p in tap.packets(B2C, PubRel)].count(
                b.packet_id) == 2, what="PUBREL of b resent")
            await until(lambda: tap.packets(C2B, PubComp)[-1:] == [PubComp(b.packet_id)],
                        what="PUBCOMP of b")
            await pub.publish(topic, "c", 2)
            [c] = await take(sub, 1)
        assert [m.payload for m in (a, b, c)] == [b"a", b"b", b"c"]   # nothing twice
        await sub.disconnect()

    run(main())


@pytest.mark.parametrize("qos", [1, 2])
def test_client_resends_unacknowledged_publish_with_dup(mosquitto: Mosquitto, qos: int) -> None:
    """The acknowledgement never arrives (a proxy swallows it), the connection drops: on the new
    connection the client resends the PUBLISH with DUP=1 [MQTT-3.3.1-1] and its original id
    [MQTT-4.4.0-1]; the flow completes, counted as sent twice, and packet ids continue."""
    topic = unique_topic(f"resend{qos}")

    async def main() -> None:
        async with Proxy(mosquitto.port) as proxy, \
                Client("127.0.0.1", mosquitto.port, client_id=cid("s")) as sub:
            await sub.subscribe(topic, 2)
            tap = Recorder()
            pub = Client("127.0.0.1", proxy.port, client_id=cid("resend"), clean_start=False,
                         reconnect=Backoff(0.05, 0.5), tap=tap)
            await pub.connect()
            proxy.swallow_b2c = True
            pending = pub.publish_nowait(topic, "again", qos)
            await until(lambda: tap.packets(C2B, Publish), what="PUBLISH sent")
            if qos == 1:                       # mosquitto forwards QoS 1 at once
                [m] = await take(sub, 1)
                assert m.payload == b"again"
            proxy.swallow_b2c = False
            proxy.cut()
            result = await asyncio.wait_for(pending.future, 5)
            sent = tap.packets(C2B, Publish)
            assert [(p.packet_id, p.dup) for p in sent] == [(result.packet_id, False),
                                                            (result.packet_id, True)]
            assert result.sends == 2 and result.reason_code == 0
            [event] = pub.reconnect_history
            assert (event.session_present, event.resent_publish) == (True, 1)
            later = await pub.publish(topic, "next", qos)
            assert later.packet_id != result.packet_id
            payloads: list[bytes] = []
            while b"next" not in payloads:
                payloads += [x.payload for x in await take(sub, 1)]
            if qos == 2:       # exactly once, although the broker got the PUBLISH twice
                assert payloads == [b"again", b"next"]
            else:              # at least once: the resent DUP may be forwarded again
                assert payloads in ([b"again", b"next"], [b"next"])
            await pub.disconnect()

    run(main())


def test_held_pubrel_is_resent_after_reconnect(mosquitto: Mosquitto) -> None:
    """Hold our PUBREL, drop the connection: the session resends PUBREL, not PUBLISH
    [MQTT-4.3.3-6] [MQTT-4.4.0-1]; PUBCOMP completes the flow; delivered exactly once."""
    topic = unique_topic("pubrel")

    async def main() -> None:
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("s")) as sub:
            await sub.subscribe(topic, 2)
            tap = Recorder()
            pub = Client("127.0.0.1", mosquitto.port, client_id=cid("rel"), clean_start=False,
                         reconnect=Backoff(0.05, 0.5), tap=tap)
            await pub.connect()
            pub.acks.hold("pubrel")
            pending = pub.publish_nowait(topic, "x", 2)
            await until(lambda: pub.acks.held, what="PUBREL held")
            pub.acks.auto()
            pub.drop_connection()
            result = await asyncio.wait_for(pending.future, 5)
            assert tap.packets(C2B, PubRel) == [PubRel(result.packet_id)]
            assert [p.dup for p in tap.packets(C2B, Publish)] == [False]
            assert pub.reconnect_history[0].resent_pubrel == 1
            await pub.publish(topic, "y", 2)
            got = await take(sub, 2)
            assert [m.payload for m in got] == [b"x", b"y"]
            await pub.disconnect()

    run(main())


def test_clean_session_reconnect_reports_lost_flows(mosquitto: Mosquitto) -> None:
    """Clean session 1: the session ends with the connection, so after the reconnection the
    broker has none and the client discards its flows [MQTT-3.2.2-5]: SessionLost."""
    async def main() -> None:
        async with Proxy(mosquitto.port) as proxy:
            pub = Client("127.0.0.1", proxy.port, client_id=cid("clean"), clean_start=True,
                         reconnect=Backoff(0.05, 0.5))
            await pub.connect()
            proxy.swallow_b2c = True
            pending = pub.publish_nowait(unique_topic("lost"), "x", 1)
            await asyncio.sleep(0.05)
            proxy.swallow_b2c = False
            proxy.cut()
            with pytest.raises(SessionLost):
                await asyncio.wait_for(pending.future, 5)
            event = pub.reconnect_history[0]
            assert (event.session_present, event.lost) == (False, 1)
            await pub.disconnect()

    run(main())


def test_subscriptions_renewed_after_clean_reconnect(mosquitto: Mosquitto) -> None:
    """With a clean session the broker forgot the subscriptions: the client subscribes again
    on reconnection, so messages keep arriving."""
    topic = unique_topic("resub")

    async def main() -> None:
        async with Proxy(mosquitto.port) as proxy, \
                Client("127.0.0.1", mosquitto.port, client_id=cid("p")) as pub:
            sub = Client("127.0.0.1", proxy.port, client_id=cid("resub"),
                         reconnect=Backoff(0.05, 0.5))
            await sub.connect()
            await sub.subscribe(topic, 1)
            proxy.cut()
            await until(lambda: sub.reconnect_history and sub.connected, what="reconnected")
            await until(lambda: topic in sub.protocol.subscriptions and
                        not sub.protocol._pending, what="resubscribed")
            await pub.publish(topic, "after", 1)
            [m] = await take(sub, 1)
            assert m.payload == b"after"
            await sub.disconnect()

    run(main())


def test_tap_events_feed_the_analysis(mosquitto: Mosquitto) -> None:
    """The tap's events go straight into qosinspect.analyze: the resent QoS 1 exchange shows
    two PUBLISH packets and spans the reconnection, without any pcap."""
    import qosinspect

    topic = unique_topic("tap")

    async def main() -> Recorder:
        tap = Recorder()
        async with Proxy(mosquitto.port) as proxy:
            pub = Client("127.0.0.1", proxy.port, client_id=cid("tap"), clean_start=False,
                         reconnect=Backoff(0.05, 0.5), tap=tap)
            await pub.connect()
            proxy.swallow_b2c = True
            pending = pub.publish_nowait(topic, "x", 1)
            await until(lambda: tap.packets(C2B, Publish), what="PUBLISH sent")
            await asyncio.sleep(0.02)
            proxy.swallow_b2c = False
            proxy.cut()
            await asyncio.wait_for(pending.future, 5)
            await pub.disconnect()
        return tap

    tap = run(main())
    assert all(getattr(e, "frame", 0) == 0 for e in tap)
    analysis = qosinspect.analyze(tap)
    ex = analysis.exchanges
    row = ex[(ex["qos"] == 1) & (ex["direction"] == "c2b")].iloc[0]
    assert row["n_publish"] == 2 and bool(row["spans_reconnect"])
    assert len(analysis.connections) == 2


@pytest.mark.parametrize("version, bad_code", [(4, 5), (5, 0x87)])
def test_credentials(tmp_path: Path, version: int, bad_code: int) -> None:
    """User name and password against a mosquitto password file: accepted, or refused with
    the code mosquitto 2.0 uses for a wrong password, 'not authorised' (5 / 0x87)."""
    passwd = tmp_path / "passwd"
    subprocess.run([require_tool("mosquitto_passwd"), "-b", "-c", str(passwd), "alice",
                    "s3cret"], check=True, capture_output=True, timeout=30)
    passwd.chmod(0o644)
    with Mosquitto(f"allow_anonymous false\npassword_file {passwd}").running() as broker:
        async def main() -> None:
            async with Client("127.0.0.1", broker.port, client_id=cid("u"), version=version,
                              username="alice", password="s3cret") as c:
                assert c.connected
            wrong = Client("127.0.0.1", broker.port, client_id=cid("w"), version=version,
                           username="alice", password=b"nope")
            with pytest.raises(ConnectRefused) as info:
                await wrong.connect()
            assert info.value.reason_code == bad_code

        run(main())


def test_mqtt5_clean_start_and_session_expiry(mosquitto: Mosquitto) -> None:
    """[MQTT-3.1.2-4] Clean Start 1 starts afresh; Clean Start 0 resumes a session whose
    Session Expiry Interval has not passed [MQTT-3.1.2-5]; with expiry 0 the session ended with
    the connection, so there is nothing to resume."""
    async def main() -> None:
        name = cid("expiry")
        for clean, expiry, present in ((True, 300, False), (False, 300, True),
                                       (False, 0, True), (False, 0, False)):
            c = Client("127.0.0.1", mosquitto.port, client_id=name, version=5,
                       clean_start=clean, session_expiry=expiry)
            connected = await c.connect()
            assert connected.session_present is present, (clean, expiry)
            await c.disconnect()

    run(main())


def test_dropped_and_doubled_acknowledgements(mosquitto: Mosquitto) -> None:
    """Fault control live: a dropped PUBACK is never sent, so mosquitto redelivers the message
    with DUP=1 after the reconnection [MQTT-4.4.0-1]; a PUBREL sent twice gets a second PUBCOMP
    that matches no flow (counted as an orphan, the flow completed once); a PUBACK sent twice
    is harmless to the broker."""
    topic = unique_topic("faults")

    async def main() -> None:
        tap = Recorder()
        sub = Client("127.0.0.1", mosquitto.port, client_id=cid("faults"), version=5,
                     clean_start=False, session_expiry=300, reconnect=Backoff(0.05, 0.5),
                     tap=tap)
        await sub.connect()
        await sub.subscribe(topic, 1)
        async with Client("127.0.0.1", mosquitto.port, client_id=cid("p"), version=5,
                          tap=tap) as pub:
            sub.acks.drop("puback", count=1)
            await pub.publish(topic, "dropped ack", 1)
            [first] = await take(sub, 1)
            sub.drop_connection()
            [again] = await take(sub, 1)
            assert (again.dup, again.packet_id) == (True, first.packet_id)
            assert [d.packet for d in sub.acks.dropped] == [PubAck(first.packet_id)]
            sub.acks.twice("puback", count=1)
            await pub.publish(topic, "doubled ack", 1)
            [doubled] = await take(sub, 1)
            await until(lambda: tap.packets(C2B, PubAck).count(PubAck(doubled.packet_id))
                        == 2, what="two PUBACKs")
            pub.acks.twice("pubrel", count=1)
            result = await pub.publish(topic, "doubled pubrel", 2)
            await until(lambda: pub.protocol.session.sender.orphan_acks == 1,
                        what="the second PUBCOMP")
            assert result.sends == 1 and pub.acks.duplicated == 1
            [m] = await take(sub, 1)
            assert m.payload == b"doubled pubrel" and sub.connected and pub.connected
        await sub.disconnect()

    run(main())
