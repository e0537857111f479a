"""The diagnoses as report data: ``report --format json``'s ``diagnoses`` list and the time
on the wire per QoS (the per-step latency table's "time on the wire" line).

Grouped by cause, worst first: how many exchanges and reconnections each cause explains, how
much latency it accounts for, and its worst examples, each with the frames and the ladder
command that shows it (the text and HTML reports print from here, so the numbers agree).
"""

from __future__ import annotations

from typing import Any

from .core import DiagnosisResult
from .evidence import CAUSES, EXAMPLES, NO_KNOWN_CAUSE, Diagnosis, example_key

__all__ = ["EXAMPLES", "diagnoses_report", "ladder_command", "wire_report"]

_ORDER = {c: i for i, c in enumerate((*CAUSES, NO_KNOWN_CAUSE))}


def ladder_command(d: Diagnosis, t_first: int | None, capture: str = "CAPTURE") -> str:
    """The ``qosinspect ladder`` command that draws the packets around one verdict."""
    t0 = t_first or 0
    since = max(0.0, (d.ts_ns - t0) / 1e9 - 0.5)
    until = (d.ts_ns + d.latency_ns - t0) / 1e9 + 0.5
    return f"qosinspect ladder {capture} --conn {d.conn_id} --since {since:.3f} --until {until:.3f}"


def diagnoses_report(result: DiagnosisResult | None, t_first: int | None
                     ) -> list[dict[str, Any]]:
    """One entry per cause found (``no_known_cause`` last), each with ``cause``,
    ``exchanges``, ``reconnects``, ``deliveries`` (copies never delivered),
    ``latency_explained_ms`` and ``examples``."""
    if result is None:
        return []
    out = []
    for cause, found in sorted(result.by_cause().items(), key=lambda kv: _ORDER.get(kv[0], 99)):
        worst = sorted(found, key=example_key)[:EXAMPLES]
        more, more_ns = result.counted.get(cause, (0, 0))   # counted past the cap
        more_r, more_r_ns = result.counted_reconnects.get(cause, (0, 0))
        out.append({
            "cause": cause,
            "exchanges": more + sum(1 for d in found if d.subject == "exchange"),
            "reconnects": more_r + sum(1 for d in found if d.subject == "reconnect"),
            "deliveries": result.counted_deliveries.get(cause, 0)
            + sum(1 for d in found if d.subject == "delivery"),
            "latency_explained_ms": round((more_ns + more_r_ns
                                           + sum(d.latency_ns for d in found)) / 1e6, 3),
            "examples": [{
                d.subject: d.ref, "conn_id": d.conn_id,
                "t_s": round((d.ts_ns - (t_first or 0)) / 1e9, 6),
                "latency_ms": round(d.latency_ns / 1e6, 3), "frames": list(d.frames),
                "evidence": d.sentence, "advice": d.advice,
                "ladder": ladder_command(d, t_first)} for d in worst],
        })
    return out


def wire_report(result: DiagnosisResult | None) -> list[dict[str, Any]]:
    """Per QoS with packets that spanned frames: how many, and p50/p90/p99/max of their time on
    the wire in ms (nearest rank; over a uniform sample past 100,000 packets)."""
    if result is None:
        return []
    out = []
    for qos in sorted(result.wire):
        w = result.wire[qos]
        data = sorted(w.values)
        n = len(data)

        def rank(p: float, data: list[int] = data, n: int = n) -> float:
            return round(data[min(n - 1, max(0, -(-int(p * n) // 100) - 1))] / 1e6, 3)

        out.append({"qos": qos, "packets": w.n, "p50": rank(50), "p90": rank(90),
                    "p99": rank(99), "max": round(w.max / 1e6, 3)})
    return out
