"""Real network impairment for a run: a network namespace, a veth pair and ``tc netem``.

The fault proxy breaks MQTT at the application level; some things only the kernel can do: lose
or reorder TCP segments so that TCP itself retransmits. With root, a run with a ``netem`` fault
creates, for itself only:

- a network namespace ``qi<pid>x<n>`` and a veth pair between it and the host, with the
  addresses 10.213.<n>.1 (host end) and 10.213.<n>.2 (namespace end) on a /30;
- the fault proxy's front listener *inside* the namespace (its socket is made by a thread that
  entered the namespace with ``setns``), so every client connection crosses the veth pair;
- ``tc qdisc ... netem`` on both ends while the fault is active (delay, jitter, loss, reorder,
  duplicate), and the capture on the host end of the pair, where the retransmissions show.

Everything is removed when the run ends, whatever happened (deleting the host end of a veth pair
deletes both; the namespace is deleted by name). A kernel without the ``sch_netem`` module is
found out before the run starts, with a clear message.

Addresses 10.213.x.y never leave the machine: the namespace has no other interface and no route.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from ..errors import QosinspectError
from .scenario import NetemSpec

__all__ = ["NetemUnavailable", "NetnsLink", "netem_args"]

CLONE_NEWNET = 0x40000000
_counter = itertools.count()


class NetemUnavailable(QosinspectError):
    """Real impairment cannot be set up here (not root, no ``ip``/``tc``, no sch_netem)."""


def netem_args(spec: NetemSpec) -> list[str]:
    """The ``tc qdisc ... netem`` arguments for ``spec`` (delays in ms, rates in %)."""
    args = ["netem"]
    if spec.delay or spec.jitter:
        args += ["delay", f"{spec.delay * 1000:g}ms"]
        if spec.jitter:
            args += [f"{spec.jitter * 1000:g}ms"]
    if spec.loss:
        args += ["loss", f"{spec.loss * 100:g}%"]
    if spec.reorder:
        args += ["reorder", f"{spec.reorder * 100:g}%"]
    if spec.duplicate:
        args += ["duplicate", f"{spec.duplicate * 100:g}%"]
    return args


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


class NetnsLink:
    """One namespace + veth pair (see the module docstring). Use as a context manager."""

    def __init__(self, *, require_netem: bool = True) -> None:
        self.require_netem = require_netem
        n = next(_counter) % 250 + 1
        self.name = f"qi{os.getpid()}x{n}"
        self.host_if = f"qih{os.getpid() % 100000}x{n}"[:15]
        self.ns_if = f"qin{os.getpid() % 100000}x{n}"[:15]
        self.host_ip = f"10.213.{n}.1"
        self.ns_ip = f"10.213.{n}.2"
        self.created = False
        self.impaired = False

    @staticmethod
    def check() -> None:
        """Raise :class:`NetemUnavailable` unless namespaces and netem can work here."""
        if os.geteuid() != 0:
            raise NetemUnavailable("real impairment (netem) needs root: it creates a network "
                                   "namespace and a veth pair")
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                raise NetemUnavailable(f"real impairment (netem) needs the {tool!r} command "
                                       "(iproute2)")

    def __enter__(self) -> NetnsLink:
        self.check()
        try:
            self._create()
            if self.require_netem:
                self._probe_netem()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ip(self, *args: str, ns: bool = False) -> None:
        cmd = ["ip", "netns", "exec", self.name, *args] if ns else list(args)
        res = _run(*cmd)
        if res.returncode != 0:
            raise NetemUnavailable(f"{' '.join(cmd)}: {res.stderr.strip() or res.returncode}")

    def _create(self) -> None:
        self._ip("ip", "netns", "add", self.name)
        self.created = True
        self._ip("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._ip("ip", "link", "set", self.ns_if, "netns", self.name)
        self._address()

    def _address(self) -> None:
        """Address both ends of the link and bring them (and the namespace's lo) up."""
        self._ip("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        self._ip("ip", "link", "set", self.host_if, "up")
        self._ip("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if, ns=True)
        self._ip("ip", "link", "set", self.ns_if, "up", ns=True)
        self._ip("ip", "link", "set", "lo", "up", ns=True)

    def _probe_netem(self) -> None:
        res = _run("tc", "qdisc", "add", "dev", self.host_if, "root", "netem", "delay", "0ms")
        if res.returncode != 0:
            detail = res.stderr.strip()
            hint = (" (the kernel has no sch_netem module)" if "unknown" in detail.lower()
                    else "")
            raise NetemUnavailable(f"tc netem does not work here{hint}: {detail}")
        _run("tc", "qdisc", "del", "dev", self.host_if, "root")

    def impair(self, spec: NetemSpec) -> None:
        """Apply ``spec`` to both directions of the link (replacing any earlier one)."""
        args = netem_args(spec)
        self._ip("tc", "qdisc", "replace", "dev", self.host_if, "root", *args)
        self._ip("tc", "qdisc", "replace", "dev", self.ns_if, "root", *args, ns=True)
        self.impaired = True

    def clear(self) -> None:
        """Remove the impairment (the link stays)."""
        if self.impaired:
            _run("tc", "qdisc", "del", "dev", self.host_if, "root")
            _run("ip", "netns", "exec", self.name, "tc", "qdisc", "del", "dev", self.ns_if,
                 "root")
            self.impaired = False

    def close(self) -> None:
        """Remove the veth pair and the namespace (idempotent, never raises)."""
        with contextlib.suppress(Exception):
            _run("ip", "link", "del", self.host_if)
        if self.created:
            with contextlib.suppress(Exception):
                _run("ip", "netns", "del", self.name)
            self.created = False

    def listening_socket(self, port: int) -> socket.socket:
        """A TCP socket listening on the namespace end, made inside the namespace."""
        result: list[socket.socket | BaseException] = []

        def work() -> None:
            here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                target = os.open(str(Path("/var/run/netns") / self.name), os.O_RDONLY)
                try:
                    _setns(target)
                    try:
                        # (proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on
                        # sockets that say so, and the accepted ones inherit it; with Nagle
                        # on, the proxy held each PUBACK for the client's delayed ACK)
                        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM,
                                             socket.IPPROTO_TCP)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        sock.bind((self.ns_ip, port))
                        sock.listen(128)
                        sock.setblocking(False)
                        result.append(sock)
                    finally:
                        _setns(here)
                finally:
                    os.close(target)
            except BaseException as exc:
                result.append(exc)
            finally:
                os.close(here)

        thread = threading.Thread(target=work, name="qosinspect-netns")
        thread.start()
        thread.join(10)
        if not result:
            raise NetemUnavailable("could not open a socket in the network namespace")
        if isinstance(result[0], BaseException):
            raise NetemUnavailable(f"could not open a socket in the network namespace: "
                                   f"{result[0]}")
        return result[0]

    def exists(self) -> bool:
        """Whether the namespace or the host end of the pair is still there."""
        names = _run("ip", "netns", "list").stdout.split()
        link = _run("ip", "link", "show", self.host_if).returncode == 0
        return self.name in names or link
