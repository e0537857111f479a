"""Files Wireshark reads that are not pcap/pcapng (issue 11 §4): converted through editcap when
it is installed (said on stderr), else an error naming the format and the command to run."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from qosinspect.capture.pcapfile import CaptureFile, OtherFormat
from qosinspect.cli import main
from qosinspect.drivers import iter_capture_events
from qosinspect.drivers.convert import converted
from qosinspect.errors import CaptureError
from qosinspect.events import MqttPacketEvent
from qosinspect.testing.tools import PROJECT_ROOT, require_tool

SOURCE = PROJECT_ROOT / "captures" / "mosquitto-v311-qos012.pcap"
#: editcap's name -> the name our error gives without editcap.
FORMATS = {"snoop": "Sun snoop", "ngsniffer": "Network General Sniffer (DOS)",
           "netmon1": "Microsoft NetMon 1.x", "netmon2": "Microsoft NetMon 2.x",
           "nettl": "HP-UX nettl", "lanalyzer": None}


def _packets(path: Path | str, **options: object) -> list[tuple[int, str]]:
    return [(e.frame, type(e.packet).__name__) for e in iter_capture_events(path, **options)
            if type(e) is MqttPacketEvent]


def _make(fmt: str, tmp_path: Path) -> Path:
    out = tmp_path / f"capture.{fmt}"
    subprocess.run([require_tool("editcap"), "-F", fmt, str(SOURCE), str(out)], check=True,
                   capture_output=True, timeout=60)
    return out


@pytest.mark.parametrize("fmt", sorted(set(FORMATS) - {"nettl"}))  # nettl: no pcapng of it
def test_converted_with_editcap_and_said(fmt: str, tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    path = _make(fmt, tmp_path)
    with caplog.at_level(logging.WARNING, logger="qosinspect"):
        got = _packets(path)
    assert got == _packets(SOURCE) and got
    assert [r.getMessage() for r in caplog.records if "editcap" in r.getMessage()]
    said = caplog.records[-1].getMessage()
    assert str(path) in said and f"format: {FORMATS[fmt] or fmt}" in said


def test_the_copy_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    path = _make("snoop", tmp_path)
    stream = iter_capture_events(path)
    assert len(list((tmp_path / "tmp").iterdir())) == 1
    assert list(stream)
    assert not list((tmp_path / "tmp").iterdir())
    unread = iter_capture_events(path)  # never iterated: removed when dropped
    del unread
    assert not list((tmp_path / "tmp").iterdir())


@pytest.mark.parametrize("fmt", sorted(f for f, name in FORMATS.items() if name))
def test_without_editcap_the_error_names_format_and_command(fmt: str, tmp_path: Path) -> None:
    path = _make(fmt, tmp_path)
    with pytest.raises(OtherFormat) as info, converted(str(path), editcap=None):
        pass
    assert info.value.format_name == FORMATS[fmt]
    assert f"editcap -F pcapng {path} {path}.pcapng" in str(info.value)
    with pytest.raises(CaptureError, match=re.escape(FORMATS[fmt] or "")):
        CaptureFile(path)


def test_cli_report_says_it_on_stderr(tmp_path: Path) -> None:
    """In a process of its own: pytest's log capture would take the warning otherwise."""
    path = _make("snoop", tmp_path)
    res = subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "qosinspect"), "report",
                          str(path), "--format", "json"], capture_output=True, text=True,
                         timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert "editcap" in res.stderr and "Sun snoop" in res.stderr
    assert json.loads(res.stdout)["per_qos"]
    nettl = _make("nettl", tmp_path)
    res = CliRunner().invoke(main, ["report", str(nettl)])
    assert res.exit_code != 0 and "HP-UX nettl" in res.output and "Traceback" not in res.output


def test_what_editcap_cannot_read_is_still_a_clear_error(tmp_path: Path) -> None:
    require_tool("editcap")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not a capture at all" * 10)
    with pytest.raises(CaptureError, match=r"not a pcap or pcapng file.*editcap could not"):
        _packets(junk)
