"""The HTML report: one self-contained file a colleague opens offline in a browser.

``qosinspect report CAPTURE --format html -o report.html`` writes it (through the output layer,
:func:`qosinspect.report.output.write_document`, as every format); :func:`html_page` gives it as
a string for other callers (a notebook, the commands to come).

Why this shape:

- The page is package data (``report.html``, ``report.css``, and the scripts ``report.js``,
  ``charts.js``, ``exchanges.js`` and ``ladder.js`` beside this file),
  not Python strings: a web developer edits it as a web page. Python builds one JSON payload
  (:mod:`.payload`: the report dict and capped, column-oriented tables) and inlines it.
- Self-contained and offline: plotly.js comes from the ``plotly`` Python package (its offline
  bundle, ``plotly/package_data/plotly.min.js``), never from a CDN. The bundle alone is 4.8 MB,
  so it and the payload are gzip-compressed and base64-encoded in ``<script>`` elements and
  inflated by the browser's ``DecompressionStream`` (Chromium 80+, Firefox 113+): a
  million-packet capture's page stays under 5 MB. The report's text is shown first; plotly.js
  is compiled beside it, and each chart is drawn when it comes into view (``charts.js``).
- The numbers are the report's (``Analysis.report()``): the page renders the same sections, in
  the same order, as :func:`qosinspect.report.text.format_report`.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from ...analysis.api import Analysis
from ..output import Target, format_time, write_document
from .payload import KEPT, LIMITS, Limits, build_payload

if TYPE_CHECKING:
    from ...audit.findings import AuditReport

__all__ = ["KEPT", "LIMITS", "Limits", "build_payload", "html_page", "read_payload",
           "render_page", "write_html"]


def html_page(analysis: Analysis, *, capture: str = "CAPTURE", audit: AuditReport | None = None,
              limits: Limits = LIMITS, report: dict[str, Any] | None = None) -> str:
    """The report of ``analysis`` as one HTML page (see the module docstring); ``capture``
    is CAPTURE and its decoder options as the page's suggested commands need them, ``audit``
    the capture's audit (its findings are summarised under "Clear text"), ``report``
    ``analysis.report()`` when the caller has it already."""
    payload = build_payload(analysis, capture=capture, audit=audit, limits=limits, report=report)
    return render_page(payload)


def write_html(analysis: Analysis, out: Target = None, *, capture: str = "CAPTURE",
               audit: AuditReport | None = None, limits: Limits = LIMITS) -> None:
    """Write :func:`html_page` through the output layer to ``out`` (a path, an open text
    file, or standard output)."""
    data = analysis.report()
    write_document(data, "html", out, render=lambda _: html_page(
        analysis, capture=capture, audit=audit, limits=limits, report=data))


def render_page(payload: dict[str, Any]) -> str:
    """The page around a payload of :func:`~.payload.build_payload`."""
    from ... import __version__

    source = payload["report"]["capture"].get("source", "events")
    payload = {**payload, "t0_iso": format_time(int(payload["t0_ns"]))}
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    parts = {
        "@@VERSION@@": html.escape(__version__),
        "@@TITLE@@": html.escape(f"qosinspect report: {source}"),
        "@@CSS@@": _asset("report.css"),
        "@@PLOTLY@@": _plotly_packed(),
        "@@DATA@@": _pack(data.encode("utf-8")),
        # one script: the charts, the table and the ladder first, report.js (which starts the
        # page) last
        "@@SCRIPT@@": "\n".join(_asset(name) for name in _SCRIPTS),
    }
    page = _asset("report.html")
    for marker, text in parts.items():
        page = page.replace(marker, text, 1)
    return page


def read_payload(page: str) -> dict[str, Any]:
    """The payload inlined in a page of :func:`render_page` (for tests, benchmarks and scripts
    that check what a page holds). ``ValueError`` when ``page`` is not such a page."""
    start = page.find(_DATA_OPEN)
    end = page.find("</script>", start)
    if start < 0 or end < 0:
        raise ValueError("not a qosinspect HTML report (no data element)")
    raw = gzip.decompress(base64.b64decode(page[start + len(_DATA_OPEN):end]))
    data: dict[str, Any] = json.loads(raw)
    return data


_DATA_OPEN = '<script type="application/octet-stream" id="data-gz">'


def _pack(raw: bytes) -> str:
    """gzip (level 6: as small as 9 within 1 %, six times faster; mtime 0: the same input
    gives the same page) then base64."""
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


@cache
def _plotly_packed() -> str:
    """plotly.js from the plotly Python package, packed once per process."""
    from plotly.offline import get_plotlyjs

    return _pack(get_plotlyjs().encode("utf-8"))


_SCRIPTS = ("charts.js", "exchanges.js", "ladder.js", "report.js")


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
