"""TCP evidence equal to Wireshark's ``tcp.analysis`` flags (issue 11 §5), frame by frame.

The oracle is tshark's own output. The captures with real loss are made by
captures/scripts/tcp_loss.py (three network namespaces joined by a user-space bridge that drops
client segments and holds broker ACKs; the kernel here has no netem): the client side shows
the retransmissions and duplicate ACKs, the broker side the segments lost before capture and the
fast retransmissions; the ``tcp-loss-tls`` pair is the same over TLS, with a second connection
that has none. Every other capture (shipped, shared, community, TLS included) must agree too,
with its ACKed-unseen segments and its retransmissions.

The flags come from the decoder's own pass (the reassembler runs the rules, the fast paths take
the plain case): equal, on every capture, on the C and the pure path, to the rules run over
every segment in a pass of their own (``tcp_flags``), and the tshark engine gives the same.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from qosinspect import _accel
from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.tcp_evidence import (
    REPORTED,
    evidence_counts,
    evidence_frame,
    evidence_summary,
)
from qosinspect.capture import iter_events
from qosinspect.capture.decoder import CaptureDecoder
from qosinspect.capture.tcp_analysis import KINDS, tcp_flags
from qosinspect.events import ConnectionOpened, TcpEvidence
from qosinspect.testing.tools import PROJECT_ROOT, SHARED_CAPTURES, require_tool

FIELD = PROJECT_ROOT / "captures" / "field"
LOSS = [FIELD / "tcp-loss-client-side.pcap", FIELD / "tcp-loss-broker-side.pcap"]
TLS_LOSS = [FIELD / "tcp-loss-tls-client-side.pcap", FIELD / "tcp-loss-tls-broker-side.pcap"]
ALL = (sorted((PROJECT_ROOT / "captures").glob("*.pcap")) + sorted(SHARED_CAPTURES.glob("*.pcap"))
       + sorted((SHARED_CAPTURES / "community").glob("*.pcap")) + sorted(FIELD.glob("*.pcap*")))
assert set(REPORTED) <= set(KINDS)


def tshark_flags(path: Path) -> set[tuple[int, int, str]]:
    """(frame, tcp.stream, kind) of every flag tshark sets."""
    cmd = [require_tool("tshark"), "-n", "-r", str(path), "-Y", "tcp.analysis.flags", "-T",
           "fields", "-e", "frame.number", "-e", "tcp.stream"]
    for kind in KINDS:
        cmd += ["-e", f"tcp.analysis.{kind}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    flags = set()
    for line in out.splitlines():
        frame, stream, *values = line.split("\t")
        flags |= {(int(frame), int(stream), k) for k, v in zip(KINDS, values, strict=True) if v}
    return flags


def ours(path: Path) -> set[tuple[int, int, str]]:
    return {(e.frame, e.conn_id, e.kind) for e in tcp_flags(str(path))}


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_same_flags_as_tshark(path: Path) -> None:
    assert ours(path) == tshark_flags(path)


def decoder_flags(path: Path, pure: bool) -> tuple[set[tuple[int, int, str]], set[int]]:
    """(frame, conn_id, kind) of the decoder's TcpEvidence, and its connections."""
    if pure:
        with _accel.pure():
            dec = CaptureDecoder(str(path))
    else:
        dec = CaptureDecoder(str(path))
    events = list(dec)
    return ({(e.frame, e.conn_id, e.kind) for e in events if type(e) is TcpEvidence},
            {e.conn.conn_id for e in events if type(e) is ConnectionOpened})


@pytest.mark.parametrize("pure", [False, True], ids=["c", "pure"])
@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_the_decoders_own_pass_flags_the_same(path: Path, pure: bool) -> None:
    """One pass: the decoder's flags on its connections are the rules' over every segment."""
    if not pure and not _accel.enabled():
        pytest.skip("the C accelerator is not built")
    got, conns = decoder_flags(path, pure)
    assert got == {f for f in ours(path) if f[1] in conns}


def test_late_segments_of_a_closed_connection_are_flagged_on_it() -> None:
    """After both FINs the decoder no longer reassembles, but Wireshark still flags the last ACK
    (here an ACK of a segment the capture lacks, frame 12): the flags stay on the connection."""
    path = SHARED_CAPTURES / "suricata-verify__mqtt-events-invalid-qos.pcap"
    got, _ = decoder_flags(path, False)
    assert (12, 0, "ack_lost_segment") in got and got == tshark_flags(path)


