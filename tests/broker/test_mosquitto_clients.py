"""mosquitto_pub / mosquitto_sub (libmosquitto, MQTT 3.1.1 and 5.0) against our broker.

Every QoS, retained messages, wills, wildcards, a persistent session whose subscriber process is
killed (SIGKILL) and restarted, authentication with files made by mosquitto_passwd, the ACL, and
TLS with and without client certificates.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from qosinspect.broker import (
    AccessControl,
    Authenticator,
    BrokerThread,
    Listener,
    PasswordFile,
)
from qosinspect.broker.server import tls_context
from qosinspect.events import Event, MqttPacketEvent
from qosinspect.mqtt.enums import Direction
from qosinspect.mqtt.packets import Connect, PubAck, Publish, PubRec
from qosinspect.testing.certs import Certs
from qosinspect.testing.mosquitto import Mosquitto
from qosinspect.testing.tools import require_tool, stop_process

from .harness import mosquitto_pub, run_broker, wait_for

pytestmark = pytest.mark.tools


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tool("mosquitto_pub")
    require_tool("mosquitto_sub")


def subscribed(b: BrokerThread, client_id: str, topic_filter: str) -> bool:
    def check() -> bool:
        sess = b.server.engine.sessions.get(client_id)
        return sess is not None and sess.conn is not None and topic_filter in sess.subs
    return bool(b.call(check))


def online(b: BrokerThread, client_id: str) -> bool:
    def check() -> bool:
        sess = b.server.engine.sessions.get(client_id)
        return sess is not None and sess.conn is not None
    return bool(b.call(check))


@contextmanager
def sub_process(b: BrokerThread, port: int, client_id: str, topic_filter: str,
                *args: str) -> Iterator[subprocess.Popen[str]]:
    """mosquitto_sub, waited for until the broker has its subscription; always stopped."""
    proc = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-i",
                             client_id, "-t", topic_filter, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: subscribed(b, client_id, topic_filter) or proc.poll() is not None,
                 what=f"mosquitto_sub {client_id} to subscribe")
        assert proc.poll() in (None, 0), proc.stderr.read() if proc.stderr else ""
        yield proc
    finally:
        stop_process(proc)


def lines(proc: subprocess.Popen[str], n: int, timeout: float = 10) -> list[str]:
    """The first ``n`` lines of a subscriber's output (read in a thread, bounded in time)."""
    out: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line.rstrip("\n"))
            if len(out) >= n:
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    assert len(out) >= n, f"only {len(out)} of {n} lines: {out}"
    return out


def _acknowledged_by(tap: list[Event], client_id: str) -> set[str]:
    """Payloads of the PUBLISH packets the broker sent ``client_id`` that it acknowledged
    (PUBACK, or PUBREC, for the packet id on the same connection)."""
    ours: set[int] = set()
    in_flight: dict[tuple[int, int], str] = {}
    acked: set[str] = set()
    for e in list(tap):
        if not isinstance(e, MqttPacketEvent):
            continue
        conn, p = e.conn.conn_id, e.packet
        if isinstance(p, Connect) and p.client_id == client_id:
            ours.add(conn)
        elif conn not in ours:
            continue
        elif isinstance(p, Publish) and e.direction is Direction.B2C and p.packet_id:
            in_flight[conn, p.packet_id] = p.payload.decode()
        elif isinstance(p, PubAck | PubRec) and e.direction is Direction.C2B:
            payload = in_flight.pop((conn, p.packet_id), None)
            if payload is not None:
                acked.add(payload)
    return acked


def pub(port: int, *args: str) -> None:
    done = mosquitto_pub(port, *args)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_every_qos_min_of_publish_and_subscription(version: str) -> None:
    with run_broker() as b:
        for sub_qos in (0, 1, 2):
            with sub_process(b, b.port, f"s{sub_qos}", "q/#", "-q", str(sub_qos), "-V",
                             version, "-F", "%q %t %p", "-C", "3") as s:
                for pub_qos in (0, 1, 2):
                    pub(b.port, "-V", version, "-q", str(pub_qos), "-t", f"q/{pub_qos}",
                        "-m", f"m{pub_qos}")
                got = sorted(lines(s, 3))
                assert got == sorted(f"{min(p, sub_qos)} q/{p} m{p}" for p in (0, 1, 2))


