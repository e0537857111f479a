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

from qosinspect.analysis.api import analyze, analyze_capture
from qosinspect.analysis.diagnoses.evidence import EXAMPLES
from qosinspect.live.core import report_options
from qosinspect.testing.events import EventBuilder
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


def _keepalive_reconnections(n: int) -> list[object]:
    """A client silent past 1.5 x its keep alive, cut by the broker and back after a gap that
    grows each time, ``n`` times."""
    b = EventBuilder()
    c = b.client("dev", keep_alive=2)
    for i in range(n):
        b.advance(4)
        b.close(c, "rst", closed_by="b2c")
        b.advance(0.1 * (i + 1))
        c = b.client("dev", keep_alive=2)
    b.close(c, "fin")
    return b.events


def test_capped_reconnection_verdicts_report_what_all_of_them_do() -> None:
    """Reconnection verdicts (keep-alive) past the cap are counted under their cause with the
    latency they explain and the worst kept as examples: the same report as keeping all."""
    options = report_options()
    want = analyze(_keepalive_reconnections(6), options).report()
    causes = {d["cause"]: d for d in want["diagnoses"]}
    assert causes["keepalive_timeout"]["reconnects"] == 6
    for cap in (0, 1, 2):
        a = analyze(_keepalive_reconnections(6), replace(options, max_verdicts=cap))
        assert a.report() == want, cap
        # kept whole: the cap and the worst examples, not every verdict
        assert a.result.diagnoses is not None
        whole = [d for d in a.result.diagnoses.diagnoses if d.subject == "reconnect"]
        assert len(whole) <= cap + EXAMPLES < 6, (cap, len(whole))
