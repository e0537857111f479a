"""Every command's output goes through the one output layer (qosinspect.report.output), its
formats are the layer's, and decode shares the capture options (and their help) of the other
commands."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qosinspect.cli import main
from qosinspect.cli.capture_options import resolve_time
from qosinspect.cli.output_options import format_option
from qosinspect.report import output
from qosinspect.testing.tools import PROJECT_ROOT

CAPTURES = PROJECT_ROOT / "captures"
REDELIVERY = str(CAPTURES / "mosquitto-redelivery.pcap")
RECONNECT = str(CAPTURES / "gen-reconnect.pcap")


class Writers:
    """Stands in for the layer's writers: each call is recorded and writes one marker line,
    so a command's standard output is exactly the markers iff everything it printed came
    through the layer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        for name in ("write_table", "write_document", "write_events"):
            monkeypatch.setattr(output, name, self._fake(name))

    def _fake(self, name: str) -> Callable[..., Any]:
        def fake(data: Any, fmt: str, out: Any = None, **kw: Any) -> int:
            self.calls.append((name, fmt))
            if name == "write_events":
                for _ in data:          # the stream is consumed, as the real writer does
                    pass
            text = f"{name} {fmt}\n"
            if out is None:
                import sys

                sys.stdout.write(text)
            else:
                Path(out).write_text(text)
            return 0
        return fake


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exc_info
    return res.exit_code, res.stdout


@pytest.mark.parametrize("command, fmt, writer", [
    ("report", "table", "write_document"), ("report", "markdown", "write_document"),
    ("report", "json", "write_document"),
    ("flows", "table", "write_table"), ("flows", "csv", "write_table"),
    ("flows", "json", "write_table"), ("flows", "jsonl", "write_table"),
    ("decode", "table", "write_events"), ("decode", "jsonl", "write_events"),
    ("decode", "csv", "write_events"),
])
def test_each_command_writes_through_the_one_layer(monkeypatch: pytest.MonkeyPatch,
                                                   command: str, fmt: str, writer: str) -> None:
    writers = Writers(monkeypatch)
    code, out = _run(command, REDELIVERY, "--format", fmt)
    assert code == 0
    assert writers.calls == [(writer, fmt)] and out == f"{writer} {fmt}\n"


def test_flows_parquet_and_export_write_files_through_the_layer(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    writers = Writers(monkeypatch)
    code, _ = _run("flows", REDELIVERY, "--format", "parquet", "-o", str(tmp_path / "f.pq"))
    assert code == 0 and (tmp_path / "f.pq").read_text() == "write_table parquet\n"
    for fmt in ("csv", "parquet"):
        writers.calls.clear()
        code, out = _run("export", REDELIVERY, "-o", str(tmp_path / fmt), "--format", fmt)
        assert code == 0
        tables = ["packets", "connections", "sessions", "exchanges", "reconnects",
                  "deliveries", "anomalies", "tcp_retransmissions", "undecoded_streams",
                  "tcp_evidence"]
        assert writers.calls == [("write_table", fmt)] * len(tables) + [
            ("write_document", "json")]
        for name in tables:
            assert (tmp_path / fmt / f"{name}.{fmt}").read_text() == f"write_table {fmt}\n"
        assert (tmp_path / fmt / "report.json").read_text() == "write_document json\n"
        assert out.splitlines()[-1] == str(tmp_path / fmt / "report.json")  # the listing


def test_the_real_writers_give_what_the_commands_print(tmp_path: Path) -> None:
    """Without the stand-ins: flows' JSON is write_table's, the report's is write_document's
    (the form of captures/expected), decode's lines are write_events'."""
    import qosinspect
    from qosinspect.report.flows import flows_frame

    analysis = qosinspect.analyze_capture(REDELIVERY)
    _, out = _run("flows", REDELIVERY, "--format", "json")
    path = tmp_path / "flows.json"
    output.write_table(flows_frame(analysis), "json", path)
    assert out == path.read_text()
    _, out = _run("report", REDELIVERY, "--format", "json")
    assert out == output.document_text(analysis.report(), "json")


def test_times_printed_are_times_read_back() -> None:
    """What the layer prints, --since/--until read back to the same nanosecond."""
    for ns in (1_795_687_753_424_008_658, 1_795_687_753_000_000_000, 0):
        assert resolve_time(output.format_time(ns), 0, "--since") == ns


def test_format_options_are_the_layers_formats() -> None:
    with pytest.raises(ValueError, match="xml"):
        format_option("table", "xml")
    with pytest.raises(ValueError, match="default 'csv'"):
        format_option("table", "json", default="csv")
    for command in ("report", "flows", "export", "decode", "generate"):
        res = CliRunner().invoke(main, [command, "--help"])
        choices = re.search(r"--format \[([a-z|]+)\]", res.output)
        assert choices is not None, command
        assert set(choices.group(1).split("|")) <= set(output.FORMATS) | set(
            output.DOCUMENT_FORMATS), command


def _option_help(command: str) -> dict[str, str]:
    """Option -> its help text (joined lines) in ``command --help``."""
    text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
    helps: dict[str, str] = {}
    last = ""
    for line in text.split("Options:")[1].splitlines():
        m = re.match(r"\s+(-\w, )?(--[\w-]+)\s*(\S.*)?$", line)
        if m:
            last = m.group(2)
            helps[last] = m.group(3) or ""
        elif last:
            helps[last] += " " + line.strip()        # a help text wrapped onto more lines
    return helps


def test_decode_takes_the_shared_capture_options_with_the_same_help() -> None:
    decode, report = _option_help("decode"), _option_help("report")
    for opt in ("--port", "--no-detect", "--mqtt-version", "--engine", "--tls-keylog"):
        assert opt in decode and decode[opt] == report[opt], opt


def test_decode_errors_name_the_capture_once(tmp_path: Path) -> None:
    """decode reports a bad capture as the analysis commands do (the shared reading())."""
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(Path(REDELIVERY).read_bytes()[:3000])
    res = CliRunner().invoke(main, ["decode", str(cut), "--format", "jsonl"])
    assert res.exit_code == 1 and len(res.stdout.splitlines()) > 10
    json.loads(res.stdout.splitlines()[-1])         # whole lines before the error
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: {cut}, frame 32, byte offset 2897: truncated record")
    assert last.count(str(cut)) == 1
