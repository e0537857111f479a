"""``qosinspect pub`` and ``qosinspect sub``: click's CliRunner in-process, and real processes
against mosquitto and mosquitto's own clients. Exit status and messages as mosquitto's."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from qosinspect.cli import main
from qosinspect.cli.pub import EXIT_TIMEOUT, describe_packet
from qosinspect.cli.sub import format_message
from qosinspect.client import Client
from qosinspect.client.messages import Message
from qosinspect.mqtt.packets import (
    ConnAck,
    PubAck,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Subscription,
)
from qosinspect.mqtt.properties import Properties
from qosinspect.testing.certs import Certs
from qosinspect.testing.mosquitto import Mosquitto
from qosinspect.testing.tools import require_tool, stop_process

from ._util import run, take, unique_topic

pytestmark = pytest.mark.tools
#: The command in a fresh interpreter (the imports register pub and sub on their own).
CLI = [sys.executable, "-c",
       "import qosinspect.cli.pub, qosinspect.cli.sub; from qosinspect.cli import main; main()"]


def invoke(*args: str, stdin: str | bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def broker_args(broker: Mosquitto) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(broker.port)]


async def _retained(port: int, topic: str) -> Message | None:
    """The retained message of ``topic``, or None (a marker published after it proves it)."""
    async with Client("127.0.0.1", port, client_id=f"qi-chk-{uuid.uuid4().hex[:6]}") as c:
        await c.subscribe(topic, 1)
        await c.publish(topic + "-marker", "m", 1)
        await c.subscribe(topic + "-marker", 1)
        await c.publish(topic + "-marker", "m", 1)
        got = await take(c, 1)
        return got[0] if got[0].topic == topic else None


# -- in-process --------------------------------------------------------------------------------

def test_help_uses_help_and_h_is_the_host() -> None:
    code, out, _ = invoke("pub", "--help")
    assert code == 0 and "-h, --host" in out and "-l, --stdin-line" in out
    code, out, _ = invoke("sub", "--help")
    assert code == 0 and "-C, --count" in out and "%d" in out


@pytest.mark.parametrize("version", ["mqttv31", "mqttv311", "mqttv5"])
def test_pub_message_file_and_null(mosquitto: Mosquitto, tmp_path: Path, version: str) -> None:
    topic = unique_topic("cli-pub")
    code, _, err = invoke("pub", *broker_args(mosquitto), "-V", version, "-t", topic,
                          "-m", "from -m", "-q", "1", "-r")
    assert (code, err) == (0, "")
    message = run(_retained(mosquitto.port, topic))
    assert message is not None and (message.payload, message.qos) == (b"from -m", 1)
    path = tmp_path / "payload.bin"
    path.write_bytes(b"\x00\x01binary")
    code, _, _ = invoke("pub", *broker_args(mosquitto), "-V", version, "-t", topic,
                        "-f", str(path), "-q", "2", "-r")
    message = run(_retained(mosquitto.port, topic))
    assert code == 0 and message is not None and message.payload == b"\x00\x01binary"
    code, _, _ = invoke("pub", *broker_args(mosquitto), "-V", version, "-t", topic, "-n", "-r")
    assert code == 0 and run(_retained(mosquitto.port, topic)) is None    # cleared


def test_pub_lines_and_stdin_and_debug(mosquitto: Mosquitto) -> None:
    topic = unique_topic("cli-lines")

    async def watch(n: int) -> list[bytes]:
        async with Client("127.0.0.1", mosquitto.port, client_id="qi-watch") as c:
            await c.subscribe(topic, 2)
            code, _, err = await _invoke_in_thread(
                "pub", *broker_args(mosquitto), "-t", topic, "-l", "-q", "2", "-d",
                stdin="one\ntwo\n\nfour\r\n")
            assert code == 0
            assert "sending CONNECT" in err and "received CONNACK (0)" in err
            assert "received PUBCOMP" in err and "sending DISCONNECT" in err
            code, _, _ = await _invoke_in_thread("pub", *broker_args(mosquitto), "-t", topic,
                                                 "-s", "-q", "1", stdin="all\nof it")
            assert code == 0
            return [m.payload for m in await take(c, n)]

    assert run(watch(5)) == [b"one", b"two", b"", b"four", b"all\nof it"]


async def _invoke_in_thread(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """The CLI runs its own event loop: run it in a thread while this loop keeps serving."""
    import asyncio
    return await asyncio.to_thread(invoke, *args, stdin=stdin)


def test_sub_prints_retained_with_verbose_format_and_count(mosquitto: Mosquitto) -> None:
    topic = unique_topic("cli-sub")
    for sub_topic, payload in (("a", "alpha"), ("b", "beta")):
        assert invoke("pub", *broker_args(mosquitto), "-t", f"{topic}/{sub_topic}", "-m",
                      payload, "-r", "-q", "1")[0] == 0
    code, out, _ = invoke("sub", *broker_args(mosquitto), "-t", f"{topic}/#", "-C", "2", "-v")
    assert code == 0 and sorted(out.splitlines()) == [f"{topic}/a alpha", f"{topic}/b beta"]
    code, out, _ = invoke("sub", *broker_args(mosquitto), "-t", f"{topic}/a", "-C", "1",
                          "-q", "1", "-F", r"%t|%p|q%q|r%r|d%d|%l|%x")
    assert (code, out) == (0, f"{topic}/a|alpha|q1|r1|d0|5|{b'alpha'.hex()}\n")
    code, out, _ = invoke("sub", *broker_args(mosquitto), "-t", f"{topic}/#", "-T",
                          f"{topic}/a", "-C", "1")
    assert (code, out) == (0, "beta\n")
    code, out, err = invoke("sub", *broker_args(mosquitto), "-t", f"{topic}/#", "-R",
                            "-W", "0.5")
    assert (code, out, err) == (EXIT_TIMEOUT, "", "Timed out\n")   # -R: retained skipped


def test_sub_exit_after_subscribe(mosquitto: Mosquitto) -> None:
    assert invoke("sub", *broker_args(mosquitto), "-t", "x", "-E")[0] == 0


def test_connection_refused_like_mosquitto() -> None:
    # A port bound but never listening refuses connections, and no other program can take
    # it while the test runs (a port merely found free could be taken meanwhile).
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        for command in (["pub", "-m", "x"], ["sub"]):
            code, _, err = invoke(*command, "-h", "127.0.0.1", "-p", str(port), "-t", "a")
            assert (code, err) == (1, "Error: Connection refused\n")
        code, _, err = invoke("pub", "-h", "127.0.0.1", "-p", str(port), "-t", "a", "-m", "x",
                              "--quiet")
        assert (code, err) == (1, "")


@pytest.mark.parametrize("version, code, text", [
    ("mqttv311", 5, "Connection error: Connection Refused: not authorised.\n"),
    ("mqttv5", 135, "Connection error: Not authorized.\n")])
def test_connack_refusal_exit_status_is_the_code(version: str, code: int, text: str) -> None:
    """As mosquitto_pub/mosquitto_sub: the exit status is the CONNACK code."""
    with Mosquitto("allow_anonymous false").running() as broker:
        for command in (["pub", "-m", "x"], ["sub"]):
            got = invoke(*command, *broker_args(broker), "-V", version, "-t", "a")
            assert got[0] == code and got[2] == text


@pytest.mark.parametrize("args, match", [
    (["pub", "-t", "a"], "exactly one message source"),
    (["pub", "-t", "a", "-m", "x", "-n"], "exactly one message source"),
    (["pub", "-t", "a", "-m", "x", "-c"], "-c needs a client id"),
    (["pub", "-t", "a", "-m", "x", "-x", "5"], "only with -V mqttv5"),
    (["pub", "-t", "a", "-m", "x", "-V", "mqttv6"], "unknown protocol version"),
    (["pub", "-t", "a", "-m", "x", "--user-property", "k", "v"], "only with -V mqttv5"),
    (["pub", "-t", "a", "-m", "x", "-q", "3"], "not in the range"),
    (["sub", "-t", "a", "--no-local"], "only with -V mqttv5"),
])
def test_usage_errors(args: list[str], match: str) -> None:
    code, _, err = invoke(*args)
    assert code == 2 and match in err


def test_invalid_topic_is_an_error_not_a_traceback(mosquitto: Mosquitto) -> None:
    code, _, err = invoke("pub", *broker_args(mosquitto), "-t", "a/#", "-m", "x")
    assert code == 1 and err.startswith("Error: ") and "MQTT-3.3.2-2" in err


def test_mqtt5_properties_and_tls(certs: Certs) -> None:
    topic = unique_topic("cli-tls")
    with Mosquitto(tls=certs).running() as broker:
        tls = ["--cafile", str(certs.ca), "--cert", str(certs.client_cert), "--key",
               str(certs.client_key)]
        code, _, err = invoke("pub", *broker_args(broker), *tls, "-V", "mqttv5", "-t", topic,
                              "-m", "secret", "-r", "-q", "1", "--user-property", "k", "v",
                              "--content-type", "text/plain")
        assert (code, err) == (0, "")
        code, out, _ = invoke("sub", *broker_args(broker), *tls, "-V", "mqttv5", "-t", topic,
                              "-C", "1", "-F", "%p %C")
        assert (code, out) == (0, "secret text/plain\n")
        code, _, err = invoke("pub", *broker_args(broker), "--cafile", str(certs.ca),
                              "-t", topic, "-m", "x")
        assert code == 1 and err.startswith("Error")            # no client certificate
        code, _, err = invoke("pub", *broker_args(broker), "--tls", "-t", topic, "-m", "x")
        assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in err   # unknown CA


def test_describe_packet_like_mosquitto_debug() -> None:
    assert describe_packet(Publish("a", b"hello", 1, packet_id=1)) == \
        "PUBLISH (d0, q1, r0, m1, 'a', ... (5 bytes))"
    assert describe_packet(ConnAck(False, 0)) == "CONNACK (0)"
    assert describe_packet(PubAck(3)) == "PUBACK (Mid: 3, RC:0)"
    assert describe_packet(PubRec(3)) == "PUBREC (Mid: 3)"
    assert describe_packet(PubRel(3)) == "PUBREL (m3)"
    assert describe_packet(Subscribe(4, (Subscription("t/#", 2),))) == \
        "SUBSCRIBE (Mid: 4, Topic: t/#, QoS: 2)"


def test_format_message_codes() -> None:
    m = Message("t/x", b"\x01A", 2, True, True, 9,
                Properties.of(content_type="c", response_topic="r",
                              message_expiry_interval=5), 1_700_000_000_123_456_789, 0)
    assert format_message(r"%t %q %r %d %m %l %x %X %C %R %E %%\t%U", m) == \
        b"t/x 2 1 1 9 2 0141 0141 c r 5 %\t1700000000.123456789"
    assert format_message("%p%z\\n", m) == b"\x01A%z\n"


def test_format_message_iso_time_as_mosquitto_sub_prints_it() -> None:
    """%I: local time with the offset as strftime's %z gives it (+0000, +0100), not Python's
    isoformat (+00:00), so scripts cutting mosquitto_sub's output work on ours."""
    m = Message("t", b"", 0, False, False, None, Properties(), 1_700_000_000_999_000_000, 0)
    local = dt.datetime.fromtimestamp(1_700_000_000, dt.UTC).astimezone()
    assert format_message("%I", m) == local.strftime("%Y-%m-%dT%H:%M:%S%z").encode()
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", format_message("%I", m))


