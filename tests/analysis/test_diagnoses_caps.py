"""A report keeps few verdicts whole (``AnalysisOptions.max_verdicts``) and counts the rest
under their cause with the worst as examples: its diagnoses say what keeping every verdict says.

The captures with verdicts of each kind (on exchanges: retransmission_timeout, receive_maximum,
no_known_cause; on held copies: offline_queue_flush; on copies never delivered:
subscriber_offline, connection_lost) are reported with caps of 0, 1 and 2 verdicts and with
the default: the ``diagnoses`` and the rest of the report are the same, field for field.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from qosinspect.analysis.api import analyze_capture
from qosinspect.live.core import report_options
from qosinspect.testing.tools import PROJECT_ROOT

RUNS = [
    (PROJECT_ROOT / "captures" / "paho-v311-v5.pcap", (1883,)),
    (PROJECT_ROOT / "captures" / "gen-stalled-acks.pcap", (1883,)),
    (PROJECT_ROOT / "captures" / "field" / "tcp-loss-client-side.pcap", (1883,)),
    (PROJECT_ROOT / "captures" / "field" / "tcp-loss-broker-side.pcap", (1883,)),
]


@pytest.mark.parametrize("path,ports", RUNS, ids=[p.name for p, _ in RUNS])
def test_capped_verdicts_report_what_all_of_them_do(path: Path, ports: tuple[int, ...]) -> None:
    options = report_options()
    want = analyze_capture(path, ports=ports, options=options).report()
    assert sum(d["exchanges"] + d["deliveries"] for d in want["diagnoses"]) > 3
    for cap in (0, 1, 2):
        got = analyze_capture(path, ports=ports,
                              options=replace(options, max_verdicts=cap)).report()
        assert got == want, (path.name, cap)
