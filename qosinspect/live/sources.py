"""Where ``qosinspect watch`` gets its packets: a pipe, a file being written, a network interface.

Each source opens a :class:`~qosinspect.capture.stream.StreamCapture` (records as they arrive)
and hands it to the capture decoder, so the events are exactly those ``qosinspect decode`` would
give for the same bytes. Rules, and why:

* **An interface is read through dumpcap** (Wireshark's capture engine, the one with a privilege
  model: group ``wireshark``), **or tcpdump when dumpcap is missing**, writing pcapng (pcap) to a
  pipe, with a capture filter built from the ports (:func:`qosinspect.traffic.live.port_filter`)
  so the kernel drops everything else before it is copied. The tool runs in its own session:
  Ctrl-C reaches ``watch``, which then stops the tool with SIGINT, so it flushes and prints its
  statistics, and the packets up to then are read to the end of the pipe.
* **Drops are the kernel's own count**, read from the tool's statistics on stderr: tcpdump's
  while it runs (:meth:`InterfaceSource.poll_drops` asks for them with SIGUSR1 about once a
  second, :func:`qosinspect.traffic.live.dropped_so_far`), dumpcap's when it stops
  (:func:`qosinspect.traffic.live.dropped_by_kernel`): dumpcap has no signal for them, and the
  pcapng it writes to the pipe holds its Interface Statistics Block only at the end.
* **No privileges is a message, not a traceback**: what to do (group ``wireshark``, ``setcap``
  or root) in a :class:`~qosinspect.traffic.live.CaptureFailed`.
* **``--write`` keeps what was read**, byte for byte as it came (the stream's ``tee``), then, when
  it came as pcap (tcpdump, or a pcap on the pipe), rewritten as pcapng with the same frames and
  nanosecond stamps (:func:`qosinspect.traffic.pcapng.convert_to_pcapng`), so ``qosinspect
  report`` on it sees the packets ``watch`` saw.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from ..capture.decoder import CaptureDecoder
from ..capture.stream import StreamCapture, open_stream
from ..errors import CaptureError
from ..traffic.live import (
    STATS_SIGNAL,
    CaptureFailed,
    dropped_so_far,
    find_tool,
    port_filter,
    start_tool,
    stop_tool,
    tool_command,
)

__all__ = ["STATS_EVERY_S", "InterfaceSource", "PacketSource", "StreamSource",
           "no_permission_message"]

_TOOLS = ("dumpcap", "tcpdump")
#: Seconds between two requests of tcpdump's statistics.
STATS_EVERY_S = 1.0
_DENIED = (b"permission", b"not permitted", b"superuser")


def no_permission_message(tool: str, exe: str, iface: str) -> str:
    """What to do when ``tool`` may not capture on ``iface``."""
    group = ("join the group 'wireshark' (sudo dpkg-reconfigure wireshark-common, answer yes; "
             "sudo usermod -aG wireshark $USER; log in again)")
    if tool != "dumpcap":
        group = f"install Wireshark's dumpcap (apt-get install tshark) and {group}"
    return (f"no permission to capture on {iface} with {tool}. Either run as root, or {group}, "
            f"or give {tool} the capabilities: sudo setcap cap_net_raw,cap_net_admin=eip {exe}")


class PacketSource:
    """What :mod:`.run` needs of a source: :meth:`open` the stream, :meth:`request_stop` (the
    source ends its stream soon after), :meth:`finish` (drops known, ``--write`` file done).
    Options (the subclasses pass them on): ``ports``, ``detect_any_port``, ``mqtt_version``
    (the decoder's) and ``write``."""

    name = "-"
    #: Packets the kernel dropped (None: not known or not a capture tool).
    drops: int | None = None
    #: Whether the stream ends by itself once :meth:`request_stop` was called (a capture tool
    #: flushes and closes its pipe); a pipe or followed file is cut instead.
    drains = False

    def __init__(self, *, ports: Iterable[int] = (1883,), detect_any_port: bool = True,
                 mqtt_version: int = 4, write: str | None = None) -> None:
        self.ports = tuple(dict.fromkeys((1883, *ports)))
        self.detect_any_port = detect_any_port
        self.mqtt_version = mqtt_version
        self.write = write
        #: Gets every frame's bytes (``StreamCapture(on_frame=...)``): the flight recorder.
        self.on_frame: Callable[[int, int, int, bytes, int], None] | None = None
        self._tee: IO[bytes] | None = None
        self._tee_path: Path | None = None
        self.stream: StreamCapture | None = None

    def _open_tee(self) -> IO[bytes] | None:
        if self.write is None:
            return None
        target = Path(self.write)
        target.parent.mkdir(parents=True, exist_ok=True)
        self._tee_path = target.with_name(f".{target.name}.part")
        self._tee = self._tee_path.open("wb")
        return self._tee

    def decoder(self, stream: StreamCapture) -> CaptureDecoder:
        self.stream = stream
        return CaptureDecoder(stream, ports=self.ports, detect_any_port=self.detect_any_port,
                              mqtt_version=self.mqtt_version, keep_tcp_stats=False)

    def start(self) -> None:
        """Start capturing (a tool); before :meth:`open`, which may wait for the first bytes."""

    def describe(self) -> dict[str, Any]:
        """What is watched, for the first JSON object of the run."""
        return {"source": self.name, "ports": list(self.ports)}

    def open(self, stop: Callable[[], bool], idle: Callable[[], None]) -> CaptureDecoder:
        raise NotImplementedError

    def request_stop(self) -> None:
        """Ask the source to end (a pipe or a followed file is ended by ``stop()`` instead)."""

    def poll_drops(self) -> int | None:
        """The packets dropped so far, as far as known now (the run's loop asks often: it
        must be cheap)."""
        return self.drops

    def finish(self) -> None:
        """After the stream ended: close what was opened, finish the ``--write`` file."""
        if self._tee is None or self._tee_path is None or self.write is None:
            return
        self._tee.close()
        self._tee = None
        part, target = self._tee_path, Path(self.write)
        if self.stream is not None and self.stream.format == "pcapng" and not \
                str(target).endswith(".pcap"):
            part.replace(target)
        else:
            from ..traffic.pcapng import convert_to_pcapng

            convert_to_pcapng(part, target, comment=f"qosinspect watch {self.name}")
            part.unlink()


class StreamSource(PacketSource):
    """Standard input (``"-"``) or a file (``follow``: still being written, like ``tail -f``)."""

    def __init__(self, path: str, *, follow: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.name = path
        self.follow = follow

    def open(self, stop: Callable[[], bool], idle: Callable[[], None]) -> CaptureDecoder:
        tee = self._open_tee()
        return self.decoder(open_stream(self.name, follow=self.follow, stop=stop, idle=idle,
                                        tee=tee, on_frame=self.on_frame))

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.close()
        super().finish()


class InterfaceSource(PacketSource):
    """A network interface, through dumpcap (or tcpdump) writing to a pipe."""

    drains = True

    def __init__(self, interface: str, *, tool: str = "auto", **options: Any) -> None:
        super().__init__(**options)
        self.interface = interface
        self.name = interface
        if tool == "auto":
            tool = "dumpcap" if find_tool("dumpcap") else "tcpdump"
        if tool not in _TOOLS:
            raise ValueError(f"tool must be dumpcap, tcpdump or auto, not {tool!r}")
        self.tool = tool
        exe = find_tool(tool)
        if exe is None:
            raise CaptureFailed(f"{tool} is not installed (apt-get install "
                                f"{'tshark' if tool == 'dumpcap' else 'tcpdump'})")
        self.exe = exe
        #: The capture filter: the MQTT ports only (the kernel drops the rest).
        self.filter = port_filter(list(self.ports))
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: list[bytes] = []
        self._watcher: threading.Thread | None = None
        self._stopped = False
        self._asked_stats = 0.0

    def command(self) -> list[str]:
        return tool_command(self.tool, self.exe, self.interface, self.filter, "-")

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "ports": list(self.ports), "tool": self.tool,
                "filter": self.filter}

    def start(self, timeout: float = 10.0) -> None:
        """Start the tool; :class:`CaptureFailed` (with what to do) when it cannot capture."""
        proc, self._watcher, capturing = start_tool(self.command(), self.tool, self._stderr,
                                                    timeout, stdout=subprocess.PIPE)
        self._proc = proc
        if proc.poll() is not None or not capturing:
            raise self._failed()

    def _failed(self) -> CaptureFailed:
        """The tool stopped (or never started): why, from its stderr. dumpcap says
        "Capturing on" *before* it finds it may not, so this is also asked when its pipe ends
        before the capture's header."""
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        if self._watcher is not None:
            self._watcher.join(2)
        self._kill()
        text = b"".join(self._stderr)
        if any(word in text.lower() for word in _DENIED):
            return CaptureFailed(no_permission_message(self.tool, self.exe, self.interface))
        return CaptureFailed(f"{self.tool} did not capture on {self.interface}: "
                             f"{text.decode(errors='replace').strip() or 'no output'}")

    def open(self, stop: Callable[[], bool], idle: Callable[[], None]) -> CaptureDecoder:
        if self._proc is None:
            self.start()
        assert self._proc is not None and self._proc.stdout is not None
        tee = self._open_tee()
        try:
            stream = StreamCapture(self._proc.stdout, self.interface, stop=stop, idle=idle,
                                   tee=tee, on_frame=self.on_frame)
        except CaptureError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)      # an empty pipe: the tool is on its way out
            if self._proc.returncode in (None, 0):
                raise
            raise self._failed() from None
        return self.decoder(stream)

    def poll_drops(self) -> int | None:
        """tcpdump: its newest statistics, asked for again when the last ask is
        :data:`STATS_EVERY_S` old; dumpcap: None until it stopped."""
        if self.drops is not None or self.tool != "tcpdump":
            return self.drops
        proc = self._proc
        now = time.monotonic()
        if (proc is not None and not self._stopped and proc.poll() is None
                and now - self._asked_stats >= STATS_EVERY_S):
            self._asked_stats = now
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(STATS_SIGNAL)
            lines = self._stderr
            if len(lines) > 64:     # a line a second for days: keep the first and the newest
                del lines[8:-8]
        return dropped_so_far(self._stderr[-4:])

    def request_stop(self) -> None:
        if self._proc is not None and not self._stopped and self._proc.poll() is None:
            self._stopped = True
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGINT)

    def finish(self) -> None:
        proc = self._proc
        if proc is not None:
            self._stopped = True
            self.drops = stop_tool(proc, self._watcher, self._stderr)
            for f in (proc.stdout, proc.stderr):
                if f is not None:
                    f.close()
            self._proc = None
        super().finish()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
