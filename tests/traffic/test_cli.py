"""``qosinspect generate`` from the command line: against mosquitto as an external broker, bad
scenario files, and Ctrl-C (SIGINT to a real subprocess) stopping a run cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from qosinspect.capture.decoder import iter_events
from qosinspect.cli import main
from qosinspect.events import MqttPacketEvent
from qosinspect.testing.mosquitto import Mosquitto
from qosinspect.testing.tools import stop_process
from qosinspect.traffic.builtin import builtin_data


def _toml(data: dict[str, Any]) -> str:
    """A small TOML writer for scenario dicts (tables, arrays of tables, scalars, lists)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        return repr(v)

    def nested(k: str, v: Any) -> bool:
        return (isinstance(v, dict) and k != "user_properties") or (
            isinstance(v, list) and bool(v) and isinstance(v[0], dict))

    def table(prefix: str, d: dict[str, Any], out: list[str]) -> None:
        out.extend(f"{k} = {value(v)}" for k, v in d.items() if not nested(k, v))
        for k, v in d.items():
            if isinstance(v, dict) and nested(k, v):
                out.append(f"[{prefix}{k}]")
                table(f"{prefix}{k}.", v, out)
            elif nested(k, v):
                for item in v:
                    out.append(f"[[{prefix}{k}]]")
                    table(f"{prefix}{k}.", item, out)

    lines: list[str] = []
    table("", data, lines)
    return "\n".join(lines) + "\n"


def _reconnect_file(tmp: Path, duration: float = 4.0) -> Path:
    data = builtin_data("reconnect")
    data.update(duration=duration)
    # The hold outlasts the cut, so the acknowledgements it took are lost with the connection
    # (hence redelivered) even when a busy machine runs the timeline late.
    data["faults"][0].update(at=0.4 * duration, duration=0.25 * duration)
    data["faults"][1].update(at=0.45 * duration, down_for=0.3 * duration)
    path = tmp / "reconnect-short.toml"
    path.write_text(_toml(data))
    assert tomllib.loads(path.read_text()) == data
    return path


def test_reconnect_against_mosquitto_tells_the_same_story(tmp_path: Path) -> None:
    """The external broker (mosquitto 2.0) with the same scenario: QoS 0 lost while away,
    QoS 1 duplicated after redelivery, QoS 2 exactly once; the report agrees with the clients."""
    scenario = _reconnect_file(tmp_path)
    capture = tmp_path / "mosq.pcapng"
    with Mosquitto().running() as broker:
        port = broker.port
        result = CliRunner().invoke(main, [
            "generate", str(scenario), "--broker", f"127.0.0.1:{port}", "--port", "0",
            "--capture", str(capture), "--report", "--format", "json", "-q"])
    assert result.exit_code == 0, result.output
    truth = json.loads(capture.with_name("mosq.truth.json").read_text())
    assert truth["run"]["broker"] == {"kind": "external", "address": f"127.0.0.1:{port}",
                                      "websocket": False}
    told = {row["qos"]: row for row in truth["per_qos"]}
    report = json.loads(result.output[result.output.index("{\n"):])
    got = {row["qos"]: row for row in report["per_qos"]}
    assert told[0]["lost"] > 0
    assert got[0]["not_delivered"] + got[0]["not_delivered_offline"] == told[0]["lost"]
    assert told[1]["duplicates"] > 0 and got[1]["duplicates_delivered"] == told[1]["duplicates"]
    assert told[2]["duplicates"] == 0 and told[2]["unique"] == told[2]["expected"]
    assert got[2]["duplicates_delivered"] == 0
    assert report["reconnects"] == 1
    assert all(row["incomplete"] == 0 for row in truth["per_qos"])


def test_list_and_bad_input_give_messages_not_tracebacks(tmp_path: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["generate", "--list"])
    assert listed.exit_code == 0 and "reconnect" in listed.output and "seed" in listed.output
    bad = tmp_path / "bad.toml"
    bad.write_text("duration = 5\n[[publishers]]\nname = 'p'\n[[publishers.topics]]\n"
                   "topic = 'a'\nqos = 'high'\n")
    result = runner.invoke(main, ["generate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: publishers[0].topics[0].qos: must be an integer" in result.output
    for args, message in (
            (["generate", "nosuch"], "no built-in scenario named 'nosuch'"),
            (["generate", str(tmp_path / "missing.toml")], "cannot read the scenario file"),
            (["generate", "reconnect", "--broker", "127.0.0.1:1"], "does not accept"),
            (["generate", "reconnect", "--duration", "2"], "faults[0].at: is after the end"),
            (["generate", "seed", "--broker", "example.com:1883"], "only local brokers"),
            (["generate", "seed", "--report"], "--report needs --capture")):
        result = runner.invoke(main, args)
        assert result.exit_code != 0, args
        assert message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_report_as_json_is_the_only_thing_on_stdout(tmp_path: Path) -> None:
    """``generate --report --format json > r.json`` gives a file json.load reads: what the run
    did goes to stderr then (it used to come first on stdout)."""
    capture = tmp_path / "q1.pcapng"
    result = CliRunner().invoke(main, [
        "generate", "seed-qos1", "--duration", "0.3", "--port", "0", "--capture-method", "tap",
        "--capture", str(capture), "--report", "--format", "json", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    truth = json.loads(capture.with_name("q1.truth.json").read_text())
    assert report["per_qos"][1]["publishes"] == 2 * truth["per_qos"][0]["sent"]   # c2b + b2c
    assert "scenario seed-qos1" in result.stderr and f"capture: {capture}" in result.stderr
    table = CliRunner().invoke(main, [
        "generate", "seed-qos1", "--duration", "0.3", "--port", "0", "--capture-method", "tap",
        "--capture", str(capture), "--report", "-q"])
    assert table.exit_code == 0 and "scenario seed-qos1" in table.stdout     # table: unchanged
    assert "Per QoS level" in table.stdout


def test_ctrl_c_stops_the_run_cleanly_and_keeps_the_capture(tmp_path: Path) -> None:
    capture = tmp_path / "interrupted.pcapng"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from qosinspect.cli import main; main()", "generate", "seed",
         "--duration", "60", "--port", "0", "--capture", str(capture),
         "--capture-method", "tap"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        line = ""
        while time.monotonic() < deadline and "publishing for" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "the run ended before publishing"
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        stop_process(proc, signal.SIGKILL, 5)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopping" in err
    assert "(interrupted)" in out and str(capture) in out
    truth = json.loads(capture.with_name("interrupted.truth.json").read_text())
    assert truth["run"]["interrupted"] is True
    assert 1.0 < truth["run"]["published_for_s"] < 10
    sent = sum(row["sent"] for row in truth["per_qos"])
    assert sent > 100
    # Everything up to the stop is in the capture, down to the clean DISCONNECTs.
    events = [e for e in iter_events(str(capture)) if isinstance(e, MqttPacketEvent)]
    publishes = [e for e in events if e.packet.packet_type.name == "PUBLISH"
                 and e.direction is not None and e.direction.value == "c2b"]
    assert len(publishes) == sent
    assert sum(1 for e in events if e.packet.packet_type.name == "DISCONNECT") == 4
