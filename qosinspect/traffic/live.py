"""Live capture of a run: dumpcap or tcpdump on the loopback (root), scapy's sniffer as a
fallback, or the fault proxy's synthetic pcapng when none can capture.

Rules, and why:

- The filter is the run's front ports only (``tcp port A or tcp port B``): the clients' side of
  the fault proxy, exactly what the clients sent and received. The proxy-to-broker legs (and
  anything else on the machine) stay out, so each MQTT connection appears once.
- The tool runs in its own session (``start_new_session``): a Ctrl-C in the terminal reaches the
  run, which then closes its connections and stops the tool itself, so the FIN/RST of the end
  are in the file rather than cut off by the signal.
- The run starts only after the tool reports it is listening (dumpcap "Capturing on", tcpdump
  "listening on"), and the tool is stopped a moment after the last packet, so nothing is lost at
  either end. tcpdump writes pcap; a ``.pcapng`` target is converted (nanosecond stamps kept).
- The kernel buffer is large (:data:`BUFFER_MIB`): in immediate mode libpcap gives every packet
  a slot as large as the interface's MTU (64 KiB on ``lo``), so its 2 MiB default holds about
  16 packets, and a tool that a busy machine does not schedule for a few milliseconds loses
  segments ("packets dropped by kernel"). What the kernel still dropped is read from the tool's
  final statistics into :attr:`LiveCapture.dropped`.
- Without root (or with none of the tools) :func:`choose_method` says ``tap``: the run then
  writes the proxy's synthetic pcapng (:mod:`.pcapng`); the README says what differs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import QosinspectError
from .pcapng import convert_to_pcapng

__all__ = ["BUFFER_MIB", "CAPTURE_METHODS", "STATS_SIGNAL", "CaptureFailed", "LiveCapture",
           "choose_method", "dropped_by_kernel", "dropped_so_far", "find_tool", "port_filter",
           "start_tool", "stop_tool", "tool_command"]

CAPTURE_METHODS = ("auto", "dumpcap", "tcpdump", "scapy", "tap")
#: The capture tool's kernel buffer (``-B``), in MiB: about 500 loopback packets of slack.
BUFFER_MIB = 64
_READY = {"dumpcap": b"Capturing on", "tcpdump": b"listening on"}
# The tools' statistics at exit: tcpdump "12 packets dropped by kernel", dumpcap
# "Packets received/dropped on interface 'Loopback: lo': 40/12 (pcap:12/dumpcap:0/...)".
_DROPPED = (re.compile(rb"^(\d+) packets? dropped by kernel", re.M),
            re.compile(rb"^Packets received/dropped on interface .*: \d+/(\d+)", re.M))
# tcpdump's statistics while it runs (asked with SIGUSR1), one line, counts since its start:
# "tcpdump: 40 packets captured, 52 packets received by filter, 12 packets dropped by kernel".
_DROPPED_SO_FAR = re.compile(rb"received by filter, (\d+) packets? dropped by kernel")


class CaptureFailed(QosinspectError):
    """The capture tool could not start (missing, no permission, bad interface)."""


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()),
        None)


#: Where a capture tool is (PATH, then /usr/sbin and /usr/bin), or None (qosinspect watch too).
find_tool = _tool


def _have_scapy() -> bool:
    try:
        import scapy  # noqa: F401
    except ImportError:
        return False
    return True


def choose_method(requested: str = "auto") -> str:
    """The capture method to use: a real one as root when a tool exists, else ``tap``."""
    if requested not in CAPTURE_METHODS:
        raise CaptureFailed(f"unknown capture method {requested!r} (one of "
                            f"{', '.join(CAPTURE_METHODS)})")
    root = os.geteuid() == 0
    if requested == "auto":
        if not root:
            return "tap"
        for name in ("dumpcap", "tcpdump"):
            if _tool(name):
                return name
        return "scapy" if _have_scapy() else "tap"
    if requested in ("dumpcap", "tcpdump") and not _tool(requested):
        raise CaptureFailed(f"{requested} is not installed")
    if requested == "scapy" and not _have_scapy():
        raise CaptureFailed("scapy is not installed (pip install scapy)")
    if requested != "tap" and not root:
        raise CaptureFailed(f"a real capture with {requested} needs root; without root use "
                            "the synthetic capture (--capture-method tap)")
    return requested


def port_filter(ports: list[int]) -> str:
    """The BPF filter for the run's front ports."""
    return " or ".join(f"tcp port {p}" for p in sorted(set(ports)))


