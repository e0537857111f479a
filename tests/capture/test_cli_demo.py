"""``qosinspect demo`` (interim): decodes a shipped capture and says that it is interim."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from qosinspect.cli import main
from qosinspect.cli.demo import DEMO_CAPTURE


def test_demo_decodes_the_shipped_capture_and_says_it_is_interim() -> None:
    assert DEMO_CAPTURE.exists()
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "INTERIM" in out and DEMO_CAPTURE.name in out
    assert "116 MQTT packets on 8 connections" in out
    assert "PUBLISH resent with DUP=1: 8" in out
    assert out.count(" PUBLISH q") == 34


def test_demo_with_a_missing_capture(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--capture", str(tmp_path / "none.pcap")])
    assert result.exit_code == 1 and "not found" in result.output
    assert "Traceback" not in result.output
