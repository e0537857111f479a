"""Record the audit's sample captures from real peers and write their expected findings.

    sudo .venv/bin/python captures/audit/make_captures.py [NAME ...]
    .venv/bin/python captures/audit/make_captures.py --expected-only [NAME ...]

Each capture: its own mosquitto (qosinspect.testing.mosquitto: free port, temporary
configuration), tcpdump on the loopback filtered on the broker's ports (qosinspect's
LiveCapture), the clients below (mosquitto_pub/mosquitto_sub, paho-mqtt, Python's ssl module),
then ``qosinspect audit`` of the result written to ``expected/NAME.findings.json`` (id,
severity and title of each finding) for review. ``tests/audit/test_captures.py`` keeps them
equal. Every process started here is stopped; temporary folders are removed.
"""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from qosinspect.audit import audit_capture  # noqa: E402
from qosinspect.mqtt.encoder import encode  # noqa: E402
from qosinspect.mqtt.packets import (  # noqa: E402
    Connect,
    Disconnect,
    Subscribe,
    Subscription,
)
from qosinspect.testing.mosquitto import Mosquitto  # noqa: E402
from qosinspect.traffic.live import LiveCapture  # noqa: E402

PUB = ["mosquitto_pub", "-h", "127.0.0.1"]
SUB = ["mosquitto_sub", "-h", "127.0.0.1"]


def run(*args: str, check: bool = True) -> None:
    subprocess.run(list(args), check=check, timeout=30, capture_output=True)


def raw_connect(port: int, client_id: str, *, host: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(host, 0))
    s.sendall(encode(Connect(client_id)))
    s.recv(4)                                           # CONNACK
    return s


def bruteforce(work: Path) -> tuple[Mosquitto, Callable[[int], None]]:
    """A loop of wrong passwords for alice (mosquitto_pub), then the right one."""
    pw = work / "passwd"
    run("mosquitto_passwd", "-b", "-c", str(pw), "alice", "correct-horse")
    m = Mosquitto(f"allow_anonymous false\npassword_file {pw}")

    def clients(port: int) -> None:
        for i in range(8):
            run(*PUB, "-p", str(port), "-i", "meter-7", "-u", "alice", "-P", f"guess{i}",
                "-t", "meters/7", "-m", "1", check=False)
        run(*PUB, "-p", str(port), "-i", "meter-7", "-u", "alice", "-P", "correct-horse",
            "-t", "meters/7", "-m", "1")
    return m, clients


