"""paho-mqtt (MQTT 3.1.1 and 5.0) against our broker: QoS, retained, wills, wildcards,
sessions, MQTT 5 features, authentication and ACL, TLS, WebSocket and IPv6.

paho is a real, independent implementation: when it accepts what our broker sends, the captures
the broker produces are what real peers produce.
"""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProps
from paho.mqtt.subscribeoptions import SubscribeOptions

from qosinspect.broker import AccessControl, Authenticator, BrokerConfig, Listener, PasswordFile
from qosinspect.broker.server import tls_context
from qosinspect.events import MqttPacketEvent
from qosinspect.mqtt.packets import ConnAck
from qosinspect.testing.certs import Certs

from .harness import paho_client, run_broker, wait_for


@contextmanager
def connected(port: int, cid: str, version: int = 4, *, host: str = "127.0.0.1",
              clean: bool = True, expiry: int | None = None, username: str | None = None,
              password: str | None = None, tls: dict[str, Any] | None = None,
              transport: str = "tcp", props: dict[str, Any] | None = None,
              expect_ok: bool = True) -> Iterator[Any]:
    kw: dict[str, Any] = {"transport": transport}
    if version < 5:
        kw["clean_session"] = clean
    c = paho_client(cid, version, **kw)
    if username is not None:
        c.username_pw_set(username, password)
    if tls is not None:
        c.tls_set(**tls)
    connect_kw: dict[str, Any] = {}
    if version == 5:
        connect_kw["clean_start"] = clean
        cp = PahoProps(PacketTypes.CONNECT)
        if expiry is not None:
            cp.SessionExpiryInterval = expiry
        for k, v in (props or {}).items():
            setattr(cp, k, v)
        connect_kw["properties"] = cp
    c.connect(host, port, keepalive=30, **connect_kw)
    c.loop_start()
    try:
        assert c.connected_event.wait(10), "no CONNACK"
        if expect_ok:
            assert not c.connack[1].is_failure, f"refused: {c.connack[1]}"
        yield c
    finally:
        c.disconnect()
        c.loop_stop()


def subscribe(c: Any, topic: str, qos: int = 0, **opts: Any) -> list[Any]:
    n = len(c.subacks)
    if opts:
        c.subscribe(topic, options=SubscribeOptions(qos=qos, **opts),
                    properties=opts.pop("_props", None))
    else:
        c.subscribe(topic, qos)
    wait_for(lambda: len(c.subacks) > n, what=f"SUBACK for {topic}")
    return list(c.subacks[-1][1])


def publish(c: Any, topic: str, payload: bytes, qos: int = 0, retain: bool = False,
            properties: Any = None) -> None:
    info = c.publish(topic, payload, qos, retain, properties=properties)
    info.wait_for_publish(10)
    assert info.is_published()


def payloads(c: Any) -> list[bytes]:
    return [m.payload for m in c.received]


@pytest.mark.parametrize("version", [4, 5])
def test_every_qos_both_ways_delivered_at_the_minimum_MQTT_3_8_4_8(version: int) -> None:
    with run_broker() as b:
        subs = []
        with connected(b.port, "s0", version) as s0, connected(b.port, "s1", version) as s1, \
                connected(b.port, "s2", version) as s2, connected(b.port, "p", version) as p:
            subs = [s0, s1, s2]
            for q, s in enumerate(subs):
                granted = subscribe(s, "q/#", q)
                assert [int(g.value if hasattr(g, "value") else g) for g in granted] == [q]
            for pq in (0, 1, 2):
                publish(p, f"q/{pq}", f"m{pq}".encode(), pq)
            for sq, s in enumerate(subs):
                wait_for(lambda s=s: len(s.received) == 3, what=f"3 messages at sub QoS {sq}")
                got = {m.topic: m.qos for m in s.received}
                assert got == {f"q/{pq}": min(pq, sq) for pq in (0, 1, 2)}


