"""``qosinspect audit`` as a user runs it: formats, the JSON schema, --fail-on, --dry-run,
bad input as a message (never a traceback), and the report's pointer to it."""

from __future__ import annotations

import gzip
import json
import shlex
from pathlib import Path

from click.testing import CliRunner

from qosinspect.audit import CHECKS, SCHEMA
from qosinspect.cli import main
from qosinspect.testing.tools import PROJECT_ROOT

CAP = PROJECT_ROOT / "captures" / "audit" / "audit-bruteforce.pcap"


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["audit", *args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.exit_code, res.output


def test_json_schema_is_stable() -> None:
    code, out = _run(str(CAP), "--format", "json")
    data = json.loads(out)
    assert code == 0
    assert list(data) == ["schema", "target", "mode", "counts", "findings", "notes"]
    assert data["schema"] == SCHEMA and data["mode"] == "capture"
    assert list(data["counts"]) == ["critical", "high", "medium", "low", "info"]
    assert data["counts"] == {"critical": 1, "high": 2, "medium": 1, "low": 0, "info": 0}
    for f in data["findings"]:
        assert list(f) == ["id", "severity", "title", "evidence", "frames", "remedy"]
        assert f["id"] in CHECKS
    assert [f["severity"] for f in data["findings"]] == ["critical", "high", "high", "medium"]


def test_table_groups_by_severity_and_markdown_is_a_table() -> None:
    _, table = _run(str(CAP))
    assert table.index("CRITICAL (1)") < table.index("HIGH (2)") < table.index("MEDIUM (1)")
    assert "[brute-force] 8 refused CONNECTs from 127.0.0.1" in table
    _, md = _run(str(CAP), "--format", "markdown")
    assert "| critical | `brute-force-success` |" in md


def test_fail_on() -> None:
    assert _run(str(CAP), "--fail-on", "critical")[0] == 2
    takeover = PROJECT_ROOT / "captures" / "audit" / "audit-takeover.pcap"
    assert _run(str(takeover), "--fail-on", "critical")[0] == 0
    assert _run(str(takeover), "--fail-on", "high")[0] == 2


def test_dry_run_lists_the_probes_and_connects_nowhere() -> None:
    code, out = _run("--broker", "127.0.0.1:1", "--tls", "127.0.0.1:2", "-u", "alice",
                     "--try-defaults", "--dry-run")
    assert code == 0
    assert "mqtts://127.0.0.1:2: TLS handshakes with TLS 1.0, 1.1, 1.2 and 1.3" in out
    assert "default user names and passwords, one every 0.2 s" in out
    assert "does the plain port accept user 'alice' too?" in out


def test_bad_input_is_a_message(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    code, out = _run(str(junk))
    assert code == 1 and "junk.pcap" in out and "Traceback" not in out
    code, out = _run(str(tmp_path / "missing.pcap"))
    assert code == 1 and "missing.pcap" in out
    code, out = _run("--broker", "127.0.0.1:1", "--timeout", "0.2")
    assert code == 1 and "no CONNACK" in out
    code, out = _run("--broker", "nohostport")
    assert code == 2 and "HOST:PORT" in out
    code, out = _run()
    assert code == 2 and "either CAPTURE or --broker" in out


def test_a_capture_cut_short_is_audited_up_to_the_cut(tmp_path: Path) -> None:
    data = CAP.read_bytes()
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(gzip.compress(data[:len(data) * 2 // 3]))
    code, out = _run(str(cut), "--format", "json")
    report = json.loads(out)
    assert code == 0
    assert "brute-force" in {f["id"] for f in report["findings"]}
    assert any("error" in n for n in report["notes"])


def test_the_report_points_at_audit() -> None:
    res = CliRunner().invoke(main, ["report", str(CAP)])
    assert res.exit_code == 0
    assert f"qosinspect audit {CAP}" in res.output


def test_standard_input_is_audited_without_tls() -> None:
    res = CliRunner().invoke(main, ["audit", "-", "--format", "json"], input=CAP.read_bytes())
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert "brute-force" in {f["id"] for f in data["findings"]}
    assert any("standard input" in n for n in data["notes"])


def test_docs_list_every_check() -> None:
    """docs/audit.md describes each check of CHECKS (and no check that does not exist)."""
    import re

    text = (PROJECT_ROOT / "docs" / "audit.md").read_text()
    table = text[text.index("## Checks"):text.index("## The other tools")]
    documented = set(re.findall(r"^\| `([a-z-]+)`(?:, `([a-z-]+)`)?", table, re.M))
    ids = {i for pair in documented for i in pair if i}
    assert ids == set(CHECKS)


def test_the_command_the_report_suggests_runs_with_its_options() -> None:
    """`report --broker ... --same-broker ...` suggests `audit` with the same options: with a
    capture, --broker keeps one broker's connections (as in every capture command)."""
    two = PROJECT_ROOT / "captures" / "two-brokers.pcap"
    res = CliRunner().invoke(main, ["report", str(two), "--broker", "127.0.0.1:55931",
                                    "--same-broker", "127.0.0.1:41131,127.0.0.1:41131"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "qosinspect audit" in ln)
    args = shlex.split(line.split("qosinspect audit ", 1)[1])
    assert "--broker" in args and "--same-broker" in args
    code, out = _run(*args, "--format", "json")
    data = json.loads(out)
    assert code == 0
    anonymous = next(f for f in data["findings"] if f["id"] == "anonymous")
    everything = json.loads(_run(str(two), "--format", "json")[1])
    every_anonymous = next(f for f in everything["findings"] if f["id"] == "anonymous")
    assert 0 < anonymous["evidence"]["connections"] < every_anonymous["evidence"]["connections"]
