#!/usr/bin/env python3
"""paho-mqtt 2.x peers (CallbackAPIVersion.VERSION2) for captures/paho-v311-v5.pcap.

Usage: paho_session.py PORT   (broker: mosquitto on 127.0.0.1:PORT, anonymous allowed)

MQTT 3.1.1 part (client ids paho-sub311 / paho-pub311):
  1. paho-sub311 connects with clean_session=False, subscribes demo/paho311/# at QoS 2,
     disconnects normally (the broker keeps the session and the subscription).
  2. paho-pub311 publishes QoS 0, 1 and 2 messages while the subscriber is away.
  3. paho-sub311 reconnects (new Client object, same id, clean_session=False): CONNACK has
     session present = 1 and the broker delivers the queued QoS 1 and QoS 2 messages
     (the QoS 0 one is not queued: mosquitto's queue_qos0_messages is false).
  4. Live QoS 0/1/2 messages while connected, then UNSUBSCRIBE and DISCONNECT.

MQTT 5 part (client ids paho-sub5 / paho-pub5):
  1. paho-sub5 connects with clean_start=True and Session Expiry Interval 300, subscribes
     demo/paho5/# with SubscribeOptions(qos=2, noLocal=True, retainAsPublished=True) and
     Subscription Identifier 7, and demo/paho5r/# with retainHandling=2 (never send retained)
     and Subscription Identifier 8. It publishes to demo/paho5/self itself (No Local: not
     echoed back), then disconnects (reason 0, the session survives 300 s).
  2. paho-pub5 publishes QoS 0/1/2 with user properties and message expiry, and a retained
     QoS 1 message to demo/paho5r/ret (Retain Handling only acts at SUBSCRIBE time, so this
     one is queued for the session like any other matching message).
  3. paho-sub5 reconnects with clean_start=False: session present = 1; it gets the queued
     QoS 1/2 messages (carrying subscription identifier 7, or 8 for demo/paho5r/ret).
  4. Live messages, UNSUBSCRIBE (v5 UNSUBACK reason codes), DISCONNECT with reason code 0
     and Session Expiry Interval 0 (ends the session).
"""
from __future__ import annotations

import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

HOST = "127.0.0.1"
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 1883
V2 = mqtt.CallbackAPIVersion.VERSION2


class Peer:
    def __init__(self, client_id: str, protocol, clean_session: bool | None = None) -> None:
        kw = {"clean_session": clean_session} if protocol != mqtt.MQTTv5 else {}
        self.c = mqtt.Client(V2, client_id=client_id, protocol=protocol, **kw)
        self.name = client_id
        self.connected = threading.Event()
        self.acked = threading.Event()
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, int, bool]] = []
        self.session_present = None
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.acked.set()
        self.c.on_unsubscribe = lambda c, u, mid, rcs, props: self.acked.set()
        self.c.on_message = self._on_message

    def _on_connect(self, c, u, flags, reason_code, props):
        self.session_present = flags.session_present
        assert not reason_code.is_failure, reason_code
        self.connected.set()

    def _on_message(self, c, u, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.qos, msg.retain))

    def connect(self, **kw) -> "Peer":
        self.c.connect(HOST, PORT, keepalive=30, **kw)
        self.c.loop_start()
        assert self.connected.wait(5), f"{self.name}: no CONNACK"
        return self

    def subscribe(self, *args, **kw) -> None:
        self.acked.clear()
        self.c.subscribe(*args, **kw)
        assert self.acked.wait(5), f"{self.name}: no SUBACK"

    def unsubscribe(self, *args, **kw) -> None:
        self.acked.clear()
        self.c.unsubscribe(*args, **kw)
        assert self.acked.wait(5), f"{self.name}: no UNSUBACK"

    def publish(self, topic: str, payload: str, qos: int, **kw) -> None:
        self.c.publish(topic, payload, qos=qos, **kw).wait_for_publish(5)

    def wait_messages(self, n: int, timeout: float = 5) -> list:
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.02)
        time.sleep(0.2)  # let the QoS 2 handshakes finish
        with self.lock:
            got, self.messages = self.messages, []
        return got

    def disconnect(self, **kw) -> None:
        self.c.disconnect(**kw)
        self.c.loop_stop()


