"""Live capture: each tool is proven to capture before the run starts and holds every packet up
to the stop, probes left out; the method is chosen by privilege; the synthetic pcapng converts."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from qosinspect.capture.pcapfile import read_frames
from qosinspect.events import Endpoint
from qosinspect.mqtt.enums import Direction
from qosinspect.testing.synthcap import SynthFrame, pcap_bytes
from qosinspect.testing.tools import require_tool
from qosinspect.traffic import live
from qosinspect.traffic.live import (
    CaptureFailed,
    LiveCapture,
    choose_method,
    dropped_by_kernel,
    dropped_so_far,
    port_filter,
)
from qosinspect.traffic.pcapng import PcapngRecorder, convert_to_pcapng


def _exchange(port: int, srv: socket.socket) -> None:
    c = socket.create_connection(("127.0.0.1", port))
    a, _ = srv.accept()
    c.sendall(b"hello")
    assert a.recv(10) == b"hello"
    c.close()
    a.close()


@pytest.mark.parametrize("method", ["dumpcap", "tcpdump", "scapy"])
def test_tool_captures_everything_from_the_first_packet(tmp_path: Path, method: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a live capture needs root")
    if method == "scapy":
        pytest.importorskip("scapy")
    else:
        require_tool(method)
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        path = tmp_path / f"{method}.pcapng"
        cap = LiveCapture(path, [port], method=method)
        cap.start()          # returns only once a probe was seen in the file
        _exchange(port, srv)
        cap.stop()
    frames = list(read_frames(path))
    # SYN, SYN-ACK, ACK, data, ACK, then the FIN exchange: nothing lost at either end, and no
    # probe datagram left in the file.
    assert len(frames) >= 7 and cap.packets == len(frames)
    assert cap.dropped == (None if method == "scapy" else 0)     # the tool's own count
    assert all(f.data[12:14] == b"\x08\x00" and f.data[23] == 6 for f in frames)
    syn = frames[0].data[14 + 20 + 13]
    assert syn & 0x02 and not syn & 0x10


def test_kernel_drops_are_read_from_the_tools_statistics() -> None:
    tcpdump = (b"tcpdump: listening on lo, link-type EN10MB (Ethernet), snapshot length 262144"
               b" bytes\n96 packets captured\n570 packets received by filter\n"
               b"346 packets dropped by kernel\n")
    dumpcap = (b"Capturing on 'Loopback: lo'\nPackets captured: 40\nPackets received/dropped "
               b"on interface 'Loopback: lo': 40/12 (pcap:12/dumpcap:0/flushed:0/ps_ifdrop:0) "
               b"(76.9%)\n")
    assert dropped_by_kernel(tcpdump) == 346
    assert dropped_by_kernel(tcpdump.replace(b"346 packets", b"1 packet")) == 1
    assert dropped_by_kernel(dumpcap) == 12
    assert dropped_by_kernel(b"Capturing on 'Loopback: lo'\n") is None     # killed: no figures


def test_drops_while_tcpdump_runs() -> None:
    """tcpdump's SIGUSR1 statistics (one line, counts since its start; as tcpdump 4.99 prints
    them): the newest line is the count so far, and they do not add to the final figures."""
    lines = [b"tcpdump: listening on lo, link-type EN10MB (Ethernet), snapshot length 262144 "
             b"bytes\n"]
    assert dropped_so_far(lines) is None
    lines.append(b"tcpdump: 52 packets captured, 60 packets received by filter, 8 packets "
                 b"dropped by kernel\n")
    lines.append(b"tcpdump: 90 packets captured, 101 packets received by filter, 11 packets "
                 b"dropped by kernel\n")
    assert dropped_so_far(lines) == 11
    lines += [b"96 packets captured\n", b"110 packets received by filter\n",
              b"14 packets dropped by kernel\n"]
    assert dropped_so_far(lines) == 11
    assert dropped_by_kernel(b"".join(lines)) == 14


def test_choose_method_by_privilege(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live.os, "geteuid", lambda: 1000)
    assert choose_method("auto") == "tap"
    assert choose_method("tap") == "tap"
    with pytest.raises(CaptureFailed, match="needs root"):
        choose_method("scapy" if live._have_scapy() else "tcpdump")
    with pytest.raises(CaptureFailed, match="unknown capture method"):
        choose_method("wireshark")
    monkeypatch.setattr(live.os, "geteuid", lambda: 0)
    monkeypatch.setattr(live, "_tool", lambda name: None)
    monkeypatch.setattr(live, "_have_scapy", lambda: False)
    assert choose_method("auto") == "tap"
    with pytest.raises(CaptureFailed, match="dumpcap is not installed"):
        choose_method("dumpcap")
    assert port_filter([1884, 1883, 1883]) == "tcp port 1883 or tcp port 1884"


def test_a_tool_that_cannot_capture_is_reported(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a live capture needs root")
    require_tool("dumpcap")
    cap = LiveCapture(tmp_path / "x.pcapng", [1], method="dumpcap", interface="nosuchif0")
    with pytest.raises(CaptureFailed, match="did not start capturing on nosuchif0"):
        cap.start(timeout=5)


def test_recorder_and_conversion(tmp_path: Path) -> None:
    rec = PcapngRecorder(tmp_path / "tap.pcapng")
    key = rec.opened(1_700_000_000_000_000_000, Endpoint("127.0.0.1", 40000),
                     Endpoint("127.0.0.1", 1883))
    rec.data(key, 1_700_000_000_000_100_000, Direction.C2B, b"\x10" + b"x" * 70_000)
    rec.closed(key, 1_700_000_000_000_200_000, "rst", Direction.B2C)
    rec.close()
    frames = list(read_frames(tmp_path / "tap.pcapng"))
    # handshake (3), 70,001 bytes in two segments (no IP packet over 65,535), one RST
    assert len(frames) == 6 and rec.frames == 6
    assert [len(f.data) - 54 for f in frames[3:5]] == [65_000, 5_001]
    assert frames[5].data[14 + 20 + 13] & 0x04
    # Conversion keeps nanoseconds and bytes, as pcap or pcapng by the name ...
    n = convert_to_pcapng(tmp_path / "tap.pcapng", tmp_path / "out.pcap")
    again = list(read_frames(tmp_path / "out.pcap"))
    assert n == 6 and [(f.ts_ns, f.data) for f in again] == [(f.ts_ns, f.data) for f in frames]
    # ... and leaves out the capture's readiness probes (UDP to the probe port), nothing else.
    udp = struct.pack("!HHHH", 5000, 4242, 12, 0) + b"prob"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    probe = SynthFrame(frames[2].ts_ns + 1, b"\x00" * 12 + b"\x08\x00" + ip + udp,
                       14 + len(ip) + len(udp))
    mixed = [SynthFrame(f.ts_ns, f.data, f.orig_len) for f in frames]
    (tmp_path / "mixed.pcap").write_bytes(pcap_bytes([*mixed[:3], probe, *mixed[3:]],
                                                     nanos=True))
    assert convert_to_pcapng(tmp_path / "mixed.pcap", tmp_path / "clean.pcapng",
                             drop_udp_port=4242) == 6
    assert convert_to_pcapng(tmp_path / "mixed.pcap", tmp_path / "kept.pcapng",
                             drop_udp_port=4243) == 7
