"""``qosinspect broker`` and ``qosinspect passwd`` as a user runs them: a real process, its
"ready" line, traffic from mosquitto clients, a clean exit on SIGTERM; the TOML file; errors
as messages (never tracebacks)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from qosinspect.broker import PasswordFile
from qosinspect.broker.config import build, load_toml
from qosinspect.cli import main
from qosinspect.errors import ConfigError
from qosinspect.testing.certs import Certs
from qosinspect.testing.tools import require_tool, stop_process

from .harness import QOSINSPECT, RawClient, mosquitto_pub, mosquitto_sub
from .test_server_wire import sub

READY = re.compile(r"ready, listening on (.*)$")


@contextmanager
def broker_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[tuple[str, int,
                                                                                    str]]]]:
    """Start ``qosinspect broker ARGS``; yield it and its (host, port, kind) listeners."""
    proc = subprocess.Popen([QOSINSPECT, "broker", *args], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = READY.search(line)
        assert m, f"no ready line: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        where = []
        for part in m.group(1).split(", "):
            addr, kind = part.rsplit(" ", 1)
            host, port = addr.rsplit(":", 1)
            where.append((host.strip("[]"), int(port), kind.strip("()")))
        yield proc, where
    finally:
        stop_process(proc, signal.SIGTERM, 15)


def test_ready_traffic_and_clean_exit_on_sigterm() -> None:
    require_tool("mosquitto_sub")
    with broker_process("--port", "0", "--allow-anonymous", "-v") as (proc, where):
        assert where[0][0] == "127.0.0.1" and where[0][2] == "tcp"     # 127.0.0.1 by default
        port = where[0][1]
        s = mosquitto_sub(port, "-t", "cli/#", "-C", "1", "-q", "1", "-i", "cli-sub")
        try:
            # the broker logs each packet with -v: wait for the SUBSCRIBE line
            assert proc.stderr is not None
            for line in proc.stderr:
                if "Subscribe(" in line:
                    break
            assert mosquitto_pub(port, "-t", "cli/x", "-m", "hi", "-q", "1").returncode == 0
            out, _ = s.communicate(timeout=10)
            assert out.strip() == "hi"
        finally:
            s.kill()
            s.wait(10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        tail = proc.stderr.read()
        assert "stopping" in tail and "messages_received 1" in tail   # counters at exit


def test_anonymous_is_off_by_default() -> None:
    with broker_process("--port", "0") as (_proc, where):
        c = RawClient(where[0][1])
        ack = c.connect("anon")
        assert ack.reason_code == 5  # type: ignore[union-attr]


def test_a_broker_nobody_can_use_says_so_after_ready(tmp_path: Path) -> None:
    """No --allow-anonymous and no password file: every client is refused; the broker says
    so at start (on the line after 'ready', which scripts wait for), and only then."""
    pw = PasswordFile()
    pw.set("alice", "pw")
    pw.save(tmp_path / "passwd")
    for args, warned in (([], True), (["--allow-anonymous"], False),
                         (["--password-file", str(tmp_path / "passwd")], False)):
        with broker_process("--port", "0", *args) as (proc, _where):
            assert proc.stderr is not None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
            after_ready = proc.stderr.read().splitlines()
        assert "stopping" in after_ready[-1]
        if warned:
            assert len(after_ready) == 2, after_ready
            assert "every client will be refused" in after_ready[0]
            assert "--allow-anonymous or --password-file" in after_ready[0]
        else:
            assert len(after_ready) == 1, (args, after_ready)


def test_toml_config_with_several_listeners_tls_websocket_and_ipv6(tmp_path: Path,
                                                                   certs: Certs) -> None:
    pw = PasswordFile()
    pw.set("alice", "pw")
    pw.save(tmp_path / "passwd")
    (tmp_path / "acl").write_text("user alice\ntopic readwrite a/#\n", encoding="ascii")
    (tmp_path / "broker.toml").write_text(f"""
host = ["127.0.0.1", "::1"]
port = 0
password_file = "passwd"
acl_file = "acl"
max_keepalive = 120
deny_subscribe_code = 0x80
max_queued_messages = 50

