#!/usr/bin/env python3
"""A mid-stream capture of paho-mqtt clients on a non-standard port, wake-up sockets included.

Usage (root; a private network namespace, so the capture holds only this run's traffic):

    unshare -n .venv/bin/python captures/scripts/midstream_paho.py OUT.pcap [PORT] [MESSAGES]

Inside the namespace: the loopback is brought up, mosquitto listens on 127.0.0.1:PORT (default
17501; persistence off, anonymous), four paho-mqtt 2.x clients with ``loop_start()`` connect (two
MQTT 3.1.1, two MQTT 5; each one subscribes to its own topic). Only then does
``tcpdump -i lo -U`` start, so no CONNECT and no SYN of the MQTT streams is in the file: they
begin mid-stream. Each client then publishes MESSAGES (default 20) QoS 1 messages to its topic
and receives them back. paho's network thread is woken through a TCP socket pair on 127.0.0.1,
one byte ``b"0"`` per publish from the main thread: those streams (also mid-stream) are in the
capture too and must not be taken for MQTT (issue 11 §4). tcpdump is stopped with SIGINT after
a pause; every process started here is stopped by pid.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from qosinspect.testing.tools import stop_process, wait_port


def main(out: Path, port: int, messages: int) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    work = Path(tempfile.mkdtemp(prefix="qosinspect-midstream."))
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "user root\n")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                               str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dump: subprocess.Popen[bytes] | None = None
    clients: list[mqtt.Client] = []
    try:
        wait_port(port, proc=broker)
        got: dict[str, int] = {}
        done = threading.Event()
        lock = threading.Lock()
        total = 4 * messages

        def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
            with lock:
                got[msg.topic] = got.get(msg.topic, 0) + 1
                if sum(got.values()) >= total:
                    done.set()

        for i, proto in enumerate((mqtt.MQTTv311, mqtt.MQTTv311, mqtt.MQTTv5, mqtt.MQTTv5)):
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"midstream-{i}",
                            protocol=proto)
            c.on_message = on_message
            c.connect("127.0.0.1", port, keepalive=60)
            c.loop_start()
            c.subscribe(f"midstream/{i}", qos=1)
            clients.append(c)
        time.sleep(1.0)  # every CONNECT and SUBSCRIBE done before the capture starts
        dump = subprocess.Popen([shutil.which("tcpdump") or "/usr/sbin/tcpdump", "-i", "lo",
                                 "-U", "--immediate-mode", "-B", "32768", "-w", str(out),
                                 "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        for n in range(messages):
            for i, c in enumerate(clients):
                c.publish(f"midstream/{i}", f"message {n}".encode(), qos=1)
            time.sleep(0.01)
        if not done.wait(20):
            print(f"only {sum(got.values())} of {total} messages came back", file=sys.stderr)
            return 1
        time.sleep(0.5)
        return 0
    finally:
        if dump is not None:
            stop_process(dump, signal.SIGINT)
        for c in clients:
            c.loop_stop()
        stop_process(broker)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 17501,
                  int(sys.argv[3]) if len(sys.argv) > 3 else 20))
