"""``qosinspect query``: the five queries of docs/batch.md, run by DuckDB on the batch
dataset, against the same answers computed with pandas from each capture analysed alone."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qosinspect.analysis.api import analyze_capture
from qosinspect.analysis.options import AnalysisOptions
from qosinspect.dataset.query import QueryError, query
from qosinspect.testing.tools import PROJECT_ROOT

from .conftest import GOOD, Built, run_cli

DOC = PROJECT_ROOT / "docs" / "batch.md"


def doc_queries() -> list[str]:
    """The SQL blocks of the "Five useful queries" section, in order."""
    text = DOC.read_text().split("### Five useful queries", 1)[1]
    return re.findall(r"```sql\n(.*?)```", text, re.S)


@pytest.fixture(scope="module")
def tables(built: Built, single: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every capture's tables concatenated with pandas, with ``capture`` and
    ``tag_firmware``: the reference the queries are checked against."""
    analyses = dict(single)
    analyses["cut.pcap"] = analyze_capture(built.folder / "cut.pcap",
                                           options=AnalysisOptions(packets=False))
    out: dict[str, pd.DataFrame] = {}
    for table in ("exchanges", "reconnects", "deliveries", "summary"):
        parts = []
        for name, a in analyses.items():
            df = (a.summary().reset_index() if table == "summary" else getattr(a, table)).copy()
            for col in df.select_dtypes("category"):
                df[col] = df[col].astype(object)
            df["capture"] = name
            df["tag_firmware"] = GOOD.get(name)
            parts.append(df)
        out[table] = pd.concat(parts, ignore_index=True)
    return out


def rows(df: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as tuples, floats rounded, missing values None: comparable across engines."""
    def cell(v: Any) -> Any:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        if isinstance(v, float):
            return round(v, 6)
        if hasattr(v, "item"):
            return cell(v.item())
        return v
    return [tuple(cell(v) for v in r) for r in df.itertuples(index=False)]


def test_the_doc_has_five_queries() -> None:
    assert len(doc_queries()) == 5


def test_p99_puback_latency_per_firmware_per_day(built: Built, tables: dict[str, Any]) -> None:
    got = query(built.root, doc_queries()[0])
    ex = tables["exchanges"]
    ex = ex[(ex["qos"] == 1) & ex["latency_puback"].notna()].copy()
    ex["day"] = ex["t_publish"].dt.floor("D")
    ex["ms"] = ex["latency_puback"].dt.total_seconds() * 1e3  # ns resolution kept (1e-6 ms)
    want = (ex.groupby(["tag_firmware", "day"], dropna=False)
            .agg(n=("ms", "size"), p99=("ms", lambda s: s.quantile(0.99)))
            .reset_index().sort_values(["tag_firmware", "day"], na_position="last"))
    assert list(got.columns) == ["firmware", "day", "n", "p99_puback_ms"]
    assert len(got) >= 2 and got["n"].sum() == len(ex)
    assert [r[0] for r in rows(got)] == [r[0] for r in rows(want)]
    assert list(got["n"]) == list(want["n"])
    assert got["p99_puback_ms"].round(3).tolist() == want["p99"].round(3).tolist()


def test_clients_that_reconnect_most(built: Built, tables: dict[str, Any]) -> None:
    got = query(built.root, doc_queries()[1])
    rc = tables["reconnects"]
    assert len(rc) > 0
    want = (rc.groupby("client_id")
            .agg(reconnects=("capture", "size"), captures=("capture", "nunique"),
                 median_gap_ms=("gap", lambda s: (s.dt.total_seconds() * 1e3).median()))
            .reset_index().sort_values(["reconnects", "client_id"], ascending=[False, True])
            .head(10))
    assert rows(got.round(3)) == rows(want.round(3))


def test_completion_per_qos_per_firmware(built: Built, tables: dict[str, Any]) -> None:
    got = query(built.root, doc_queries()[2])
    s = tables["summary"]
    want = (s.groupby(["tag_firmware", "qos"], dropna=False)[["publishes", "completed"]].sum()
            .reset_index().sort_values(["tag_firmware", "qos"], na_position="last"))
    want["pct"] = (100.0 * want["completed"] / want["publishes"].where(want["publishes"] > 0)
                   ).round(2)
    assert rows(got) == rows(want)
    assert set(got["firmware"].dropna()) == {"3.5", "3.7"}


def test_unfinished_qos2_handshakes(built: Built, tables: dict[str, Any]) -> None:
    got = query(built.root, doc_queries()[3])
    ex = tables["exchanges"]
    ex = ex[(ex["qos"] == 2) & ~ex["outcome"].isin(["complete", "complete_after_reconnect"])]
    want = ex.groupby(["capture", "last_step"]).size().reset_index().sort_values(
        ["capture", "last_step"])
    assert len(want) > 0                   # the cut capture stops in mid-handshake
    assert rows(got) == rows(want)


def test_messages_never_delivered(built: Built, tables: dict[str, Any]) -> None:
    got = query(built.root, doc_queries()[4])
    d = tables["deliveries"]
    d = d[d["status"] == "not_delivered"]
    want = d.groupby(["capture", "pub_qos", "reason"]).size().reset_index().sort_values(
        ["capture", "pub_qos", "reason"])
    assert len(want) > 0
    assert rows(got) == rows(want)


def test_query_command_formats_and_errors(built: Built, tmp_path: Path) -> None:
    code, out, _ = run_cli("query", str(built.root),
                           "SELECT qos, count(*) AS n FROM exchanges GROUP BY qos ORDER BY qos",
                           "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert [r["qos"] for r in data] == [0, 1, 2] and all(r["n"] > 0 for r in data)
    code, out, _ = run_cli("query", str(built.root), "SELECT capture FROM failures ORDER BY 1",
                           "--format", "csv")
    assert code == 0 and out.splitlines() == ["capture", "cut.pcap", "garbage.pcap"]
    code, _, err = run_cli("query", str(built.root), "SELECT nope FROM exchanges")
    assert code == 1 and "nope" in err and "Traceback" not in err
    code, _, err = run_cli("query", str(tmp_path / "none"), "SELECT 1")
    assert code == 1 and "no such dataset" in err


def test_a_clean_dataset_has_an_empty_failures_view(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    code, _, _ = run_cli("batch", str(PROJECT_ROOT / "captures" / "gen-qos0.pcap"), "-o",
                         str(root), "-j", "1")
    assert code == 0
    assert len(query(root, "SELECT capture, error FROM failures")) == 0
    with pytest.raises(QueryError, match="packets"):
        query(root, "SELECT count(*) FROM packets")