[[listener]]
port = 0
certfile = "{certs.server_cert}"
keyfile = "{certs.server_key}"

[[listener]]
port = 0
websocket = true
""", encoding="utf-8")
    with broker_process("--config", str(tmp_path / "broker.toml")) as (_proc, where):
        kinds = [(h, k) for h, _p, k in where]
        assert kinds == [("127.0.0.1", "tcp"), ("::1", "tcp"), ("127.0.0.1", "tls"),
                         ("127.0.0.1", "websocket")]
        v6 = RawClient(where[1][1], host="::1", version=5)
        ack = v6.connect("six", username="alice", password=b"pw", keep_alive=600)
        assert ack.reason_code == 0 and ack.properties.server_keep_alive == 120  # type: ignore[union-attr]
        assert sub(v6, ("a/#", 1), ("b/#", 1)).reason_codes == (1, 0x80)
        bad = RawClient(where[0][1])
        assert bad.connect("x", username="alice", password=b"no").reason_code == 4  # type: ignore[union-attr]
        require_tool("mosquitto_pub")
        done = mosquitto_pub(where[2][1], "--cafile", str(certs.ca), "-u", "alice", "-P",
                             "pw", "-t", "a/tls", "-m", "m")
        assert done.returncode == 0, done.stderr


def test_cli_tls_and_websocket_options(certs: Certs) -> None:
    with broker_process("--port", "0", "--allow-anonymous", "--tls-port", "0", "--ws-port", "0",
                        "--certfile", str(certs.server_cert), "--keyfile",
                        str(certs.server_key)) as (_proc, where):
        assert [k for _h, _p, k in where] == ["tcp", "tls", "websocket"]


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "70000"], "port must be 0..65535"),
    (["--config", "/nonexistent/broker.toml"], "No such file"),
    (["--password-file", "/nonexistent/passwd"], "password file not found"),
    (["--tls-port", "0"], "--tls-port needs --certfile"),
    (["--max-inflight", "0"], "max_inflight: must be at least 1"),
])
def test_bad_options_are_messages_not_tracebacks(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["broker", *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output


def test_config_file_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "b.toml"
    bad.write_text("prot = 1883\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key.*prot"):
        load_toml(bad)
    bad.write_text("[[listener]]\nport = 1\nwebsockets = true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"listener\[0\].*websockets"):
        load_toml(bad)
    bad.write_text("port = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="port"):
        build(load_toml(bad))
    bad.write_text("deny_subscribe_code = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="deny_subscribe_code"):
        build(load_toml(bad))
    bad.write_text("port = [1\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        load_toml(bad)


def test_passwd_command_adds_updates_deletes(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    runner = CliRunner()
    assert runner.invoke(main, ["passwd", str(path), "alice", "--password", "one"]).exit_code == 0
    assert runner.invoke(main, ["passwd", str(path), "bob"], input="two\n").exit_code == 0
    pw = PasswordFile.load(path)
    assert pw.check("alice", b"one") and pw.check("bob", b"two")
    assert pw.users["alice"].startswith("$7$")               # salted PBKDF2-SHA512
    assert runner.invoke(main, ["passwd", str(path), "alice", "--password", "new"]).exit_code \
        == 0
    assert PasswordFile.load(path).check("alice", b"new")
    assert runner.invoke(main, ["passwd", str(path), "alice", "-D"]).exit_code == 0
    assert "alice" not in PasswordFile.load(path).users
    result = runner.invoke(main, ["passwd", str(path), "ghost", "-D"])
    assert result.exit_code != 0 and "no user" in result.output
    result = runner.invoke(main, ["passwd", str(path), "a:b", "--password", "x"])
    assert result.exit_code != 0 and "invalid user name" in result.output
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_help_lists_the_options() -> None:
    out = CliRunner().invoke(main, ["broker", "--help"]).output
    for option in ("--host", "--port", "--config", "--allow-anonymous", "--password-file",
                   "--acl-file", "--max-keepalive", "--persistence", "--verbose", "--tls-port",
                   "--ws-port", "--certfile", "--cafile", "--require-certificate"):
        assert option in out
