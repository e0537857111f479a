"""Test support: find the real external tools and the shared captures, or fail clearly.

Lives in the package (not in a conftest) so every test folder can import it the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..traffic.live import LiveCapture

__all__ = [
    "COMMUNITY_PORTS",
    "IN_CI",
    "PROJECT_ROOT",
    "SHARED_CAPTURES",
    "community_captures",
    "free_port",
    "loopback_capture",
    "require_tool",
    "shared_captures",
    "shipped_same_broker",
    "stop_process",
    "wait_port",
]

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
SHARED_CAPTURES = PROJECT_ROOT.parent / "shared" / "captures"
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """The path of an external program a test needs.

    Missing: the test is skipped on a developer's machine, but fails under CI=true, where every
    real component (tshark, tcpdump, mosquitto) must have been installed by the test command.
    """
    import pytest

    path = shutil.which(name) or next(
        (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()),
        None)
    if path is None:
        message = f"{name} is not installed (make test installs it with apt-get as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def shared_captures() -> Path:
    """``../shared/captures`` beside the project root, or a clear test failure."""
    import pytest

    if not SHARED_CAPTURES.is_dir():
        pytest.fail(f"the shared captures folder {SHARED_CAPTURES} is missing: tests read the "
                    "public MQTT captures from ../shared/captures beside the project root")
    return SHARED_CAPTURES


#: MQTT ports of the community captures that do not use 1883 (Wireshark needs them as
#: ``-d tcp.port==1337,mqtt``; see ../shared/captures/community/SOURCES.md).
COMMUNITY_PORTS: dict[str, tuple[int, ...]] = {
    "alivcor__presill__mqtt.pcap": (1337,),
    "alivcor__presill__mqtt_start.pcap": (1337,),
}


def community_captures() -> list[tuple[Path, tuple[int, ...]]]:
    """``../shared/captures/community``'s captures with the MQTT port(s) of each (an empty list
    when the folder is missing: callers that need them check with :func:`shared_captures`)."""
    return [(path, COMMUNITY_PORTS.get(path.name, (1883,)))
            for path in sorted((SHARED_CAPTURES / "community").glob("*.pcap"))]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, for a program that cannot be told
    "any port" (mosquitto). Code that can listen on port 0 should, and read the port back:
    between this call and the program's bind another process may take the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, *,
              proc: subprocess.Popen[Any] | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``; ``TimeoutError``
    after ``timeout`` seconds, ``RuntimeError`` as soon as ``proc`` (the program expected to
    listen there) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the program meant to listen on port {port} exited "
                               f"({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def stop_process(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM,
                 timeout: float = 10.0) -> int:
    """Stop a program a test started, whatever state it is in: ``sig`` if it still runs, a
    kill after ``timeout`` seconds, its pipes closed. Returns its exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return proc.returncode


@contextlib.contextmanager
def loopback_capture(path: Path, ports: Iterable[int], tool: str = "tcpdump"
                     ) -> Iterator[LiveCapture]:
    """A real capture of ``ports`` on the loopback while the body runs, through the product's
    :class:`~qosinspect.traffic.live.LiveCapture`: a kernel buffer large enough for a busy
    machine, proven to capture (a probe packet reached the file) before the body runs, and
    proven to hold every packet (one more probe) when it ends; the probes are left out of
    ``path``. A test compares the file with what it expects only after the ``with``.

    When the tool cannot capture (missing, or not root) the test is skipped on a developer's
    machine and fails under CI=true, as :func:`require_tool` does.
    """
    import pytest

    from ..traffic.live import CaptureFailed, LiveCapture

    require_tool(tool)
    capture = LiveCapture(path, sorted(set(ports)), method=tool)
    try:
        capture.start()
    except CaptureFailed as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    try:
        yield capture
    finally:
        capture.stop()


def shipped_same_broker(entry: dict[str, Any]) -> tuple[tuple[str, ...], ...]:
    """A captures.json entry's ``same_broker`` groups (the generator's proxy ports in front of
    one broker), as :class:`~qosinspect.analysis.options.AnalysisOptions` takes them."""
    return tuple(tuple(group) for group in entry.get("same_broker", ()))