def wildcard(work: Path) -> tuple[Mosquitto, Callable[[int], None]]:
    """A subscriber to # and $SYS/# reading three sensors' messages and the broker's $SYS."""
    m = Mosquitto("sys_interval 1")

    def clients(port: int) -> None:
        spy = subprocess.Popen([*SUB, "-p", str(port), "-i", "spy", "-t", "#", "-t", "$SYS/#",
                                "-W", "3"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        for i in range(1, 4):
            run(*PUB, "-p", str(port), "-i", f"sensor-{i}", "-t", f"plant/{i}/temp",
                "-m", str(20 + i))
        spy.wait(10)
    return m, clients


def secrets(work: Path) -> tuple[Mosquitto, Callable[[int], None]]:
    """Secrets and personal data in payloads, retained; a will on an admin topic."""
    m = Mosquitto()
    key = work / "device.key"
    run("openssl", "genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-out", str(key))

    def clients(port: int) -> None:
        p = [*PUB, "-p", str(port)]
        run(*p, "-i", "gw-1", "-r", "-t", "site/1/config",
            "-m", '{"ssid": "plant-wifi", "password": "hunter22-wifi"}')
        run(*p, "-i", "gw-1", "-t", "site/1/provision", "-f", str(key))
        run(*p, "-i", "gw-1", "-t", "site/1/session",
            "-m", '{"token": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJndy0xIn0.c2lnbmF0dXJlLXgx"}')
        run(*p, "-i", "truck-7", "-t", "fleet/truck7/pos",
            "-m", '{"lat": 48.85837, "lon": 2.29448, "driver": "jane.doe@example.com"}')
        run(*p, "-i", "lock-2", "--will-topic", "site/1/admin/lock-2",
            "--will-payload", "offline", "-t", "site/1/lock-2/state", "-m", "closed")
    return m, clients


def takeover(work: Path) -> tuple[Mosquitto, Callable[[int], None]]:
    """valve-3 connected from 127.0.0.1; the same client id connects from 127.0.0.2."""
    m = Mosquitto()

    def clients(port: int) -> None:
        first = raw_connect(port, "valve-3")
        time.sleep(0.3)
        second = raw_connect(port, "valve-3", host="127.0.0.2")
        time.sleep(0.3)
        second.sendall(encode(Disconnect()))
        first.close()
        second.close()
    return m, clients


def flood(work: Path) -> tuple[Mosquitto, Callable[[int], None]]:
    """55 CONNECTs in a row from one address, 110 SUBSCRIBEs on one connection, and a PUBLISH
    with QoS 3 (mosquitto closes that connection)."""
    m = Mosquitto()

    def clients(port: int) -> None:
        for i in range(55):
            s = raw_connect(port, f"bot-{i}")
            s.sendall(encode(Disconnect()))
            s.close()
        s = raw_connect(port, "scanner")
        for i in range(110):
            s.sendall(encode(Subscribe(i + 1, (Subscription(f"probe/{i}"),))))
        time.sleep(0.5)
        s.close()
        s = raw_connect(port, "broken")
        s.sendall(b"\x36\x03\x00\x01a")
        time.sleep(0.3)
        s.close()
    return m, clients


def _expired_self_signed(work: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old-gateway")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = work / "old.crt", work / "old.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def tls_old(work: Path) -> tuple[Mosquitto, Callable[[int], None]]:
    """mosquitto with an expired self-signed certificate allowing TLS 1.1 (OpenSSL security
    level 0): a client speaks TLS 1.1 (Python's ssl), then falls back to the plain port."""
    cert, key = _expired_self_signed(work)
    m = Mosquitto("allow_anonymous true")
    m.tls_port = m.port + 0                                   # set in _configure below
    plain_conf = m.conf.read_text()

    def configure() -> None:
        import qosinspect.testing.tools as tools
        m.tls_port = tools.free_port()
        m.conf.write_text(plain_conf + f"listener {m.tls_port} 127.0.0.1\ncertfile {cert}\n"
                          f"keyfile {key}\ntls_version tlsv1.1\nciphers DEFAULT:@SECLEVEL=0\n")
    configure()

    def clients(port: int) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        with socket.create_connection(("127.0.0.1", m.tls_port), timeout=5) as s, \
                ctx.wrap_socket(s) as t:
            t.sendall(encode(Connect("hvac-1")))
            t.recv(4)
            t.sendall(encode(Disconnect()))
        run(*PUB, "-p", str(port), "-i", "hvac-1", "-t", "hvac/1/state", "-m", "on")
    return m, clients


SCENARIOS = {"audit-bruteforce": bruteforce, "audit-wildcard": wildcard,
             "audit-secrets": secrets, "audit-takeover": takeover, "audit-flood": flood,
             "audit-tls-old": tls_old}


def record(name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="qi-audit-rec-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        broker, clients = SCENARIOS[name](work)
        ports = [broker.port] + ([broker.tls_port] if hasattr(broker, "tls_port") else [])
        path = HERE / f"{name}.pcap"
        with broker.running():
            cap = LiveCapture(path, ports, method="tcpdump")
            cap.start()
            try:
                clients(broker.port)
                time.sleep(0.3)
            finally:
                cap.stop()
    write_expected(path)


def write_expected(path: Path) -> None:
    name = path.stem
    report = audit_capture(path)
    expected = {"capture": path.name, "command": f"qosinspect audit captures/audit/{path.name}",
                "findings": [{"id": f.check, "severity": str(f.level), "title": f.title,
                              "frames": list(f.frames)} for f in report.sorted()]}
    (HERE / "expected" / f"{name}.findings.json").write_text(json.dumps(expected, indent=2)
                                                             + "\n")
    print(f"{path.name}: {', '.join(sorted(report.ids()))}")


if __name__ == "__main__":
    (HERE / "expected").mkdir(exist_ok=True)
    args = sys.argv[1:]
    only = "--expected-only" in args
    for n in [a for a in args if a != "--expected-only"] or list(SCENARIOS):
        if only:
            write_expected(HERE / f"{n}.pcap")     # the review of a changed audit
        else:
            record(n)
