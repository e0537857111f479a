"""A link into a test network namespace through two TUN devices and a forwarder that loses
chosen TCP segments: real kernel retransmissions without netem (issue 16's
``retransmission_timeout`` reproduction).

:class:`TunLink` is a :class:`~qosinspect.traffic.netns.NetnsLink` whose wire is
:mod:`.tunforward` instead of a veth pair: hand it to a generator run
(``RunOptions(link=...)``) and the fault proxy listens inside the namespace, the clients reach
it across the forwarder, the capture records on the host's TUN device (where the lost segment
and its retransmission both show). Addresses 10.214.<n>.1 (host) and .2 (namespace) on a /30
never leave the machine. Everything is removed on :meth:`close` (the forwarder stops, its
devices vanish with it, the namespace is deleted by name), whatever happened.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shutil
import subprocess
import sys
from typing import Any

from ..traffic.netns import NetemUnavailable, NetnsLink
from .tools import stop_process

__all__ = ["TunLink"]

_counter = itertools.count()
_START_S = 10.0


class TunLink(NetnsLink):
    """A namespace reached through TUN devices; every ``drop_every``-th PUBLISH segment the
    clients send (after ``drop_after``, at most ``drop_max``) is lost. Use as a context
    manager; :attr:`drops` lists what was lost (one dict per segment: ``ts_ns``, ``sport``,
    ``dport``, ``seq``, ``length``), complete after :meth:`close`."""

    def __init__(self, *, drop_every: int, drop_max: int, drop_after: int = 0) -> None:
        super().__init__(require_netem=False)
        n = next(_counter) % 250 + 1
        pid = os.getpid() % 100000
        self.name = f"qt{os.getpid()}x{n}"
        self.host_if = f"qth{pid}x{n}"[:15]
        self.ns_if = f"qtn{pid}x{n}"[:15]
        self.host_ip = f"10.214.{n}.1"
        self.ns_ip = f"10.214.{n}.2"
        self.drop_args = [f"--drop-every={drop_every}", f"--drop-max={drop_max}",
                          f"--drop-after={drop_after}"]
        self.proc: subprocess.Popen[str] | None = None
        self.drops: list[dict[str, Any]] = []

    @staticmethod
    def check() -> None:
        if os.geteuid() != 0:
            raise NetemUnavailable("a TUN link needs root: it creates a network namespace and "
                                   "TUN devices")
        if shutil.which("ip") is None:
            raise NetemUnavailable("a TUN link needs the 'ip' command (iproute2)")
        if not os.path.exists("/dev/net/tun"):
            raise NetemUnavailable("a TUN link needs /dev/net/tun")

    def _create(self) -> None:
        self._ip("ip", "netns", "add", self.name)
        self.created = True
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qosinspect.testing.tunforward", f"--netns={self.name}",
             f"--host-if={self.host_if}", f"--ns-if={self.ns_if}", *self.drop_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], _START_S)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            stop_process(self.proc, timeout=2)
            err = self.proc.stderr.read() if self.proc.stderr and not self.proc.stderr.closed \
                else ""
            raise NetemUnavailable(f"the TUN forwarder did not start: {line.strip() or err}")
        self._address()

    def close(self) -> None:
        """Stop the forwarder (its devices go with it), read what it lost, delete the
        namespace (idempotent, never raises)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            out = ""
            with contextlib.suppress(Exception):
                proc.terminate()
                out, _ = proc.communicate(timeout=10)
            stop_process(proc, timeout=2)
            self.drops += [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        super().close()
