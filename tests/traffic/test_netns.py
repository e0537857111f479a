"""Real impairment: the namespace and veth pair a netem run creates carry the clients'
connections, are always removed, and a kernel without netem is said plainly before any run."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from qosinspect.cli import main
from qosinspect.traffic.netns import NetemUnavailable, NetnsLink, netem_args
from qosinspect.traffic.scenario import NetemSpec

ROOT = os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("tc") is not None
needs_root = pytest.mark.skipif(not ROOT, reason="network namespaces need root and iproute2")

SCENARIO = """
duration = 2
front_port = 0
[[publishers]]
name = "pub"
[[publishers.topics]]
topic = "n/t{i}"
count = 2
qos = 1
rate = 20
[[subscribers]]
name = "sub"
filters = ["n/#"]
[[faults]]
kind = "netem"
at = 0.3
duration = 1.2
loss = 0.25
delay = 0.005
"""


def _netem_works() -> bool:
    try:
        with NetnsLink():
            return True
    except NetemUnavailable:
        return False


def test_netem_arguments() -> None:
    assert netem_args(NetemSpec(loss=0.05, delay=0.02, jitter=0.005, reorder=0.1,
                                duplicate=0.01)) == [
        "netem", "delay", "20ms", "5ms", "loss", "5%", "reorder", "10%", "duplicate", "1%"]
    assert netem_args(NetemSpec(loss=0.5)) == ["netem", "loss", "50%"]


@needs_root
def test_namespace_carries_connections_and_is_removed() -> None:
    async def echo_once(link: NetnsLink) -> bytes:
        sock = link.listening_socket(0)
        port = sock.getsockname()[1]

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, sock=sock)
        async with server:
            reader, writer = await asyncio.open_connection(link.ns_ip, port)
            writer.write(b"through the veth pair")
            data = await reader.read(100)
            writer.close()
            return data

    link = NetnsLink(require_netem=False)
    with link:
        assert link.exists()
        assert asyncio.run(echo_once(link)) == b"through the veth pair"
        # The socket lives in the namespace: the host's loopback does not have that address.
        out = subprocess.run(["ip", "-o", "addr", "show", "dev", link.host_if],
                             capture_output=True, text=True).stdout
        assert link.host_ip in out and link.ns_ip not in out
    assert not link.exists()


@needs_root
def test_a_netem_run_says_plainly_when_netem_is_missing_and_leaves_nothing(
        tmp_path: Path) -> None:
    if _netem_works():
        pytest.skip("this kernel has netem: test_netem_run_shows_tcp_retransmissions covers it")
    path = tmp_path / "netem.toml"
    path.write_text(SCENARIO)
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    result = CliRunner().invoke(main, ["generate", str(path), "--capture",
                                       str(tmp_path / "x.pcap")])
    assert result.exit_code == 1
    assert "tc netem does not work here (the kernel has no sch_netem module)" in result.output
    assert "Traceback" not in result.output
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert after == before
    assert "qih" not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout


@needs_root
def test_netem_run_shows_tcp_retransmissions(tmp_path: Path) -> None:
    if not _netem_works():
        pytest.skip("this kernel has no sch_netem module (tc qdisc add ... netem fails)")
    from qosinspect.analysis.api import analyze_capture

    path = tmp_path / "netem.toml"
    path.write_text(SCENARIO)
    capture = tmp_path / "netem.pcap"
    result = CliRunner().invoke(main, ["generate", str(path), "--capture", str(capture),
                                       "--capture-method", "dumpcap", "-q"])
    assert result.exit_code == 0, result.output
    report = analyze_capture(capture).report()
    assert report["tcp_retransmissions"] > 0
    assert all(row["incomplete"] == 0 for row in report["per_qos"])


def test_without_root_netem_is_refused_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetemUnavailable, match="needs root"):
        NetnsLink.check()
