"""Issue 12, points 1 to 4: a client id never hands one user's session to another, passwords
never reach the log, assigned client ids are random and never an existing session's, and an
offline session queues what its (stored) user may read, as mosquitto 2.0 does.

Real clients on sockets against the broker in a thread or the ``qosinspect broker`` process;
mosquitto (Debian package) with the same password and ACL files where behaviour is compared.
"""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from qosinspect.broker import AccessControl, Authenticator, PasswordFile
from qosinspect.broker.engine import NS, BrokerEngine
from qosinspect.broker.store import SqliteStore
from qosinspect.mqtt.packets import ConnAck, PubAck, Publish, Subscribe, Subscription
from qosinspect.mqtt.properties import Properties
from qosinspect.testing.tools import free_port, stop_process, wait_port

from .harness import RawClient, run_broker
from .test_cli import broker_process
from .test_engine import connect, pubs, take

ACL = """\
user alice
topic read secret/#
user mallory
topic readwrite public/#
user pub
topic write secret/#
topic write public/#
"""
USERS = {"alice": "alice-pw", "mallory": "mallory-pw", "pub": "pub-pw"}


@pytest.fixture
def secured(tmp_path: Path) -> tuple[Path, Path]:
    """A password file (alice, mallory, pub) and the ACL above."""
    pw = PasswordFile()
    for user, password in USERS.items():
        pw.set(user, password)
    pw_path = tmp_path / "passwd"
    pw.save(pw_path)
    acl_path = tmp_path / "acl"
    acl_path.write_text(ACL, encoding="ascii")
    return pw_path, acl_path


def _auth(files: tuple[Path, Path]) -> Authenticator:
    return Authenticator(False, PasswordFile.load(files[0]), AccessControl.load(files[1]))