def test_retained_and_clear() -> None:
    with run_broker() as b:
        pub(b.port, "-t", "ret/x", "-m", "first", "-r", "-q", "1")
        pub(b.port, "-t", "ret/x", "-m", "second", "-r", "-q", "2")
        with sub_process(b, b.port, "r1", "ret/#", "-F", "%r %p", "-C", "1") as s:
            assert lines(s, 1) == ["1 second"]
        pub(b.port, "-t", "ret/x", "-n", "-r")               # empty payload clears
        with sub_process(b, b.port, "r2", "ret/#", "-F", "%r %p", "-W", "1") as s:
            s.wait(5)
            assert s.stdout is not None and s.stdout.read() == ""


def test_will_of_a_killed_mosquitto_sub() -> None:
    with (run_broker() as b,
          sub_process(b, b.port, "watch", "will/#", "-C", "1", "-F", "%t %p") as w,
          sub_process(b, b.port, "dying", "x", "--will-topic", "will/dying",
                      "--will-payload", "gone", "--will-qos", "1") as d):
        d.send_signal(signal.SIGKILL)
        assert lines(w, 1) == ["will/dying gone"]


def test_wildcards() -> None:
    with run_broker() as b, sub_process(b, b.port, "w", "a/+/c", "-F", "%t",
                                        "-t", "b/#", "-C", "3") as s:
        wait_for(lambda: subscribed(b, "w", "b/#"), what="both filters")
        for topic in ("a/x/c", "a/x/d", "a/x/c/d", "b", "b/y/z", "c"):
            pub(b.port, "-t", topic, "-m", "m")
        assert sorted(lines(s, 3)) == ["a/x/c", "b", "b/y/z"]


