"""Active probes against real brokers on 127.0.0.1, each configured insecurely and securely:
mosquitto (its own configuration file, password file, ACL and throwaway TLS certificates made
with openssl) and the built-in broker (``qosinspect broker`` as a process). Each probe run must
find exactly what the configuration implies, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qosinspect.audit import AuditReport, Severity
from qosinspect.audit.active import ProbeOptions, probe_broker
from qosinspect.audit.link import Target
from qosinspect.testing.certs import Certs, make_certs
from qosinspect.testing.mosquitto import Mosquitto
from qosinspect.testing.tools import free_port, require_tool, stop_process, wait_port

pytestmark = [pytest.mark.tools, pytest.mark.timeout(120)]

QOSINSPECT = str(Path(sys.executable).with_name("qosinspect"))
FAST = dict(listen=1.0, timeout=1.0)
SECRET = '{"t": 21, "password": "hunter22-wifi"}'


def _ids(report: AuditReport) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in report.findings:
        out[f.check] = out.get(f.check, 0) + 1
    return out


def _pub(port: int, topic: str, message: str, *extra: str) -> None:
    done = subprocess.run([require_tool("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port),
                           "-i", "seed-pub", "-t", topic, "-m", message, "-r", *extra], timeout=10,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    d.chmod(0o755)
    return make_certs(d)


def _tls(certs: Certs) -> object:
    import ssl

    return ssl.create_default_context(cafile=str(certs.ca))


def test_mosquitto_insecure() -> None:
    """Anonymous, no ACL, $SYS on: everything a reader and writer can do is found."""
    with Mosquitto("sys_interval 1").running() as m:
        _pub(m.port, "plant/1/config", SECRET)
        report = probe_broker([Target("127.0.0.1", m.port)],
                              ProbeOptions(try_defaults=True, **FAST))
    assert _ids(report) == {
        "clear-text": 1, "anonymous": 1, "empty-client-id": 1, "client-id-takeover": 1,
        "wildcard-subscribe": 1, "sys-readable": 1, "broker-version": 1,
        "vulnerable-version": 1, "secret-in-payload": 1, "topic-writable": 1,
        "mqtt-versions": 1}
    f = {x.check: x for x in report.findings}
    assert f["client-id-takeover"].evidence["first_closed"] is True
    assert f["wildcard-subscribe"].evidence["topics"] == ["plant/1/config"]
    assert f["vulnerable-version"].evidence["version"] == "2.0.11"
    assert f["topic-writable"].evidence == {"broker": str(Target("127.0.0.1", m.port)),
                                            "as": "anonymous", "topic": "plant/1/config",
                                            "read_before": True}
    assert f["mqtt-versions"].evidence["3.1"] and f["mqtt-versions"].evidence["5.0"]
    assert "hunter22" not in str(report.to_dict())
    assert any("any user name and password accepted" in n for n in report.notes)


def test_mosquitto_secure(tmp_path: Path, certs: Certs) -> None:
    """Password file, ACL (each user its own subtree), TLS 1.2+ only, no anonymous, no empty
    client ids: the probes find the TLS facts and the versions, nothing to read or write."""
    tmp_path.chmod(0o755)
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    mp = require_tool("mosquitto_passwd")
    subprocess.run([mp, "-b", "-c", str(passwd), "alice", "alice-pass"], check=True, timeout=10)
    subprocess.run([mp, "-b", str(passwd), "bob", "bob-pass"], check=True, timeout=10)
    acl.write_text("user alice\ntopic readwrite alice/#\nuser bob\ntopic readwrite bob/#\n")
    conf = (f"allow_anonymous false\npassword_file {passwd}\nacl_file {acl}\n"
            f"allow_zero_length_clientid false\ncafile {certs.ca}\n"
            f"certfile {certs.server_cert}\nkeyfile {certs.server_key}\ntls_version tlsv1.2")
    with Mosquitto(conf).running() as m:
        _pub(m.port, "bob/private", SECRET, "-u", "bob", "-P", "bob-pass", "--cafile",
             str(certs.ca))
        report = probe_broker([Target("127.0.0.1", m.port, _tls(certs))],  # type: ignore[arg-type]
                              ProbeOptions("alice", "alice-pass", try_defaults=True, **FAST))
    assert _ids(report) == {"mqtt-versions": 1, "tls-version": 1}
    tls = next(f for f in report.findings if f.check == "tls-version")
    assert set(tls.evidence["accepted"]) == {"TLS 1.2", "TLS 1.3"}
    assert tls.level is Severity.INFO


def _builtin(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([QOSINSPECT, "broker", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture
def builtin_insecure() -> Iterator[int]:
    port = free_port()
    proc = _builtin("--port", str(port), "--allow-anonymous")
    try:
        wait_port(port, proc=proc)
        yield port
    finally:
        stop_process(proc)


def test_builtin_insecure(builtin_insecure: int) -> None:
    port = builtin_insecure
    _pub(port, "plant/1/config", SECRET)
    report = probe_broker([Target("127.0.0.1", port)], ProbeOptions(**FAST))
    assert _ids(report) == {
        "clear-text": 1, "anonymous": 1, "empty-client-id": 1, "client-id-takeover": 1,
        "wildcard-subscribe": 1, "secret-in-payload": 1, "topic-writable": 1,
        "sys-readable": 1, "broker-version": 1, "mqtt-versions": 1}
    # its $SYS tree is readable without an ACL; publishing there is refused, as by mosquitto
    version = next(f for f in report.findings if f.check == "broker-version")
    assert version.evidence["product"] == "qosinspect"


def test_builtin_secure(tmp_path: Path, certs: Certs) -> None:
    """No anonymous, a password file and an ACL, a TLS listener beside the plain one: the plain
    port is found speaking clear text and taking the TLS port's user."""
    passwd, acl = tmp_path / "users.txt", tmp_path / "acl.txt"
    q = [QOSINSPECT, "passwd"]
    subprocess.run([*q, str(passwd), "alice", "--password", "alice-pass"], check=True,
                   timeout=30, capture_output=True)
    acl.write_text("user alice\ntopic readwrite alice/#\n")
    port, tls_port = free_port(), free_port()
    proc = _builtin("--port", str(port), "--no-allow-anonymous", "--password-file", str(passwd),
                    "--acl-file", str(acl), "--tls-port", str(tls_port), "--certfile",
                    str(certs.server_cert), "--keyfile", str(certs.server_key))
    try:
        wait_port(port, proc=proc)
        wait_port(tls_port, proc=proc)
        report = probe_broker([Target("127.0.0.1", port),
                               Target("127.0.0.1", tls_port, _tls(certs))],  # type: ignore[arg-type]
                              ProbeOptions("alice", "alice-pass", **FAST))
    finally:
        stop_process(proc)
    assert _ids(report) == {"clear-text": 1, "mqtt-versions": 2, "tls-version": 1,
                            "plaintext-fallback": 1, "empty-client-id": 2}
    tls = next(f for f in report.findings if f.check == "tls-version")
    assert not {"TLS 1.0", "TLS 1.1"} & set(tls.evidence["accepted"])


