"""An audit report as text: a table grouped by severity (terminal), markdown, or JSON (the
stable schema of :meth:`~.findings.AuditReport.to_dict`, for CI). One writer per format."""

from __future__ import annotations

import json
from typing import Any

from .findings import CHECKS, AuditReport, Finding, Severity

__all__ = ["FORMATS", "render"]

FORMATS = ("table", "markdown", "json")


def _evidence(f: Finding, limit: int = 6) -> str:
    parts = []
    for k, v in f.evidence.items():
        if isinstance(v, list):
            shown = ", ".join(json.dumps(x, sort_keys=True) if isinstance(x, dict) else str(x)
                              for x in v[:limit])
            v = f"[{shown}{', ...' if len(v) > limit else ''}]"
        elif isinstance(v, dict):
            v = json.dumps(v, sort_keys=True)
        parts.append(f"{k}={v}")
    if f.frames:
        more = ", ..." if len(f.frames) > limit else ""
        parts.append("frames=" + ",".join(map(str, f.frames[:limit])) + more)
    return "; ".join(parts)


def _table(report: AuditReport) -> str:
    lines = [f"qosinspect audit of {report.target} ({report.mode}): "
             f"{len(report.findings)} findings"]
    for sev in reversed(Severity):
        group = [f for f in report.sorted() if f.level is sev]
        if not group:
            continue
        lines += ["", f"{sev.name} ({len(group)})"]
        for f in group:
            lines.append(f"  [{f.check}] {f.title}")
            ev = _evidence(f)
            if ev:
                lines.append(f"      evidence: {ev}")
            if CHECKS[f.check].remedy:
                lines.append(f"      fix: {CHECKS[f.check].remedy}")
    if not report.findings:
        lines.append("no findings")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(report: AuditReport) -> str:
    lines = [f"# qosinspect audit: {_cell(report.target)}", "",
             f"{len(report.findings)} findings ({report.mode}).", "",
             "| severity | id | finding | evidence | what to do |", "|---|---|---|---|---|"]
    for f in report.sorted():
        lines.append(f"| {f.level} | `{f.check}` | {_cell(f.title)} | {_cell(_evidence(f))} | "
                     f"{_cell(CHECKS[f.check].remedy)} |")
    lines += ["", *(f"- note: {n}" for n in report.notes)]
    return "\n".join(lines).rstrip() + "\n"


def render(report: AuditReport, fmt: str) -> str:
    """``report`` in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "json":
        data: dict[str, Any] = report.to_dict()
        return json.dumps(data, indent=2, sort_keys=False, default=str)
    if fmt == "markdown":
        return _markdown(report)
    if fmt == "table":
        return _table(report)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
