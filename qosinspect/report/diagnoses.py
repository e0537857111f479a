"""The ``Diagnoses`` section of the text and markdown reports, and the ladder's cause markers.

Why its own module: the report's other sections belong to other work (``text.py`` calls this in
one line); the figures come from ``report --format json``'s ``diagnoses`` list
(:mod:`qosinspect.analysis.diagnoses.report`), so every format says the same.
"""

from __future__ import annotations

from typing import Any

from .output import format_table

__all__ = ["diagnoses_lines", "ladder_markers", "name_ladders", "wire_rows"]


def wire_rows(wire: list[dict[str, Any]]) -> list[list[Any]]:
    """The per-step latency table's "time on the wire" line of each QoS."""
    return [[f"QoS {w['qos']}", f"time on the wire ({w['packets']} packets in pieces)",
             w["p50"], w["p90"], w["p99"], w["max"]] for w in wire]


def name_ladders(data: dict[str, Any], capture: str) -> None:
    """Put the capture's name in each example's ladder command (the library writes
    ``CAPTURE``: it does not know how the user named the file)."""
    for d in data.get("diagnoses", ()):
        for ex in d["examples"]:
            ex["ladder"] = ex["ladder"].replace("CAPTURE", capture, 1)


def diagnoses_lines(diagnoses: list[dict[str, Any]], fmt: str, capture: str) -> list[str]:
    """The section's lines (without its title): one row per cause, then its worst examples
    with their evidence, advice and ladder command; ``none`` when nothing was diagnosed."""
    if not diagnoses:
        return ["no slow exchange, reconnection or lost copy to explain (none over the floor)"]
    rows = [[d["cause"], d["exchanges"], d["reconnects"], d.get("deliveries", 0),
             d["latency_explained_ms"]] for d in diagnoses]
    out = [format_table(["cause", "exchanges", "reconnects", "not delivered",
                         "latency explained ms"], rows, fmt, "lrrrr")]
    for d in diagnoses:
        out.append(f"{d['cause']}:")
        for ex in d["examples"]:
            what = (f"exchange {ex['exchange']}" if "exchange" in ex
                    else f"reconnection {ex['reconnect']}" if "reconnect" in ex
                    else f"copy not delivered {ex['delivery']}")
            frames = ", ".join(str(f) for f in ex["frames"]) or "-"
            out.append(f"  {what} (conn {ex['conn_id']}, {ex['t_s']:.3f} s, "
                       f"{ex['latency_ms']:.1f} ms, frames {frames}): {ex['evidence']}")
            if ex["advice"]:
                out.append(f"    advice: {ex['advice']}")
            out.append(f"    ladder: {ex['ladder']}")
    out.append(f"  details: qosinspect flows {capture} --format json (cause per exchange); "
               "docs/diagnoses.md (signatures, thresholds)")
    return out


def ladder_markers(result: Any, conn_ids: set[int]) -> list[tuple[int, str, int]]:
    """``(ts_ns, text, conn_id)`` of every verdict on these connections, for the ladder."""
    if result is None:
        return []
    return [(d.ts_ns, f"!! cause {d.cause}: {d.sentence}", d.conn_id)
            for d in result.diagnoses if d.conn_id in conn_ids]
