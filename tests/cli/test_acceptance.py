"""What a user running the analysis commands by hand ran into (an acceptance pass over every
command and option): error messages that name things right, time windows checked before the
long part, and CSV times that keep their nanoseconds and agree with the JSON."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from qosinspect.cli import main
from qosinspect.testing.tools import PROJECT_ROOT

CAPTURES = PROJECT_ROOT / "captures"
REDELIVERY = CAPTURES / "mosquitto-redelivery.pcap"
RECONNECT = str(CAPTURES / "gen-reconnect.pcap")   # nanosecond pcap; tcp.streams 0, 1, 5 are MQTT
TLS = str(CAPTURES / "mosquitto-tls.pcap")          # TLS on port 51957: no MQTT without -p


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exc_info
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("command", ["report", "flows", "export", "plot", "ladder"])
def test_a_truncated_capture_is_named_once(tmp_path: Path, command: str) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(REDELIVERY.read_bytes()[:3000])
    extra = {"export": ["-o", str(tmp_path / "x")], "plot": ["-o", str(tmp_path / "p")],
             "ladder": ["--conn", "0"]}.get(command, [])
    code, out, err = run(command, str(cut), *extra)
    assert code == 1 and out                      # what was read before the cut is shown
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"Error: {cut}, frame 32, byte offset 2897: truncated record")
    assert last.count(str(cut)) == 1, last


@pytest.mark.parametrize("command", ["ladder", "plot"])
def test_an_unreadable_time_fails_before_the_capture_is_read(tmp_path: Path,
                                                             command: str) -> None:
    extra = ["--client", "x"] + (["-o", str(tmp_path / "p")] if command == "plot" else [])
    code, _, err = run(command, str(tmp_path / "missing.pcap"), *extra, "--since", "noon")
    assert code == 2 and "--since" in err and "'noon'" in err and "missing.pcap" not in err


@pytest.mark.parametrize("command", ["ladder", "plot"])
def test_since_after_until_is_an_error_not_an_empty_diagram(tmp_path: Path,
                                                            command: str) -> None:
    extra = ["-o", str(tmp_path / "p")] if command == "plot" else []
    code, out, err = run(command, str(REDELIVERY), "--client", "redeliver-v4", *extra,
                         "--since", "3", "--until", "1")
    assert code == 2 and "'3' is after --until '1'" in err and not out
    # an ISO time and seconds mix: both resolved against the capture start
    code, out, _ = run(command, str(REDELIVERY), "--client", "redeliver-v4", *extra,
                       "--since", "2026-11-25T06:28:28Z", "--until", "0.5")
    assert code == 0 and out


def test_unknown_connection_lists_the_numbers_there_are() -> None:
    # conn numbers are tcp.stream numbers: refused SYNs between them take 2, 3 and 4
    code, _, err = run("ladder", RECONNECT, "--conn", "2")
    assert code == 1 and "no connection 2 in the capture (connections: 0, 1, 5)" in err
    code, out, _ = run("ladder", RECONNECT, "--conn", "5")
    assert code == 0 and "sub-persistent" in out
    code, _, err = run("ladder", TLS, "--conn", "0")
    assert code == 1 and "(it has no MQTT connection)" in err and "0..-1" not in err


def test_plot_of_an_unknown_client_names_the_clients_and_writes_nothing(tmp_path: Path) -> None:
    out_dir = tmp_path / "plots"
    code, _, err = run("plot", str(REDELIVERY), "-o", str(out_dir), "--client", "nobody")
    assert code == 1
    assert "no client 'nobody' in the capture (clients: dup-pub-v4, " in err
    assert not out_dir.exists() or not list(out_dir.iterdir())


_ISO_NS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z")


def test_csv_times_keep_nanoseconds_and_match_json_and_parquet(tmp_path: Path) -> None:
    code, out, _ = run("flows", RECONNECT, "--format", "json")
    assert code == 0
    js = json.loads(out)
    code, out, _ = run("flows", RECONNECT, "--format", "csv")
    assert code == 0
    header, first = out.splitlines()[:2]
    row = dict(zip(header.split(","), first.split(","), strict=True))
    assert _ISO_NS.fullmatch(row["t_publish"]), row["t_publish"]
    assert row["t_publish"] == js[0]["t_publish"]          # one form in CSV and JSON
    code, _, _ = run("export", RECONNECT, "-o", str(tmp_path / "csv"), "--format", "csv")
    assert code == 0
    code, _, _ = run("export", RECONNECT, "-o", str(tmp_path / "pq"))
    assert code == 0
    for table, cols in (("exchanges", ["t_publish", "t_puback", "t_pubcomp", "t_end"]),
                        ("packets", ["ts"]), ("connections", ["t_open", "t_connack"])):
        pq = pd.read_parquet(tmp_path / "pq" / f"{table}.parquet")
        csv = pd.read_csv(tmp_path / "csv" / f"{table}.csv", parse_dates=cols)
        for col in cols:
            assert str(csv[col].dtype) == "datetime64[ns, UTC]", (table, col)
            assert csv[col].equals(pq[col]), (table, col)
        assert pq[cols[0]].dt.nanosecond.any()      # the capture has sub-microsecond times


def test_report_says_when_it_found_no_mqtt() -> None:
    """All zeros would read as 'nothing went wrong': TLS on port 51957 without -p is no MQTT
    at all, and the report says where it looked and what to give."""
    code, out, _ = run("report", TLS)
    assert code == 0 and "NOTE: no MQTT connection in this capture" in out and "--port N" in out
    code, out, _ = run("report", TLS, "-p", "51957")
    assert code == 0 and "no MQTT connection" not in out and "2 connection(s) encrypted" in out
    code, out, _ = run("report", str(REDELIVERY), "--format", "markdown")
    assert code == 0 and "NOTE" not in out


def _records(data: bytes) -> list[int]:
    """The offsets of the records of a little-endian pcap."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    offsets = []
    pos = 24
    while pos + 16 <= len(data):
        offsets.append(pos)
        pos += 16 + int.from_bytes(data[pos + 8:pos + 12], "little")
    return offsets


