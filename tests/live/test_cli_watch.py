"""``qosinspect watch`` as a command: a pipe, a followed file, bad input and no privileges."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qosinspect.testing.tools import require_tool

QOSINSPECT = str(Path(sys.executable).with_name("qosinspect"))
CAPTURE = Path(__file__).resolve().parents[2] / "captures" / "gen-reconnect.pcap"
PORTS = ["-p", "1884"]


def test_pipe_report_is_reports_of_the_file_written(tmp_path: Path) -> None:
    """``... | watch -``: JSON lines while it reads, then the report; with ``--write`` the
    report equals ``report --format json`` of the file written (a pcap on the pipe becomes a
    pcapng with the same frames)."""
    written, rep = tmp_path / "w.pcapng", tmp_path / "r.json"
    done = subprocess.run([QOSINSPECT, "watch", "-", *PORTS, "--write", str(written),
                           "--report", str(rep), "--report-format", "json"],
                          input=CAPTURE.read_bytes(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert lines[0] == {"type": "start", "source": "-", "ports": [1883, 1884]}
    kinds = {x["type"] for x in lines}
    assert {"snapshot", "reconnection"} <= kinds
    want = subprocess.run([QOSINSPECT, "report", str(written), "--format", "json", *PORTS],
                          capture_output=True, check=True, timeout=120).stdout
    assert json.loads(rep.read_text()) == json.loads(want)
    # and the frames are those of the original capture
    orig = subprocess.run([QOSINSPECT, "decode", str(CAPTURE), "--format", "jsonl", *PORTS],
                          capture_output=True, check=True, timeout=120).stdout
    again = subprocess.run([QOSINSPECT, "decode", str(written), "--format", "jsonl", *PORTS],
                           capture_output=True, check=True, timeout=120).stdout
    assert orig == again


def test_follow_stops_after_duration_with_the_report(tmp_path: Path) -> None:
    """``--follow`` waits at the end of the file for more; ``--duration`` ends it, and the
    report (table, as ``report`` prints it) follows."""
    growing = tmp_path / "growing.pcap"
    shutil.copy(CAPTURE, growing)
    done = subprocess.run([QOSINSPECT, "watch", "--follow", str(growing), *PORTS,
                           "--duration", "1", "--report", str(tmp_path / "r.txt")],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    want = subprocess.run([QOSINSPECT, "report", str(growing), *PORTS], capture_output=True,
                          check=True, timeout=120).stdout.decode()
    got = (tmp_path / "r.txt").read_text()
    # the same report but the name of the capture in its title and the commands it suggests
    assert got.replace(str(growing), "X").splitlines()[1:] == \
        want.replace(str(growing), "X").splitlines()[1:]


@pytest.mark.parametrize("args", [[], ["-", "--follow", "x.pcap"]])
def test_one_source(args: list[str]) -> None:
    done = subprocess.run([QOSINSPECT, "watch", *args], capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"give one source" in done.stderr


def test_not_a_capture_is_a_message() -> None:
    done = subprocess.run([QOSINSPECT, "watch", "-"], input=b"this is not a capture\n" * 10,
                          capture_output=True, timeout=60)
    assert done.returncode == 1
    assert b"not a pcap or pcapng" in done.stderr
    assert b"Traceback" not in done.stderr


def test_no_privileges_says_what_to_do() -> None:
    """As an unprivileged user, capturing is refused: the message names the group wireshark and
    setcap, no traceback."""
    require_tool("dumpcap")
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root (to become an unprivileged user) and setpriv")
    done = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                           QOSINSPECT, "watch", "-i", "lo", "--tool", "dumpcap"],
                          capture_output=True, timeout=60,
                          env={**os.environ, "HOME": "/tmp"})
    assert done.returncode == 1, done.stderr.decode()
    err = done.stderr.decode()
    assert "no permission to capture on lo" in err
    assert "wireshark" in err and "setcap" in err
    assert "Traceback" not in err