def test_default_credentials_found(tmp_path: Path) -> None:
    """A broker that kept a default account: --try-defaults finds it (and only it)."""
    passwd = tmp_path / "users.txt"
    subprocess.run([QOSINSPECT, "passwd", str(passwd), "admin",
                    "--password", "admin"], check=True, timeout=30, capture_output=True)
    port = free_port()
    proc = _builtin("--port", str(port), "--no-allow-anonymous", "--password-file", str(passwd))
    try:
        wait_port(port, proc=proc)
        report = probe_broker([Target("127.0.0.1", port)],
                              ProbeOptions(try_defaults=True, write=False, **FAST))
    finally:
        stop_process(proc)
    creds = [f for f in report.findings if f.check == "default-credentials"]
    assert [f.evidence["usernames"] for f in creds] == [["admin"]]
    assert "anonymous" not in report.ids()


class LaxBroker:
    """An MQTT listener that breaks two rules on purpose, so that the probes for them can be
    seen to fire (no real broker breaks them on demand): it advertises a Maximum Packet Size of
    1024 bytes and does not enforce it (MQTT 5 3.2.2.3.6), and it keeps a connection that sent
    an invalid packet [MQTT-4.8.0-1]. It answers CONNECT and SUBSCRIBE and ignores the rest."""

    def __init__(self) -> None:
        import socket
        import threading

        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: object) -> None:
        from qosinspect.mqtt.encoder import encode
        from qosinspect.mqtt.framing import StreamDecoder
        from qosinspect.mqtt.packets import ConnAck, Connect, SubAck, Subscribe
        from qosinspect.mqtt.properties import Properties

        dec = StreamDecoder(4, lenient=True)
        version = 4
        while True:
            try:
                data = conn.recv(65536)  # type: ignore[attr-defined]
            except OSError:
                return
            if not data:
                return
            for p in dec.feed(data):
                if isinstance(p, Connect):
                    version = p.protocol_version
                    props = Properties.of(maximum_packet_size=1024) if version == 5 else None
                    ack = ConnAck(False, 0, props) if props else ConnAck(False, 0)
                    conn.sendall(encode(ack, version))  # type: ignore[attr-defined]
                elif isinstance(p, Subscribe):
                    ack = SubAck(p.packet_id, (0,) * len(p.subscriptions))
                    conn.sendall(encode(ack, version))  # type: ignore[attr-defined]

    def close(self) -> None:
        import contextlib
        import socket

        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)     # wakes the accept() of the thread
        self.server.close()
        for c in self.conns:
            c.close()
        self.thread.join(5)


def test_rule_breaking_listener_is_caught() -> None:
    lax = LaxBroker()
    try:
        report = probe_broker([Target("127.0.0.1", lax.port)],
                              ProbeOptions(listen=0.3, timeout=0.5, write=False))
    finally:
        lax.close()
    ids = _ids(report)
    assert ids["max-packet-size-ignored"] == 1 and ids["invalid-packet-kept"] == 1
    f = next(f for f in report.findings if f.check == "max-packet-size-ignored")
    assert f.evidence["maximum_packet_size"] == 1024
    take = next(f for f in report.findings if f.check == "client-id-takeover")
    assert take.evidence["first_closed"] is False


def test_cli_against_a_broker_fails_on_high() -> None:
    """The command a CI job runs: JSON of the probes, exit status 2 for a high finding."""
    import json

    from click.testing import CliRunner

    from qosinspect.cli import main

    with Mosquitto().running() as m:
        res = CliRunner().invoke(main, ["audit", "--broker", f"127.0.0.1:{m.port}", "--listen",
                                        "0.3", "--timeout", "0.5", "--no-write", "--format",
                                        "json", "--fail-on", "high"])
    assert res.exit_code == 2, res.output
    data = json.loads(res.output)
    assert data["mode"] == "broker" and data["target"] == f"mqtt://127.0.0.1:{m.port}"
    assert "anonymous" in {f["id"] for f in data["findings"]}
    assert not {"topic-writable", "sys-writable"} & {f["id"] for f in data["findings"]}
