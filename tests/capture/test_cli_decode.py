"""``qosinspect decode``: every format, the options, and bad input (message, exit code, no
traceback, packets before the problem still printed)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from qosinspect.capture.lines import FIELDS
from qosinspect.cli import main
from qosinspect.cli.decode import Progress
from qosinspect.testing.tools import PROJECT_ROOT, require_tool, shared_captures

CAPTURES = PROJECT_ROOT / "captures"
REDELIVERY = CAPTURES / "mosquitto-redelivery.pcap"
NONSTANDARD = CAPTURES / "mosquitto-nonstandard-port.pcap"
LISTED = ("frame", "ts", "ts_ns", "src", "dst", "direction", "version", "type", "qos", "dup",
          "retain", "packet_id", "topic", "payload_len", "client_id", "reason_code",
          "reason_codes")


def run(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["decode", *args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return result.exit_code, result.stdout, result.stderr


def test_jsonl_has_the_listed_fields_for_every_packet() -> None:
    code, out, _ = run("--format", "jsonl", str(REDELIVERY))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 116
    for row in rows:
        assert set(LISTED) <= set(row)
        assert list(row) == list(FIELDS)
    first = rows[0]
    assert first["type"] == "CONNECT" and first["client_id"] == "redeliver-v4"
    assert first["direction"] == "c2b" and first["version"] == 4 and first["frame"] == 4
    assert first["dst"] == "127.0.0.1:1883"
    assert first["ts"] == pytest.approx(first["ts_ns"] / 1e9)
    pubs = [r for r in rows if r["type"] == "PUBLISH"]
    assert all(r["qos"] in (0, 1, 2) and isinstance(r["dup"], bool) for r in pubs)
    assert any(r["dup"] for r in pubs)  # mosquitto resends with DUP after the reconnect
    assert all(r["qos"] is None for r in rows if r["type"] != "PUBLISH")
    subacks = [r for r in rows if r["type"] == "SUBACK"]
    assert subacks and all(isinstance(r["reason_codes"], list) for r in subacks)
    acks = [r for r in rows if r["type"] in ("PUBACK", "PUBREC", "PUBREL", "PUBCOMP")]
    assert acks and all(r["reason_code"] == 0 and r["packet_id"] for r in acks)


def test_anomalies_are_jsonl_objects() -> None:
    path = shared_captures() / "suricata-verify__mqtt-events-invalid-qos.pcap"
    code, out, _ = run("--format", "jsonl", str(path))
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    bad = [r for r in rows if r["type"] == "ANOMALY"]
    assert {r["kind"] for r in bad} == {"invalid_qos", "stream_gap"}
    assert all(r["detail"] and r["frame"] for r in bad)


def test_csv_matches_jsonl() -> None:
    _, out_csv, _ = run("--format", "csv", str(REDELIVERY))
    _, out_json, _ = run("--format", "jsonl", str(REDELIVERY))
    rows = list(csv.DictReader(io.StringIO(out_csv)))
    objs = [json.loads(line) for line in out_json.splitlines()]
    assert len(rows) == len(objs)
    for row, obj in zip(rows, objs, strict=True):
        assert int(row["frame"]) == obj["frame"] and row["type"] == obj["type"]
        assert row["topic"] == (obj["topic"] or "")
        assert int(row["ts_ns"]) == obj["ts_ns"]


def test_table_like_tshark_summary_lines() -> None:
    code, out, _ = run(str(REDELIVERY))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 116
    assert "127.0.0.1:39008 → 127.0.0.1:1883" in lines[0] and "CONNECT" in lines[0]
    assert lines[0].split()[0] == "4"
    assert any("PUBLISH q1 id=2 dup" in ln for ln in lines)


def test_ports_and_detection() -> None:
    _, detected, _ = run("--format", "jsonl", str(NONSTANDARD))
    _, given, _ = run("--format", "jsonl", "--no-detect", "--port", "18867", str(NONSTANDARD))
    _, off, _ = run("--format", "jsonl", "--no-detect", str(NONSTANDARD))
    assert len(detected.splitlines()) == 26 and detected == given
    assert off == ""


def test_mqtt_version_for_a_capture_without_connect() -> None:
    path = shared_captures() / "suricata-verify__mqtt-ping.pcap"
    _, out, _ = run("--format", "jsonl", "--mqtt-version", "5", str(path))
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["kind"] for r in rows if r["type"] == "ANOMALY"] == ["missing_connect",
                                                                   "version_assumed"]
    assert [(r["type"], r["version"], r["version_assumed"]) for r in rows
            if r["type"] != "ANOMALY"] == [("PINGREQ", 5, True), ("PINGRESP", 5, True)]


def test_stdin_and_gzip() -> None:
    data = gzip.compress(REDELIVERY.read_bytes())
    code, out, _ = run("--format", "jsonl", "-", input=data)
    assert code == 0 and len(out.splitlines()) == 116


@pytest.mark.parametrize("content, what", [
    (b"hello, this is not a capture file", "not a pcap or pcapng file"),
    (b"", "too short"),
])
def test_not_a_capture(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    code, out, err = run(str(path))
    assert code != 0 and out == ""
    assert str(path) in err and what in err and "Traceback" not in err


def test_missing_file(tmp_path: Path) -> None:
    code, _, err = run(str(tmp_path / "nope.pcap"))
    assert code != 0 and "nope.pcap" in err and "Traceback" not in err


def test_truncated_file_prints_packets_before_the_error(tmp_path: Path) -> None:
    data = REDELIVERY.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:len(data) // 2])
    code, out, err = run("--format", "jsonl", str(cut))
    assert code != 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert 20 < len(rows) < 116
    assert "cut.pcap" in err and "frame" in err and "byte offset" in err
    assert "Traceback" not in err


def test_record_length_beyond_the_file(tmp_path: Path) -> None:
    data = bytearray(REDELIVERY.read_bytes())
    data[24 + 8:24 + 12] = (10**6).to_bytes(4, "little")  # first record's captured length
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(bytes(data))
    code, out, err = run(str(path))
    assert code != 0 and out == ""
    assert "frame 1" in err and "byte offset 24" in err and "captured length" in err


def test_tls_keylog_needs_the_tshark_engine(tmp_path: Path) -> None:
    keys = tmp_path / "keys.log"
    keys.write_text("")
    code, _, err = run("--tls-keylog", str(keys), str(REDELIVERY))
    assert code == 2 and "--engine tshark" in err


def test_tshark_engine_same_lines() -> None:
    require_tool("tshark")
    _, native, _ = run("--format", "jsonl", str(NONSTANDARD))
    _, wireshark, _ = run("--format", "jsonl", "--engine", "tshark", str(NONSTANDARD))

    def key(line: str) -> tuple[object, ...]:
        r = json.loads(line)
        return tuple(r[k] for k in ("frame", "src", "dst", "type", "qos", "dup", "retain",
                                    "packet_id", "topic", "payload_len", "client_id"))

    assert [key(x) for x in native.splitlines()] == [key(x) for x in wireshark.splitlines()]


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(main, ["decode", "--help"])
    assert result.exit_code == 0
    for opt in ("--port", "--no-detect", "--mqtt-version", "--format", "--engine",
                "--tls-keylog"):
        assert opt in result.output


def test_progress_bar_draws_and_clears() -> None:
    buf = io.StringIO()
    bar = Progress(buf, lambda: (50, 100), delay=0.0)
    bar.tick(1234)
    assert "50.0%" in buf.getvalue() and "1,234" in buf.getvalue()
    bar.close()
    assert buf.getvalue().endswith("\r")


def test_report_analysis_reports_progress(tmp_path: Path) -> None:
    """``report`` draws the same bar as ``decode`` on a terminal: the analysis calls back every
    16,384 events with the file's position."""
    from qosinspect.analysis.api import analyze_capture
    from qosinspect.mqtt import encode
    from qosinspect.mqtt.packets import Connect, PingReq
    from qosinspect.testing.synthcap import TcpConversation, pcap_bytes, render

    conv = TcpConversation()
    conv.send("c2b", encode(Connect("busy")) + encode(PingReq()) * 40_000, segment_size=1400)
    conv.close()
    path = tmp_path / "busy.pcap"
    path.write_bytes(pcap_bytes(render(conv.segments)))
    seen: list[tuple[int, int, int]] = []
    analyze_capture(path, progress=lambda n, done, total: seen.append((n, done, total)))
    assert [n for n, _, _ in seen] == [16_384, 32_768]
    assert all(0 < done <= total == path.stat().st_size for _, done, total in seen)
    buf = io.StringIO()
    bar = Progress(buf, lambda: (0, 0), delay=0.0)
    bar.update(16_384, 1, 4)
    assert "25.0%" in buf.getvalue() and "16,384 events" in buf.getvalue()
