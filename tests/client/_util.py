"""Helpers for the client tests: a bounded asyncio runner, a mosquitto process on a free port
with a temporary configuration, a small TCP proxy that can cut connections or swallow one
direction, and throwaway TLS certificates made with openssl. Everything binds 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from qosinspect.testing.tools import require_tool

__all__ = ["Certs", "Mosquitto", "Proxy", "Recorder", "free_port", "make_certs", "run", "take",
           "unique_topic", "until", "wait_port"]

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
    """Run a test coroutine on a fresh loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def unique_topic(name: str = "t") -> str:
    return f"qi-test/{name}/{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


class Mosquitto:
    """/usr/sbin/mosquitto on free ports with a temporary configuration (``extra`` lines are
    appended to the TCP listener's section). ``ws_port`` is a WebSocket listener."""

    def __init__(self, extra: str = "", *, websocket: bool = False,
                 persistence: bool = False, tls: Certs | None = None) -> None:
        self.binary = require_tool("mosquitto")
        self.dir = Path(tempfile.mkdtemp(prefix="qi-mosq-"))
        self.port = free_port()
        self.ws_port = free_port() if websocket else None
        lines = [f"listener {self.port} 127.0.0.1"]
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server_cert}",
                      f"keyfile {tls.server_key}", "require_certificate true"]
        lines += [extra]
        if self.ws_port is not None:
            lines += [f"listener {self.ws_port} 127.0.0.1", "protocol websockets"]
        lines += ["allow_anonymous true" if "allow_anonymous" not in extra else "",
                  f"persistence {'true' if persistence else 'false'}",
                  f"persistence_location {self.dir}/", "autosave_interval 1",
                  f"log_dest file {self.dir / 'mosquitto.log'}", "log_type all"]
        self.conf = self.dir / "mosquitto.conf"
        # Run as the test's own user: as root, mosquitto would switch to the "mosquitto" user,
        # which cannot read the private temporary directories.
        me = pwd.getpwuid(os.getuid()).pw_name
        self.conf.write_text(f"user {me}\nper_listener_settings false\n" + "\n".join(lines)
                             + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port)
            if self.ws_port is not None:
                wait_port(self.ws_port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start:\n{self.log()}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        path = self.dir / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[Mosquitto]:
        try:
            self.start()
            yield self
        finally:
            self.cleanup()


class Proxy:
    """A TCP proxy in the test's event loop, in front of ``127.0.0.1:target``.

    ``swallow_b2c`` / ``swallow_c2b`` drop the bytes of one direction (the peer never sees an
    acknowledgement); :meth:`cut` aborts every connection, as a failing network would.
    """

    def __init__(self, target: int, port: int = 0) -> None:
        self.target = target
        self.swallow_b2c = False
        self.swallow_c2b = False
        self.port = port
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer, "c2b"),
                             self._pipe(up_reader, writer, "b2c"), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> None:
        try:
            while data := await reader.read(65536):
                if not getattr(self, f"swallow_{direction}"):
                    writer.write(data)
        finally:
            writer.transport.abort()

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()


class Certs:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = directory / "ca.crt"
        self.server_cert = directory / "server.crt"
        self.server_key = directory / "server.key"
        self.client_cert = directory / "client.crt"
        self.client_key = directory / "client.key"


def make_certs(directory: Path) -> Certs:
    """Throwaway certificates (EC P-256, valid one day), made with the openssl command."""
    openssl = require_tool("openssl")
    certs = Certs(directory)

    def sh(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=30)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh("req", "-x509", *ec, "-keyout", str(directory / "ca.key"), "-out", str(certs.ca),
       "-days", "1", "-subj", "/CN=qosinspect test CA",
       "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, cert, key, ext in (
            ("localhost", certs.server_cert, certs.server_key,
             "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            ("qosinspect-client", certs.client_cert, certs.client_key,
             "extendedKeyUsage=clientAuth")):
        csr = directory / f"{name}.csr"
        sh("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
        extfile = directory / f"{name}.ext"
        extfile.write_text(ext + "\n")
        sh("x509", "-req", "-in", str(csr), "-CA", str(certs.ca), "-CAkey",
           str(directory / "ca.key"), "-CAcreateserial", "-out", str(cert), "-days", "1",
           "-extfile", str(extfile))
    return certs


# -- waiting on a client, bounded ------------------------------------------------------------------

async def take(client: Any, n: int, timeout: float = 5.0) -> list[Any]:
    """The next ``n`` messages of ``client`` (TimeoutError if they do not come in time)."""
    out: list[Any] = []
    if n <= 0:
        return out
    async with asyncio.timeout(timeout):
        async for message in client.messages():
            out.append(message)
            if len(out) >= n:
                break
    return out


async def until(condition: Any, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition()`` every few milliseconds until it is true (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.005)


class Recorder(list[Any]):
    """A tap that keeps every event; helpers pick the MQTT packets out."""

    def __call__(self, event: Any) -> None:
        self.append(event)

    def packets(self, direction: str | None = None, kind: type | None = None) -> list[Any]:
        from qosinspect.events import MqttPacketEvent
        return [e.packet for e in self if isinstance(e, MqttPacketEvent)
                and (direction is None or e.direction == direction)
                and (kind is None or isinstance(e.packet, kind))]