def _shift_second_half(src: Path, dst: Path, seconds: int) -> None:
    """A copy of a little-endian pcap whose second half of records is ``seconds`` later."""
    data = bytearray(src.read_bytes())
    offsets = _records(bytes(data))
    for off in offsets[len(offsets) // 2:]:
        ts = int.from_bytes(data[off:off + 4], "little") + seconds
        data[off:off + 4] = ts.to_bytes(4, "little")
    dst.write_bytes(bytes(data))


def test_flows_table_times_are_the_one_iso_form_in_utc_with_dates(tmp_path: Path) -> None:
    """The table spells times as csv and json do (the output layer's one form: it showed the
    time of day to the microsecond), so a time copied from any of them selects the same."""
    code, out, _ = run("flows", str(REDELIVERY))
    assert code == 0 and out.strip().endswith("26 exchanges")
    assert " 2026-11-25T06:28:28.440369000Z " in out     # a microsecond pcap: 000 ns
    later = tmp_path / "two-days.pcap"
    _shift_second_half(REDELIVERY, later, 86400)
    code, out, _ = run("flows", str(later))
    assert code == 0 and out.strip().endswith("26 exchanges")
    assert " 2026-11-25T06:28:28.440369000Z " in out and " 2026-11-26T06:28:" in out


def test_the_commands_a_report_suggests_see_what_the_report_saw(tmp_path: Path) -> None:
    """The 'details:' commands carry the decoder options the report was given: without
    -p 1884, export of gen-reconnect.pcap misses the three reconnection attempts refused on
    the clients' port 1884 that the report counted."""
    code, out, _ = run("report", RECONNECT, "-p", "1884", "--format", "json")
    assert code == 0
    data = json.loads(out)
    counted = data["connections"] + data["tcp_attempts_refused"]   # the table lists both
    assert (data["connections"], data["tcp_attempts_refused"]) == (3, 3)
    code, out, _ = run("report", RECONNECT, "-p", "1884")
    assert code == 0
    suggested = re.search(r"qosinspect export (.*) -o DIR \(connections, reconnects\)", out)
    assert suggested and suggested.group(1) == f"{RECONNECT} -p 1884", out
    args = shlex.split(suggested.group(1))
    code, _, _ = run("export", *args, "-o", str(tmp_path))
    assert code == 0
    assert len(pd.read_parquet(tmp_path / "connections.parquet")) == counted
    spaced = tmp_path / "my capture.pcap"
    spaced.write_bytes(Path(RECONNECT).read_bytes())
    code, out, _ = run("report", str(spaced), "--mqtt-version", "5", "--no-detect")
    assert code == 0
    assert f"qosinspect flows '{spaced}' --no-detect --mqtt-version 5 --outcome" in out


def test_times_pasted_from_flows_select_to_the_nanosecond() -> None:
    """--since/--until take the times flows prints: the JSON's to the nanosecond (they were
    cut to microseconds, so --until t_puback left that PUBACK out), the table's (the same
    form) and a time of day (on the capture's date; it was refused)."""
    qos1 = str(CAPTURES / "gen-qos1.pcap")
    code, out, _ = run("flows", qos1, "--format", "json", "--qos", "1")
    assert code == 0
    ex = next(r for r in json.loads(out) if not r["t_puback"].endswith("000Z"))
    code, out, _ = run("ladder", qos1, "--conn", str(ex["conn"]), "--since", ex["t_publish"],
                       "--until", ex["t_puback"])
    assert code == 0
    arrows = [ln for ln in out.splitlines() if "|" in ln]
    assert f"PUBLISH q1 id={ex['packet_id']} " in arrows[0], out
    assert f"PUBACK id={ex['packet_id']} " in arrows[-1], out
    code, table, _ = run("flows", qos1, "--qos", "1")
    shown = next(ln for ln in table.splitlines() if ln.split()[0] == str(ex["ex_id"]))
    shown_iso = shown.split()[8]                              # t_publish, as the JSON says
    assert shown_iso == ex["t_publish"]
    tod = shown_iso.split("T")[1][:15] + "Z"                  # 06:45:46.379308Z
    _, by_tod, _ = run("ladder", qos1, "--conn", str(ex["conn"]), "--since", tod,
                       "--until", ex["t_puback"])
    _, by_iso, _ = run("ladder", qos1, "--conn", str(ex["conn"]),
                       "--since", ex["t_publish"][:26] + "Z", "--until", ex["t_puback"])
    assert by_tod == by_iso and "PUBLISH" in by_tod


def test_flows_client_takes_the_session_key_of_a_connection_without_connect(
        tmp_path: Path) -> None:
    """A capture started mid-session: ladder and report call the connection 'conn:0' (no
    client id); flows --client conn:0 found nothing."""
    data = REDELIVERY.read_bytes()
    mid = tmp_path / "mid.pcap"
    mid.write_bytes(data[:24] + data[_records(data)[19]:])      # from frame 20 on
    code, out, _ = run("ladder", str(mid), "--client", "conn:0")
    assert code == 0 and "PUBLISH q2 id=3" in out
    code, out, _ = run("flows", str(mid), "--client", "conn:0", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and [(r["conn"], r["packet_id"]) for r in rows] == [(0, 3), (0, 4)]
    assert all(r["client_id"] is None for r in rows)
    code, out, _ = run("flows", str(mid), "--client", "redeliver-v5", "--format", "json")
    assert code == 0 and {r["client_id"] for r in json.loads(out)} == {"redeliver-v5"}