@pytest.mark.parametrize("version", [4, 5])
def test_retained_set_replace_clear_MQTT_3_3_1_5_6_9(version: int) -> None:
    with run_broker() as b, connected(b.port, "p", version) as p:
        publish(p, "ret/a", b"one", 1, retain=True)
        publish(p, "ret/a", b"two", 1, retain=True)          # replaces [MQTT-3.3.1-5]
        publish(p, "ret/b", b"bee", 2, retain=True)
        with connected(b.port, "s", version) as s:
            subscribe(s, "ret/#", 2)
            wait_for(lambda: len(s.received) == 2, what="retained messages")
            assert sorted(payloads(s)) == [b"bee", b"two"]
            assert all(m.retain for m in s.received)           # [MQTT-3.3.1-9]
            publish(p, "ret/a", b"live", 1, retain=True)
            wait_for(lambda: len(s.received) == 3, what="the live message")
            assert not s.received[-1].retain                   # [MQTT-3.3.1-12]
        publish(p, "ret/a", b"", 1, retain=True)               # clears [MQTT-3.3.1-6]
        with connected(b.port, "s2", version) as s2:
            subscribe(s2, "ret/#", 1)
            wait_for(lambda: len(s2.received) == 1, what="the one retained message left")
            time.sleep(0.2)
            assert payloads(s2) == [b"bee"]


WILL_SCRIPT = """
import sys, time, paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
port, version, delay = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="dying", protocol=proto)
wp = None
kw = {}
if version == 5:
    wp = Properties(PacketTypes.WILLMESSAGE)
    if delay:
        wp.WillDelayInterval = delay
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 60
    kw["properties"] = cp
c.will_set("wills/dying", b"gone", qos=1, retain=False, properties=wp)
c.on_connect = lambda *a: print("connected", flush=True)
c.connect("127.0.0.1", port, 30, **kw)
c.loop_forever()
"""


