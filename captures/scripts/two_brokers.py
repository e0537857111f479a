"""Record a capture that holds two brokers: two mosquitto on 127.0.0.1, different ports.

    sudo .venv/bin/python captures/scripts/two_brokers.py captures/two-brokers.pcap

What it does, with real peers only (mosquitto 2.0 and its clients; tcpdump on the loopback):

* broker A and broker B, each mosquitto on a free port, anonymous;
* on each broker a persistent subscriber with the *same* client id, ``sub`` (``mosquitto_sub
  -c -i sub -q 1 -t demo/#``): two sessions that must not be taken for one;
* on broker B a second subscriber, ``watch`` (``-t demo/#``);
* a publisher on broker A only: 3 messages at QoS 0 and 3 at QoS 1 to ``demo/t``. Broker A's
  subscriber gets all six; broker B's subscribers get none, and must not be counted as missing
  them (before sessions and deliveries were matched per broker, they were: "not delivered" to
  ``watch``, and the two ``sub`` were one session taken over by the other broker's);
* a publisher on broker B: 2 messages at QoS 1 to ``demo/b``, which only B's subscriber gets.

The ports are written next to the capture (``CAPTURE.ports``, one per line, A first).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from qosinspect.testing.mosquitto import Mosquitto  # noqa: E402
from qosinspect.testing.tools import stop_process  # noqa: E402
from qosinspect.traffic.live import LiveCapture  # noqa: E402


def publish(port: int, topic: str, message: str, qos: int) -> None:
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-i", f"pub-{port}",
                    "-q", str(qos), "-t", topic, "-m", message], check=True, timeout=20)


def record(path: Path) -> tuple[int, int]:
    """Record the capture at ``path``; returns the two broker ports (A, B)."""
    a, b = Mosquitto(), Mosquitto()
    try:
        a.start()
        b.start()
        capture = LiveCapture(path, sorted({a.port, b.port}), method="tcpdump")
        capture.start()
        subs = []
        try:
            for broker, cid in ((a, "sub"), (b, "sub"), (b, "watch")):
                subs.append(subprocess.Popen(
                    ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-i", cid,
                     "-c", "-q", "1", "-t", "demo/#"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1.0)  # both subscribed
            for n in range(3):
                publish(a.port, "demo/t", f"q0-{n}", 0)
                publish(a.port, "demo/t", f"q1-{n}", 1)
            for n in range(2):
                publish(b.port, "demo/b", f"b-{n}", 1)
            time.sleep(1.0)  # every copy delivered and acknowledged
        finally:
            for p in subs:
                stop_process(p)
            time.sleep(0.5)
            capture.stop()
    finally:
        a.stop()
        b.stop()
    return a.port, b.port


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "captures" / "two-brokers.pcap")
    ports = record(path)
    Path(str(path) + ".ports").write_text("".join(f"{p}\n" for p in ports))
    print(f"{path}: broker A 127.0.0.1:{ports[0]}, broker B 127.0.0.1:{ports[1]}")


if __name__ == "__main__":
    main()