# -- real processes ------------------------------------------------------------------------------

def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _wait_for_line(stream: object, needle: bytes, proc: subprocess.Popen[bytes]) -> None:
    assert hasattr(stream, "readline")
    for _ in range(200):
        line = stream.readline()
        if needle in line:
            return
        if not line:
            break
    proc.kill()
    raise AssertionError(f"{needle!r} never came; stderr: {proc.stderr and proc.stderr.read()}")


def _finish(proc: subprocess.Popen[bytes], timeout: float = 10) -> tuple[int, bytes]:
    try:
        out, _err = proc.communicate(timeout=timeout)
    finally:
        stop_process(proc, signal.SIGKILL, 5)
    return proc.returncode, out


def test_processes_pub_lines_to_sub_and_mosquitto_pub_to_sub(mosquitto: Mosquitto) -> None:
    topic = unique_topic("proc")
    sub = _spawn("sub", *broker_args(mosquitto), "-t", f"{topic}/#", "-q", "2", "-v", "-C",
                 "4", "-d")
    try:
        _wait_for_line(sub.stderr, b"received SUBACK", sub)
        pub = subprocess.run([*CLI, "pub", *broker_args(mosquitto), "-t", f"{topic}/lines",
                              "-l", "-q", "2"], input=b"a\nb\nc\n", capture_output=True,
                             timeout=20, check=False)
        assert pub.returncode == 0, pub.stderr
        mpub = subprocess.run([require_tool("mosquitto_pub"), *broker_args(mosquitto), "-t",
                               f"{topic}/mosq", "-m", "from mosquitto_pub", "-q", "1"],
                              capture_output=True, timeout=20, check=False)
        assert mpub.returncode == 0, mpub.stderr
        code, out = _finish(sub)
    finally:
        stop_process(sub, signal.SIGKILL, 5)
    assert code == 0
    assert out.decode().splitlines() == [f"{topic}/lines a", f"{topic}/lines b",
                                         f"{topic}/lines c",
                                         f"{topic}/mosq from mosquitto_pub"]


