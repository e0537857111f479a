"""``analyze``, ``analyze_capture`` and the Analysis object."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

import qosinspect
from qosinspect.analysis.api import TABLES, analyze_capture, relaxed_gc
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.errors import CaptureError
from qosinspect.testing.events import EventBuilder
from qosinspect.testing.tools import PROJECT_ROOT

REDELIVERY = PROJECT_ROOT / "captures" / "mosquitto-redelivery.pcap"


def test_analyze_capture_of_a_cut_file_keeps_what_was_read(tmp_path: Path) -> None:
    data = REDELIVERY.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2])
    a = analyze_capture(cut)
    assert isinstance(a.capture_error, CaptureError)
    assert len(a.connections) >= 1 and len(a.exchanges) >= 1
    assert "error" in a.report()["capture"]
    with pytest.raises(CaptureError):
        analyze_capture(cut, strict=True)


def test_a_file_that_is_no_capture_raises(tmp_path: Path) -> None:
    bad = tmp_path / "x.pcap"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(CaptureError):
        analyze_capture(bad)
    with pytest.raises(CaptureError):
        analyze_capture(tmp_path / "missing.pcap")


def test_relaxed_gc_restores_the_thresholds() -> None:
    before = gc.get_threshold()
    with relaxed_gc(12345):
        assert gc.get_threshold()[0] == max(12345, before[0])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), relaxed_gc():
        raise RuntimeError("even then")
    assert gc.get_threshold() == before


def test_the_analysis_object() -> None:
    a = analyze_capture(REDELIVERY)
    assert a.source == str(REDELIVERY) and "8 connections" in repr(a)
    assert list(a.tables()) == list(TABLES)
    assert a.capture_summary is not None and a.capture_summary.frames == 214
    assert a.report()["capture"]["frames"] == 214
    assert a.exchanges is a.exchanges  # built once


def test_report_mode_has_no_tables() -> None:
    b = EventBuilder()
    c = b.client("x")
    b.qos1(c, "c2b", "t", b"1", 1)
    a = qosinspect.analyze(b.events, AnalysisOptions(detail=False))
    assert a.report()["per_qos"][1]["completed"] == 1
    with pytest.raises(ValueError, match="detail=False"):
        _ = a.exchanges
    with pytest.raises(ValueError, match="detail=False"):
        a.result.exchange_objects()
    assert len(a.connections) == 1  # the few-row tables are still there


def test_lazy_names_of_the_package() -> None:
    assert qosinspect.analyze is qosinspect.analysis.api.analyze
    assert qosinspect.analyze_capture is analyze_capture
    with pytest.raises(AttributeError):
        _ = qosinspect.no_such_name  # type: ignore[attr-defined]
