"""The one output layer: every command writes its tables, documents and packet lines here.

Why one layer: an output format is a rule (how a time is spelt, what a missing value becomes, how
JSON is indented), and each rule is written once. ``report``, ``flows``, ``export`` and
``decode`` call it, and so will the commands to come (audit, watch, compare, html); a notebook
can call it too. The API::

    write_table(df, fmt, out=None, *, footer=None)      a DataFrame, in any of FORMATS
    write_document(doc, fmt, out=None, *, render=None)  a nested dict (the report): json or
                                                        jsonl; table/markdown/html are
                                                        render(fmt) (document_text: the same
                                                        as a str)
    write_events(events, fmt, out=None, *, tick=None)   decode's stream, one line per packet
                                                        or anomaly: table, jsonl or csv
    format_time(ts_ns) -> str                           the one spelling of a time

``out`` is a path (``str`` or ``Path``), an open file (text; binary for parquet) or ``None`` for
standard output. Errors are the file system's (``OSError``) or, for a format a kind of output
does not have, ``ValueError``; the CLI turns both into a message.

The formats of a table:

- ``table``: aligned columns for a terminal (numbers to the right, missing values ``-``, floats
  with three decimals); ``markdown``: a GitHub table. ``footer`` (e.g. "26 exchanges") follows
  either on a line of its own.
- ``csv``: a header row, missing values empty; ``json``: an array of objects, indented by 2 as
  the report is; ``jsonl``: one compact object per line (as ``decode --format jsonl``);
  missing values ``null`` in both.
- ``parquet``: the DataFrame itself (pyarrow), dtypes kept; a file only.

Times (timezone-aware columns) are written in one form in every text format: ISO 8601 in UTC
with all nine digits of the nanoseconds and a ``Z``, ``2026-11-26T10:09:13.424008658Z``.
Pandas' own CSV form (``2026-11-26 10:09:13.424008658+00:00``) differs from ISO 8601 and from
the JSON, ``Timestamp.isoformat()`` drops the fraction when it is zero (pcap times are whole
microseconds), and ``%f`` cuts to microseconds, which loses the order of packets of the same
microsecond in a nanosecond capture. ``pd.read_csv(..., parse_dates=[...])`` and
``pd.to_datetime`` read the form back to the same ``datetime64[ns, UTC]`` values. Durations
(timedelta columns) keep pandas' form, ``0 days 00:00:00.001234567`` (nanoseconds kept,
``pd.to_timedelta`` reads it back). ``decode``'s lines carry ``ts`` (epoch seconds) and
``ts_ns``: their fields are :mod:`qosinspect.capture.lines`, a documented interface that the C
accelerator writes too.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..events import Event

__all__ = ["DOCUMENT_FORMATS", "EVENT_FORMATS", "FORMATS", "Target", "document_text",
           "format_cell", "format_table", "format_time", "table_records", "write_document",
           "write_events", "write_table"]

#: Every format a table can be written in.
FORMATS = ("table", "markdown", "csv", "json", "jsonl", "parquet")
#: The formats of a document (:func:`write_document`); ``html`` is one self-contained page
#: (:mod:`qosinspect.report.html`).
DOCUMENT_FORMATS = ("table", "markdown", "json", "jsonl", "html")
#: The formats of decode's stream (:func:`write_events`).
EVENT_FORMATS = ("table", "jsonl", "csv")

#: Where output goes: a path, an open file, or None for standard output.
Target = str | Path | IO[str] | IO[bytes] | None


def format_time(ts_ns: int) -> str:
    """Nanoseconds since the epoch as the one ISO form: ``2026-11-26T10:09:13.424008658Z``."""
    seconds, frac = divmod(ts_ns, 10**9)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str = "table",
                 align: str | None = None) -> str:
    """Rows as an aligned text table (``table``) or a GitHub table (``markdown``), without a
    final newline. ``align`` has one ``l``/``r`` per column (default: numbers right, text
    left); ``None`` and NaN are shown as ``-``, floats with three decimals."""
    cells = [[format_cell(v) for v in row] for row in rows]
    if align is None:
        align = "".join("r" if rows and all(isinstance(r[i], int | float) or r[i] is None
                                            for r in rows) else "l"
                        for i in range(len(headers)))
    if fmt == "markdown":
        out = ["| " + " | ".join(headers) + " |",
               "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(out)
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if a == "r" else v.ljust(w)
                         for v, w, a in zip(values, widths, align, strict=True)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])]
                     + [line(row) for row in cells])


def format_cell(v: Any) -> str:
    """One value as a table cell: ``None`` and NaN as ``-``, floats with three decimals."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _as_text_times(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose time columns are in the one ISO form and whose durations are in
    pandas' form, as strings (missing: ``None``); the other columns as they are."""
    import pandas as pd

    out = df.copy()
    for col in df.columns:
        s = df[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            utc = s.dt.tz_convert("UTC")
            frac = (utc.dt.microsecond * 1000 + utc.dt.nanosecond).fillna(0).astype("int64")
            text = (utc.dt.strftime("%Y-%m-%dT%H:%M:%S") + "."
                    + frac.astype(str).str.zfill(9) + "Z")
        elif s.dtype.kind == "m":
            text = s.astype(str)
        else:
            continue
        out[col] = text.where(s.notna(), None).astype(object)
    return out


def table_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``df`` as JSON-ready dicts (what ``json`` and ``jsonl`` write): times in the
    one ISO form, missing values ``None``, numpy scalars as Python numbers."""
    import pandas as pd

    out = []
    for row in _as_text_times(df).to_dict("records"):
        rec: dict[str, Any] = {}
        for k, v in row.items():
            if v is None or (not isinstance(v, str | list | dict) and pd.isna(v)):
                rec[str(k)] = None
            elif hasattr(v, "item"):
                rec[str(k)] = v.item()  # numpy scalar
            else:
                rec[str(k)] = v
        out.append(rec)
    return out


def _jsonl(records: Iterable[Any]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n"
                   for r in records)


def write_table(df: pd.DataFrame, fmt: str, out: Target = None, *,
                footer: str | None = None) -> None:
    """Write ``df`` in ``fmt`` (one of :data:`FORMATS`; see the module docstring) to ``out``;
    ``footer`` is a line after a ``table`` or ``markdown`` table."""
    if fmt == "parquet":
        if out is None:
            raise ValueError("parquet is binary: it needs a file (--output FILE)")
        df.to_parquet(out, index=False)  # type: ignore[arg-type]
        return
    if fmt == "csv":
        with _text_target(out) as f:
            _as_text_times(df).to_csv(f, index=False)
        return
    if fmt == "json":
        text = json.dumps(table_records(df), indent=2) + "\n"
    elif fmt == "jsonl":
        text = _jsonl(table_records(df))
    elif fmt in ("table", "markdown"):
        import pandas as pd

        shown = _as_text_times(df).astype(object)
        # missing: None, NaN, NaT and pd.NA (the packet id of a QoS 0 exchange)
        rows = [[None if v is None or pd.isna(v) else v for v in r]
                for r in shown.itertuples(index=False)]
        text = format_table([str(c) for c in df.columns], rows, fmt) + "\n"
        if footer is not None:
            text += footer + "\n"
    else:
        raise ValueError(f"unknown table format {fmt!r} (one of {', '.join(FORMATS)})")
    with _text_target(out) as f:
        f.write(text)


def document_text(doc: Mapping[str, Any], fmt: str,
                  render: Callable[[str], str] | None = None) -> str:
    """A document (a dict of JSON values, like the report) as text, with a final newline:
    ``json`` (indented by 2, the form of captures/expected/*.json), ``jsonl`` (one compact
    line), or ``table``/``markdown``/``html`` as ``render(fmt)`` words them (the document's own
    layout)."""
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "jsonl":
        return _jsonl([doc])
    if fmt in ("table", "markdown", "html"):
        if render is None:
            raise ValueError(f"this document has no {fmt} form")
        return render(fmt) + "\n"
    raise ValueError(f"a document is written as {', '.join(DOCUMENT_FORMATS)}, not {fmt!r}")


def write_document(doc: Mapping[str, Any], fmt: str, out: Target = None, *,
                   render: Callable[[str], str] | None = None) -> None:
    """Write :func:`document_text` of ``doc`` to ``out``."""
    text = document_text(doc, fmt, render)
    with _text_target(out) as f:
        f.write(text)


def write_events(events: Iterable[Event], fmt: str, out: Target = None, *,
                 tick: Callable[[int], None] | None = None) -> int:
    """Write one line per packet and anomaly of ``events`` (``decode``'s output; the fields:
    :mod:`qosinspect.capture.lines`) in ``table``, ``jsonl`` or ``csv``, as they come, in
    bounded memory. ``tick(n)`` is called now and then with the events so far (a progress
    display). Returns the number of events. What was written before an error in ``events``
    (a truncated capture) stays written and flushed; the error propagates."""
    from ..capture.lines import formatter

    if fmt not in EVENT_FORMATS:
        raise ValueError(f"packets are written as {', '.join(EVENT_FORMATS)}, not {fmt!r}")
    lines = formatter(fmt)
    with _text_target(out) as f:
        head = lines.header()
        if head:
            f.write(head)
        # What exists now (the interpreter, the imported modules) outlives the run: keep the
        # cyclic GC from walking it again and again while millions of short-lived packets go
        # by (the decoder makes cycles only per connection, which the young generations
        # still collect).
        gc.freeze()
        try:
            return lines.write_all(events, f.write, tick)
        finally:
            gc.unfreeze()


@contextlib.contextmanager
def _text_target(out: Target) -> Iterator[IO[str]]:
    """``out`` as a text file to write to; a path is opened (UTF-8) and closed, a given file
    or standard output only flushed."""
    if out is None or not isinstance(out, str | Path):
        f: IO[str] = sys.stdout if out is None else out  # type: ignore[assignment]
        try:
            yield f
        finally:
            f.flush()
        return
    with open(out, "w", encoding="utf-8") as f:
        yield f
