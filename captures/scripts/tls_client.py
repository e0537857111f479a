#!/usr/bin/env python3
"""paho-mqtt 2.x clients over TLS, for captures/mosquitto-tls.pcap (+ its key log).

Usage: tls_client.py PORT CAFILE KEYLOG   (mosquitto TLS listener on 127.0.0.1:PORT)

The TLS session secrets are written to KEYLOG in the NSS key log format (Python's
``SSLContext.keylog_filename``, the same as SSLKEYLOGFILE), so Wireshark can decrypt the
capture (``tshark -o tls.keylog_file:KEYLOG``, ``qosinspect decode --engine tshark
--tls-keylog KEYLOG``).

* tls-sub: MQTT 3.1.1, subscribes demo/tls/# at QoS 2.
* tls-pub: MQTT 3.1.1, publishes QoS 0, 1 and 2 messages to demo/tls/qN.
* tls-sub receives the three, then both disconnect.
"""
from __future__ import annotations

import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

HOST, PORT, CAFILE, KEYLOG = "127.0.0.1", int(sys.argv[1]), sys.argv[2], sys.argv[3]
V2 = mqtt.CallbackAPIVersion.VERSION2


def client(client_id: str) -> mqtt.Client:
    ctx = ssl.create_default_context(cafile=CAFILE)
    ctx.check_hostname = False  # the self-signed certificate names 127.0.0.1 as an IP SAN
    ctx.keylog_filename = KEYLOG
    c = mqtt.Client(V2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.tls_set_context(ctx)
    ready = threading.Event()
    c.on_connect = lambda *a: ready.set()
    c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    if not ready.wait(10):
        sys.exit(f"{client_id}: no CONNACK")
    return c


def main() -> None:
    got: list[str] = []
    done = threading.Event()

    def on_message(c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.topic)
        if len(got) == 3:
            done.set()

    sub = client("tls-sub")
    sub.on_message = on_message
    sub.subscribe("demo/tls/#", qos=2)
    time.sleep(0.3)
    pub = client("tls-pub")
    for qos in (0, 1, 2):
        pub.publish(f"demo/tls/q{qos}", f"over tls at qos {qos}", qos=qos).wait_for_publish(5)
    if not done.wait(10):
        sys.exit(f"tls-sub got only {got}")
    pub.disconnect()
    pub.loop_stop()
    sub.disconnect()
    sub.loop_stop()


if __name__ == "__main__":
    main()