@pytest.mark.parametrize(("version", "delay"), [(4, 0), (5, 0), (5, 1)])
def test_will_published_when_client_dies_MQTT_3_1_2_8(version: int, delay: int) -> None:
    """A killed client's will goes out (after the MQTT 5 Will Delay Interval when set)."""
    with run_broker(tick_interval=0.05) as b, connected(b.port, "watch", version) as w:
        subscribe(w, "wills/#", 1)
        proc = subprocess.Popen([sys.executable, "-c", WILL_SCRIPT, str(b.port), str(version),
                                 str(delay)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            t0 = time.monotonic()
            wait_for(lambda: w.received, what="the will")
            waited = time.monotonic() - t0
            assert payloads(w) == [b"gone"] and w.received[0].topic == "wills/dying"
            if delay:
                assert waited >= delay * 0.8
        finally:
            proc.kill()
            proc.wait(10)


def test_no_will_after_normal_disconnect_MQTT_3_1_2_10() -> None:
    with run_broker() as b, connected(b.port, "watch") as w:
        subscribe(w, "wills/#", 1)
        c = paho_client("polite")
        c.will_set("wills/polite", b"gone", 1)
        c.connect("127.0.0.1", b.port)
        c.loop_start()
        assert c.connected_event.wait(5)
        c.disconnect()
        c.loop_stop()
        time.sleep(0.4)
        assert w.received == []


@pytest.mark.parametrize("version", [4, 5])
def test_wildcards_and_dollar_topics_MQTT_4_7_1_and_4_7_2_1(version: int) -> None:
    with (run_broker() as b,
          connected(b.port, "s", version) as s,
          connected(b.port, "d", version) as d,
          connected(b.port, "p", version) as p):
        subscribe(s, "sport/+/player1", 1)
        subscribe(s, "sport/tennis/#", 1)
        subscribe(s, "#", 0)
        subscribe(d, "$app/#", 0)         # $SYS is the broker's own (clients may not publish)
        for topic in ("sport/tennis/player1", "sport/tennis", "sport/golf/player1",
                      "sport/golf/player2", "$app/x"):
            publish(p, topic, topic.encode(), 1)
        wait_for(lambda: len(s.received) == 4 and len(d.received) == 1, what="routing")
        time.sleep(0.2)
        got = {m.topic: m.qos for m in s.received}           # one copy per matching client
        assert got == {"sport/tennis/player1": 1, "sport/tennis": 1,
                       "sport/golf/player1": 1, "sport/golf/player2": 0}
        assert [m.topic for m in d.received] == ["$app/x"]    # "#" never sees "$app"


@pytest.mark.parametrize("version", [4, 5])
def test_persistent_session_queues_while_offline_MQTT_4_4_0_1(version: int) -> None:
    with run_broker() as b:
        with connected(b.port, "keeper", version, clean=False, expiry=300) as s:
            subscribe(s, "keep/#", 2)
        with connected(b.port, "p", version) as p:
            for i in range(20):
                publish(p, "keep/x", str(i).encode(), 1 + i % 2)
            publish(p, "keep/x", b"q0", 0)                       # QoS 0: not kept offline
        with connected(b.port, "keeper", version, clean=False, expiry=300) as s:
            flags = s.connack[0]
            assert flags.session_present                          # [MQTT-3.2.2-2]
            wait_for(lambda: len(s.received) == 20, what="the queued messages")
            time.sleep(0.2)
            for q in (1, 2):                     # in order per QoS (paho hands QoS 2 on PUBREL)
                assert [m.payload for m in s.received if m.qos == q] == \
                    [str(i).encode() for i in range(20) if 1 + i % 2 == q]
        with connected(b.port, "keeper", version, clean=True) as s:
            assert not s.connack[0].session_present               # [MQTT-3.1.2-4]


def test_v5_session_expiry_ends_session_MQTT_3_1_2_23() -> None:
    with run_broker(tick_interval=0.05) as b:
        with connected(b.port, "brief", 5, clean=False, expiry=1) as s:
            subscribe(s, "t", 1)
        time.sleep(1.5)
        with connected(b.port, "brief", 5, clean=False, expiry=1) as s:
            assert not s.connack[0].session_present


def test_v5_shared_subscription_identifiers_no_local_rap_retain_handling() -> None:
    with run_broker() as b, connected(b.port, "a", 5) as a, connected(b.port, "b2", 5) as b2, \
                connected(b.port, "x", 5) as x:
        subscribe(a, "$share/g/jobs/#", 1)
        subscribe(b2, "$share/g/jobs/#", 1)
        sp = PahoProps(PacketTypes.SUBSCRIBE)
        sp.SubscriptionIdentifier = 42
        x.subscribe("ids/#", options=SubscribeOptions(qos=1), properties=sp)
        wait_for(lambda: x.subacks, what="SUBACK")
        subscribe(x, "mine", 0, noLocal=True)
        subscribe(x, "rap", 0, retainAsPublished=True)
        for i in range(10):
            publish(x, "jobs/n", str(i).encode(), 1)
        publish(x, "ids/1", b"id", 1)
        publish(x, "mine", b"not to me", 0)
        publish(x, "rap", b"kept flag", 0, retain=True)
        wait_for(lambda: len(a.received) + len(b2.received) == 10, what="shared jobs")
        assert a.received and b2.received                      # spread over the group
        wait_for(lambda: len(x.received) == 2, what="id and rap messages")
        time.sleep(0.2)
        by_topic = {m.topic: m for m in x.received}
        assert set(by_topic) == {"ids/1", "rap"}               # no-local [MQTT-3.8.3-3]
        assert by_topic["ids/1"].properties.SubscriptionIdentifier == [42]   # [MQTT-3.3.4-3]
        assert by_topic["rap"].retain                          # [MQTT-3.3.1-13]
        subscribe(a, "rap", 0, retainHandling=2)               # 2: no retained on subscribe
        subscribe(a, "rap2", 0, retainHandling=1)
        time.sleep(0.2)
        assert all(m.topic != "rap" for m in a.received)


def test_v5_message_expiry_MQTT_3_3_2_5_and_3_3_2_6() -> None:
    with run_broker() as b:
        with connected(b.port, "late", 5, clean=False, expiry=60) as s:
            subscribe(s, "exp", 1)
        with connected(b.port, "p", 5) as p:
            short = PahoProps(PacketTypes.PUBLISH)
            short.MessageExpiryInterval = 1
            long = PahoProps(PacketTypes.PUBLISH)
            long.MessageExpiryInterval = 100
            publish(p, "exp", b"short", 1, properties=short)
            publish(p, "exp", b"long", 1, properties=long)
        time.sleep(1.3)
        with connected(b.port, "late", 5, clean=False, expiry=60) as s:
            wait_for(lambda: s.received, what="the unexpired message")
            time.sleep(0.2)
            assert payloads(s) == [b"long"]
            remaining = s.received[0].properties.MessageExpiryInterval
            assert 90 <= remaining < 100                           # counted down while queued


@pytest.fixture
def secured(tmp_path: Path) -> Authenticator:
    pw = PasswordFile()
    pw.set("alice", "wonderland")
    pw.set("bob", "builder")
    pw.save(tmp_path / "passwd")
    acl = AccessControl.parse(
        "user alice\n"
        "topic readwrite alice/#\n"
        "topic read public/#\n"
        "user bob\n"
        "topic write public/#\n"
        "pattern readwrite devices/%u/%c/#\n")
    return Authenticator(False, PasswordFile.load(tmp_path / "passwd"), acl)


@pytest.mark.parametrize("version", [4, 5])
def test_authentication_codes(version: int, secured: Authenticator) -> None:
    """Bad password: 4 (3.1.1) / 0x86 (5.0); no user: 5 / 0x87 (the tap shows the wire)."""
    events: list[Any] = []
    with run_broker(auth=secured, tap=events.append) as b:
        with connected(b.port, "a", version, username="alice", password="wonderland"):
            pass
        with connected(b.port, "a", version, username="alice", password="wrong",
                       expect_ok=False) as c:
            assert int(c.connack[1].value) == 0x86       # paho maps 3.1.1 codes to 5.0 ones
        with connected(b.port, "anon", version, expect_ok=False) as c:
            assert int(c.connack[1].value) == 0x87
    codes = [e.packet.reason_code for e in events if isinstance(e, MqttPacketEvent)
             and isinstance(e.packet, ConnAck)]
    assert codes == ([0, 0x86, 0x87] if version == 5 else [0, 4, 5])


@pytest.mark.parametrize(("version", "deny_code"), [(4, 0x80), (5, 0x87), (5, 0x80)])
def test_acl_subscribe_denied_and_publish_not_forwarded(version: int, deny_code: int,
                                                        secured: Authenticator) -> None:
    cfg = BrokerConfig(deny_subscribe_code_v5=deny_code)
    with (run_broker(auth=secured, engine=cfg) as b,
          connected(b.port, "ca", version, username="alice", password="wonderland") as a,
          connected(b.port, "cb", version, username="bob", password="builder") as bob):
        codes = subscribe(a, "bob/#", 1)
        assert [int(getattr(c, "value", c)) for c in codes] == [deny_code]
        assert [int(getattr(c, "value", c)) for c in subscribe(a, "public/#", 1)] == [1]
        assert [int(getattr(c, "value", c)) for c in subscribe(a, "alice/#", 1)] == [1]
        publish(bob, "public/news", b"hello", 1)               # bob may write there
        publish(bob, "alice/private", b"intrusion", 1)         # bob may not
        publish(a, "public/news", b"alice may not write", 1)   # alice may only read
        publish(bob, "devices/bob/cb/state", b"pattern ok", 1)
        wait_for(lambda: a.received, what="the allowed message")
        time.sleep(0.3)
        assert payloads(a) == [b"hello"]
        assert b.call(lambda: b.server.stats.denied_publish) == 2


def test_tls_listener_with_and_without_client_certificate(certs: Certs) -> None:
    plain = tls_context(str(certs.server_cert), str(certs.server_key))
    mutual = tls_context(str(certs.server_cert), str(certs.server_key), cafile=str(certs.ca),
                         require_certificate=True)
    listeners = [Listener("127.0.0.1", 0, tls=plain),
                 Listener("127.0.0.1", 0, tls=mutual, use_identity_as_username=True),
                 Listener("127.0.0.1", 0, tls=plain, websocket=True)]
    acl = AccessControl.parse("topic readwrite open/#\nuser alice\ntopic readwrite tls/#\n")
    auth = Authenticator(allow_anonymous=True, acl=acl)
    with run_broker(listeners=listeners, auth=auth) as b:
        (_, p1), (_, p2), (_, p3) = b.addresses
        with connected(p1, "t1", 4, tls={"ca_certs": str(certs.ca)}) as c, \
                connected(p3, "wss", 5, tls={"ca_certs": str(certs.ca)},
                          transport="websockets") as w:
            subscribe(w, "open/x", 1)
            publish(c, "open/x", b"over tls", 1)
            wait_for(lambda: payloads(w) == [b"over tls"], what="TLS to WebSocket over TLS")
        # mutual TLS: the certificate's CN (alice) is the user name, which the ACL knows
        tls = {"ca_certs": str(certs.ca), "certfile": str(certs.client_cert),
               "keyfile": str(certs.client_key)}
        with connected(p2, "t2", 5, tls=tls) as c:
            assert [int(getattr(x, "value", x)) for x in subscribe(c, "tls/#", 1)] == [1]
            publish(c, "tls/a", b"mutual", 1)
            wait_for(lambda: c.received, what="own message back")
        bare = paho_client("t3")
        bare.tls_set(ca_certs=str(certs.ca))
        try:                                      # no client certificate: no session
            bare.connect("127.0.0.1", p2)
            bare.loop_start()
            refused = not (bare.connected_event.wait(2) and not bare.connack[1].is_failure)
        except (ssl.SSLError, OSError):
            refused = True
        finally:
            bare.loop_stop()
        assert refused


def test_websocket_and_ipv6_listeners_at_once() -> None:
    listeners = [Listener("127.0.0.1", 0), Listener("127.0.0.1", 0, websocket=True),
                 Listener("::1", 0)]
    with run_broker(listeners=listeners) as b:
        (_, tcp), (_, ws), (_, v6) = b.addresses
        with connected(ws, "ws", 4, transport="websockets") as w, \
                connected(v6, "v6", 5, host="::1") as six, connected(tcp, "tcp", 4) as t:
            subscribe(w, "multi/#", 2)
            subscribe(six, "multi/#", 2)
            publish(t, "multi/a", b"everyone", 2)
            publish(w, "multi/b", b"from ws", 1)
            wait_for(lambda: len(w.received) == 2 and len(six.received) == 2,
                     what="both listeners")
        kinds = b.call(lambda: sorted({li.transport for _, _, li in b.server.bound}))
        assert kinds == ["tcp", "websocket"]


def test_mqtt_31_client() -> None:
    with (run_broker() as b,
          connected(b.port, "old", 3) as old,
          connected(b.port, "new", 5) as new):
        subscribe(old, "legacy", 2)
        publish(new, "legacy", b"to 3.1", 2)
        wait_for(lambda: old.received, what="MQTT 3.1 delivery")
        assert old.received[0].qos == 2


def test_session_takeover_paho_MQTT_3_1_4_3() -> None:
    with run_broker() as b:
        first = paho_client("twin", 5)
        first.reconnect_delay_set(60, 60)                  # do not fight back
        reasons: list[Any] = []
        first.on_disconnect = lambda c, u, f, rc, p: reasons.append(rc)
        first.connect("127.0.0.1", b.port)
        first.loop_start()
        assert first.connected_event.wait(5)
        try:
            with connected(b.port, "twin", 5):
                wait_for(lambda: reasons, what="the first client's disconnect")
                assert int(reasons[0].value) == 0x8E
        finally:
            first.loop_stop()


_ = mqtt  # the module's constants are used through the harness
