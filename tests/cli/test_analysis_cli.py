"""The analysis commands (report, flows, ladder, export, plot) through click's runner."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from qosinspect.cli import main
from qosinspect.testing.tools import PROJECT_ROOT

CAPTURES = PROJECT_ROOT / "captures"
REDELIVERY = str(CAPTURES / "mosquitto-redelivery.pcap")
PAHO = str(CAPTURES / "paho-v311-v5.pcap")
RECONNECT = str(CAPTURES / "gen-reconnect.pcap")
COMMANDS = ("report", "flows", "ladder", "export", "plot")


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exc_info
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    code, out, _ = run(command, "--help")
    assert code == 0 and "Usage:" in out and "CAPTURE" in out


def test_report_json_has_the_documented_shape() -> None:
    code, out, _ = run("report", REDELIVERY, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert {"per_qos", "qos2_incomplete", "connections", "reconnects", "tcp_retransmissions",
            "anomalies"} <= set(data)
    assert [r["qos"] for r in data["per_qos"]] == [0, 1, 2]
    for row in data["per_qos"]:
        assert {"qos", "publishes", "completed", "incomplete", "retransmissions",
                "dup_flagged", "latency_ms"} <= set(row)
        assert set(row["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert set(data["qos2_incomplete"]) == {"no_response", "after_pubrec", "after_pubrel"}
    q1 = data["per_qos"][1]
    assert (q1["publishes"], q1["completed"], q1["dup_flagged"]) == (14, 14, 4)
    assert data["reconnects"] == 2 and data["connections"] == 8


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_report_text_formats(fmt: str) -> None:
    code, out, _ = run("report", REDELIVERY, "--format", fmt)
    assert code == 0
    assert "reconnections: 2" in out and "qosinspect flows" in out
    assert ("| QoS |" in out) == (fmt == "markdown")


def test_flows_columns_and_filters(tmp_path: Path) -> None:
    code, out, _ = run("flows", REDELIVERY, "--format", "json", "--qos", "2")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 12 and {r["qos"] for r in rows} == {2}
    assert rows[0]["t_publish"].startswith("2026-11-25T06:28:") and rows[0]["t_puback"] is None
    assert '"demo/redeliver/' in out  # no escaped slashes
    for col in ("client_id", "conn", "direction", "qos", "packet_id", "topic", "t_publish",
                "n_publish", "dup_seen", "t_puback", "t_pubrec", "t_pubrel", "n_pubrel",
                "t_pubcomp", "outcome", "latency_ms"):
        assert col in rows[0]
    code, out, _ = run("flows", REDELIVERY, "--outcome", "complete_after_reconnect",
                       "--client", "redeliver-v5", "--format", "csv")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1 + 3 and all("redeliver-v5" in line for line in lines[1:])
    code, out, _ = run("flows", REDELIVERY, "--direction", "c2b")
    assert code == 0 and out.strip().endswith("12 exchanges")
    path = tmp_path / "f.parquet"
    code, _, _ = run("flows", REDELIVERY, "--format", "parquet", "-o", str(path))
    df = pd.read_parquet(path)
    assert code == 0 and len(df) == 26 and str(df["t_publish"].dtype) == "datetime64[ns, UTC]"
    code, _, err = run("flows", REDELIVERY, "--format", "parquet")
    assert code == 2 and "--output" in err


def test_ladder_by_client_and_conn() -> None:
    code, out, _ = run("ladder", REDELIVERY, "--client", "redeliver-v4")
    assert code == 0
    assert "[resend]" in out and "connection 0 ended: rst" in out and "sp=1" in out
    code, out2, _ = run("ladder", REDELIVERY, "--conn", "2", "--since", "0.8025",
                        "--until", "0.8026")
    body = [line for line in out2.splitlines()[2:]]
    assert code == 0 and len(body) == 3 and all("c2" in line for line in body)
    assert "PUBLISH q1 id=2" in body[0] and "PUBREL id=3  [resend]" in body[1]


@pytest.mark.parametrize("args,message", [
    (["--client", "nobody"], "no client 'nobody'"),
    (["--conn", "99"], "no connection 99"),
    ([], "exactly one of"),
    (["--client", "redeliver-v4", "--since", "yesterday"], "neither seconds nor"),
])
def test_ladder_errors(args: list[str], message: str) -> None:
    code, out, err = run("ladder", REDELIVERY, *args)
    assert code != 0 and message in err and "Traceback" not in out + err


def test_ladder_iso_window() -> None:
    code, out, _ = run("ladder", REDELIVERY, "--client", "redeliver-v4", "--since",
                       "2026-11-25T06:28:29.2", "--until", "2026-11-25T06:28:29.25")
    assert code == 0
    times = [float(line.split()[0]) for line in out.splitlines()[2:]]
    assert times and all(0.76 <= t <= 0.82 for t in times)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_writes_every_table(tmp_path: Path, fmt: str) -> None:
    code, _out, _ = run("export", PAHO, "-o", str(tmp_path / "x"), "--format", fmt)
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert names == sorted([f"{t}.{fmt}" for t in (
        "packets", "connections", "sessions", "exchanges", "reconnects", "deliveries",
        "anomalies", "tcp_retransmissions", "undecoded_streams", "tcp_evidence")]
        + ["report.json"])
    if fmt == "parquet":
        ex = pd.read_parquet(tmp_path / "x" / "exchanges.parquet")
        assert str(ex["outcome"].dtype) == "category" and len(ex) == 26


def test_plot_writes_pngs(tmp_path: Path) -> None:
    code, _out, _ = run("plot", REDELIVERY, "-o", str(tmp_path), "--client", "redeliver-v5")
    assert code == 0
    for name in ("latency", "timeline", "inflight", "ladder"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_input_is_a_message_not_a_traceback(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"this is not a capture at all")
    extra = {"ladder": ["--conn", "0"], "export": ["-o", str(tmp_path / "o")],
             "plot": ["-o", str(tmp_path / "o")]}.get(command, [])
    for path in (str(bad), str(tmp_path / "missing.pcap")):
        code, out, err = run(command, path, *extra)
        assert code == 1 and err.startswith("Error: ") and "Traceback" not in out + err
        assert path in err


def test_truncated_capture_reports_then_fails(tmp_path: Path) -> None:
    data = Path(REDELIVERY).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:len(data) * 2 // 3])
    code, out, err = run("report", str(cut), "--format", "json")
    assert code == 1 and "Error:" in err and "Traceback" not in err
    report = json.loads(out)
    assert report["connections"] >= 1 and "error" in report["capture"]


def test_tls_capture_is_said_encrypted_and_decrypted_with_the_key_log() -> None:
    from qosinspect.testing.tools import require_tool

    tls = str(CAPTURES / "mosquitto-tls.pcap")
    code, out, _ = run("report", tls, "--port", "51957")
    assert code == 0 and "connection(s) encrypted (TLS)" in out
    require_tool("tshark")
    code, out, _ = run("report", tls, "--port", "51957", "--engine", "tshark",
                       "--tls-keylog", str(CAPTURES / "mosquitto-tls.keylog"), "--format",
                       "json")
    assert code == 0
    assert [r["publishes"] for r in json.loads(out)["per_qos"]] == [2, 2, 2]
    code, _, err = run("report", tls, "--tls-keylog", str(CAPTURES / "mosquitto-tls.keylog"))
    assert code == 2 and "needs --engine tshark" in err


def test_flows_table_with_qos0_exchanges() -> None:
    """QoS 0 exchanges have no packet id (pd.NA) and no handshake, so no latency: the table
    shows '-' for both (it used to fail on the missing packet id)."""
    code, out, _ = run("flows", str(CAPTURES / "gen-qos0.pcap"))
    assert code == 0, out
    rows = [line.split() for line in out.splitlines()[2:-1]]
    assert len(rows) == 40 and out.strip().endswith("40 exchanges")
    header = out.splitlines()[0].split()
    for row in rows:
        assert row[header.index("qos")] == "0"
        assert row[header.index("packet_id")] == "-" and row[-1] == "-"   # latency_ms


def test_qos0_exchanges_have_no_latency() -> None:
    from qosinspect.analysis.api import analyze_capture

    ex = analyze_capture(CAPTURES / "gen-reconnect.pcap").exchanges
    q0 = ex[ex["qos"] == 0]
    assert len(q0) and q0["latency_total"].isna().all() and q0["latency_ms"].isna().all()
    done = ex[(ex["qos"] > 0) & ex["outcome"].isin(["complete", "complete_after_reconnect"])]
    assert len(done) and done["latency_ms"].notna().all() and (done["latency_ms"] > 0).all()


@pytest.mark.parametrize("args", [
    ["decode", RECONNECT], ["flows", RECONNECT], ["flows", RECONNECT, "--format", "csv"],
    ["flows", RECONNECT, "--format", "json"], ["ladder", RECONNECT, "--client", "sub-persistent"],
], ids=lambda a: "-".join(a[:1] + a[2:]))
def test_a_reader_that_goes_away_ends_the_command_quietly(args: list[str]) -> None:
    """``qosinspect ... | head -1``: exit status 0 and nothing on stderr, never a traceback or
    'Broken pipe' error. The pipe is shrunk to one page, and the output is larger than that,
    so the command is still writing when the reader goes (report's few KB are written at once
    and never outgrow a pipe; the same handler covers it)."""
    import fcntl
    import subprocess
    import sys

    command = [str(Path(sys.executable).with_name("qosinspect")), *args]
    whole = subprocess.run(command, capture_output=True, timeout=60, check=True).stdout
    assert len(whole) > 2 * 4096
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen(command, stdout=write_fd, stderr=subprocess.PIPE)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        first = reader.readline()
    assert first                                     # the command had started writing
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert err == b""
