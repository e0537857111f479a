"""Timestamps in the CSV files the commands write (``flows --format csv``, ``export --format
csv``): one form everywhere, ISO 8601 in UTC with all nine digits of the nanoseconds and a
``Z`` (``2026-11-26T10:09:13.424008658Z``), as ``flows --format json`` writes them.

Why not pandas' own: its default (``2026-11-26 10:09:13.424008658+00:00``) differs from the
JSON, and a ``date_format`` with ``%f`` cuts to microseconds, which loses the order of packets
of the same microsecond in a nanosecond capture. ``pd.read_csv(..., parse_dates=[...])`` reads
this form back to the same ``datetime64[ns, UTC]`` values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["iso_times"]


def iso_times(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose timezone-aware datetime columns are ISO 8601 strings (missing:
    empty in the CSV)."""
    import pandas as pd

    out = df.copy()
    for col in df.columns:
        s = df[col]
        if not isinstance(s.dtype, pd.DatetimeTZDtype):
            continue
        utc = s.dt.tz_convert("UTC")
        missing = utc.isna()
        frac = (utc.dt.microsecond * 1000 + utc.dt.nanosecond).fillna(0).astype("int64")
        text = (utc.dt.strftime("%Y-%m-%dT%H:%M:%S") + "."
                + frac.astype(str).str.zfill(9) + "Z")
        out[col] = text.where(~missing, None).astype(object)
    return out
