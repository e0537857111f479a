#!/usr/bin/env python3
"""paho-mqtt 2.x clients speaking MQTT over WebSocket, for captures/mosquitto-websocket.pcap.

Usage: ws_client.py PORT   (mosquitto websockets listener on 127.0.0.1:PORT, path /mqtt)

* ws-sub311: MQTT 3.1.1 over WebSocket, subscribes demo/ws/# at QoS 2.
* ws-pub5:   MQTT 5 over WebSocket, publishes QoS 0, 1, 2 to demo/ws/v5/qN.
* ws-pub311: MQTT 3.1.1 over WebSocket, publishes QoS 0, 1, 2 to demo/ws/v311/qN.
* ws-sub311 receives the six messages, unsubscribes and disconnects.
paho sends "Sec-WebSocket-Protocol: mqtt"; client-to-broker WebSocket frames are masked.
"""
from __future__ import annotations

import sys
import threading
import time

import paho.mqtt.client as mqtt

HOST, PORT = "127.0.0.1", int(sys.argv[1])
V2 = mqtt.CallbackAPIVersion.VERSION2


def client(client_id: str, protocol) -> mqtt.Client:
    c = mqtt.Client(V2, client_id=client_id, protocol=protocol, transport="websockets")
    c.ws_set_options(path="/mqtt")
    ready = threading.Event()
    c.on_connect = lambda *a: ready.set()
    c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    assert ready.wait(5), f"{client_id}: no CONNACK"
    return c


got: list[tuple[str, int]] = []
subacked, unsubacked = threading.Event(), threading.Event()
sub = client("ws-sub311", mqtt.MQTTv311)
sub.on_message = lambda c, u, m: got.append((m.topic, m.qos))
sub.on_subscribe = lambda *a: subacked.set()
sub.on_unsubscribe = lambda *a: unsubacked.set()
sub.subscribe("demo/ws/#", qos=2)
assert subacked.wait(5)

for cid, proto, tag in (("ws-pub5", mqtt.MQTTv5, "v5"), ("ws-pub311", mqtt.MQTTv311, "v311")):
    pub = client(cid, proto)
    for q in (0, 1, 2):
        pub.publish(f"demo/ws/{tag}/q{q}", f"over websocket, {tag}, qos {q}", qos=q).wait_for_publish(5)
    time.sleep(0.2)
    pub.disconnect()
    pub.loop_stop()

end = time.time() + 5
while len(got) < 6 and time.time() < end:
    time.sleep(0.05)
time.sleep(0.2)
assert len(got) == 6, got
sub.unsubscribe("demo/ws/#")
assert unsubacked.wait(5)
sub.disconnect()
sub.loop_stop()
print("websocket:", got)