def dropped_by_kernel(stderr: bytes) -> int | None:
    """The packets the kernel dropped (its buffer was full), from a tool's final statistics on
    stderr; None when the tool printed none (killed, or scapy)."""
    counts = [int(m) for pattern in _DROPPED for m in pattern.findall(stderr)]
    return sum(counts) if counts else None


def dropped_so_far(lines: list[bytes]) -> int | None:
    """The packets the kernel dropped so far, from the newest statistics line tcpdump printed
    while running (on SIGUSR1: :data:`STATS_SIGNAL`); None when it printed none yet."""
    for line in reversed(lines):
        m = _DROPPED_SO_FAR.search(line)
        if m:
            return int(m.group(1))
    return None


#: The signal that makes tcpdump print its statistics and go on capturing (dumpcap has none:
#: it says its drops when it stops, on stderr and in the pcapng's Interface Statistics Block).
STATS_SIGNAL = signal.SIGUSR1


def tool_command(tool: str, exe: str, interface: str, bpf: str, target: str) -> list[str]:
    """The command line of ``tool`` (dumpcap or tcpdump) capturing ``bpf`` on ``interface``
    into ``target`` (a file, or ``-`` for its standard output), with the large kernel buffer
    and, for tcpdump, packet-buffered output and nanosecond stamps."""
    if tool == "dumpcap":
        return [exe, "-i", interface, "-B", str(BUFFER_MIB), "-f", bpf, "-w", target, "-n"]
    return [exe, "-i", interface, "-B", str(BUFFER_MIB * 1024), "-U", "-s", "0",
            "--immediate-mode", "-n", "--time-stamp-precision=nano", "-w", target, bpf]


def start_tool(cmd: list[str], tool: str, lines: list[bytes], timeout: float, *,
               stdout: int) -> tuple[subprocess.Popen[bytes], threading.Thread, bool]:
    """Start a capture tool in its own session and wait (at most ``timeout`` s) until it says
    it is capturing or exits; its stderr lines go to ``lines`` (a thread reads them to the
    end: the final statistics come there). Returns the process, that thread and whether the
    tool said it captures. :class:`CaptureFailed` if it cannot be run."""
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise CaptureFailed(f"cannot run {tool}: {exc}") from None
    ready = threading.Event()

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, b""):
            lines.append(line)
            if _READY[tool] in line:
                ready.set()
        ready.set()

    watcher = threading.Thread(target=read_stderr, daemon=True)
    watcher.start()
    deadline = time.monotonic() + timeout
    said = False
    while not (said := ready.wait(0.05)) and time.monotonic() < deadline:
        if proc.poll() is not None:
            break
    return proc, watcher, said and any(_READY[tool] in x for x in list(lines))


