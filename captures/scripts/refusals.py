"""Record refusals from real peers: a 3.1.1-only broker refusing an MQTT 5 client, and a
connection attempt to a port where nothing listens.

    sudo .venv/bin/python captures/scripts/refusals.py captures/refusals.pcap

* the built-in broker on a free port, told to speak MQTT 3.1.1 only (``qosinspect broker
  --max-protocol-version 4``);
* ``mosquitto_pub -V 5`` to it: the broker answers the MQTT 5 CONNECT the way 3.1.1 says, a
  2-byte CONNACK with return code 1 (unacceptable protocol version), and closes
  [MQTT-3.1.2-2]: a connection refused by CONNACK, whose CONNACK is not malformed;
* ``mosquitto_pub -V 311 -q 1`` to it: accepted, one QoS 1 message;
* ``mosquitto_pub`` to a second free port where nothing listens: the kernel answers the SYN
  with a RST, an attempt refused by TCP, not an MQTT connection.

The two ports are written next to the capture (``CAPTURE.ports``: the broker's, the closed one).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from qosinspect.testing.tools import free_port, stop_process, wait_port  # noqa: E402
from qosinspect.traffic.live import LiveCapture  # noqa: E402


def pub(port: int, *args: str) -> int:
    return subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "r/t",
                           *args], capture_output=True, timeout=20).returncode


def record(path: Path) -> tuple[int, int]:
    """Record the capture at ``path``; returns (broker port, closed port)."""
    port, closed = free_port(), free_port()
    qosinspect = str(Path(sys.executable).with_name("qosinspect"))
    broker = subprocess.Popen([qosinspect, "broker", "--port", str(port), "--allow-anonymous",
                               "--max-protocol-version", "4"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=20, proc=broker)
        capture = LiveCapture(path, sorted({port, closed}), method="tcpdump")
        capture.start()
        try:
            pub(port, "-V", "5", "-i", "client-v5", "-m", "refused")   # exit status 1: refused
            pub(port, "-V", "311", "-i", "client-v311", "-q", "1", "-m", "accepted")
            pub(closed, "-V", "311", "-i", "client-nowhere", "-m", "never")
            time.sleep(0.5)
        finally:
            capture.stop()
    finally:
        stop_process(broker)
    return port, closed


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "captures" / "refusals.pcap")
    ports = record(path)
    Path(str(path) + ".ports").write_text("".join(f"{p}\n" for p in ports))
    print(f"{path}: broker 127.0.0.1:{ports[0]} (3.1.1 only), nothing on :{ports[1]}")


if __name__ == "__main__":
    main()