def test_a_tls_capture_has_its_evidence_on_the_connection_where_it_happened() -> None:
    """Two TLS connections through the lossy bridge: only the publisher's segments are dropped.
    The report puts the loss, the fast retransmission and the duplicate ACKs on its connection
    (conn 0, encrypted, in the direction Wireshark shows them) and none on the subscriber's."""
    report = analyze_capture(TLS_LOSS[1]).report()
    assert report["connections"] == 2
    ev = report["tcp_evidence"]
    assert ev["total"]["lost_segment"] >= 1 and ev["total"]["fast_retransmission"] >= 1
    assert ev["total"]["duplicate_ack"] >= 2
    assert {e["conn_id"] for e in ev["connections"]} == {0}
    by_dir = {e["direction"]: e for e in ev["connections"]}
    assert by_dir["c2b"]["transport"] == "tls" and by_dir["c2b"]["broker"].endswith(":8883")
    assert set(by_dir["c2b"]["counts"]) >= {"lost_segment", "fast_retransmission"}
    assert set(by_dir["b2c"]["counts"]) == {"duplicate_ack"}
    assert by_dir["c2b"]["counts"]["lost_segment"] == len(by_dir["c2b"]["frames"]["lost_segment"])
    theirs = tshark_flags(TLS_LOSS[1])
    assert {f for _, _, f in theirs} >= {"lost_segment", "fast_retransmission"}
    assert {(fr, k) for fr, conn, k in theirs if conn == 0 and k == "lost_segment"} == {
        (fr, "lost_segment") for fr in by_dir["c2b"]["frames"]["lost_segment"]}


@pytest.mark.parametrize("path", [*LOSS, *TLS_LOSS, FIELD / "mosquitto-tls-dsb.pcapng",
                                  PROJECT_ROOT / "captures" / "mosquitto-tls.pcap",
                                  PROJECT_ROOT / "captures" / "gen-mqtt5.pcap"],
                         ids=lambda p: p.name)
def test_the_tshark_engine_gives_the_same_evidence(path: Path) -> None:
    require_tool("tshark")
    native = analyze_capture(path).report()["tcp_evidence"]
    assert analyze_capture(path, engine="tshark").report()["tcp_evidence"] == native


def test_the_loss_captures_have_each_kind_of_evidence() -> None:
    client, broker = (evidence_summary(tcp_flags(str(p))) for p in LOSS)
    assert client["retransmission"] >= 3 and client["duplicate_ack"] >= 3
    assert client["spurious_retransmission"] >= 1
    assert broker["lost_segment"] >= 2 and broker["fast_retransmission"] >= 2
    assert broker["duplicate_ack"] >= 3


def test_counts_per_connection_and_direction_with_frames() -> None:
    evs = list(tcp_flags(str(LOSS[1])))
    counts = evidence_counts(evs)
    assert list(counts.columns[:3]) == ["conn_id", "src", "dst"]
    row = counts[counts["dst"].str.endswith(":1883")].iloc[0]  # client -> broker
    assert row["lost_segment"] == len(row["frames_lost_segment"]) >= 2
    back = counts[counts["src"].str.endswith(":1883")].iloc[0]
    assert back["duplicate_ack"] >= 3 and back["lost_segment"] == 0
    table = evidence_frame(evs)
    assert len(table) == len(evs) and str(table["ts"].dtype) == "datetime64[ns, UTC]"
    # the connection numbers are the decoder's
    opened = {e.conn.conn_id for e in iter_events(LOSS[1]) if type(e) is ConnectionOpened}
    assert set(counts["conn_id"]) <= opened


@pytest.mark.tools
def test_real_loss_recorded_live_agrees_with_tshark(tmp_path: Path) -> None:
    """Records new loss captures (root: network namespaces, tcpdump, mosquitto, paho)."""
    for tool in ("unshare", "nsenter", "tcpdump", "mosquitto", "ip", "tshark"):
        require_tool(tool)
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and tcpdump")
    proc = subprocess.run(["unshare", "-n", str(PROJECT_ROOT / ".venv" / "bin" / "python"),
                           str(PROJECT_ROOT / "captures" / "scripts" / "tcp_loss.py"),
                           str(tmp_path), "150"], capture_output=True, text=True, timeout=150,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    for name in ("tcp-loss-client-side.pcap", "tcp-loss-broker-side.pcap"):
        theirs = tshark_flags(tmp_path / name)
        assert ours(tmp_path / name) == theirs
        assert {k for _, _, k in theirs} & {"retransmission", "lost_segment"}