def stop_tool(proc: subprocess.Popen[bytes], watcher: threading.Thread | None,
              lines: list[bytes]) -> int | None:
    """Stop a tool :func:`start_tool` started (SIGINT, so it flushes and prints its statistics;
    killed, with its session, after 10 s) and return the packets the kernel dropped."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    if watcher is not None:
        watcher.join(2)
    return dropped_by_kernel(b"".join(lines))


class LiveCapture:
    """One capture tool process (or scapy sniffer thread) writing ``path``.

    Readiness is proven, not assumed: the filter also takes UDP datagrams to a private probe
    port, and :meth:`start` sends probes until one reaches the file (tools announce
    "Capturing on" some milliseconds before they capture). :meth:`stop` sends one more and waits
    for it, so every packet before it is in the file; the probes are then left out when the
    file is rewritten as pcapng.
    """

    def __init__(self, path: str | Path, ports: list[int], *, method: str = "dumpcap",
                 interface: str = "lo") -> None:
        if method not in ("dumpcap", "tcpdump", "scapy"):
            raise ValueError(f"not a live capture method: {method}")
        self.path = Path(path)
        self.ports = ports
        self.method = method
        self.interface = interface
        self.filter = port_filter(ports)
        self.packets: int | None = None
        #: Packets the kernel dropped because the tool fell behind (see :data:`BUFFER_MIB`):
        #: the capture then has gaps. Known after :meth:`stop`; None if the tool did not say.
        self.dropped: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._raw = self.path.with_name(f".{self.path.name}.{method}.tmp")
        self._sniffer: Any = None
        self._probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._probe.bind(("127.0.0.1", 0))
        self.probe_port = int(self._probe.getsockname()[1])
        self._chunks: list[bytes] = []
        self._watcher: threading.Thread | None = None

    @property
    def tool_filter(self) -> str:
        return f"{self.filter} or udp port {self.probe_port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start the tool and wait until it captures; :class:`CaptureFailed` otherwise."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.method == "scapy":
            self._start_scapy()
            return
        exe = _tool(self.method)
        if exe is None:
            raise CaptureFailed(f"{self.method} is not installed")
        cmd = tool_command(self.method, exe, self.interface, self.tool_filter, str(self._raw))
        with contextlib.suppress(FileNotFoundError):
            self._raw.unlink()
        proc, self._watcher, _ = start_tool(cmd, self.method, self._chunks, timeout,
                                            stdout=subprocess.DEVNULL)
        self._proc = proc
        if proc.poll() is not None or not self._probe_seen(timeout):
            self._kill()
            text = b"".join(self._chunks).decode(errors="replace").strip()
            with contextlib.suppress(FileNotFoundError):
                self._raw.unlink()
            raise CaptureFailed(f"{self.method} did not start capturing on {self.interface}: "
                                f"{text or 'no output'}")

    def _probe_seen(self, timeout: float) -> bool:
        """Send probes until the file grows by one (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        before = _size(self._raw)
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                return False
            self._probe.sendto(b"qosinspect capture probe", ("127.0.0.1", self.probe_port))
            for _ in range(10):
                time.sleep(0.005)
                size = _size(self._raw)
                if size > before and size > 0:
                    return True
        return False

    def _start_scapy(self) -> None:
        from scapy.all import AsyncSniffer

        self._sniffer = AsyncSniffer(iface=self.interface, filter=self.filter, store=True)
        self._sniffer.start()
        time.sleep(0.5)     # AsyncSniffer gives no readiness signal

    def stop(self) -> None:
        """Make sure the last packets are in the file, stop the tool, write ``path``."""
        if self._sniffer is not None:
            time.sleep(0.3)
            packets = _dedupe_loopback(self._sniffer.stop())
            from scapy.utils import wrpcapng

            wrpcapng(str(self.path), packets)
            self.packets = len(packets)
            self._sniffer = None
            self._probe.close()
            return
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._probe_seen(2.0)
        self.dropped = stop_tool(proc, self._watcher, self._chunks)
        self._proc = None
        self._probe.close()
        if self._raw.exists():
            self.packets = convert_to_pcapng(
                self._raw, self.path, drop_udp_port=self.probe_port,
                comment=f"{self.method} -i {self.interface} '{self.filter}' "
                        "(qosinspect generate)")
            self._raw.unlink()

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        self._probe.close()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _dedupe_loopback(packets: Any) -> list[Any]:
    """scapy sees each loopback packet twice (sent and received): keep the first of each
    identical adjacent pair."""
    out: list[Any] = []
    last = b""
    for pkt in packets:
        raw = bytes(pkt)
        if raw != last:
            out.append(pkt)
        last = raw if raw != last else b""
    return out