def v311() -> None:
    sub = Peer("paho-sub311", mqtt.MQTTv311, clean_session=False).connect()
    sub.subscribe("demo/paho311/#", qos=2)
    sub.disconnect()
    time.sleep(0.2)

    pub = Peer("paho-pub311", mqtt.MQTTv311, clean_session=True).connect()
    for q in (0, 1, 2):
        pub.publish(f"demo/paho311/offline/q{q}", f"sent while paho-sub311 was away, qos {q}", q)
    time.sleep(0.2)

    sub = Peer("paho-sub311", mqtt.MQTTv311, clean_session=False).connect()
    assert sub.session_present, "paho-sub311: expected session present = 1"
    queued = sub.wait_messages(2)
    assert sorted(m[2] for m in queued) == [1, 2], queued
    for q in (0, 1, 2):
        pub.publish(f"demo/paho311/live/q{q}", f"live qos {q}", q)
    live = sub.wait_messages(3)
    assert len(live) == 3, live
    sub.unsubscribe("demo/paho311/#")
    sub.disconnect()
    pub.disconnect()
    print(f"v3.1.1: session_present=1, queued={[m[0] for m in queued]}, live={len(live)}")


def v5() -> None:
    sub = Peer("paho-sub5", mqtt.MQTTv5)
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 300
    sub.connect(clean_start=True, properties=cp)
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 7
    sub.subscribe([("demo/paho5/#", SubscribeOptions(qos=2, noLocal=True, retainAsPublished=True))],
                  properties=sp)
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 8
    sub.subscribe([("demo/paho5r/#", SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND))],
                  properties=sp)
    sub.publish("demo/paho5/self", "No Local: not sent back to paho-sub5", 1)
    assert sub.wait_messages(1, timeout=0.5) == [], "No Local violated"
    sub.disconnect()
    time.sleep(0.2)

    pub = Peer("paho-pub5", mqtt.MQTTv5).connect(clean_start=True)
    pp = Properties(PacketTypes.PUBLISH)
    pp.UserProperty = [("origin", "paho-pub5"), ("phase", "offline")]
    pp.MessageExpiryInterval = 120
    for q in (0, 1, 2):
        pub.publish(f"demo/paho5/offline/q{q}", f"sent while paho-sub5 was away, qos {q}", q, properties=pp)
    pub.publish("demo/paho5r/ret", "retained, not sent on subscribe (retain handling 2)", 1, retain=True)
    time.sleep(0.2)

    sub = Peer("paho-sub5", mqtt.MQTTv5)
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 300
    sub.connect(clean_start=False, properties=cp)
    assert sub.session_present, "paho-sub5: expected session present = 1"
    queued = sub.wait_messages(3)
    assert sorted(m[2] for m in queued if m[0].startswith("demo/paho5/offline")) == [1, 2], queued
    pp = Properties(PacketTypes.PUBLISH)
    pp.UserProperty = [("phase", "live")]
    for q in (0, 1, 2):
        pub.publish(f"demo/paho5/live/q{q}", f"live qos {q}", q, properties=pp)
    live = sub.wait_messages(3)
    assert len(live) == 3, live
    sub.unsubscribe(["demo/paho5/#", "demo/paho5/not-subscribed"])
    dp = Properties(PacketTypes.DISCONNECT)
    dp.SessionExpiryInterval = 0
    sub.disconnect(reasoncode=mqtt.ReasonCode(PacketTypes.DISCONNECT, "Normal disconnection"), properties=dp)
    pub.publish("demo/paho5r/ret", "", 0, retain=True)  # clear the retained message
    pub.disconnect()
    print(f"v5: session_present=1, queued={[m[0] for m in queued]}, live={len(live)}")


if __name__ == "__main__":
    v311()
    v5()
