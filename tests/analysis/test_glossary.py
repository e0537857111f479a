"""docs/glossary.md lists every column of every table, with its dtype, in order."""

from __future__ import annotations

import re

from qosinspect.analysis.tables import SCHEMAS
from qosinspect.testing.tools import PROJECT_ROOT


def _documented() -> dict[str, list[tuple[str, str]]]:
    text = (PROJECT_ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    tables: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        head = re.fullmatch(r"### `(\w+)`", line)
        if head:
            current = tables.setdefault(head.group(1), [])
            continue
        row = re.match(r"\| `(\w+)` \| ([^|]+?) \|", line)
        if row and current is not None:
            current.append((row.group(1), row.group(2).strip()))
    return tables


def test_glossary_lists_every_column() -> None:
    documented = _documented()
    assert set(documented) == set(SCHEMAS)
    for name, cols in SCHEMAS.items():
        assert documented[name] == [(c, d) for c, d, _ in cols], name


def test_report_keys_are_in_the_glossary() -> None:
    import qosinspect
    from qosinspect.testing.events import EventBuilder

    b = EventBuilder()
    c = b.client("x")
    b.qos1(c, "c2b", "t", b"1", 1)
    report = qosinspect.analyze(b.events).report()
    text = (PROJECT_ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    keys = (set(report) | set(report["per_qos"][1]) | set(report["capture"])
            | set(report["clear_text"]) | set(report["tcp_evidence"])
            | set(report["tcp_evidence"]["total"]))
    missing = [k for k in sorted(keys) if f"`{k}`" not in text]
    assert not missing, missing


def test_glossary_lists_exactly_the_registered_anomaly_kinds() -> None:
    """The glossary's anomaly table is the registry (qosinspect/anomalies.py), row for row."""
    from qosinspect.anomalies import KINDS

    text = (PROJECT_ROOT / "docs" / "glossary.md").read_text(encoding="utf-8")
    section = text.split("## Anomaly kinds (`kind`)")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (yes|no) \| (.+) \|$", section, re.M)
    assert rows == [(k.value, i.found_by, "yes" if i.note else "no", i.meaning)
                    for k, i in KINDS.items()]
