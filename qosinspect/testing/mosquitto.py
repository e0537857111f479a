"""mosquitto, the reference broker, run by a test: free ports, a temporary configuration and
folder, its log kept, always stopped and cleaned up.

mosquitto cannot be told "any port", so its ports are picked free just before it starts; if
another program takes one in between (two test runs sharing the machine), mosquitto exits
on the failed bind and :meth:`Mosquitto.start` tries again on new ports (first start only:
a restart must come back where its clients reconnect). It is ready when its log says
"running" (every listener open), not merely when something answers on the port.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .certs import Certs
from .tools import free_port, require_tool, stop_process, wait_port

__all__ = ["Mosquitto"]

_START_ATTEMPTS = 5


class Mosquitto:
    """/usr/sbin/mosquitto on free ports with a temporary configuration.

    ``extra`` lines are appended to the TCP listener's section (``allow_anonymous true`` is
    added unless they say otherwise); ``websocket`` adds a WebSocket listener (``ws_port``);
    ``persistence`` keeps sessions in the temporary folder (``autosave_interval 1``); ``tls``
    makes the TCP listener require client certificates signed by its CA.
    """

    def __init__(self, extra: str = "", *, websocket: bool = False,
                 persistence: bool = False, tls: Certs | None = None) -> None:
        self.binary = require_tool("mosquitto")
        self.dir = Path(tempfile.mkdtemp(prefix="qi-mosq-"))
        self.extra = extra
        self.websocket = websocket
        self.persistence = persistence
        self.tls = tls
        self.conf = self.dir / "mosquitto.conf"
        self.port = 0
        self.ws_port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._started = False
        self._configure()

    def _configure(self) -> None:
        (self.dir / "mosquitto.log").unlink(missing_ok=True)
        self.port = free_port()
        self.ws_port = free_port() if self.websocket else None
        lines = [f"listener {self.port} 127.0.0.1"]
        if self.tls is not None:
            lines += [f"cafile {self.tls.ca}", f"certfile {self.tls.server_cert}",
                      f"keyfile {self.tls.server_key}", "require_certificate true"]
        lines += [self.extra]
        if self.ws_port is not None:
            lines += [f"listener {self.ws_port} 127.0.0.1", "protocol websockets"]
        lines += ["allow_anonymous true" if "allow_anonymous" not in self.extra else "",
                  f"persistence {'true' if self.persistence else 'false'}",
                  f"persistence_location {self.dir}/", "autosave_interval 1",
                  f"log_dest file {self.dir / 'mosquitto.log'}", "log_type all"]
        # Run as the test's own user: as root, mosquitto would switch to the "mosquitto" user,
        # which cannot read the private temporary directories.
        me = pwd.getpwuid(os.getuid()).pw_name
        self.conf.write_text(f"user {me}\nper_listener_settings false\n" + "\n".join(lines)
                             + "\n")

    def start(self) -> Mosquitto:
        """Start it and wait until every listener accepts connections."""
        attempts = 1 if self._started else _START_ATTEMPTS
        for attempt in range(attempts):
            logged = len(self.log())
            self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                # "running" is logged once every listener is open; a listener that cannot
                # bind makes mosquitto exit instead. (Only then is the port known to be its
                # own: a connection could also reach a program that took the port.)
                self._wait_logged(" running", logged)
                wait_port(self.port, proc=self.proc)
                if self.ws_port is not None:
                    wait_port(self.ws_port, proc=self.proc)
            except (TimeoutError, RuntimeError):
                self.stop()
                if attempt + 1 < attempts and "Address already in use" in self.log()[logged:]:
                    self._configure()          # a port was taken meanwhile: new ones
                    continue
                raise RuntimeError(f"mosquitto did not start:\n{self.log()}") from None
            self._started = True
            return self
        raise AssertionError("unreachable")

    def _wait_logged(self, text: str, after: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log()[after:]:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited")
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto did not log {text.strip()!r}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 5)
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