def test_process_pub_to_mosquitto_sub(mosquitto: Mosquitto) -> None:
    topic = unique_topic("proc-msub")
    assert invoke("pub", *broker_args(mosquitto), "-t", topic, "-m", "ready", "-r")[0] == 0
    msub = subprocess.Popen([require_tool("mosquitto_sub"), *broker_args(mosquitto), "-t",
                             topic, "-C", "2", "-q", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        _wait_for_line(msub.stdout, b"ready", msub)
        pub = subprocess.run([*CLI, "pub", *broker_args(mosquitto), "-t", topic, "-m",
                              "from qosinspect", "-q", "1", "-V", "mqttv5"],
                             capture_output=True, timeout=20, check=False)
        assert pub.returncode == 0, pub.stderr
        code, out = _finish(msub)
    finally:
        stop_process(msub, signal.SIGKILL, 5)
    assert (code, out) == (0, b"from qosinspect\n")


def test_sub_process_exits_cleanly_on_sigint(mosquitto: Mosquitto) -> None:
    sub = _spawn("sub", *broker_args(mosquitto), "-t", unique_topic("int"), "-d")
    try:
        _wait_for_line(sub.stderr, b"received SUBACK", sub)
        os.kill(sub.pid, signal.SIGINT)
        code, _ = _finish(sub)
    finally:
        stop_process(sub, signal.SIGKILL, 5)
    assert code == 0
