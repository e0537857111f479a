"""What a user comparing ``qosinspect decode`` with Wireshark, or feeding it bad files, ran
into: the table's time column, and the tshark engine on files that are not captures."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from qosinspect.cli import main
from qosinspect.drivers import iter_capture_events as iter_events
from qosinspect.errors import CaptureError
from qosinspect.testing.tools import PROJECT_ROOT, require_tool

CAPTURES = PROJECT_ROOT / "captures"


def _decode(*args: str, input: bytes | None = None) -> tuple[int, str, str]:
    res = CliRunner().invoke(main, ["decode", *args], input=input)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exc_info
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize("name", ["mosquitto-redelivery.pcap", "gen-reconnect.pcap"])
def test_table_times_are_wiresharks_and_the_ladders(name: str) -> None:
    """The time column counts from the capture's first frame (here the first SYN), as
    tshark's summary lines and ``ladder``/``--since`` do, not from the first MQTT packet."""
    require_tool("tshark")
    path = CAPTURES / name
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e",
                          "frame.number", "-e", "frame.time_relative"],
                         capture_output=True, text=True, check=True).stdout
    relative = {int(f): float(t) for f, t in (ln.split("\t") for ln in out.splitlines())}
    code, table, _ = _decode(str(path), "-p", "1884")
    assert code == 0
    lines = table.splitlines()
    assert float(lines[0].split()[1]) > 0          # the CONNECT is not the first frame
    for line in lines:
        frame, t = line.split()[:2]
        assert abs(float(t) - relative[int(frame)]) < 1e-6, line
    ladder = CliRunner().invoke(main, ["ladder", str(path), "--conn", "0"])
    assert ladder.exit_code == 0
    first = next(ln for ln in ladder.stdout.splitlines() if "CONNECT" in ln)
    assert first.split()[0] == next(ln for ln in lines if "CONNECT" in ln).split()[1]


@pytest.mark.parametrize("content, what", [
    (b"", "not a capture file (too short)"),
    (gzip.compress(b"hello, not a capture"), "not a pcap or pcapng file (magic 0x6c6c6568)"),
])
def test_tshark_engine_refuses_what_is_not_a_capture(tmp_path: Path, content: bytes,
                                                     what: str) -> None:
    """tshark itself reads an empty file, or a gzip of some text, as an empty capture and
    exits 0; the engine says what the native one says."""
    require_tool("tshark")
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=r"bad\.pcap, byte offset 0: " + what.replace(
            "(", r"\(").replace(")", r"\)")):
        list(iter_events(path, engine="tshark"))
    code, out, err = _decode("--engine", "tshark", "-", input=content)
    assert code == 1 and out == "" and f"Error: -, byte offset 0: {what}" in err


def test_tshark_engine_error_says_tshark_once(tmp_path: Path) -> None:
    require_tool("tshark")
    data = (CAPTURES / "mosquitto-redelivery.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:3000])
    with pytest.raises(CaptureError) as info:
        list(iter_events(cut, engine="tshark"))
    assert "cut short" in str(info.value) and "tshark: tshark:" not in str(info.value)
