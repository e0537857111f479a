"""Issue 16: every reconnection is diagnosed, in report mode too.

Report mode (``detail=False``, what ``qosinspect report`` runs) keeps the first
``MAX_RECONNECT_ROWS`` reconnections as rows and only counts the rest; the diagnoses must still
cover every one (each is diagnosed when it becomes final), so the report's ``diagnoses`` counts
equal those of the full analysis. The capture is scripted: one client that goes silent past its
keep alive again and again (the broker closes each connection), with an orderly DISCONNECT every
third time (no cause to name then).
"""

from __future__ import annotations

from pathlib import Path

from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.correlate import MAX_RECONNECT_ROWS
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.mqtt.encoder import encode
from qosinspect.mqtt.packets import Connect, Disconnect
from qosinspect.testing.synthcap import PcapngInterface, TcpConversation, pcapng_bytes, render

MS = 1_000_000
T0 = 1_700_000_000_000_000_000
CONNECTIONS = MAX_RECONNECT_ROWS + 150


def _capture(tmp: Path) -> Path:
    segments = []
    t = T0
    for i in range(CONNECTIONS):
        conv = TcpConversation(("10.0.0.1", 20000 + i), ("10.0.0.2", 1883), start_ns=t,
                               step_ns=100_000)
        conv.send("c2b", encode(Connect("dev", 4, clean_start=False, keep_alive=1), 4))
        conv.send("b2c", b"\x20\x02\x01\x00")
        if i % 3 == 2:
            conv.send("c2b", encode(Disconnect(), 4), at_ns=conv.t + 200 * MS)
            conv.close("fin", by="c2b")
        else:   # silent for 2 s past a keep alive of 1 s: the broker drops it
            conv.t += 2 * 1000 * MS
            conv.close("fin", by="b2c")
        segments.extend(conv.segments)
        t = conv.t + 50 * MS
    path = tmp / "reconnects.pcapng"
    path.write_bytes(pcapng_bytes(render(segments, 1), [PcapngInterface(1, tsresol=9)]))
    return path


def test_report_mode_diagnoses_every_reconnection(tmp_path: Path) -> None:
    path = _capture(tmp_path)
    full = analyze_capture(str(path))
    rc = full.reconnects
    assert len(rc) == CONNECTIONS - 1
    silent = rc[rc.cause == "keepalive_expired"]
    expected = len(silent)
    assert expected > MAX_RECONNECT_ROWS * 2 // 3
    assert (silent.diagnosis == "keepalive_timeout").all()
    assert rc[rc.cause != "keepalive_expired"].diagnosis.isna().all()
    want = {d["cause"]: d["reconnects"] for d in full.report()["diagnoses"]}
    assert want == {"keepalive_timeout": expected}

    brief = analyze_capture(str(path), options=AnalysisOptions(detail=False))
    assert len(brief.result.reconnects) == MAX_RECONNECT_ROWS        # the rows kept ...
    report = brief.report()
    assert report["reconnects"] == CONNECTIONS - 1                   # ... all counted
    got = {d["cause"]: d["reconnects"] for d in report["diagnoses"]}
    assert got == want                                               # ... and all diagnosed
    # the kept rows name the same verdicts as the full analysis' first rows
    assert list(brief.reconnects.diagnosis) == list(rc.diagnosis[:MAX_RECONNECT_ROWS])
    worst = report["diagnoses"][0]["examples"][0]
    assert "keep alive of 1 s" in worst["evidence"] and worst["frames"]
