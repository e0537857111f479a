"""The report of every shipped capture equals its reviewed expected summary
(captures/expected/, see the README there for how each was checked against tshark)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.testing.tools import (
    PROJECT_ROOT,
    community_captures,
    shared_captures,
    shipped_same_broker,
)

CAPTURES = PROJECT_ROOT / "captures"
ENTRIES = json.loads((CAPTURES / "captures.json").read_text())


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_report_matches_the_reviewed_summary(entry: dict[str, object]) -> None:
    name = str(entry["file"])
    expected_path = CAPTURES / "expected" / name.replace(".pcap", ".report.json")
    assert expected_path.exists(), f"no reviewed summary for {name}: see captures/expected"
    ports = tuple(int(p) for p in entry["ports"])  # type: ignore[attr-defined]
    report = analyze_capture(CAPTURES / name, ports=ports,
                             options=AnalysisOptions(same_broker=shipped_same_broker(entry))
                             ).report()
    report["capture"].pop("source")
    assert report == json.loads(expected_path.read_text())


def test_every_capture_has_a_summary() -> None:
    files = {p.name.replace(".report.json", ".pcap")
             for p in (CAPTURES / "expected").glob("*.report.json")}
    assert files == {str(e["file"]) for e in ENTRIES}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["file"] for e in ENTRIES])
def test_report_mode_agrees_with_the_full_analysis(entry: dict[str, object]) -> None:
    ports = tuple(int(p) for p in entry["ports"])  # type: ignore[attr-defined]
    path = CAPTURES / str(entry["file"])
    same = shipped_same_broker(entry)
    full = analyze_capture(path, ports=ports, options=AnalysisOptions(same_broker=same)).report()
    report_only = AnalysisOptions(detail=False, same_broker=same)
    assert analyze_capture(path, ports=ports, options=report_only).report() == full


COMMUNITY = community_captures()


def test_the_community_captures_are_there() -> None:
    assert len(COMMUNITY) == len(list((shared_captures() / "community").glob("*.pcap"))) == 9


@pytest.mark.parametrize(("path", "ports"), COMMUNITY, ids=[p.name for p, _ in COMMUNITY])
def test_community_capture_matches_its_reviewed_report(path: Path, ports: tuple[int, ...]
                                                       ) -> None:
    """Issue 11: each of ../shared/captures/community has a reviewed expected report
    (captures/expected/community/, the review in captures/expected/README.md)."""
    expected_path = CAPTURES / "expected" / "community" / path.name.replace(".pcap",
                                                                           ".report.json")
    report = analyze_capture(path, ports=ports).report()
    report["capture"].pop("source")
    assert report == json.loads(expected_path.read_text())
