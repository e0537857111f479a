"""The output layer: each format round-trips a DataFrame of every dtype the analysis uses,
nanoseconds kept; times have one spelling in every text format; documents and decode's lines
are written by the same layer."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from qosinspect.capture import iter_events
from qosinspect.capture.lines import formatter
from qosinspect.report.output import (
    FORMATS,
    document_text,
    format_table,
    format_time,
    table_records,
    write_document,
    write_events,
    write_table,
)
from qosinspect.testing.tools import PROJECT_ROOT

REDELIVERY = PROJECT_ROOT / "captures" / "mosquitto-redelivery.pcap"
# Sub-microsecond times (the order of two packets in one microsecond), a whole second (no
# fraction at all: Timestamp.isoformat() drops it), a whole microsecond, and a missing time.
T = [1_795_687_753_424_008_658, 1_795_687_753_000_000_000, 1_795_687_753_424_008_000, None]
ISO = ["2026-11-26T10:09:13.424008658Z", "2026-11-26T10:09:13.000000000Z",
       "2026-11-26T10:09:13.424008000Z", None]


def _frame() -> pd.DataFrame:
    """One column of each dtype the analysis' tables have (docs/glossary.md)."""
    return pd.DataFrame({
        "ts": pd.to_datetime(pd.Series(T, dtype="Int64"), unit="ns", utc=True),
        "latency": pd.to_timedelta(pd.Series([1_234_567, 5 * 10**9, 0, None], dtype="Int64"),
                                   unit="ns"),
        "conn_id": pd.Series([0, 1, 2, 3], dtype="int32"),
        "packet_id": pd.array([7, None, 65535, 1], dtype="Int32"),
        "latency_ms": [0.03, float("nan"), 1.5, 101.398],
        "dup": [True, False, False, True],
        "session_present": pd.array([True, None, False, True], dtype="boolean"),
        "client_id": pd.array(["sensor-7", None, "ünïcode, \"quoted\"", "x"], dtype="string"),
        "direction": pd.Series(["c2b", "b2c", None, "c2b"], dtype="category"),
    })


def _like(back: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """What a reader does with the documented forms: times and durations parsed, the other
    columns cast to the dtypes of the original."""
    out = back.copy()
    for col, dtype in df.dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype):
            out[col] = pd.to_datetime(back[col], utc=True, format="ISO8601")
        elif dtype.kind == "m":
            out[col] = pd.to_timedelta(back[col])
        else:
            out[col] = back[col].astype(dtype)
    return out


def test_format_time_is_the_one_iso_form() -> None:
    assert format_time(T[0]) == ISO[0] and format_time(T[1]) == ISO[1]
    assert format_time(0) == "1970-01-01T00:00:00.000000000Z"
    # the vectorised form of a column (csv, json, table) is the same spelling
    assert [r["ts"] for r in table_records(_frame())] == ISO


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_each_format_round_trips_with_nanoseconds(tmp_path: Path, fmt: str) -> None:
    df = _frame()
    path = tmp_path / f"t.{fmt}"
    write_table(df, fmt, path)
    if fmt == "parquet":
        back = pd.read_parquet(path)
    elif fmt == "csv":
        back = _like(pd.read_csv(path, keep_default_na=False, na_values=[""]), df)
        assert path.read_text().splitlines()[1].startswith(ISO[0] + ",")
    elif fmt == "json":
        text = path.read_text()
        assert text.startswith('[\n  {\n    "ts": "' + ISO[0])  # indented as the report
        back = _like(pd.DataFrame(json.loads(text)), df)
    else:
        lines = path.read_text().splitlines()
        assert len(lines) == len(df) and lines[0].startswith('{"ts":"' + ISO[0] + '",')
        back = _like(pd.DataFrame([json.loads(line) for line in lines]), df)
    pd.testing.assert_frame_equal(back, df)
    assert back["ts"][0].value == T[0] and back["latency"][0].value == 1_234_567


def test_json_missing_values_are_null_and_numbers_are_numbers() -> None:
    rec = table_records(_frame())[1]
    assert rec["ts"] == ISO[1] and rec["packet_id"] is None and rec["latency_ms"] is None
    assert rec["client_id"] is None and rec["session_present"] is None
    assert rec["latency"] == "0 days 00:00:05.000000000"          # as pandas writes it in csv
    first = table_records(_frame())[0]
    assert type(first["conn_id"]) is int and type(first["dup"]) is bool
    assert first["latency"] == "0 days 00:00:00.001234567"


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_text_tables_show_times_in_the_same_form(fmt: str) -> None:
    buf = io.StringIO()
    write_table(_frame(), fmt, buf, footer="4 rows")
    text = buf.getvalue()
    assert ISO[0] in text and ISO[1] in text and text.endswith("\n4 rows\n")
    headers = list(_frame().columns)
    first = text.splitlines()[0]
    assert first.split() == headers if fmt == "table" else first == "| " + " | ".join(
        headers) + " |"
    second = text.splitlines()[3]     # packet_id NA, latency_ms NaN, two booleans/strings NA
    cells = second.split() if fmt == "table" else [c.strip() for c in second.split("|")]
    assert cells.count("-") == 4


def test_format_table_aligns_and_marks_missing() -> None:
    text = format_table(["name", "n", "ms"], [["a", 1, 0.5], ["long name", 20, None]])
    lines = text.splitlines()
    assert lines[0] == "name        n     ms"
    assert lines[2] == "a           1  0.500" and lines[3] == "long name  20      -"
    md = format_table(["a|b", "n"], [["x|y", 3]], "markdown")
    assert md.splitlines() == ["| a|b | n |", "|---|---:|", "| x\\|y | 3 |"]


def test_documents() -> None:
    doc = {"capture": {"t_first_ns": T[0]}, "per_qos": [{"qos": 0, "p50": None}]}
    assert document_text(doc, "json") == json.dumps(doc, indent=2) + "\n"
    assert json.loads(document_text(doc, "jsonl")) == doc
    assert document_text(doc, "jsonl").count("\n") == 1
    assert document_text(doc, "markdown", lambda f: f"# {f}") == "# markdown\n"
    buf = io.StringIO()
    write_document(doc, "json", buf)
    assert json.loads(buf.getvalue()) == doc
    with pytest.raises(ValueError, match="no table form"):
        document_text(doc, "table")
    with pytest.raises(ValueError, match="not 'csv'"):
        document_text(doc, "csv")


def test_unknown_formats_and_parquet_to_a_terminal_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown table format 'xml'"):
        write_table(_frame(), "xml", io.StringIO())
    with pytest.raises(ValueError, match="needs a file"):
        write_table(_frame(), "parquet")
    with pytest.raises(ValueError, match="not 'json'"):
        write_events([], "json", io.StringIO())
    assert set(FORMATS) == {"table", "markdown", "csv", "json", "jsonl", "parquet"}


@pytest.mark.parametrize("fmt", ["table", "jsonl", "csv"])
def test_events_are_decode_lines_in_order(fmt: str) -> None:
    buf = io.StringIO()
    n = write_events(iter_events(REDELIVERY), fmt, buf)
    lines = formatter(fmt)
    expected = (lines.header() or "") + "".join(
        line for ev in iter_events(REDELIVERY) if (line := lines(ev)) is not None)
    assert buf.getvalue() == expected and n > 116
    if fmt == "jsonl":
        assert len(buf.getvalue().splitlines()) == 116