@contextmanager
def mosquitto_broker(tmp_path: Path, files: tuple[Path, Path]) -> Iterator[int]:
    """mosquitto 2.0 with the same password file and ACL, on a free port."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed (scripts/ensure-system-deps.sh)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\n"
                    f"password_file {files[0]}\nacl_file {files[1]}\n", encoding="ascii")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 15, proc=proc)
        yield port
    finally:
        stop_process(proc, timeout=15)


def _login(port: int, client_id: str, user: str, *, clean: bool = False) -> tuple[RawClient,
                                                                                 ConnAck]:
    c = RawClient(port)
    ack = c.connect(client_id, clean_start=clean, username=user,
                    password=USERS[user].encode())
    assert isinstance(ack, ConnAck) and ack.reason_code == 0, ack
    return c, ack


def _publish_secrets(port: int, n: int) -> None:
    p, _ = _login(port, "pub", "pub", clean=True)
    for i in range(n):
        p.send(Publish("secret/a", b"s%d" % i, 1, packet_id=i + 1))
    assert [type(p.recv()) for _ in range(n)] == [PubAck] * n
    p.close()


# -- 1. session takeover ------------------------------------------------------------------------

def test_another_user_with_the_same_client_id_gets_a_clean_session(
        secured: tuple[Path, Path]) -> None:
    """alice has QoS 1 messages in flight (sent, unacknowledged) and goes; mallory connects with
    her client id: session present 0 and nothing of hers is sent to him."""
    with run_broker(auth=_auth(secured)) as b:
        alice, _ = _login(b.port, "alice-dev", "alice")
        alice.send(Subscribe(1, (Subscription("secret/#", 1),)))
        alice.recv()
        _publish_secrets(b.port, 3)
        got = [alice.recv() for _ in range(3)]
        assert all(isinstance(m, Publish) for m in got)          # in flight: never acked
        alice.close()
        mallory, ack = _login(b.port, "alice-dev", "mallory")
        assert ack.session_present is False
        with pytest.raises(AssertionError, match="in time"):
            mallory.recv(timeout=0.5)                             # no resend of her messages
        mallory.close()


def test_redelivery_is_checked_against_the_read_acl_again() -> None:
    """Rights withdrawn while a session is offline: its in-flight and queued messages are
    not resent to it (the read check runs on every delivery, redelivery included)."""
    anyone = "topic write secret/#\ntopic write open/#\n"         # the anonymous publisher
    acl = AccessControl.parse(anyone + "user alice\ntopic read secret/#\ntopic read open/#\n")
    e = BrokerEngine(auth=Authenticator(True, None, acl))
    a = connect(e, "a", clean_start=False, username="alice")
    e.receive(a, Subscribe(1, (Subscription("secret/#", 1), Subscription("open/#", 1))), 0)
    p = connect(e, "p")
    e.receive(p, Publish("secret/x", b"1", 1, packet_id=1), 1)    # in flight to alice
    e.receive(p, Publish("open/x", b"2", 1, packet_id=2), 1)
    take(a)
    e.connection_lost(a, 2)
    e.receive(p, Publish("secret/y", b"3", 1, packet_id=3), 3)    # queued for alice
    e.auth.acl = AccessControl.parse(anyone + "user alice\ntopic read open/#\n")  # revoked
    a2 = connect(e, "a", clean_start=False, username="alice", now=4 * NS)
    out = take(a2)
    assert out[0] == ConnAck(True, 0)
    assert [m.payload for m in pubs(out)] == [b"2"]
    assert e.stats.denied_delivery == 2


# -- 2. no password in the log ------------------------------------------------------------------

def test_verbose_log_never_shows_a_password(secured: tuple[Path, Path]) -> None:
    pw_path, acl_path = secured
    with broker_process("--port", "0", "--password-file", str(pw_path), "--acl-file",
                        str(acl_path), "-v") as (proc, where):
        port = where[0][1]
        good = RawClient(port)
        assert good.connect("c1", username="alice", password=b"alice-pw") == ConnAck(False, 0)
        bad = RawClient(port)
        assert bad.connect("c2", username="alice", password=b"Wrong-Pass-42") == \
            ConnAck(False, 4)
        good.close()
        bad.close()
        proc.terminate()                                          # SIGTERM: a clean stop
        assert proc.stderr is not None
        log = proc.stderr.read()                                  # up to its exit
        proc.wait(15)
    assert "Connect(" in log and "alice" in log                  # the packets are logged...
    assert "alice-pw" not in log and "Wrong-Pass-42" not in log  # ...never the passwords


# -- 3. assigned client ids ---------------------------------------------------------------------

def test_assigned_ids_are_random_and_never_kick_an_existing_client() -> None:
    e = BrokerEngine()
    explicit = connect(e, "qosinspect-1")                         # a client chose this id
    take(explicit)
    ids = []
    for _ in range(20):
        c = connect(e, "", version=5)
        ack = take(c)[0]
        assert isinstance(ack, ConnAck) and ack.reason_code == 0
        ids.append(ack.properties.assigned_client_identifier)
    assert not explicit.closed                                    # nobody took its id
    assert len(set(ids)) == 20
    assert all(re.fullmatch(r"qosinspect-[0-9a-f]{16}", i or "") for i in ids)  # 64 bits
    assert not set(ids) & {f"qosinspect-{n}" for n in range(100)}           # no counter


def test_assigned_id_after_a_restart_never_resumes_an_old_session(tmp_path: Path) -> None:
    """With persistence, a new client with an empty id and Clean Start 0 must not get the
    session (and the queued messages) of the client that had the same assigned id before."""
    path = tmp_path / "b.db"
    expiry = Properties.of(session_expiry_interval=3600)
    e = BrokerEngine()
    store = SqliteStore(path)
    store.load(e, 0)
    first = connect(e, "", version=5, clean_start=False, properties=expiry)
    old_id = take(first)[0].properties.assigned_client_identifier  # type: ignore[union-attr]
    e.receive(first, Subscribe(1, (Subscription("q", 1),)), 0)
    e.connection_lost(first, 1)
    p = connect(e, "p")
    e.receive(p, Publish("q", b"for the old client", 1, packet_id=1), 2)
    store.commit(e)
    store.close()

    e2 = BrokerEngine()
    store2 = SqliteStore(path)
    store2.load(e2, 10 * NS)
    assert old_id in e2.sessions
    newcomer = connect(e2, "", version=5, clean_start=False, properties=expiry, now=10 * NS)
    out = take(newcomer)
    ack = out[0]
    assert isinstance(ack, ConnAck) and not ack.session_present
    assert ack.properties.assigned_client_identifier != old_id
    assert pubs(out) == []
    store2.close()


# -- 4. offline queueing with an ACL ------------------------------------------------------------

def _offline_queue(port: int) -> list[bytes]:
    """alice subscribes (persistent), goes; 3 QoS 1 messages; alice comes back: what comes."""
    alice, _ = _login(port, "alice-q", "alice")
    alice.send(Subscribe(1, (Subscription("secret/#", 1),)))
    alice.recv()
    alice.close()
    _publish_secrets(port, 3)
    alice, ack = _login(port, "alice-q", "alice")
    assert ack.session_present
    got: list[bytes] = []
    try:
        while len(got) < 3:
            m = alice.recv(timeout=2)
            if isinstance(m, Publish):
                got.append(m.payload)
                alice.send(PubAck(m.packet_id or 0))
    except AssertionError:
        pass
    alice.close()
    return got


def test_offline_session_queues_what_its_user_may_read_like_mosquitto(
        tmp_path: Path, secured: tuple[Path, Path]) -> None:
    with run_broker(auth=_auth(secured)) as b:
        ours = _offline_queue(b.port)
    with mosquitto_broker(tmp_path, secured) as port:
        theirs = _offline_queue(port)
    assert theirs == [b"s0", b"s1", b"s2"]
    assert ours == theirs


def test_the_session_user_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    acl = AccessControl.parse("topic write secret/#\nuser alice\ntopic read secret/#\n")
    e = BrokerEngine(auth=Authenticator(True, None, acl))
    store = SqliteStore(path)
    store.load(e, 0)
    a = connect(e, "a", clean_start=False, username="alice")
    e.receive(a, Subscribe(1, (Subscription("secret/#", 1),)), 0)
    e.connection_lost(a, 1)
    store.commit(e)
    store.close()
    e2 = BrokerEngine(auth=Authenticator(True, None, acl))
    store2 = SqliteStore(path)
    store2.load(e2, 2)
    p = connect(e2, "p", now=3)
    e2.receive(p, Publish("secret/z", b"kept", 1, packet_id=1), 3)
    assert [q.publish.payload for q in e2.sessions["a"].state.queue] == [b"kept"]
    store2.close()
