"""``qosinspect demo`` (the short variant): generates, captures, reports, plots, and the lessons
it prints agree with what the clients recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner

from qosinspect.cli import main
from qosinspect.cli.demo import demo_scenario


def test_demo_scenario_scales_the_fault_times() -> None:
    s = demo_scenario(4.0)
    hold, cut = s.faults
    assert (hold.kind, hold.at, hold.duration) == ("hold_acks", 1.6, 0.4)
    assert (cut.kind, cut.at, cut.down_for, cut.how) == ("cut", 1.8, 1.2, "rst")
    assert demo_scenario(10.0).faults[1].at == 4.5


def test_short_demo_produces_the_report_the_plots_and_true_lessons(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "-o", str(out), "--duration", "4", "--port", "0",
                                       "-q"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Traceback" not in text
    for png in ("latency", "timeline", "inflight", "ladder"):
        path = out / "plots" / f"{png}.png"
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
        assert str(path) in text
    assert str(out / "demo.pcapng") in text and str(out / "demo.truth.json") in text
    truth = json.loads((out / "demo.truth.json").read_text())
    told = {row["qos"]: row for row in truth["per_qos"]}
    # The lessons print "analysis [clients]"; both numbers must agree, and show the story.
    lost = re.search(r"QoS 0: (\d+) \[(\d+)\] messages lost", text)
    dups = re.search(r"QoS 1: (\d+) \[(\d+)\] duplicates", text)
    once = re.search(r"QoS 2: (\d+) of (\d+) deliveries exactly once, (\d+) \[(\d+)\] dup", text)
    assert lost and dups and once, text
    assert lost.group(1) == lost.group(2) == str(told[0]["lost"]) and int(lost.group(1)) > 0
    assert dups.group(1) == dups.group(2) == str(told[1]["duplicates"]) and int(dups.group(1)) > 0
    assert once.group(1) == once.group(2) and once.groups()[2:] == ("0", "0")
    assert "median handshake time QoS 1" in text
    # the command it suggests for the capture reports what the demo reported (the clients'
    # ports, with the reconnection attempts refused during the outage, are MQTT ports too)
    again = re.search(r"or: qosinspect report (.*)\)", text)
    assert again, text
    rerun = CliRunner().invoke(main, ["report", *again.group(1).split()])
    assert rerun.exit_code == 0, rerun.output
    head = re.compile(r"^[\d,]+ frames, .* connections, .*$", re.M)
    shown, got = head.search(text), head.search(rerun.stdout)
    assert shown and got and shown.group(0) == got.group(0)
    assert "Per QoS" in text or "QoS" in text.split("What this run shows")[0]
