"""The generator's sample captures (captures/gen-*.pcap): each has the command that made it,
the ground truth its clients recorded (captures/gen-*.truth.json) and a reviewed expected report
(captures/expected/gen-*.report.json); the report of the capture equals the expected one, and
agrees with the ground truth figure by figure.

Re-make the captures with scenarios/make-sample-captures.sh; after reviewing, write the expected
reports of the gen-* captures with ``.venv/bin/python tests/traffic/test_samples.py --write``.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.testing.tools import PROJECT_ROOT, shipped_same_broker
from qosinspect.traffic.scenario import load_scenario_file

CAPTURES = PROJECT_ROOT / "captures"
SAMPLES = [e for e in json.loads((CAPTURES / "captures.json").read_text())
           if e["file"].startswith("gen-")]
IDS = [e["file"] for e in SAMPLES]


def _report(entry: dict[str, Any]) -> dict[str, Any]:
    options = AnalysisOptions(same_broker=shipped_same_broker(entry))
    report = analyze_capture(CAPTURES / entry["file"], ports=tuple(entry["ports"]),
                             options=options).report()
    report["capture"].pop("source")
    return report


def _expected_path(entry: dict[str, Any]) -> Path:
    return CAPTURES / "expected" / entry["file"].replace(".pcap", ".report.json")


def test_every_generated_sample_is_listed_with_its_command() -> None:
    kinds = {"gen-qos0.pcap", "gen-qos1.pcap", "gen-qos2.pcap", "gen-reconnect.pcap",
             "gen-stalled-acks.pcap", "gen-mqtt5.pcap", "gen-websocket.pcap",
             "gen-port-18830.pcap"}
    assert set(IDS) == kinds == {p.name for p in CAPTURES.glob("gen-*.pcap")}
    script = (PROJECT_ROOT / "scenarios" / "make-sample-captures.sh").read_text()
    for entry in SAMPLES:
        command = entry["command"]
        args = shlex.split(command)
        assert args[:2] == ["qosinspect", "generate"]
        assert f"--capture captures/{entry['file']}" in command
        assert command.removeprefix("qosinspect generate --capture-method dumpcap ") in script
        scenario = load_scenario_file(PROJECT_ROOT / args[4])
        assert scenario.name.startswith("sample-")
        assert (CAPTURES / entry["file"]).stat().st_size < 100_000      # small, readable


@pytest.mark.parametrize("entry", SAMPLES, ids=IDS)
def test_report_equals_the_reviewed_expected_report(entry: dict[str, Any]) -> None:
    assert _report(entry) == json.loads(_expected_path(entry).read_text())


@pytest.mark.parametrize("entry", SAMPLES, ids=IDS)
def test_report_agrees_with_the_ground_truth(entry: dict[str, Any]) -> None:
    truth = json.loads((CAPTURES / entry["file"].replace(".pcap", ".truth.json")).read_text())
    assert truth["run"]["capture"]["path"] == f"captures/{entry['file']}"
    assert truth["run"]["capture"]["method"] == "dumpcap"
    assert sorted(truth["run"]["front_ports"]) == sorted(entry["ports"])
    assert not truth["run"]["interrupted"]
    analysis = analyze_capture(CAPTURES / entry["file"], ports=tuple(entry["ports"]),
                               options=AnalysisOptions(same_broker=shipped_same_broker(entry)))
    report = analysis.report()
    ex = analysis.exchanges
    got = {row["qos"]: row for row in report["per_qos"]}
    publishers = {cid for cid, c in truth["clients"].items() if c["role"] == "publisher"}
    for row in truth["per_qos"]:
        q = row["qos"]
        sent = ex[(ex.qos == q) & (ex.direction == "c2b") & ex.client_id.isin(publishers)]
        received = ex[(ex.qos == q) & (ex.direction == "b2c")]
        # Every message a publisher sent is one exchange; it finished when the client says so.
        assert len(sent) == row["sent"], q
        assert int((sent.outcome != "complete").sum()) == row["incomplete"], q
        # Each subscriber's copy is one exchange; a redelivery with the same packet id is the
        # same exchange (DUP), and a duplicate delivered.
        assert len(received) == row["unique"], q
        assert got[q]["duplicates_delivered"] == row["duplicates"], q
        assert got[q]["not_delivered"] + got[q]["not_delivered_offline"] == row["lost"], q
        assert got[q]["publishes"] == row["sent"] + row["unique"], q
    reconnects = sum(len(c["reconnects"]) for c in truth["clients"].values())
    assert report["reconnects"] == reconnects
    assert report["anomalies"] == {}
    versions = set(analysis.connections.version.dropna().astype(int))
    assert versions == set(entry["versions"])


def test_the_samples_show_what_they_are_named_for() -> None:
    def load(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        entry = next(e for e in SAMPLES if e["file"] == f"gen-{name}.pcap")
        truth = json.loads((CAPTURES / f"gen-{name}.truth.json").read_text())
        return json.loads(_expected_path(entry).read_text()), truth

    for q in (0, 1, 2):
        report, _ = load(f"qos{q}")
        assert [row["qos"] for row in report["per_qos"] if row["publishes"]] == [q]
    report, truth = load("reconnect")
    per = {row["qos"]: row for row in truth["per_qos"]}
    assert per[0]["lost"] > 0 and per[1]["duplicates"] > 0 and per[2]["duplicates"] == 0
    assert report["reconnects"] == 1 and report["redelivered"]["publish"] > 0
    report, truth = load("stalled-acks")
    assert report["qos2_incomplete"]["no_response"] == truth["clients"]["pub"]["per_qos"]["2"][
        "incomplete"] > 0
    report, truth = load("mqtt5")
    assert truth["scenario"]["mqtt_version"] == 5 and report["reconnects"] == 1
    report, _ = load("websocket")
    assert report["connections"] == 2
    entry = next(e for e in SAMPLES if e["file"] == "gen-port-18830.pcap")
    assert entry["ports"] == [18830]


def test_mqtt5_sample_carries_properties_and_topic_aliases() -> None:
    from qosinspect.capture.decoder import iter_events
    from qosinspect.events import MqttPacketEvent
    from qosinspect.mqtt.packets import Publish

    publishes = [e.packet for e in iter_events(CAPTURES / "gen-mqtt5.pcap")
                 if isinstance(e, MqttPacketEvent) and isinstance(e.packet, Publish)
                 and e.direction is not None and e.direction.value == "c2b"]
    assert publishes and all(p.properties.topic_alias in (1, 2) for p in publishes)
    q1 = [p for p in publishes if p.qos == 1]
    assert all(p.properties.content_type == "text/plain" and
               p.properties.message_expiry_interval == 300 and
               Counter(p.properties.user_properties) == Counter(
                   [("origin", "qosinspect"), ("sample", "mqtt5")]) for p in q1)


def write_expected() -> None:
    """Write captures/expected/gen-*.report.json (after a review; see the module docstring)."""
    for entry in SAMPLES:
        _expected_path(entry).write_text(json.dumps(_report(entry), indent=2) + "\n")
        print(f"wrote {_expected_path(entry)}")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_expected()