@pytest.mark.parametrize("version", ["mqttv311", "mqttv5"])
def test_persistent_session_subscriber_killed_and_restarted(version: str) -> None:
    """QoS 1 and 2 to a -c subscriber: killed with SIGKILL while idle, messages queue, the
    restarted process gets every message once; nothing from before comes again at QoS 2.
    Then killed mid-stream at QoS 1: nothing lost (duplicates are allowed at QoS 1)."""
    args = ("-c", "-q", "2", "-V", version, "-F", "%q %p")
    if version == "mqttv5":
        args = (*args, "-x", "300")
    tap: list[Event] = []
    with run_broker(tap=tap.append) as b:
        with sub_process(b, b.port, "durable", "p/#", *args) as s:
            for i in range(10):
                pub(b.port, "-V", version, "-q", str(1 + i % 2), "-t", "p/x", "-m", f"a{i}")
            before = lines(s, 10)
            wait_for(lambda: b.call(lambda: not b.server.engine.sessions["durable"]
                                    .state.sender.in_flight), what="every ack")
            s.send_signal(signal.SIGKILL)
            s.wait(5)
        wait_for(lambda: not online(b, "durable"), what="the broker to see it gone")
        for i in range(30):
            pub(b.port, "-V", version, "-q", str(1 + i % 2), "-t", "p/x", "-m", f"b{i}")
        with sub_process(b, b.port, "durable", "p/#", *args) as s:
            after = lines(s, 30)
        assert sorted(before) == sorted(f"{1 + i % 2} a{i}" for i in range(10))
        assert sorted(after) == sorted(f"{1 + i % 2} b{i}" for i in range(30))

        # QoS 1, killed while messages are flowing: every message arrives at least once
        n = 400
        with sub_process(b, b.port, "durable", "p/#", *args) as s:
            publisher = subprocess.Popen(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-V", version, "-q",
                 "1", "-t", "p/flow", "-l"], stdin=subprocess.PIPE, text=True)
            assert publisher.stdin is not None
            for i in range(n // 2):
                publisher.stdin.write(f"f{i}\n")
            publisher.stdin.flush()
            first = lines(s, 20)
            s.send_signal(signal.SIGKILL)
            s.wait(5)
            assert s.stdout is not None
            first += [line.rstrip("\n") for line in s.stdout.read().splitlines()]
            for i in range(n // 2, n):
                publisher.stdin.write(f"f{i}\n")
            publisher.stdin.close()
            assert publisher.wait(20) == 0
        wait_for(lambda: not online(b, "durable"), what="the broker to see it gone")
        want = {f"f{i}" for i in range(n)}
        seen = {line.split()[1] for line in first}
        with sub_process(b, b.port, "durable", "p/#", *args) as s:
            assert s.stdout is not None
            deadline = time.monotonic() + 20
            reader = threading.Thread(target=lambda: [seen.add(line.split()[1])
                                                      for line in s.stdout or ()], daemon=True)
            reader.start()                    # duplicates (redelivered QoS 1) may come too
            while not want <= seen and time.monotonic() < deadline:
                time.sleep(0.02)
        # libmosquitto 2.0 sends PUBACK before its on_message callback prints the message
        # (lib/handle_publish.c; later versions swapped the two): a message acknowledged by the
        # killed process but not yet printed was delivered [MQTT-4.3.2-2] and was that
        # process's to lose, not the broker's
        acknowledged = _acknowledged_by(tap, "durable")
        assert {line.split()[1] for line in first} <= acknowledged   # printed after its PUBACK
        lost = want - seen - acknowledged
        assert not lost, f"lost: {sorted(lost)[:10]}"


@pytest.fixture
def mosquitto_passwd_file(tmp_path: Path) -> Path:
    """A password file written by mosquitto_passwd itself (PBKDF2 $7$ format)."""
    tool = require_tool("mosquitto_passwd")
    path = tmp_path / "passwd"
    subprocess.run([tool, "-b", "-c", str(path), "alice", "wonderland"], check=True,
                   capture_output=True, timeout=30)
    subprocess.run([tool, "-b", str(path), "bob", "builder"], check=True,
                   capture_output=True, timeout=30)
    return path


def test_auth_with_a_mosquitto_passwd_file_and_acl(mosquitto_passwd_file: Path) -> None:
    acl = AccessControl.parse("user alice\ntopic readwrite secret/#\n"
                              "user bob\ntopic write secret/#\n")
    auth = Authenticator(False, PasswordFile.load(mosquitto_passwd_file), acl)
    with run_broker(auth=auth) as b:
        bad = mosquitto_pub(b.port, "-u", "alice", "-P", "wrong", "-t", "secret/x", "-m", "m")
        assert bad.returncode != 0
        anon = mosquitto_pub(b.port, "-t", "secret/x", "-m", "m")
        assert anon.returncode != 0
        with sub_process(b, b.port, "a", "secret/#", "-u", "alice", "-P", "wonderland",
                         "-C", "1") as s:
            pub(b.port, "-u", "bob", "-P", "builder", "-t", "secret/x", "-m", "from bob", "-q",
                "1")
            assert lines(s, 1) == ["from bob"]
        for version in ("mqttv311", "mqttv5"):                # bob may not read
            denied = subprocess.run(
                ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-u", "bob", "-P",
                 "builder", "-t", "secret/#", "-C", "1", "-W", "5", "-V", version],
                capture_output=True, text=True, timeout=10, check=False)
            assert "All subscription requests were denied" in denied.stderr


def test_our_password_file_works_in_mosquitto(tmp_path: Path) -> None:
    """qosinspect passwd's hashes are mosquitto's $7$ format: mosquitto accepts them."""
    pw = PasswordFile()
    pw.set("carol", "s3cret")
    pw.save(tmp_path / "passwd")
    # Mosquitto runs as the test's user: it can read the 0600 file.
    extra = f"allow_anonymous false\npassword_file {tmp_path / 'passwd'}"
    with Mosquitto(extra).running() as broker:
        ok = mosquitto_pub(broker.port, "-u", "carol", "-P", "s3cret", "-t", "t", "-m", "m")
        assert ok.returncode == 0, ok.stderr
        assert mosquitto_pub(broker.port, "-u", "carol", "-P", "nope", "-t", "t",
                             "-m", "m").returncode != 0


def test_tls_server_and_client_certificates(certs: Certs) -> None:
    listeners = [
        Listener("127.0.0.1", 0, tls=tls_context(str(certs.server_cert), str(certs.server_key))),
        Listener("127.0.0.1", 0, tls=tls_context(str(certs.server_cert), str(certs.server_key),
                                                 cafile=str(certs.ca),
                                                 require_certificate=True)),
    ]
    with run_broker(listeners=listeners) as b:
        (_, plain), (_, mutual) = b.addresses
        tls = ("--cafile", str(certs.ca))
        with sub_process(b, plain, "ts", "tls/#", *tls, "-C", "1") as s:
            pub(plain, *tls, "-t", "tls/a", "-m", "encrypted", "-q", "1")
            assert lines(s, 1) == ["encrypted"]
        client = ("--cert", str(certs.client_cert), "--key", str(certs.client_key))
        pub(mutual, *tls, *client, "-t", "tls/b", "-m", "m")
        assert mosquitto_pub(mutual, *tls, "-t", "tls/b", "-m", "m").returncode != 0
